"""Tile layout: where each kernel's k⁺ and k⁻ PSF tile sits, so that ONE camera frame holds all feature maps.

A PSF tile at offset o (from the optical axis) turns an input centred on the axis (its pixel (N//2, N//2) on the
axis) into the correlation map centred at o: the tile holds the kernel flipped, from o − K//2, and map pixel (i, j)
is read at o + (i − N//2, j − N//2). For any K, odd or even, that is ``F.conv2d(x, k, padding="same")`` — the
convention of :mod:`lab4f.spectral` (PyTorch pads (K − 1)//2 before, K//2 after). Tiles sit on a square grid of
pitch ≥ N + K − 1 (so the N+K−1 wide full outputs never overlap); the central slot is left empty because the
undiffracted (zero-order) light forms a direct image of the input on the axis.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from lab4f.errors import CompileError


@dataclass(frozen=True)
class Tile:
    channel: int
    sign: int  # +1 for k⁺, −1 for k⁻
    offset: tuple[int, int]  # (dy, dx) of the tile centre from the optical axis, output-plane cells


@dataclass
class TileLayout:
    """Positions of all k⁺/k⁻ tiles of one SLM frame on the output grid."""

    input_size: int
    kernel_size: int
    grid_shape: tuple[int, int]
    pitch: int
    tiles: list[Tile] = field(default_factory=list)

    @property
    def channels(self) -> list[int]:
        return sorted({t.channel for t in self.tiles})

    def tile(self, channel: int, sign: int) -> Tile:
        for t in self.tiles:
            if t.channel == channel and t.sign == sign:
                return t
        raise KeyError((channel, sign))

    def extent(self) -> int:
        """Half-width (cells) of the region the outputs occupy around the axis."""
        reach = max(max(abs(t.offset[0]), abs(t.offset[1])) for t in self.tiles)
        return reach + (self.input_size + self.kernel_size - 1) // 2 + 1

    def to_array(self) -> np.ndarray:
        return np.array(
            [[t.channel, t.sign, t.offset[0], t.offset[1]] for t in self.tiles], dtype=np.int64
        )

    @classmethod
    def from_array(
        cls,
        array: np.ndarray,
        input_size: int,
        kernel_size: int,
        grid_shape: tuple[int, int],
        pitch: int,
    ) -> TileLayout:
        tiles = [Tile(int(c), int(s), (int(dy), int(dx))) for c, s, dy, dx in np.asarray(array)]
        return cls(input_size, kernel_size, tuple(grid_shape), pitch, tiles)  # type: ignore[arg-type]


def slots_per_frame(
    input_size: int, kernel_size: int, grid_shape: tuple[int, int], gap: int = 2
) -> int:
    """How many tiles (k⁺ or k⁻) fit in one frame on this grid."""
    pitch = input_size + kernel_size - 1 + gap
    n = (min(grid_shape) - 2) // pitch
    n -= 1 - n % 2  # odd, so the central (zero-order) slot is on the axis
    return max(n * n - 1, 0)


def plan_layout(
    channels: list[int],
    input_size: int,
    kernel_size: int,
    grid_shape: tuple[int, int],
    gap: int = 2,
    camera_cells: tuple[int, int] | None = None,
) -> TileLayout:
    """Place k⁺ and k⁻ of every channel on the smallest odd n×n grid of slots that holds them."""
    pitch = input_size + kernel_size - 1 + gap
    need = 2 * len(channels)
    n = 1
    while n * n - 1 < need:
        n += 2
    half = (n // 2) * pitch + (input_size + kernel_size - 1) // 2 + 1
    if 2 * half > min(grid_shape):
        fit = slots_per_frame(input_size, kernel_size, grid_shape, gap) // 2
        raise CompileError(
            f"{len(channels)} kernels of {kernel_size}×{kernel_size} on {input_size}×{input_size} inputs need a "
            f"{2 * half}-cell wide tile field but the SLM far field is {min(grid_shape)} cells: at most {fit} "
            "kernels fit per frame. Use a time-multiplexed program (multiplex='auto'), fewer channels, a smaller "
            "input, or an SLM with more pixels."
        )
    if camera_cells is not None and 2 * half > min(camera_cells):
        raise CompileError(
            f"the tile field is {2 * half} output cells wide but the camera sees only {min(camera_cells)}: "
            "use a larger camera ROI, a shorter second lens, or time-multiplexing"
        )
    slots = [(iy, ix) for iy in range(n) for ix in range(n) if (iy, ix) != (n // 2, n // 2)]
    # fill slots nearest the axis first (least field-dependent aberration), k⁺ and k⁻ of a channel adjacent
    slots.sort(key=lambda s: (max(abs(s[0] - n // 2), abs(s[1] - n // 2)), s))
    tiles = []
    for i, c in enumerate(channels):
        for j, sign in enumerate((+1, -1)):
            iy, ix = slots[2 * i + j]
            tiles.append(Tile(c, sign, ((iy - n // 2) * pitch, (ix - n // 2) * pitch)))
    return TileLayout(input_size, kernel_size, tuple(grid_shape), pitch, tiles)  # type: ignore[arg-type]


def target_psf(layout: TileLayout, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
    """The intensity PSF (M, M) that realises the layout: each tile holds its flipped kernel part.

    A correlation with k is a convolution with k flipped, hence the flip; ``positive``/``negative`` are the
    (C_out, K, K) nonnegative kernel parts (single input channel).
    """
    psf = torch.zeros(layout.grid_shape, dtype=torch.float64)
    k = layout.kernel_size
    cy, cx = layout.grid_shape[0] // 2, layout.grid_shape[1] // 2
    for t in layout.tiles:
        part = positive[t.channel] if t.sign > 0 else negative[t.channel]
        y0, x0 = cy + t.offset[0] - k // 2, cx + t.offset[1] - k // 2
        psf[y0 : y0 + k, x0 : x0 + k] = torch.flip(part, dims=(-2, -1))
    return psf


def extract_tiles(
    output: torch.Tensor,
    layout: TileLayout,
    centre: tuple[int, int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cut the N×N 'same' feature maps (B, C, N, N) of k⁺ and k⁻ from output-plane images (B, M, M)."""
    n = layout.input_size
    cy, cx = (
        centre if centre is not None else (layout.grid_shape[0] // 2, layout.grid_shape[1] // 2)
    )
    chans = layout.channels
    index = {c: i for i, c in enumerate(chans)}
    pos = output.new_zeros(output.shape[0], len(chans), n, n)
    neg = torch.zeros_like(pos)
    for t in layout.tiles:
        y0, x0 = cy + t.offset[0] - n // 2, cx + t.offset[1] - n // 2
        (pos if t.sign > 0 else neg)[:, index[t.channel]] = output[:, y0 : y0 + n, x0 : x0 + n]
    return pos, neg
