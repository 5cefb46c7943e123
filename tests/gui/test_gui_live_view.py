"""The live view as an alignment tool: levels through a histogram, saturated pixels in red, the value under the
cursor, a region with statistics, averaging of the last N frames, exposure and gain beside the image."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6 import QtCore

from lab4f.gui.alignment import FrameAverager, region_stats, saturation_level


def test_frame_averager_keeps_the_mean_of_the_last_n_frames() -> None:
    avg = FrameAverager(3)
    frames = [np.full((4, 5), v, np.uint16) for v in (1, 2, 3, 10)]
    means = [avg.add(f) for f in frames]
    assert means[0].mean() == 1 and means[2].mean() == 2 and means[3].mean() == pytest.approx(5.0)
    assert avg.count == 3
    assert (
        avg.add(np.zeros((2, 2))).shape == (2, 2) and avg.count == 1
    )  # another shape starts again
    assert FrameAverager(1).add(frames[0]) is frames[0]  # no averaging: the frame itself, no copy


def test_region_stats_and_saturation_level() -> None:
    assert saturation_level(12) == 4095 and saturation_level(None, np.zeros(2, np.uint8)) == 255
    assert saturation_level(None, np.zeros(2, np.float32)) is None
    region = np.array([[1.0, 3.0], [4095.0, 0.0]])
    s = region_stats(region, region.astype(np.uint16), 4095)
    assert s["mean"] == pytest.approx(region.mean()) and s["max"] == 4095 and s["saturated"] == 1
    assert s["shape"] == (2, 2) and region_stats(np.zeros((0, 3)))["pixels"] == 0


def drawn_after(qtbot, live, n: int = 3) -> None:  # noqa: ANN001
    start = live.drawn
    qtbot.waitUntil(lambda: live.drawn >= start + n, timeout=10_000)


def test_live_view_aligns(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    live, w = win.live_panel, win.bench_worker
    assert win.centralWidget() is live and live.hist.item.imageItem() is live.image
    live.start_btn.setChecked(True)
    drawn_after(qtbot, live)
    assert live.saturation == 4095  # the simulated camera's 12 bits, from the device state

    # the value under the cursor
    vb = live.plot.getPlotItem().vb
    live.plot.scene().sigMouseMoved.emit(vb.mapViewToScene(QtCore.QPointF(10.5, 20.5)))
    assert live.cursor_label.text() == f"cursor x 10, y 20: {live.shown[20, 10]:.1f} ADU"
    assert live.pixel_at(-1, 3) is None

    # a region and its statistics, then averaging lowers the noise in it (dark frames: sensor noise only)
    live.roi_on.setChecked(True)
    live.roi.setPos((100, 120))
    live.roi.setSize((64, 32))
    drawn_after(qtbot, live, 10)
    s = live.roi_stats
    region = live.shown[120:152, 100:164]
    assert s["shape"] == (32, 64) and s["mean"] == pytest.approx(float(region.mean()), rel=0.02)
    single = s["std"]
    live.average.setValue(8)
    qtbot.waitUntil(lambda: live.averager.count == 8, timeout=10_000)
    drawn_after(qtbot, live, 10)
    assert live.roi_stats["std"] < 0.6 * single, (live.roi_stats, single)  # ≈ 1/√8 of it
    assert "mean of 8 frames" in live.roi_label.text()
    live.average.setValue(1)

    # exposure beside the image: the camera and the Bench panel follow
    live.exposure_ms.setValue(40.0)
    live.exposure_ms.editingFinished.emit()
    qtbot.waitUntil(
        lambda: abs(win.bench_panel.last_state["camera"]["exposure_s"] - 0.040) < 1e-9,
        timeout=5_000,
    )
    assert win.bench_panel.exposure_ms.value() == pytest.approx(40.0)
    assert live.gain.isEnabled() and live.gain.value() == pytest.approx(
        win.bench_panel.gain.value()
    )

    # a frame with saturated pixels (a spot at full scale): counted and painted red
    with qtbot.waitSignal(
        w.streaming, timeout=5_000
    ):  # emitted once the acquisition thread has ended
        live.start_btn.setChecked(False)
    frame = np.full((512, 512), 100, np.uint16)
    frame[200:210, 300:305] = 4095
    w.latest.put(frame)
    qtbot.waitUntil(lambda: live.raw is frame, timeout=5_000)
    assert live.saturated == 50 and live.saturated_item.image.sum() == 50
    assert live.saturated_item.image is not None and live.saturated_item.isVisible()
    assert "saturated" in live.saturation_label.text() and live.saturation_label.styleSheet() != ""
    live.show_saturated.setChecked(False)
    assert not live.saturated_item.isVisible()

    # levels: automatic until the histogram's bounds are dragged; then they stay
    assert live.auto_levels.isChecked()
    live.hist.item.region.setRegion([10.0, 500.0])  # what a drag does
    assert not live.auto_levels.isChecked()
    live.start_btn.setChecked(True)
    drawn_after(
        qtbot, live, 40
    )  # more than LEVELS_EVERY frames: automatic levels would have moved them
    assert tuple(np.asarray(live.image.levels, float)) == (10.0, 500.0)
    live.start_btn.setChecked(False)
