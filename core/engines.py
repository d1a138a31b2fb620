"""Engines that run a trained network faster on a CPU with the same answers: PyTorch fp32, bf16 autocast, Inductor
(ahead-of-time compiled), OpenVINO.

A model's record lists the engines that keep its answers (``ModelRecord.engines``: checked on real CamVid
frames by ``tests/test_engines.py`` and ``bench/engines.py``) and the part of the model they run
(``engine_part``: the whole network, or Mask R-CNN's VGG-19 encoder). On a host, ``auto`` takes among those
the engines the CPU supports (bf16 needs AMX or AVX512-BF16; OpenVINO needs its package; Inductor a C++
compiler) the fastest one *by measurement*: each candidate is timed against fp32 on the model's working size,
once per host, and the choice is kept on disk with the converted model (OpenVINO IR, Inductor's .pt2 package).
An operator forces one engine with ``--runtime``.

Conversion, compilation and timing cost seconds to a few minutes per model, and ``torch.export`` (behind
Inductor and OpenVINO's converter) changes process-wide dispatch state, so an eager call in another thread fails
beside it. So :func:`prepare` (build, time, choose) runs in a child process of the app
(``weights.engine_builds``), and the serving process only loads what the child left in :func:`cache_dir`
(:func:`load_prepared`); a model that is not prepared yet is served by fp32 PyTorch meanwhile. :func:`described`
says which engine served a model, so each panel can say it.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import logging
import multiprocessing
import os
import platform
import shutil
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

#: ``eager`` is PyTorch fp32; ``bf16`` PyTorch under bf16 autocast (channels_last); ``inductor`` the fp32
#: network compiled ahead of time by PyTorch Inductor (AOTInductor: fused C++ kernels, frozen weights) and
#: ``inductor-bf16`` the same under bf16 autocast; ``openvino`` OpenVINO in fp32 and ``openvino-bf16`` OpenVINO
#: with bf16 inference precision (on AMX its default).
ENGINES = ("eager", "bf16", "inductor", "inductor-bf16", "openvino", "openvino-bf16")
RUNTIMES = ("auto", *ENGINES)
LABELS = {"eager": "PyTorch fp32", "bf16": "PyTorch bf16 autocast", "inductor": "PyTorch Inductor fp32 (compiled)",
          "inductor-bf16": "PyTorch Inductor bf16 (compiled)",
          "openvino": "OpenVINO fp32", "openvino-bf16": "OpenVINO bf16"}


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AMX tiles or AVX512-BF16); elsewhere bf16 is emulated and slower."""
    return bool(torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported())


def supported(engine: str, device: torch.device) -> bool:
    """Whether ``engine`` can run on ``device`` of this host (every engine but ``eager`` is CPU-only)."""
    if engine == "eager":
        return True
    if device.type != "cpu":
        return False
    if engine.endswith("bf16") and not cpu_has_bf16():
        return False
    if engine.startswith("inductor"):  # compiles C++ once per host
        return any(shutil.which(cxx) for cxx in (os.environ.get("CXX") or "g++", "c++", "clang++"))
    return not engine.startswith("openvino") or importlib.util.find_spec("openvino") is not None


def _to_float(out):
    if isinstance(out, torch.Tensor):
        return out.float()
    return type(out)(_to_float(o) for o in out)


class Accelerated(nn.Module):
    """A module run by another engine; keeps the original (its parameters, device and size stay visible)."""

    def __init__(self, module: nn.Module, engine: str):
        super().__init__()
        self.module = module
        self.engine = engine
        self.stride = getattr(module, "stride", None)  # segmentation's run_padded pads to it


class Bf16Autocast(Accelerated):
    """``module`` under bf16 autocast in channels_last memory; outputs back in fp32 for the fp32 code after it."""

    def __init__(self, module: nn.Module):
        super().__init__(module.to(memory_format=torch.channels_last), "bf16")

    def forward(self, x: torch.Tensor):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return _to_float(self.module(x.contiguous(memory_format=torch.channels_last)))


