"""Where the output plane lands on the camera: the registration that calibration measures and feature
extraction uses.

Output-plane coordinates are the forward model's grid cells relative to the optical axis (cell (M//2, M//2)
is (0, 0)), (x, y) = (column, row). Camera coordinates are pixel (x, y) = (column, row) of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lab4f.optics.layout import TileLayout


@dataclass
class PlaneToCamera:
    """Affine map camera_xy = A @ plane_xy + b (2×2 matrix A, shift b) with fit residuals."""

    matrix: np.ndarray  # (2, 2)
    shift: np.ndarray  # (2,)
    rms_residual_px: float = float("nan")

    def __post_init__(self) -> None:
        self.matrix = np.asarray(self.matrix, dtype=np.float64).reshape(2, 2)
        self.shift = np.asarray(self.shift, dtype=np.float64).reshape(2)

    @classmethod
    def identity(
        cls, camera_shape: tuple[int, int], grid_shape: tuple[int, int] | None = None
    ) -> PlaneToCamera:
        """Plane axis on the camera centre, one cell per pixel."""
        return cls(
            np.eye(2), np.array([camera_shape[1] // 2, camera_shape[0] // 2], dtype=np.float64)
        )

    @classmethod
    def fit(cls, plane_xy: np.ndarray, camera_xy: np.ndarray) -> PlaneToCamera:
        """Least-squares affine fit from matched points (n, 2) with n ≥ 3."""
        plane_xy, camera_xy = np.asarray(plane_xy, float), np.asarray(camera_xy, float)
        design = np.hstack([plane_xy, np.ones((len(plane_xy), 1))])
        sol, *_ = np.linalg.lstsq(design, camera_xy, rcond=None)
        reg = cls(sol[:2].T, sol[2])
        reg.rms_residual_px = float(
            np.sqrt(np.mean(np.sum((reg.apply(plane_xy) - camera_xy) ** 2, axis=1)))
        )
        return reg

    def apply(self, plane_xy: np.ndarray) -> np.ndarray:
        return np.asarray(plane_xy, float) @ self.matrix.T + self.shift

    def inverse_apply(self, camera_xy: np.ndarray) -> np.ndarray:
        return (np.asarray(camera_xy, float) - self.shift) @ np.linalg.inv(self.matrix).T

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix))))

    @property
    def rotation_deg(self) -> float:
        return float(np.degrees(np.arctan2(self.matrix[1, 0], self.matrix[0, 0])))

    def to_array(self) -> np.ndarray:
        return np.hstack([self.matrix, self.shift[:, None]])

    @classmethod
    def from_array(cls, a: np.ndarray, rms_residual_px: float = float("nan")) -> PlaneToCamera:
        a = np.asarray(a, float)
        return cls(a[:, :2], a[:, 2], rms_residual_px)


def tile_sampling_grid(
    layout: TileLayout,
    registration: PlaneToCamera,
    camera_shape: tuple[int, int],
    tile_shifts: np.ndarray | None = None,
) -> torch.Tensor:
    """``grid_sample`` grid (1, T·N, N, 2) that cuts every tile's N×N 'same' map out of a camera frame.

    Tile t's map pixel (i, j) sits at plane cell offset_t + (j − N//2, i − N//2) (x, y). ``tile_shifts``
    (T, 2) adds a measured per-tile correction in plane cells (from tile registration). Rows are ordered
    like ``layout.tiles``.
    """
    n = layout.input_size
    j, i = np.meshgrid(np.arange(n) - n // 2, np.arange(n) - n // 2)
    blocks = []
    for t_idx, t in enumerate(layout.tiles):
        dx, dy = t.offset[1], t.offset[0]
        if tile_shifts is not None:
            dx, dy = dx + tile_shifts[t_idx, 0], dy + tile_shifts[t_idx, 1]
        pts = np.stack([j.ravel() + dx, i.ravel() + dy], axis=1)
        blocks.append(registration.apply(pts).reshape(n, n, 2))
    cam = np.concatenate(blocks, axis=0)  # (T·N, N, 2) camera pixel (x, y)
    h, w = camera_shape
    norm = np.empty_like(cam)
    norm[..., 0] = (2 * cam[..., 0] + 1) / w - 1  # align_corners=False convention
    norm[..., 1] = (2 * cam[..., 1] + 1) / h - 1
    return torch.from_numpy(norm).float()[None]
