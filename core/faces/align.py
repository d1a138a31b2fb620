"""Face alignment from 5 landmarks: a similarity transform (rotation, scale, shift) per face,
then one batched warp with ``F.affine_grid`` / ``F.grid_sample``.

The template is dlib's 5-point mean face (eye corners and the bottom of the nose, as
fractions of the face box), so a chip made here matches ``dlib.get_face_chip``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

#: dlib's 5-landmark mean face (x, y) in [0, 1] of the unpadded face square
#: (dlib/image_transforms/interpolation.h, get_face_chip_details for 5-part shapes).
DLIB_TEMPLATE_5 = torch.tensor([
    [0.8595674595992, 0.2134981538014],
    [0.6460604764104, 0.2289674387677],
    [0.1205750620789, 0.2137274526848],
    [0.3340850613712, 0.2290642403242],
    [0.4901123135679, 0.6277975316475],
], dtype=torch.float64)


def template_points(size: int, padding: float = 0.25) -> torch.Tensor:
    """The 5 template landmarks in pixel coordinates of a ``size x size`` chip: ``5 x 2``.

    ``padding`` adds that fraction of the face width around it on every side (dlib's convention).
    """
    unit = (DLIB_TEMPLATE_5 + padding) / (1.0 + 2.0 * padding)
    # Pixel centres: dlib maps [0, 1] onto pixel centres 0 .. size - 1.
    return unit * (size - 1)


def similarity_transform(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Least-squares similarity (rotation + uniform scale + shift) taking ``src`` onto ``dst``.

    ``src``: ``N x K x 2`` (or ``K x 2``), ``dst``: ``K x 2`` or ``N x K x 2`` -> ``N x 2 x 3``
    affine matrices ``A`` with ``dst ~ A[:, :2] @ src + A[:, 2]``.

    Points as complex numbers make it a one-line regression: ``z_dst = a * z_src + b`` where
    ``a = s * e^{i theta}``; centring both sets gives ``a = sum(conj(zs) zd) / sum(|zs|^2)``.
    """
    src, dst = torch.broadcast_tensors(src.double(), dst.double())
    if src.dim() == 2:
        src, dst = src.unsqueeze(0), dst.unsqueeze(0)
    zs = torch.complex(src[..., 0], src[..., 1])
    zd = torch.complex(dst[..., 0], dst[..., 1])
    ms, md = zs.mean(-1, keepdim=True), zd.mean(-1, keepdim=True)
    zs_c, zd_c = zs - ms, zd - md
    a = (zs_c.conj() * zd_c).sum(-1) / (zs_c.abs() ** 2).sum(-1).clamp_min(1e-12)
    b = md.squeeze(-1) - a * ms.squeeze(-1)
    # a * (x + iy) = (ar x - ai y) + i (ai x + ar y)
    return torch.stack([
        torch.stack([a.real, -a.imag, b.real], -1),
        torch.stack([a.imag, a.real, b.imag], -1),
    ], 1)


def warp_faces(image: torch.Tensor, landmarks: torch.Tensor, size: int, padding: float = 0.25) -> torch.Tensor:
    """Cut aligned chips out of one image: ``3 x H x W`` float, ``N x 5 x 2`` landmarks -> ``N x 3 x size x size``.

    The transform is fitted from the template (chip pixels) to the landmarks (image pixels),
    which is the direction ``grid_sample`` needs: for every chip pixel, where to read.
    """
    n = landmarks.shape[0]
    if n == 0:
        return image.new_zeros((0, 3, size, size))
    _, h, w = image.shape
    chip_to_image = similarity_transform(template_points(size, padding), landmarks)  # N x 2 x 3 (template is src)
    # Pixel <-> normalised coordinates for align_corners=False: x_norm = (2 x + 1) / W - 1.
    def to_norm(width, height):
        return torch.tensor([[2.0 / width, 0, 1.0 / width - 1], [0, 2.0 / height, 1.0 / height - 1], [0, 0, 1]],
                            dtype=torch.float64)

    def from_norm(width, height):
        return torch.linalg.inv(to_norm(width, height))

    full = torch.cat([chip_to_image, chip_to_image.new_tensor([0, 0, 1]).expand(n, 1, 3)], 1)
    theta = (to_norm(w, h) @ full @ from_norm(size, size))[:, :2].to(image.dtype)
    grid = F.affine_grid(theta, [n, 3, size, size], align_corners=False)
    return F.grid_sample(image.unsqueeze(0).expand(n, -1, -1, -1), grid, mode="bilinear",
                         padding_mode="zeros", align_corners=False)