class OpenVINOModel(Accelerated):
    """An OpenVINO compiled model with ``module``'s call: Bx3xHxW fp32 tensor -> tensor, or list of tensors."""

    def __init__(self, module: nn.Module, compiled, engine: str, returns_list: bool):
        super().__init__(module, engine)
        self._compiled = compiled
        self._returns_list = returns_list

    def forward(self, x: torch.Tensor):
        # An infer request per call: one compiled model serves concurrent requests, a shared request would not.
        request = self._compiled.create_infer_request()
        request.infer([x.detach().float().contiguous().numpy()])
        outs = [torch.from_numpy(request.get_output_tensor(i).data.copy())
                for i in range(len(self._compiled.outputs))]
        return outs if self._returns_list else outs[0]


class InductorModel(Accelerated):
    """An AOTInductor package loaded with ``module``'s call (its outputs keep the module's structure)."""

    def __init__(self, module: nn.Module, compiled, engine: str):
        super().__init__(module, engine)
        self._compiled = compiled

    def forward(self, x: torch.Tensor):
        return self._compiled(x.detach().float().contiguous())


class NotBuilt(LookupError):
    """An engine's converted model, or ``auto``'s choice, is not in the cache yet: :func:`prepare` must run first."""


def cache_dir() -> Path:
    """Converted models and per-host choices: ``CVHUB_CACHE_DIR``/engines, else ~/.cache/cvhub/engines."""
    base = os.environ.get("CVHUB_CACHE_DIR")
    root = Path(base) if base else Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cvhub"
    return root.expanduser() / "engines"


