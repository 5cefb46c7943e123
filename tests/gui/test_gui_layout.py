"""The main window on a laptop: at 1366×768 (and 1600×1000) everything is inside the window — the panels' tab bar, the
status bar, a large camera view — and panels that are taller than their dock scroll instead of growing the window."""

from __future__ import annotations

import pytest
from PySide6 import QtCore, QtWidgets

from lab4f.gui.main_window import MainWindow
from lab4f.gui.views import PanelScrollArea


@pytest.fixture
def window(qtbot):  # noqa: ANN001, ANN201
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    yield win
    win.close()


def inside(win: QtWidgets.QWidget, widget: QtWidgets.QWidget) -> bool:
    """``widget`` is visible and its whole rectangle lies within the window."""
    top_left = widget.mapTo(win, QtCore.QPoint(0, 0))
    return widget.isVisible() and win.rect().contains(QtCore.QRect(top_left, widget.size()))


@pytest.mark.parametrize("size", [(1366, 768), (1600, 1000)])
def test_main_window_fits_a_laptop_screen(qtbot, window: MainWindow, size: tuple[int, int]) -> None:  # noqa: ANN001
    w, h = size
    window.show_status("a long message " * 40)  # elided, not widening the window
    window.kernels_panel.info.setText("/a/long/path/" * 30)
    least = window.minimumSizeHint().expandedTo(window.minimumSize())
    assert least.width() <= w and least.height() <= h - 60, (
        least
    )  # 60 px left for a taskbar and a title bar
    window.resize(w, h)
    window.show()
    qtbot.waitUntil(lambda: window.size() == QtCore.QSize(w, h), timeout=5_000)
    qtbot.wait(50)
    assert inside(window, window.statusBar()) and inside(window, window.menuBar())
    tab_bars = [
        t for t in window.findChildren(QtWidgets.QTabBar) if t.isVisible() and t.count() > 1
    ]
    assert tab_bars, "the workflow panels are tabs of one dock area"
    for bar in tab_bars:
        assert inside(window, bar), bar.geometry()
    names = {tab_bars[0].tabText(i) for i in range(tab_bars[0].count())}
    assert {"Bench", "Kernels", "Calibration", "Inference"} <= names
    # the camera view is the large central widget
    live = window.live_panel
    assert window.centralWidget() is live and inside(window, live)
    assert live.width() >= 0.5 * w and live.height() >= 0.6 * h, live.size()
    # a panel taller than its dock scrolls; none needs a horizontal scroll bar at the first start's dock width
    for name, dock in window.docks.items():
        area = dock.widget()
        if isinstance(area, PanelScrollArea):
            dock.raise_()
            qtbot.wait(20)
            panel = area.widget()
            assert panel.minimumSizeHint().width() <= area.viewport().width(), (
                name,
                panel.minimumSizeHint(),
                area.viewport().size(),
            )
            assert not area.horizontalScrollBar().isVisible(), name
            assert panel.height() >= area.viewport().height()  # it fills the dock, or scrolls


def test_kernels_tab_is_in_front_at_first_start(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    window.resize(1366, 768)
    window.show()
    qtbot.wait(50)
    bar = next(t for t in window.findChildren(QtWidgets.QTabBar) if t.count() > 1)
    assert bar.tabText(bar.currentIndex()) == "Kernels"
    assert not window.kernels_panel.visibleRegion().isEmpty()
    assert window.calibration_panel.visibleRegion().isEmpty()
