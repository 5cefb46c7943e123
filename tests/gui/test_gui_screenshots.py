"""Screenshots of the whole window at a laptop's 1366×768 and at 1600×1000 (into $LAB4F_SCREENSHOTS, e.g.
docs/screenshots): the live view aligning (a region on the tiles, histogram, saturated pixels in red), the
stale-calibration warning (the Calibration panel and the question asked at Start), the Log with the core's warnings.
The checks are what the pictures must show."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6 import QtCore, QtGui

from lab4f.gui.panels import inference_panel


def composed(win, dialog):  # noqa: ANN001, ANN201
    """The window with ``dialog`` drawn over its centre, as the user sees it (offscreen windows are grabbed apart)."""
    picture = win.grab()
    shot = dialog.grab()
    painter = QtGui.QPainter(picture)
    painter.drawPixmap(
        (picture.width() - shot.width()) // 2, (picture.height() - shot.height()) // 3, shot
    )
    painter.end()
    return Picture(picture)


class Picture:
    """A pixmap the ``screenshot`` fixture saves like a widget."""

    def __init__(self, pixmap: QtGui.QPixmap) -> None:
        self.pixmap = pixmap

    def grab(self) -> QtGui.QPixmap:
        return self.pixmap


@pytest.mark.slow
@pytest.mark.parametrize("size", [(1366, 768), (1600, 1000)])
def test_screenshots_at_laptop_and_desktop_size(
    qtbot,
    screenshot,
    connected_window,
    tiny_checkpoint: Path,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
    size: tuple[int, int],
) -> None:
    w, h = size
    tag = f"{w}x{h}"
    win = connected_window()
    win.resize(w, h)
    bench, live, cal, inf = (
        win.bench_worker,
        win.live_panel,
        win.calibration_panel,
        win.inference_panel,
    )
    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    win.kernels_panel.iterations.setValue(5)
    win.kernels_panel.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)
    cal.run(
        ["camera", "registration"]
    )  # the tiles and gains of the uploaded program are not measured
    qtbot.waitUntil(lambda: not cal.running, timeout=60_000)
    assert win.state.calibration is not None, cal.summary.toPlainText()

    # 1. aligning: an input on the display, light on, a region on the tiles, the exposure up until peaks saturate
    image = win.state.checkpoint.images[0]
    exposure = win.bench_panel.last_state["camera"]["exposure_s"]

    def light_up() -> None:
        bench.set_light(True)
        bench.set_shutter(True)
        bench.bench.show(image)
        bench.set_exposure(4 * exposure)

    bench.submit(light_up, where="camera")
    live.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: live.drawn > 10, timeout=10_000)
    live.roi_on.setChecked(True)
    x0, y0, bw, bh = (float(v) for v in np.array([b.rect().getRect() for b in live.boxes])[0])
    live.roi.setPos((x0, y0))
    live.roi.setSize((bw, bh))
    win.docks["Bench"].raise_()
    start = live.drawn
    qtbot.waitUntil(lambda: live.drawn > start + 20 and live.saturated > 0, timeout=20_000)
    assert live.boxes and live.roi_stats.get("pixels") and live.stale_label.isHidden()
    qtbot.wait(300)
    screenshot(win, f"live_aligning_{tag}")

    # 2. the stale-calibration warning: in the Calibration panel, and the question at Start
    live.start_btn.setChecked(False)
    win.docks["Calibration"].raise_()
    qtbot.wait(200)
    assert not cal.check_box.isHidden() and "tiles, gains" in cal.check_label.text()
    box, _buttons = inference_panel.calibration_warning_box(
        win, win.state.calibration_check().text()
    )
    box.show()
    qtbot.wait(100)
    path = screenshot(composed(win, box), f"stale_calibration_warning_{tag}")
    box.close()
    assert path.stat().st_size > 10_000

    # 3. started anyway: the Log shows the warnings (the confirmation, the core's missing display step)
    monkeypatch.setattr(inference_panel, "confirm_calibration", lambda _p, _t: "start")
    win.docks["Inference"].raise_()
    inf.start()
    qtbot.waitUntil(lambda: inf.latest.get("processed", 0) >= 20, timeout=30_000)
    qtbot.waitUntil(
        lambda: any("no display step" in e for e in win.log_panel.entries()), timeout=5_000
    )
    assert any("does not fit the program" in e for e in win.log_panel.entries())
    win.resizeDocks([win.docks["Log"]], [170], QtCore.Qt.Orientation.Vertical)
    qtbot.wait(300)
    screenshot(win, f"log_warning_{tag}")
    inf.stop()
    qtbot.waitUntil(lambda: inf.run is None, timeout=10_000)