def _state_digest(module: nn.Module) -> str:
    """sha256 over a module's tensors: a converted model is reused only for exactly these weights."""
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _host_key() -> str:
    """Measurements hold for one CPU, core count and set of library versions."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    ov = _openvino_version()
    return f"{cpu} x{os.cpu_count()} torch {torch.__version__} openvino {ov}"


def _openvino_version() -> str:
    if importlib.util.find_spec("openvino") is None:
        return "none"
    import openvino  # noqa: PLC0415 (optional: only hosts that installed it)
    return openvino.__version__


def _export(module: nn.Module, example: torch.Tensor, stride: int) -> torch.export.ExportedProgram:
    """``module`` exported for any batch and any H, W multiple of ``stride`` (``example`` needs a batch of at
    least 2, since export fixes sizes of 1)."""
    batch = torch.export.Dim("batch", min=1, max=64)
    h, w = torch.export.Dim("h", min=1, max=512), torch.export.Dim("w", min=1, max=512)
    return torch.export.export(module, (example,), dynamic_shapes=({0: batch, 2: stride * h, 3: stride * w},))


def _compile_package(module: nn.Module, example: torch.Tensor, stride: int, path: Path) -> None:
    """One .pt2 package at ``path`` (written aside, then renamed: a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.pt2")
    # Freezing folds the weights into the compiled graph, so Inductor can pre-pack them for oneDNN.
    torch._inductor.aoti_compile_and_package(_export(module, example, stride), package_path=str(tmp),
                                             inductor_configs={"freezing": True})
    tmp.replace(path)


def compile_inductor(jobs: dict[str, tuple[nn.Module, torch.Tensor, int]]) -> None:
    """Each ``key: (module, example, stride)`` compiled ahead of time by Inductor for any batch and H, W multiple of
    ``stride``, as a .pt2 package under :func:`cache_dir` by ``key``, unless it is there already: a restart loads
    it in milliseconds instead of compiling again (about a minute each for ENet).

    Inductor's code generation is single-threaded Python, so several packages compile side by side, each in a
    child process (spawned: a forked child would inherit the parent's threads mid-flight), one per core; on two
    cores ENet's two packages take about the time of one.
    """
    todo = {cache_dir() / f"{key}.pt2": job for key, job in jobs.items()}
    todo = {path: job for path, job in todo.items() if not path.exists()}
    workers = min(len(todo), os.cpu_count() or 1)
    if workers < 2:
        for path, job in todo.items():
            _compile_package(*job, path)
        return
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for done in [pool.submit(_compile_package, *job, path) for path, job in todo.items()]:
            done.result()


def _built(path: Path) -> Path:
    if not path.exists():
        raise NotBuilt(f"{path.name} is not in {path.parent} yet")
    return path


def load_inductor(key: str):
    """The package :func:`compile_inductor` made for ``key``, ready to call."""
    return torch._inductor.aoti_load_package(str(_built(cache_dir() / f"{key}.pt2")))


def convert_openvino(module: nn.Module, example: torch.Tensor, engine: str, *, stride: int, key: str,
                     build: bool = True):
    """``module`` as an OpenVINO compiled model taking any batch and any H, W multiple of ``stride``.

    Exported with ``torch.export``, converted, saved as IR under :func:`cache_dir` by ``key``, so a restart
    compiles the saved IR instead of converting again. ``build=False``: only the saved IR, else :class:`NotBuilt`.
    """
    import openvino as ov  # noqa: PLC0415 (optional: only hosts that installed it)

    path = cache_dir() / f"{key}.xml"
    if build and not path.exists():
        exported = _export(module, example, stride)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.{os.getpid()}.xml")
        ov.save_model(ov.convert_model(exported), tmp)
        tmp.with_suffix(".bin").replace(path.with_suffix(".bin"))
        tmp.replace(path)
    precision = "bf16" if engine == "openvino-bf16" else "f32"
    return ov.Core().compile_model(str(_built(path)), "CPU", {"INFERENCE_PRECISION_HINT": precision,
                                                      "PERFORMANCE_HINT": "LATENCY"})


def _batch_of_two(example: torch.Tensor) -> torch.Tensor:
    return example.expand(2, *example.shape[1:]).contiguous()  # export fixes a batch of 1 (see _export)


def _digest(module: nn.Module, key: str) -> str:
    return f"{key or type(module).__name__}-{_state_digest(module)}"


def _inductor_job(module: nn.Module, engine: str, example: torch.Tensor, *, stride: int,
                  key: str) -> tuple[str, tuple[nn.Module, torch.Tensor, int]]:
    """(cache key, :func:`compile_inductor`'s job) for ``module`` under ``engine`` (``inductor`` or
    ``inductor-bf16``)."""
    traced = Bf16Autocast(module) if engine == "inductor-bf16" else module
    return f"{_digest(module, key)}-{engine}-torch{torch.__version__}", (traced, _batch_of_two(example), stride)


def accelerate(module: nn.Module, engine: str, example: torch.Tensor, *, stride: int = 32, key: str = "",
               build: bool = True) -> nn.Module:
    """``module`` run by ``engine`` (``eager`` returns it unchanged). ``example``: an input of the working size.

    ``build=False`` only loads a converted or compiled model from :func:`cache_dir` (:class:`NotBuilt` where it is
    missing): what the serving process does, since exporting there would break its requests."""
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}; choose from {', '.join(ENGINES)}")
    if engine == "eager":
        return module
    if engine == "bf16":
        return Bf16Autocast(module)
    if engine.startswith("inductor"):
        key, job = _inductor_job(module, engine, example, stride=stride, key=key)
        if build:
            compile_inductor({key: job})
        return InductorModel(module, load_inductor(key), engine)
    # OpenVINO's version may name a branch: releases/2026/4.
    key = f"{_digest(module, key)}-ov{_openvino_version().replace('/', '_')}"
    compiled = convert_openvino(module, _batch_of_two(example), engine, stride=stride, key=key, build=build)
    with torch.no_grad():
        returns_list = not isinstance(module(example[:1]), torch.Tensor)
    return OpenVINOModel(module, compiled, engine, returns_list)


