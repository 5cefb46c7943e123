"""Generated classification tasks harder than the built-in digits: where a linear network is far from the teacher.

``clutter-digits`` (built-in data set, see :func:`lab4f.data.load_dataset`): every one of mnist5k's 5,000 real
MNIST digits is drawn once onto a 56×56 canvas under

- a random rotation (uniform in ±45°), scale (1.1–1.8 of its 28-pixel size) and shift (±7 pixels);
- a random contrast: stroke intensity uniform in [0.25, 1.0];
- a background offset uniform in [0, 0.3] plus a linear gradient of random direction (up to ±0.15);
- clutter: two stroke fragments, each a random half (a random half-plane) of another random digit at
  0.6–1.0 scale anywhere on the canvas, at 0.4–0.9 of the digit's contrast;
- Gaussian pixel noise (σ = 0.03), then clipping to [0, 1].

Everything is drawn from one ``torch.Generator`` seeded by ``seed`` (default 0), so the set is the same on every
machine; the labels are the digits' own. The clutter fragments come from the same 5,000 digits (unlabelled
halves; they are never the image's class by construction — a fragment of the same class is allowed, as in
real clutter). Module-level code imports torch only (no lab4f data modules: :mod:`lab4f.data` wraps it).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

CLUTTER_SIZE = 56
CLUTTER_DESCRIPTION = (
    "mnist5k digits on a 56x56 canvas: rotation ±45°, scale 1.1-1.8, shift ±7 px, stroke "
    "contrast 0.25-1, background offset 0-0.3 + gradient ±0.15, two half-digit clutter "
    "fragments, noise σ 0.03; seed 0"
)


def _place(
    images: torch.Tensor, size: int, angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor
) -> torch.Tensor:
    """Draw (N, 1, h, h) images onto (N, 1, size, size) canvases rotated, scaled and shifted (pixels)."""
    n, _, h, _ = images.shape
    cos, sin = torch.cos(angle), torch.sin(angle)
    rinv = torch.stack([torch.stack([cos, sin], -1), torch.stack([-sin, cos], -1)], -2)  # R(-angle)
    # normalised output coords u_out (1 = size/2 px) → input coords u_in (1 = h/2 px)
    a = rinv * (size / h / scale)[:, None, None]
    b = -(rinv @ (shift / (h / 2) / scale[:, None])[..., None])[..., 0]
    theta = torch.cat([a, b[..., None]], -1)
    grid = F.affine_grid(theta, [n, 1, size, size], align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _half_planes(n: int, size: int, g: torch.Generator) -> torch.Tensor:
    """(N, 1, size, size) masks keeping a random half-plane through a random point near the centre."""
    ax = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    phi = torch.rand(n, generator=g) * 2 * math.pi
    off = (torch.rand(n, generator=g) - 0.5) * 0.6
    d = (
        xx[None] * torch.cos(phi)[:, None, None]
        + yy[None] * torch.sin(phi)[:, None, None]
        - off[:, None, None]
    )
    return (d > 0).float()[:, None]


def clutter_digits(
    digits: torch.Tensor, seed: int = 0, size: int = CLUTTER_SIZE, chunk: int = 1000
) -> torch.Tensor:
    """The ``clutter-digits`` images (N, 1, size, size) in [0, 1] for (N, 1, 28, 28) digits (module docstring)."""
    g = torch.Generator().manual_seed(seed)
    n = len(digits)
    out = torch.empty(n, 1, size, size)
    ax = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(ax, ax, indexing="ij")
    for i in range(0, n, chunk):
        m = min(chunk, n - i)
        x = digits[i : i + m].float()

        def u(lo: float, hi: float, m: int = m) -> torch.Tensor:
            return lo + (hi - lo) * torch.rand(m, generator=g)

        shift = (torch.rand(m, 2, generator=g) - 0.5) * 14
        digit = _place(x, size, u(-math.pi / 4, math.pi / 4), u(1.1, 1.8), shift)
        contrast = u(0.25, 1.0)
        canvas = contrast[:, None, None, None] * digit
        for _ in range(2):
            src = digits[torch.randint(0, n, (m,), generator=g)].float()
            frag = _place(
                src,
                size,
                u(-math.pi, math.pi),
                u(0.6, 1.0),
                (torch.rand(m, 2, generator=g) - 0.5) * size,
            ) * _half_planes(m, size, g)
            canvas = torch.maximum(canvas, (contrast * u(0.4, 0.9))[:, None, None, None] * frag)
        phi = u(0, 2 * math.pi)
        grad = u(0, 0.15)[:, None, None] * (
            xx[None] * torch.cos(phi)[:, None, None] + yy[None] * torch.sin(phi)[:, None, None]
        )
        background = u(0, 0.3)[:, None, None] + grad
        noise = 0.03 * torch.randn(m, 1, size, size, generator=g)
        out[i : i + m] = (canvas + background[:, None] + noise).clamp(0.0, 1.0)
    return out
