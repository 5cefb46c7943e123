"""Small pyqtgraph helpers shared by the panels: image views and a kernel-bank montage."""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


def image_view(title: str = "") -> tuple[pg.PlotWidget, pg.ImageItem]:
    """A PlotWidget holding one ImageItem, y axis pointing down like a camera frame."""
    plot = pg.PlotWidget(title=title)
    plot.setAspectLocked(True)
    plot.invertY(True)
    item = pg.ImageItem()
    plot.addItem(item)
    return plot, item


def show_image(item: pg.ImageItem, image: np.ndarray | None, levels: tuple[float, float] | None = None) -> None:
    """Draw `image` (None clears); levels default to the image's 0.1–99.9 percentiles."""
    if image is None:
        item.clear()
        return
    img = np.asarray(image)
    if levels is None:
        lo, hi = (float(v) for v in np.percentile(img[:: max(1, img.shape[0] // 128)], (0.1, 99.9)))
        levels = (lo, hi if hi > lo else lo + 1.0)
    item.setImage(img, autoLevels=False, levels=levels)


def montage(stack: np.ndarray, columns: int | None = None, pad: int = 1) -> np.ndarray:
    """Tile (N, h, w) images into one image, each normalised to ±1 so signed kernels compare."""
    n, h, w = stack.shape
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    out = np.full((rows * (h + pad) - pad, cols * (w + pad) - pad), np.nan, np.float32)
    for k in range(n):
        r, c = divmod(k, cols)
        peak = float(np.abs(stack[k]).max()) or 1.0
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = stack[k] / peak
    return np.nan_to_num(out, nan=0.0)


def status_label(text: str = "") -> QtWidgets.QLabel:
    """A one-line label whose changing text never re-lays-out the panel (that would repaint every plot)."""
    label = QtWidgets.QLabel(text)
    label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
    label.setMinimumWidth(1)
    return label
