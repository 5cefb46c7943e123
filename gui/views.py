"""Small Qt and pyqtgraph helpers shared by the panels: image views, a kernel-bank montage, an elided status line,
scroll areas and plot export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtGui, QtWidgets

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False)


TITLE_SIZE = (
    "9pt"  # plot titles: short, and small enough for two plots side by side in a laptop's dock
)


def set_title(plot: pg.PlotWidget, title: str, tip: str | None = None) -> pg.PlotWidget:
    """A plot's title at `TITLE_SIZE`; ``tip``: what the plot shows in full, as its tooltip."""
    plot.setTitle(title, size=TITLE_SIZE)
    if tip is not None:
        plot.setToolTip(tip)
    return plot


def image_view(title: str = "", tip: str | None = None) -> tuple[pg.PlotWidget, pg.ImageItem]:
    """A PlotWidget holding one ImageItem, y axis pointing down like a camera frame."""
    plot = set_title(pg.PlotWidget(), title, tip)
    plot.setAspectLocked(True)
    plot.invertY(True)
    item = pg.ImageItem()
    plot.addItem(item)
    return plot, item


def show_image(
    item: pg.ImageItem, image: np.ndarray | None, levels: tuple[float, float] | None = None
) -> None:
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


class ElidedLabel(QtWidgets.QLabel):
    """One line whose changing text never re-lays-out the panel (that would repaint every plot): text too long for
    the width ends in "…" and is shown whole as the tooltip."""

    def __init__(self, text: str = "", parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed)
        self.setMinimumWidth(1)
        self.setText(text)

    def setText(self, text: str) -> None:  # noqa: N802 — Qt's name
        super().setText(text)
        self.setToolTip(text)

    def paintEvent(self, _event: QtGui.QPaintEvent) -> None:  # noqa: N802 — Qt's name
        painter = QtGui.QPainter(self)
        rect = self.contentsRect()
        line = " ".join(self.text().split())
        elided = self.fontMetrics().elidedText(
            line, QtCore.Qt.TextElideMode.ElideRight, rect.width()
        )
        align = self.alignment() | QtCore.Qt.AlignmentFlag.AlignVCenter
        self.style().drawItemText(
            painter,
            rect,
            int(align),
            self.palette(),
            self.isEnabled(),
            elided,
            self.foregroundRole(),
        )


def status_label(text: str = "") -> ElidedLabel:
    """A one-line status label: elided when too long, the whole text in its tooltip."""
    return ElidedLabel(text)


class PanelScrollArea(QtWidgets.QScrollArea):
    """Holds a panel at the viewport's size, or at the panel's minimum size where the viewport is smaller (then it
    scrolls). Unlike ``widgetResizable``, the height does not follow a word-wrapped label's height-for-width, which
    asks for the panel's preferred height (twice the screen for the kernels panel)."""

    def __init__(self, widget: QtWidgets.QWidget) -> None:
        super().__init__()
        self.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
        self.setWidget(widget)
        widget.installEventFilter(self)

    def fit(self) -> None:
        widget, view = self.widget(), self.viewport().size()
        least = widget.minimumSizeHint().expandedTo(widget.minimumSize())
        widget.resize(max(view.width(), least.width()), max(view.height(), least.height()))

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:  # noqa: N802 — Qt's name
        super().resizeEvent(event)
        self.fit()

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:  # noqa: N802 — Qt's name
        if obj is self.widget() and event.type() == QtCore.QEvent.Type.LayoutRequest:
            self.fit()
        return super().eventFilter(obj, event)

    def minimumSizeHint(self) -> QtCore.QSize:  # noqa: N802 — Qt's name
        return QtCore.QSize(120, 80)

    def sizeHint(self) -> QtCore.QSize:  # noqa: N802 — Qt's name
        return self.widget().sizeHint().boundedTo(QtCore.QSize(640, 600))


def scrolled(widget: QtWidgets.QWidget) -> PanelScrollArea:
    """``widget`` in a frameless scroll area: a panel taller or wider than its dock scrolls instead of forcing the
    window's minimum size past a laptop screen."""
    return PanelScrollArea(widget)


def export_plot(plot: pg.PlotWidget, path: str | Path) -> Path:
    """Write a plot: .svg as a vector image (Qt's SVG generator: pyqtgraph 0.14's SVG exporter fails on Qt 6 paths),
    .csv as its curves' data (pyqtgraph's exporter), else an image (.png, .jpg, .tif) at the plot's size."""
    from pyqtgraph import exporters

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".svg":
        from PySide6.QtSvg import QSvgGenerator

        generator = QSvgGenerator()
        generator.setFileName(str(path))
        size = plot.size()
        generator.setSize(size)
        generator.setViewBox(QtCore.QRect(QtCore.QPoint(0, 0), size))
        generator.setTitle(plot.getPlotItem().titleLabel.text or path.stem)
        painter = QtGui.QPainter(generator)
        try:
            plot.render(painter)
        finally:
            painter.end()
        return path
    item = plot.getPlotItem()
    if suffix == ".csv":
        exporters.CSVExporter(item).export(str(path))
        return path
    exporter = exporters.ImageExporter(item)
    exporter.parameters()["width"] = int(max(item.sceneBoundingRect().width(), 200))
    exporter.export(str(path))
    return path