@torch.no_grad()
def time_ms(fn, x: torch.Tensor, *, repeats: int = 3) -> float:
    """Median wall time of ``fn(x)`` in ms after one warm-up call."""
    fn(x)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000 * sorted(times)[len(times) // 2]


def fastest(candidates: dict[str, nn.Module], x: torch.Tensor, *, rounds: int = 3) -> tuple[str, dict[str, float]]:
    """(name of the fastest, ms of each) over ``rounds`` interleaved rounds: a busy host slows all alike."""
    ms: dict[str, list[float]] = {name: [] for name in candidates}
    for _ in range(rounds):
        for name, module in candidates.items():
            ms[name].append(time_ms(module, x, repeats=1))
    median = {name: sorted(v)[len(v) // 2] for name, v in ms.items()}
    return min(median, key=median.get), median


# --- which engine serves a model on this host --------------------------------------------------------------------

_lock = threading.Lock()
_prepared: dict[str, str] = {}  # model name -> engine installed in the cached model
_pending: set[str] = set()  # names a background thread will prepare


def _choices_path() -> Path:
    digest = hashlib.sha256(_host_key().encode()).hexdigest()[:12]
    return cache_dir() / f"choices-{digest}.json"


def _load_choices() -> dict:
    with contextlib.suppress(OSError, ValueError):
        return json.loads(_choices_path().read_text())
    return {}


def _save_choice(name: str, engine: str, ms: dict[str, float]) -> None:
    path = _choices_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    with _lock:
        choices = _load_choices()
        choices[name] = {"engine": engine, "ms": {k: round(v, 1) for k, v in ms.items()}, "host": _host_key()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(json.dumps(choices, indent=1))
        tmp.replace(path)


def _part(model: nn.Module, dotted: str) -> tuple[nn.Module, str, nn.Module]:
    """(parent, attribute, the part) for a dotted path inside ``model``; "" is the whole model."""
    if not dotted:
        return model, "", model
    *parents, attribute = dotted.split(".")
    parent = model
    for name in parents:
        parent = getattr(parent, name)
    return parent, attribute, getattr(parent, attribute)


def _example(record, model: nn.Module, stride: int) -> torch.Tensor:
    h, w = record.input_size or (360, 480)
    h, w = -(-h // stride) * stride, -(-w // stride) * stride
    device = next(model.parameters()).device
    return torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(0)).to(device)


def _candidates(name: str, model: nn.Module, among) -> list[str]:
    """The engines of ``among`` that ``name``'s record lists and this host runs."""
    from weights import get_record  # noqa: PLC0415 (the registry imports this module)

    device = next(model.parameters()).device
    return [e for e in get_record(name).engines if e in among and supported(e, device)]


def _chosen(name: str, model: nn.Module, runtime: str, among) -> str | None:
    """The engine ``runtime`` asks for on this host: a forced one, else ``auto``'s saved choice; None where
    ``auto`` has candidates but has not measured them on this host yet. A forced engine that the record does not
    list (it would change the answers), that this host cannot run or that ``among`` leaves out leaves fp32, with a
    log line."""
    candidates = _candidates(name, model, among)
    if runtime not in ("auto", "eager", *candidates):
        log.warning("%s: runtime %s is not among this model's engines on this host (%s); serving fp32",
                    name, runtime, ", ".join(candidates) or "none")
        return "eager"
    if runtime != "auto":
        return runtime
    saved = _load_choices().get(name, {}).get("engine")  # ignored if the record has since dropped it
    if saved in ("eager", *candidates):
        return saved
    return None if candidates else "eager"


def prepare(name: str, model: nn.Module, runtime: str = "auto", among=ENGINES) -> nn.Module:
    """``model`` with the engine ``runtime`` asks for installed: the module to serve ``name`` with from now on.

    ``auto``: the choice measured earlier on this host, else each supported candidate is converted and timed
    against fp32, and the fastest is saved and installed. ``among``: the engines the operator allows (the settings'
    ``engines``, ``CVHUB_ENGINES``). Exports and compiles: never in a process that serves requests (see the
    module's docstring); there, :func:`load_prepared`.
    """
    chosen = _chosen(name, model, runtime, among)
    if chosen is None:  # measured now: the timed module itself is installed, not built a second time
        return _place(name, model, *_measure(name, model, _candidates(name, model, among)))
    return install(name, model, chosen)


def load_prepared(name: str, model: nn.Module, runtime: str = "auto", among=ENGINES) -> nn.Module:
    """What :func:`prepare` returns, from what an earlier :func:`prepare` left in the cache, building nothing:
    :class:`NotBuilt` where ``auto`` has not measured yet or the engine's converted model is missing."""
    chosen = _chosen(name, model, runtime, among)
    if chosen is None:
        raise NotBuilt(f"{name}: its engines are not measured on this host yet")
    return install(name, model, chosen, build=False)


def _where(name: str, model: nn.Module):
    """(record, the part of ``model`` an engine runs, an example input of its working size, its stride)."""
    from weights import get_record  # noqa: PLC0415 (the registry imports this module)

    record = get_record(name)
    _, _, part = _part(model, record.engine_part)
    stride = getattr(model, "stride", None) or 32
    return record, part, _example(record, part, stride), stride


def _measure(name: str, model: nn.Module, candidates: list[str]) -> tuple[str, nn.Module]:
    """Time each candidate against fp32 on the model's working size; save the fastest's name and return it with
    its module (the part itself for fp32)."""
    _, part, example, _ = _where(name, model)
    built = build(name, model, candidates)
    chosen, ms = fastest({"eager": part, **built}, example)
    _save_choice(name, chosen, ms)
    log.info("%s: %s chosen on this host (%s)", name, chosen, ", ".join(f"{e} {v:.0f} ms" for e, v in ms.items()))
    return chosen, built.get(chosen, part)


def build(name: str, model: nn.Module, candidates: list[str]) -> dict[str, nn.Module]:
    """Each engine of ``candidates`` that builds on this host, as a module for the record's part of ``model``.

    The Inductor packages compile first, side by side (:func:`compile_inductor`); an engine whose compiler or
    converter fails here is left out, with its error in the log, and the others still count.
    """
    record, part, example, stride = _where(name, model)
    key = _key(name, record)
    try:
        compile_inductor(inductor_jobs(name, model, candidates))
    except Exception:  # noqa: BLE001 (accelerate below tries each again, alone, and logs which one fails)
        log.exception("%s: compiling its Inductor engines side by side failed", name)
    built = {}
    for engine in candidates:
        try:
            built[engine] = accelerate(part, engine, example, stride=stride, key=key)
        except Exception:  # noqa: BLE001 (a host whose compiler or converter fails: the other engines still count)
            log.exception("%s: %s failed to build on this host; timing the others", name, engine)
    return built


def inductor_jobs(name: str, model: nn.Module, candidates) -> dict[str, tuple[nn.Module, torch.Tensor, int]]:
    """:func:`compile_inductor`'s jobs for the Inductor engines among ``candidates``, on the record's part of
    ``model``."""
    record, part, example, stride = _where(name, model)
    return dict(_inductor_job(part, e, example, stride=stride, key=_key(name, record))
                for e in candidates if e.startswith("inductor"))


def install(name: str, model: nn.Module, engine: str, *, build: bool = True) -> nn.Module:
    """``model`` run by ``engine`` (any engine, listed by the record or not: the bench compares them all).

    Converted models are cached on disk, so this costs seconds, not minutes, after the first time on a host.
    ``build=False``: only from the cache (see :func:`accelerate`).
    """
    record, part, example, stride = _where(name, model)
    fast = accelerate(part, engine, example, stride=stride, key=_key(name, record), build=build)
    return _place(name, model, engine, fast)


def _key(name: str, record) -> str:
    return f"{name}-{record.engine_part or 'model'}"


def _place(name: str, model: nn.Module, engine: str, fast: nn.Module) -> nn.Module:
    """``fast`` (``engine``'s module for the record's part) put to work: it replaces that submodule in ``model``,
    which is returned, or, for the whole model, is returned itself."""
    from weights import get_record  # noqa: PLC0415 (the registry imports this module)

    parent, attribute, _ = _part(model, get_record(name).engine_part)
    settle(name, engine)
    if not attribute:
        return fast
    setattr(parent, attribute, fast)
    return model


def reinstall(name: str, model: nn.Module) -> nn.Module:
    """A freshly loaded ``model`` with the engine installed for it earlier in this process (a model the cache
    evicted and loads again), from the cache; unchanged when none was, or when its converted model is gone."""
    engine = _prepared.get(name, "eager")
    if engine == "eager":
        return model
    try:
        return load_prepared(name, model, engine)
    except NotBuilt as exc:  # the cache folder was emptied meanwhile: fp32 rather than an export in a request
        log.warning("%s: %s; serving fp32", name, exc)
        settle(name, "eager")
        return model


def described(name: str) -> str:
    """Which engine serves ``name`` now, for the panels: e.g. "OpenVINO bf16"."""
    engine = _prepared.get(name)
    if engine is None and name in _pending:
        return f"{LABELS['eager']} (a faster engine is being prepared)"
    return LABELS[engine or "eager"]


def settle(name: str, engine: str) -> None:
    """Record that ``engine`` serves ``name`` (fp32 after a failed conversion)."""
    _prepared[name] = engine
    _pending.discard(name)


def is_known(name: str) -> bool:
    """Whether ``name``'s engine is settled or being prepared."""
    return name in _prepared or name in _pending


def schedule(names) -> None:
    """Mark ``names`` as being prepared (the app's background thread), so the panels say so meanwhile."""
    _pending.update(names)
