"""Camera frames → the back end's feature maps: dark/flat correction, tiles cut with the calibrated
registration, k⁺ − k⁻ with the compiled tile gains, per-channel gain/offset, resampled to the back end's
grid.

Everything per frame is a handful of batched torch ops: one ``grid_sample`` call cuts every tile of every
frame of a batch (the batch rides in the channel dimension, so the bilinear weights are computed once per
tile pixel, not once per frame), and only the camera region the tiles cover is converted to float.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from lab4f.errors import ConfigError, Fix
from lab4f.optics.layout import TileLayout
from lab4f.optics.program import OpticalProgram
from lab4f.optics.registration import PlaneToCamera, tile_sampling_grid

_OUTSIDE = (
    -4.0
)  # normalised grid coordinate far outside the frame: grid_sample's zero padding returns 0
#: taps per axis of the per-tile filters the default calibration fits (``lab4f calibrate gains``); the efficiency
#: report counts their cost with the same number
DEFAULT_FILTER_SIZE = 5


def _as_list(value, n: int, what: str) -> list:  # noqa: ANN001 — array, list of arrays or None
    """One entry per program frame: a single value is accepted for a single-frame program."""
    if value is None:
        return [None] * n
    if isinstance(value, (list, tuple)) and len(value) == n and (n > 1 or np.ndim(value[0]) >= 1):
        return list(value)
    if n == 1:
        return [value]
    raise ConfigError(f"{what} needs one entry per program frame ({n}); got {type(value).__name__}")


class FeatureExtractor:
    """Turns camera frames (B, H, W) — or (B, F, H, W) for an F-frame program — into features (B, C, N, N).

    Per tile the map is sampled at the registered camera positions and multiplied by the registration's
    pixel area |det A| (a camera pixel collects 1/|det A| of an output cell), so an ideal bench returns
    plane intensities. Then feature_c = channel_gain_c · kernel_scale · (T⁺/g⁺ − T⁻/g⁻) + channel_offset_c,
    with T the dark-subtracted, flat-divided tile divided by ``exposure_scale`` and g the compiled tile gains.
    With ``channel_filter`` (C, k, k) the gain becomes a small FIR filter (calibration step 7): feature_c =
    filter_c ⋆ (kernel_scale · (T⁺/g⁺ − T⁻/g⁻)) + channel_offset_c, a depthwise cross-correlation with zero
    padding k//2 (``F.conv2d``) that undoes the camera path's blur and sub-pixel shift; ``channel_gain``
    is then ignored (a calibration record keeps it as the filter's sum).
    """

    def __init__(
        self,
        layout: TileLayout | Sequence[TileLayout],
        registration: PlaneToCamera,
        camera_shape: tuple[int, int],
        tile_gain: np.ndarray | Sequence[np.ndarray],
        kernel_scale: float,
        dark: np.ndarray | float | None = None,
        flat: np.ndarray | None = None,
        channel_gain: np.ndarray | None = None,
        channel_offset: np.ndarray | None = None,
        channel_filter: np.ndarray | None = None,
        tile_shifts: np.ndarray | Sequence[np.ndarray | None] | None = None,
        exposure_scale: float = 1.0,
        output_size: int | None = None,
        chunk_frames: int = 4,
    ) -> None:
        layouts = [layout] if isinstance(layout, TileLayout) else list(layout)
        if not layouts:
            raise ConfigError("a feature extractor needs at least one tile layout")
        gains = _as_list(tile_gain, len(layouts), "tile_gain")
        shifts = _as_list(tile_shifts, len(layouts), "tile_shifts")
        self.layouts = layouts
        self.camera_shape = (int(camera_shape[0]), int(camera_shape[1]))
        self.input_size = layouts[0].input_size
        self.output_size = output_size or self.input_size
        self.frames = len(layouts)
        self.chunk_frames = max(int(chunk_frames), 1)
        n = self.input_size
        channels = sorted({c for lay in layouts for c in lay.channels})
        if channels != list(range(len(channels))):
            raise ConfigError(
                f"the layouts cover channels {channels}; they must cover 0..C-1 exactly once"
            )
        self.channels = len(channels)

        # the sampling grid of every frame, padded to the same tile count with points outside the camera
        t_max = max(len(lay.tiles) for lay in layouts)
        grids = torch.full((self.frames, t_max * n, n, 2), _OUTSIDE)
        where: dict[
            tuple[int, int], tuple[int, int, float]
        ] = {}  # (channel, sign) → (frame, tile, gain)
        for f, (lay, g, s) in enumerate(zip(layouts, gains, shifts, strict=True)):
            if g is None or len(g) != len(lay.tiles):
                raise ConfigError(
                    f"frame {f}: tile_gain needs one value per tile ({len(lay.tiles)})"
                )
            if lay.input_size != n:
                raise ConfigError(f"frame {f} has input size {lay.input_size}, frame 0 has {n}")
            grids[f, : len(lay.tiles) * n] = tile_sampling_grid(
                lay, registration, self.camera_shape, s
            )[0]
            for t_idx, (t, gain) in enumerate(zip(lay.tiles, g, strict=True)):
                if (t.channel, t.sign) in where:
                    raise ConfigError(
                        f"channel {t.channel} sign {t.sign:+d} is in more than one layout"
                    )
                where[(t.channel, t.sign)] = (f, t_idx, float(gain))
        missing = [(c, s) for c in channels for s in (1, -1) if (c, s) not in where]
        if missing:
            raise ConfigError(
                f"the layouts lack tiles for (channel, sign) {missing}; recompile the program"
            )
        if np.any(np.asarray([where[k][2] for k in where]) <= 0):
            raise ConfigError(
                "a compiled tile gain is ≤ 0 (a tile gets no light); recompile the program"
            )

        c_n = self.channels
        cg = np.ones(c_n) if channel_gain is None else np.asarray(channel_gain, float).reshape(-1)
        off = (
            np.zeros(c_n)
            if channel_offset is None
            else np.asarray(channel_offset, float).reshape(-1)
        )
        if len(cg) != c_n or len(off) != c_n:
            raise ConfigError(
                f"channel_gain/channel_offset need {c_n} values each, got {len(cg)}/{len(off)}"
            )
        if exposure_scale <= 0:
            raise ConfigError(f"exposure_scale must be > 0, got {exposure_scale}")
        filt = self._channel_filter(channel_filter, c_n)  # (C, P, k, k), folded into self._dw below
        if filt is not None:
            cg = np.ones(c_n)  # the filter carries the gain
        # one weight per tile: sign × channel gain × kernel scale × pixel area / (tile gain × exposure)
        common = (
            float(kernel_scale) * abs(float(np.linalg.det(registration.matrix))) / exposure_scale
        )
        self._w_pos = torch.tensor([cg[c] * common / where[(c, 1)][2] for c in channels]).float()
        self._w_neg = torch.tensor([-cg[c] * common / where[(c, -1)][2] for c in channels]).float()
        self._w_pos, self._w_neg = self._w_pos.view(1, -1, 1, 1), self._w_neg.view(1, -1, 1, 1)
        self._t_max = t_max
        self._single = self.frames == 1
        self._dw = self._depthwise_weight(filt)
        if self._single:
            # rows ordered [k⁺ of channels 0..C-1, k⁻ of channels 0..C-1]: k⁺ − k⁻ needs no gather
            order = [where[(c, 1)][1] for c in channels] + [where[(c, -1)][1] for c in channels]
            grids = grids.view(1, t_max, n, n, 2)[:, order]
            if self._dw is None:
                grids = grids.reshape(1, len(order) * n, n, 2)
            else:  # tile index innermost: grid_sample then writes the tiles channels-last for the filter conv
                grids = grids.permute(0, 2, 3, 1, 4).reshape(1, n, n * len(order), 2)
        else:
            self._pos_idx = (
                torch.tensor([where[(c, 1)][0] for c in channels]),
                torch.tensor([where[(c, 1)][1] for c in channels]),
            )
            self._neg_idx = (
                torch.tensor([where[(c, -1)][0] for c in channels]),
                torch.tensor([where[(c, -1)][1] for c in channels]),
            )

        self._crop = self._crop_box(grids)
        self._grid = self._renormalise(grids, self._crop)
        self._inv_flat = self._inverse_flat(flat)
        # the dark frame enters linearly, so its features are a constant folded into the channel offset
        self._const = torch.zeros(1, c_n, n, n)
        dark_features = self._dark_features(dark)
        self._const = torch.tensor(off, dtype=torch.float32).view(1, -1, 1, 1) - dark_features

    def _depthwise_weight(self, filt: torch.Tensor | None) -> torch.Tensor | None:
        """The channel filters with the tile weights folded in, as one depthwise conv2d weight (2C, 1, k, k):
        rows [f⁺_c · w⁺_c for every c] then [f⁻_c · w⁻_c] (f⁺ = f⁻ = f_c for a (C, k, k) bank, since
        f ⋆ (w⁺T⁺ + w⁻T⁻) = (w⁺f) ⋆ T⁺ + (w⁻f) ⋆ T⁻). A depthwise conv on a channels-last tensor runs oneDNN's
        direct kernel, ~20× faster on a CPU than the (C, 2, k, k) grouped conv it replaces."""
        if filt is None:
            return None
        pos, neg = filt[:, 0], filt[:, -1]
        w_pos, w_neg = self._w_pos.view(-1, 1, 1), self._w_neg.view(-1, 1, 1)
        return torch.cat([pos * w_pos, neg * w_neg])[:, None].contiguous()

    @staticmethod
    def _channel_filter(channel_filter: np.ndarray | None, channels: int) -> torch.Tensor | None:
        """Filters (C, P, k, k) from a (C, k, k) bank (P = 1: on k⁺ − k⁻) or a (C, 2, k, k) bank
        (P = 2: one filter for the k⁺ tile and one for the k⁻ tile, which sit at different field positions)."""
        if channel_filter is None:
            return None
        filt = np.asarray(channel_filter, dtype=np.float32)
        if filt.ndim == 3:
            filt = filt[:, None]
        if (
            filt.ndim != 4
            or filt.shape[0] != channels
            or filt.shape[1] not in (1, 2)
            or filt.shape[2] != filt.shape[3]
            or filt.shape[2] % 2 == 0
        ):
            raise ConfigError(
                f"channel_filter must be ({channels}, k, k) or ({channels}, 2, k, k) with k odd, got "
                f"{np.shape(channel_filter)}: recalibrate the channel gains",
                fix=Fix("calibrate", {"step": "gains", "program": True}),
            )
        return torch.from_numpy(filt.copy())

    @classmethod
    def for_program(
        cls,
        program: OpticalProgram,
        registration: PlaneToCamera,
        camera_shape: tuple[int, int],
        **kwargs,
    ) -> FeatureExtractor:
        """An extractor for every frame of a compiled program (its layouts, tile gains and kernel scale)."""
        return cls(
            [f.layout for f in program.frames],
            registration,
            camera_shape,
            [f.tile_gain for f in program.frames],
            program.kernel_scale,
            **kwargs,
        )

    # -- set-up ---------------------------------------------------------------------------------------
    def _crop_box(self, grids: torch.Tensor) -> tuple[int, int, int, int]:
        """Camera rows/cols (y0, y1, x0, x1) that bilinear sampling can touch; the rest is never converted."""
        h, w = self.camera_shape
        valid = grids[..., 0] > _OUTSIDE / 2
        xs = ((grids[..., 0][valid] + 1) * w - 1) / 2
        ys = ((grids[..., 1][valid] + 1) * h - 1) / 2
        if xs.min() < -0.5 or ys.min() < -0.5 or xs.max() > w - 0.5 or ys.max() > h - 0.5:
            raise ConfigError(
                f"registered tiles reach camera pixels x {float(xs.min()):.1f}..{float(xs.max()):.1f}, y "
                f"{float(ys.min()):.1f}..{float(ys.max()):.1f} outside the {w}×{h} frame: part of the feature maps "
                "would be missing. Recalibrate the registration, or compile for a smaller tile field / larger camera."
            )
        x0, x1 = max(int(np.floor(float(xs.min()))), 0), min(int(np.floor(float(xs.max()))) + 2, w)
        y0, y1 = max(int(np.floor(float(ys.min()))), 0), min(int(np.floor(float(ys.max()))) + 2, h)
        return y0, y1, x0, x1

    def _renormalise(self, grids: torch.Tensor, crop: tuple[int, int, int, int]) -> torch.Tensor:
        """Express the full-frame grid in the crop's normalised coordinates (align_corners=False)."""
        h, w = self.camera_shape
        y0, y1, x0, x1 = crop
        out = grids.clone()
        valid = grids[..., 0] > _OUTSIDE / 2
        px = ((grids[..., 0] + 1) * w - 1) / 2 - x0
        py = ((grids[..., 1] + 1) * h - 1) / 2 - y0
        out[..., 0] = torch.where(valid, (2 * px + 1) / (x1 - x0) - 1, grids[..., 0])
        out[..., 1] = torch.where(valid, (2 * py + 1) / (y1 - y0) - 1, grids[..., 1])
        return out.contiguous()

    def _inverse_flat(self, flat: np.ndarray | None) -> torch.Tensor | None:
        """1 / flat on the crop, or None (no flat-field correction)."""
        if flat is None:
            return None
        if np.shape(flat) != self.camera_shape:
            raise ConfigError(
                f"flat must be a {self.camera_shape} array, got shape {np.shape(flat)}"
            )
        y0, y1, x0, x1 = self._crop
        flat_crop = np.asarray(flat, np.float64)[y0:y1, x0:x1]
        if np.any(flat_crop <= 0):
            raise ConfigError(
                "the flat field is ≤ 0 under the tiles; redo the flat-field calibration"
            )
        return torch.from_numpy(1.0 / flat_crop).float()

    def _dark_features(self, dark: np.ndarray | float | None) -> torch.Tensor:
        """What the dark frame alone would contribute to the features (1, C, n, n)."""
        if dark is None:
            return torch.zeros(1, self.channels, self.input_size, self.input_size)
        y0, y1, x0, x1 = self._crop
        if np.ndim(dark) == 0:
            dark_crop = np.full((y1 - y0, x1 - x0), float(dark))
        elif np.shape(dark) == self.camera_shape:
            dark_crop = np.asarray(dark, np.float64)[y0:y1, x0:x1]
        else:
            raise ConfigError(
                f"dark must be a scalar or a {self.camera_shape} array, got {np.shape(dark)}"
            )
        crop = torch.from_numpy(dark_crop).float().expand(self.frames, 1, -1, -1).contiguous()
        return self._features(crop)

    # -- the hot path -----------------------------------------------------------------------------------
    def __call__(self, frames: np.ndarray | torch.Tensor | Sequence[np.ndarray]) -> torch.Tensor:
        """Features (B, C, n, n) float32 for frames (B, H, W) or (B, F, H, W), uint16 or float.

        A list of B frames is read directly (only the crop is copied), which saves stacking whole frames.
        The batch is worked through ``chunk_frames`` frames at a time so the float crop stays in cache.
        """
        y0, y1, x0, x1 = self._crop
        if isinstance(frames, (list, tuple)):
            views = [self._check_frame(f) for f in frames]

            def fill(crop: torch.Tensor, start: int) -> None:
                for i in range(crop.shape[1]):
                    crop[:, i].copy_(views[start + i][:, y0:y1, x0:x1])

            b = len(views)
        else:
            x = torch.from_numpy(frames) if isinstance(frames, np.ndarray) else frames
            if x.ndim == 3 and self.frames == 1:
                x = x[:, None]
            if x.ndim != 4 or tuple(x.shape[1:]) != (self.frames, *self.camera_shape):
                h, w = self.camera_shape
                raise ConfigError(
                    f"expected camera frames (B, {self.frames}, {h}, {w}) (or (B, H, W) for a "
                    f"single-frame program), got {tuple(x.shape)}"
                )

            def fill(crop: torch.Tensor, start: int) -> None:
                crop.copy_(x[start : start + crop.shape[1], :, y0:y1, x0:x1].transpose(0, 1))

            b = x.shape[0]
        n = self.input_size
        out = torch.empty((b, self.channels, n, n), dtype=torch.float32)
        for start in range(0, b, self.chunk_frames):
            m = min(self.chunk_frames, b - start)
            # (F, m, h, w): the frames ride in grid_sample's channel dimension, one grid per program frame
            crop = torch.empty((self.frames, m, y1 - y0, x1 - x0), dtype=torch.float32)
            fill(crop, start)  # one pass: crop, reorder and convert
            self._features(crop, out=out[start : start + m])
        return self._resize(out)

    def _check_frame(self, frame: np.ndarray | torch.Tensor) -> torch.Tensor:
        expected = (self.frames, *self.camera_shape) if self.frames > 1 else self.camera_shape
        if tuple(np.shape(frame)) != expected:
            raise ConfigError(
                f"expected camera frames of shape {expected}, got {tuple(np.shape(frame))}"
            )
        x = torch.as_tensor(frame)
        return x if self.frames > 1 else x[None]

    def _resize(self, out: torch.Tensor) -> torch.Tensor:
        n = self.input_size
        if self.output_size != n:
            out = F.interpolate(
                out,
                size=(self.output_size, self.output_size),
                mode="bilinear",
                align_corners=False,
                antialias=self.output_size < n,
            )
        return out.contiguous()

    def _features(self, crop: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """Flat-corrected crop (F, B, h, w) → features (B, C, n, n): sample every tile, weigh, k⁺ − k⁻."""
        if self._inv_flat is not None:
            crop.mul_(self._inv_flat)
        b, n, c = crop.shape[1], self.input_size, self.channels
        tiles = F.grid_sample(
            crop, self._grid, mode="bilinear", padding_mode="zeros", align_corners=False
        )
        # without ``out`` the result is a fresh tensor, which keeps this differentiable (lab4f.bench.fused)
        into = {} if out is None else {"out": out}
        if self._single and self._dw is not None:
            tiles = tiles.view(b, n, n, 2 * c).permute(
                0, 3, 1, 2
            )  # (B, 2C, n, n), channels-last in memory
        elif self._single:
            tiles = tiles.view(b, 2, c, n, n)
            pos, neg = tiles[:, 0], tiles[:, 1]
        else:
            tiles = tiles.view(self.frames, b, self._t_max, n, n)
            pos = tiles[self._pos_idx[0], :, self._pos_idx[1]].transpose(0, 1)  # (B, C, n, n)
            neg = tiles[self._neg_idx[0], :, self._neg_idx[1]].transpose(0, 1)
            if self._dw is not None:
                tiles = torch.cat([pos, neg], 1).contiguous(memory_format=torch.channels_last)
        if self._dw is None:
            return torch.addcmul(self._const, pos, self._w_pos, **into).addcmul_(neg, self._w_neg)
        filtered = F.conv2d(tiles, self._dw, padding=self._dw.shape[-1] // 2, groups=2 * c)
        return torch.add(filtered[:, :c], filtered[:, c:], **into).add_(self._const)

    @property
    def crop_box(self) -> tuple[int, int, int, int]:
        """Camera (y0, y1, x0, x1) the extractor reads; a camera ROI may be set to it."""
        return self._crop
