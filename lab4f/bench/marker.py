"""The ``marker`` sync policy: the display shows a binary code of the input's index where no tile reads it, and
every camera frame says which input it shows — no trigger and no timestamps needed (free-running cameras, plain
monitors).

Where the code goes. The input image (N × N) is shown centred on a larger display. Every PSF tile copies the whole
display: tile t shows the image's correlation with its kernel around its centre c_t (the read window, N × N, plus a
border of K // 2), and a display pixel at offset d from the image centre lands at c_t + d, spread over the kernel's
K × K footprint. Compiled with a wider gap between tiles (:func:`compile_gap`), the band halfway between two tile
columns is free of image light; the code's bits sit in a column at ``dx = pitch / 2`` on the display, so their
copies land in those bands and never in a read window. Two reference bits (always on, always off) come first.

Reading it. Each bit's light is summed over its box in every tile (a sparse matrix over camera pixels, through the
calibrated registration) and scaled between the references: ``level = (bit − off) / (on − off)``. A frame whose
every bit is decisive (level < ``threshold`` or > 1 − ``threshold``) shows one input, the index it spells (modulo
2^bits). During a display change, bits that differ between the old and the new index read in between, so a frame
that mixes two inputs by more than ``threshold`` is never taken for either.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import sparse

from lab4f.errors import ConfigError


@dataclass(frozen=True)
class MarkerCode:
    """The code's geometry on the display (display pixels; one display pixel = one output cell).

    Slots (two references, then the bits, most significant first) alternate between the band right of the tiles
    (a column at ``dx = pitch // 2``) and the band below them (a row at ``dy = pitch // 2``); within a band they are
    ``size + K + 1`` apart, so the kernel-blurred copies of neighbouring slots never overlap."""

    bits: int = 4
    size: int = 2  # each bit is size × size pixels

    @property
    def rows(self) -> int:
        return self.bits + 2  # reference on, reference off, then the bits

    def spacing(self, kernel_size: int) -> int:
        return self.size + kernel_size + 1

    def gap_cells(self, kernel_size: int, input_size: int | None = None) -> int:
        """The tile gap that leaves bands wide enough for a slot's copy (size + K − 1, a cell each side) and long
        enough for half the slots each (they repeat every pitch along the band)."""
        gap = (
            self.size + kernel_size - 1 + 4
        )  # two free cells each side: no image light in a slot's box
        if input_size is not None:
            per_band = (self.rows + 1) // 2
            span = (per_band - 1) * self.spacing(kernel_size) + self.size + kernel_size - 1
            gap = max(gap, span + 1 - (input_size + kernel_size - 1))
        return gap

    def offsets(self, pitch: int, kernel_size: int) -> list[tuple[int, int]]:
        """(dy, dx) of each slot's top-left pixel from the image centre, for tiles at ``pitch``."""
        s = self.spacing(kernel_size)
        band = pitch // 2 - self.size // 2
        per_band = (self.rows + 1) // 2
        along = [(k - (per_band - 1) / 2) * s for k in range(per_band)]
        out = []
        for r in range(self.rows):
            pos = int(round(along[r // 2])) - self.size // 2
            out.append((pos, band) if r % 2 == 0 else (band, pos))
        return out

    def values(self, index: int) -> list[int]:
        code = int(index) % (2**self.bits)
        return [1, 0] + [(code >> (self.bits - 1 - b)) & 1 for b in range(self.bits)]

    def decode(self, bits: list[int]) -> int:
        return int("".join(str(b) for b in bits), 2)

    def draw(self, frame: np.ndarray, index: int, pitch: int, kernel_size: int) -> None:
        """Draw the code of ``index`` onto a display-sized frame (in place; the image centred at H // 2, W // 2)."""
        h, w = frame.shape
        for (dy, dx), v in zip(self.offsets(pitch, kernel_size), self.values(index), strict=True):
            y, x = h // 2 + dy, w // 2 + dx
            if not (0 <= y and y + self.size <= h and 0 <= x and x + self.size <= w):
                need = 2 * (pitch // 2 + self.size) + 2
                raise ConfigError(
                    f"the marker code needs a display of at least {need}×{need} pixels for tiles "
                    f"{pitch} cells apart; set the bench config's [display] settings.shape"
                )
            frame[y : y + self.size, x : x + self.size] = float(v)


def compile_gap(sync_config: Any, kernel_size: int, input_size: int) -> int:
    """The tile gap a program must be compiled with for the bench's sync policy (2 unless ``marker``)."""
    if getattr(sync_config, "policy", None) != "marker":
        return 2
    return marker_code(sync_config).gap_cells(kernel_size, input_size)


def marker_code(sync_config: Any) -> MarkerCode:
    return MarkerCode(bits=int(getattr(sync_config, "marker_bits", 4)))


def marker_reader_for(bench: Any, program: Any, registration: Any) -> MarkerReader:
    """The reader for a program on a bench whose policy is ``marker`` (its first frame's tiles)."""
    if len(program.frames) != 1:
        raise ConfigError(
            "the marker sync policy reads one SLM frame per input; this program is time-multiplexed "
            f"({len(program.frames)} frames): use sync policy 'settle' or 'trigger'"
        )
    cfg = bench.config.sync
    cam = bench.devices["camera"]
    return MarkerReader(
        marker_code(cfg),
        program.frames[0].layout,
        registration,
        tuple(int(v) for v in cam.shape),
        threshold=cfg.marker_threshold,
    )


class MarkerReader:
    """Decodes the input index from camera frames of a compiled program (its first frame's tiles)."""

    def __init__(
        self,
        code: MarkerCode,
        layout: Any,
        registration: Any,
        camera_shape: tuple[int, int],
        threshold: float = 0.05,
    ) -> None:
        self.code, self.threshold = code, float(threshold)
        k, pitch = int(layout.kernel_size), int(layout.pitch)
        if pitch - (layout.input_size + k - 1) < code.gap_cells(k, layout.input_size):
            raise ConfigError(
                f"the optical program's tiles are too close for the marker code (gap "
                f"{pitch - layout.input_size - k + 1} cells, the code needs "
                f"{code.gap_cells(k, layout.input_size)}); "
                "recompile with the marker policy in the bench config (lab4f compile --config ...)"
            )
        h, w = camera_shape
        rows, cols, data = [], [], []
        lo, hi = (k - 1) // 2, k // 2  # a slot's copy: the slot blurred by the kernel footprint
        for r, (dy, dx) in enumerate(code.offsets(pitch, k)):
            for tile in layout.tiles:
                ty, tx = tile.offset
                # the box of cells this bit's copy covers in this tile (plane cells from the axis, x right, y down)
                ys = np.arange(ty + dy - lo, ty + dy + code.size + hi)
                xs = np.arange(tx + dx - lo, tx + dx + code.size + hi)
                gx, gy = np.meshgrid(xs, ys)
                cam = registration.apply(np.stack([gx.ravel(), gy.ravel()], axis=1).astype(float))
                px = np.rint(cam).astype(np.int64)
                inside = (px[:, 0] >= 0) & (px[:, 0] < w) & (px[:, 1] >= 0) & (px[:, 1] < h)
                idx = np.unique(px[inside, 1] * w + px[inside, 0])
                rows.append(np.full(idx.size, r))
                cols.append(idx)
                data.append(np.ones(idx.size))
        self._m = sparse.csr_matrix(
            (np.concatenate(data), (np.concatenate(rows), np.concatenate(cols))),
            shape=(code.rows, h * w),
        )

    def levels(self, frame: np.ndarray) -> np.ndarray:
        """Each bit's light between the references (0: off, 1: on)."""
        sums = self._m @ np.asarray(frame, dtype=np.float64).ravel()
        on, off = sums[0], sums[1]
        if on - off <= 0:
            return np.full(self.code.bits, 0.5)
        return (sums[2:] - off) / (on - off)

    def read(self, frame: np.ndarray) -> int | None:
        """The index (modulo 2^bits) the frame shows, or None when it mixes inputs (a bit in between)."""
        lv = self.levels(frame)
        t = self.threshold
        if np.any((lv > t) & (lv < 1 - t)):
            return None
        return self.code.decode([int(v > 0.5) for v in lv])
