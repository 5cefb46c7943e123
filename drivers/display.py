"""The input display's template (slmsuite's ``SLM.set_phase`` / ``_set_phase_hw`` pattern): :meth:`Display.show`
checks the image and quantises it to the display's gray levels once, for every driver; a driver implements only
:meth:`Display._show_hw`, which sends those levels to its hardware (or simulates them).

A display shows intensities in [0, 1]: an image outside that range, with a NaN, or of another shape is refused
(nothing is sent), never clipped, so a mistake upstream (an unnormalised image, a wrong crop) is seen where it
happens instead of as a quietly saturated input.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from lab4f.drivers.timing import now

#: how far outside [0, 1] a value may lie and still be taken for rounding error
TOLERANCE = 1e-6


def check_intensities(image: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` (saying how to fix it) unless every value of ``image`` is finite and in [0, 1]."""
    if image.size == 0:
        return
    finite = np.isfinite(image)
    if not finite.all():
        raise ValueError(
            f"{name} shows intensities in [0, 1]; the image has {int((~finite).sum())} NaN or "
            "infinite values: fix the image (or the model output it came from) before showing it"
        )
    lo, hi = float(image.min()), float(image.max())
    if lo < -TOLERANCE or hi > 1 + TOLERANCE:
        raise ValueError(
            f"{name} shows intensities in [0, 1]; the image spans [{lo:.4g}, {hi:.4g}]: normalise it "
            "first (e.g. divide by its maximum), nothing was sent"
        )


class Display(ABC):
    """An input display showing intensity images as integer gray levels (``levels = rint(image · (2^bitdepth − 1))``).

    A driver sets ``name`` and implements :attr:`shape`, :attr:`bitdepth` and :meth:`_show_hw`."""

    name: str = "display"
    #: host time (``lab4f.drivers.timing.now``) of the latest show() sent; -inf before the first
    last_sent_s: float = -np.inf

    @property
    @abstractmethod
    def shape(self) -> tuple[int, int]:
        """(height, width) of the images shown, in pixels."""

    @property
    @abstractmethod
    def bitdepth(self) -> int:
        """Bits per gray level."""

    @property
    def position_px(self) -> tuple[float, float]:
        """(x, y) offset of the image centre from the optical axis (0, 0 unless the driver says otherwise)."""
        return (0.0, 0.0)

    @property
    def level_dtype(self) -> np.dtype:
        """The integer type of the gray levels sent to the hardware."""
        return np.dtype(
            np.uint8 if self.bitdepth <= 8 else np.uint16 if self.bitdepth <= 16 else np.uint32
        )

    @property
    def levels(self) -> np.ndarray:
        """The integer gray levels shown last (zeros before the first show)."""
        levels: np.ndarray | None = getattr(self, "_levels", None)
        if levels is None:
            levels = self._levels = np.zeros(self.shape, dtype=self.level_dtype)
        return levels

    def quantise(self, image: np.ndarray) -> np.ndarray:
        """``image`` (intensities in [0, 1], shape :attr:`shape`) as this display's gray levels; raises
        ``ValueError`` naming the fix for any other image."""
        # float32 as the simulated bench always quantised (its results stay bit-identical); float64 past 16 bits
        image = np.asarray(image, dtype=np.float32 if self.bitdepth <= 16 else np.float64)
        if image.shape != self.shape:
            raise ValueError(
                f"{self.name} shows {self.shape} images; got {image.shape}: resize or pad the image to "
                f"{self.shape} first (Bench.show centres a smaller one on black)"
            )
        check_intensities(image, self.name)
        top = 2**self.bitdepth - 1
        return np.rint(np.clip(image, 0, 1) * top).astype(self.level_dtype)

    def show(self, image: np.ndarray) -> None:
        """Show ``image`` (intensities in [0, 1], shape :attr:`shape`), quantised to the display's gray levels."""
        levels = self.quantise(image)
        before = self.last_sent_s
        self.last_sent_s = now()
        try:
            self._show_hw(levels)
        except BaseException:
            self.last_sent_s = before  # nothing new is shown
            raise
        self._levels = levels

    @abstractmethod
    def _show_hw(self, levels: np.ndarray) -> None:
        """Send ``levels`` (integer gray levels, shape :attr:`shape`, dtype :attr:`level_dtype`) to the device."""

    def show_point(self, y: int | None = None, x: int | None = None) -> None:
        """Show one full-on pixel (default: the centre pixel, on the optical axis): the camera sees the PSF."""
        image = np.zeros(self.shape, dtype=np.float32)
        image[self.shape[0] // 2 if y is None else y, self.shape[1] // 2 if x is None else x] = 1.0
        self.show(image)

    def blank(self) -> None:
        """Show gray level 0 everywhere (a real display's black level remains)."""
        self.show(np.zeros(self.shape, dtype=np.float32))

    def close(self) -> None:  # noqa: B027 - a display without a connection has nothing to close
        """Disconnect the device."""
