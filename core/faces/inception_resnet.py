"""A FaceNet-style InceptionResnetV1 (Szegedy et al. 2016; FaceNet, Schroff et al. 2015) and its embedder.

Module names follow facenet-pytorch (``conv2d_1a`` ... ``last_bn``) so its VGGFace2 weights
load with ``strict=True``. ``width`` and ``repeats`` shrink the network (tests use a tiny one
served by a stand-in Hub); the defaults are the published architecture (512-D output).
"""

from __future__ import annotations

import threading

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from core.faces.align import warp_faces
from core.faces.detection import DetectedFace
from core.runtime import inference_dtype
from weights.registry import load_safetensors


class BasicConv2d(nn.Sequential):
    """conv (no bias) -> BN (eps 1e-3, as in the TF original) -> ReLU."""

    def __init__(self, cin, cout, kernel_size, stride=1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1)
        self.relu = nn.ReLU(inplace=False)


class Block35(nn.Module):
    """Inception-ResNet-A at 35x35 (for 299 input): three branches, 1x1 back to ``c``, scaled residual."""

    def __init__(self, c, b, scale=0.17):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, b, 1), BasicConv2d(b, b, 3, padding=1))
        self.branch2 = nn.Sequential(BasicConv2d(c, b, 1), BasicConv2d(b, b, 3, padding=1),
                                     BasicConv2d(b, b, 3, padding=1))
        self.conv2d = nn.Conv2d(3 * b, c, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1))
        return self.relu(x + self.scale * out)


class Block17(nn.Module):
    """Inception-ResNet-B: factorised 1x7 / 7x1 branch."""

    def __init__(self, c, b, scale=0.10):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, b, 1), BasicConv2d(b, b, (1, 7), padding=(0, 3)),
                                     BasicConv2d(b, b, (7, 1), padding=(3, 0)))
        self.conv2d = nn.Conv2d(2 * b, c, 1)
        self.relu = nn.ReLU()

    def forward(self, x):
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.relu(x + self.scale * out)


class Block8(nn.Module):
    """Inception-ResNet-C: factorised 1x3 / 3x1 branch; the last one has no ReLU."""

    def __init__(self, c, b, scale=0.20, relu=True):
        super().__init__()
        self.scale = scale
        self.branch0 = BasicConv2d(c, b, 1)
        self.branch1 = nn.Sequential(BasicConv2d(c, b, 1), BasicConv2d(b, b, (1, 3), padding=(0, 1)),
                                     BasicConv2d(b, b, (3, 1), padding=(1, 0)))
        self.conv2d = nn.Conv2d(2 * b, c, 1)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        out = self.conv2d(torch.cat([self.branch0(x), self.branch1(x)], 1))
        return self.relu(x + self.scale * out)


class Mixed6a(nn.Module):
    """Reduction-A: stride-2 conv branches + max pool, concatenated.

    Filter counts as in Inception-v4's table of Reduction-A: ``k``, ``l`` (here ``mid``), ``m``, ``n``.
    """

    def __init__(self, c, k, mid, m, n):
        super().__init__()
        self.branch0 = BasicConv2d(c, n, 3, stride=2)
        self.branch1 = nn.Sequential(BasicConv2d(c, k, 1), BasicConv2d(k, mid, 3, padding=1),
                                     BasicConv2d(mid, m, 3, stride=2))
        self.branch2 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)


class Mixed7a(nn.Module):
    """Reduction-B."""

    def __init__(self, c, a, b, d):
        super().__init__()
        self.branch0 = nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, b, 3, stride=2))
        self.branch1 = nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, d, 3, stride=2))
        self.branch2 = nn.Sequential(BasicConv2d(c, a, 1), BasicConv2d(a, d, 3, padding=1),
                                     BasicConv2d(d, d, 3, stride=2))
        self.branch3 = nn.MaxPool2d(3, stride=2)

    def forward(self, x):
        return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)


class InceptionResnetV1(nn.Module):
    """``B x 3 x 160 x 160`` (normalised, see the record) -> ``B x embedding_dim`` unit vectors."""

    def __init__(self, embedding_dim: int = 512, width: float = 1.0, repeats: tuple[int, int, int] = (5, 10, 5)):
        super().__init__()

        def c(n):  # channel count scaled by width
            return max(4, int(round(n * width)))

        self.embedding_dim = embedding_dim
        self.conv2d_1a = BasicConv2d(3, c(32), 3, stride=2)
        self.conv2d_2a = BasicConv2d(c(32), c(32), 3)
        self.conv2d_2b = BasicConv2d(c(32), c(64), 3, padding=1)
        self.maxpool_3a = nn.MaxPool2d(3, stride=2)
        self.conv2d_3b = BasicConv2d(c(64), c(80), 1)
        self.conv2d_4a = BasicConv2d(c(80), c(192), 3)
        self.conv2d_4b = BasicConv2d(c(192), c(256), 3, stride=2)
        self.repeat_1 = nn.Sequential(*[Block35(c(256), c(32)) for _ in range(repeats[0])])
        self.mixed_6a = Mixed6a(c(256), c(192), c(192), c(256), c(384))
        c6 = c(384) + c(256) + c(256)
        self.repeat_2 = nn.Sequential(*[Block17(c6, c(128)) for _ in range(repeats[1])])
        self.mixed_7a = Mixed7a(c6, c(256), c(384), c(256))
        c7 = c(384) + c(256) + c(256) + c6
        self.repeat_3 = nn.Sequential(*[Block8(c7, c(192)) for _ in range(repeats[2])])
        self.block8 = Block8(c7, c(192), relu=False)
        self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.6)
        self.last_linear = nn.Linear(c7, embedding_dim, bias=False)
        self.last_bn = nn.BatchNorm1d(embedding_dim, eps=0.001, momentum=0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a", "conv2d_4b",
                     "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8", "avgpool_1a"):
            x = getattr(self, name)(x)
        x = self.last_bn(self.last_linear(self.dropout(x.flatten(1))))
        return F.normalize(x, p=2, dim=1)


def inception_resnet_v1(embedding_dim: int = 512, width: float = 1.0, repeats=(5, 10, 5)) -> InceptionResnetV1:
    """Registry builder (``face-facenet-vggface2`` and smaller test variants)."""
    return InceptionResnetV1(embedding_dim, width, tuple(repeats))


def load_facenet_state(path) -> dict[str, torch.Tensor]:
    """A FaceNet state dict from safetensors, minus the VGGFace2 classifier (``logits.*``) and any wrapper prefix."""
    state = load_safetensors(path)
    out = {}
    for key, value in state.items():
        for prefix in ("model.", "facenet.", "module."):
            if key.startswith(prefix):
                key = key[len(prefix):]
        if not key.startswith("logits."):
            out[key] = value
    return out


class TorchFaceEmbedder:
    """Chips warped in torch from the 5 landmarks, embedded by an ``nn.Module`` in batches."""

    padding = 0.25

    def __init__(self, model: nn.Module, normalize, *, name: str = "facenet", chip_size: int = 160,
                 batch_size: int = 256):
        self.model = model
        self.normalize = normalize  # the record's: RGB [0, 1] -> network input
        self.name = name
        self.chip_size = chip_size
        self.batch_size = batch_size
        self.embedding_dim = getattr(model, "embedding_dim", None)
        self._lock = threading.Lock()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def align(self, rgb: np.ndarray, faces: list[DetectedFace]) -> torch.Tensor:
        """``H x W x 3`` uint8 + N faces -> ``N x 3 x S x S`` uint8 chips (one batched warp)."""
        # np.array copies: the input may be read-only.
        image = torch.from_numpy(np.array(rgb, dtype=np.uint8)).permute(2, 0, 1).float()
        landmarks = torch.tensor(np.array([f.landmarks for f in faces]), dtype=torch.float64).reshape(-1, 5, 2)
        chips = warp_faces(image, landmarks, self.chip_size, self.padding)
        return chips.round().clamp(0, 255).to(torch.uint8)

    @torch.inference_mode()
    def embed(self, chips: torch.Tensor) -> torch.Tensor:
        """``N x 3 x S x S`` uint8 chips -> ``N x D`` float32 (CPU).

        Embedded in batches of ``batch_size`` on the model's device.
        """
        device = self.device
        dtype = inference_dtype(device)
        out = []
        for start in range(0, chips.shape[0], self.batch_size):
            x = chips[start:start + self.batch_size].to(device, non_blocking=True).float().div_(255.0)
            x = self.normalize(x)
            with self._lock, torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                out.append(self.model(x).float().cpu())
        return torch.cat(out) if out else torch.zeros((0, self.embedding_dim or 0))
