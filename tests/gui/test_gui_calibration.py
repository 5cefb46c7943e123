"""Calibration panel on the real `run_calibration`: a cancelled step saves nothing and keeps the record in
use; records load back (and are applied to the bench); a damaged record is refused with the current kept."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lab4f.calibration import list_records
from lab4f.gui.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path: Path):  # noqa: ANN001, ANN201
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    win.calibration_panel.folder = tmp_path / "records"
    yield win
    win.close()
    assert all(t.isFinished() for t in win.threads)


def test_cancel_saves_nothing_and_a_saved_record_loads_back(
    qtbot, window: MainWindow, tmp_path: Path
) -> None:  # noqa: ANN001
    panel, bench = window.calibration_panel, window.bench_worker
    window.bench_panel.connect_all()
    qtbot.waitUntil(
        lambda: window.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
        timeout=20_000,
    )
    panel.run(["camera", "fourier", "registration"])
    qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
    first = window.state.calibration
    assert first is not None, panel.summary.toPlainText()
    assert sorted(first.steps) == ["camera", "fourier", "registration"]
    assert list_records(panel.folder) == [first.path] and panel.history.count() == 1

    panel.run(["phase"])  # ~12 s when left to finish
    qtbot.waitUntil(lambda: panel.bars["phase"].value() > 0, timeout=20_000)
    panel.cancel()
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert (
        "cancelled" in panel.summary.toPlainText()
        and "nothing was saved" in panel.summary.toPlainText()
    )
    assert 0 < panel.bars["phase"].value() < 1000 and panel.bars["phase"].format().startswith(
        "stopped"
    )
    assert window.state.calibration is first and list_records(panel.folder) == [first.path]

    bench.submit(lambda: bench.set_exposure(0.002), where="camera")
    qtbot.waitUntil(
        lambda: abs(window.bench_panel.last_state["camera"]["exposure_s"] - 0.002) < 1e-9,
        timeout=5_000,
    )
    window.state.calibration = None
    panel.load(first.path)
    qtbot.waitUntil(lambda: window.state.calibration is not None, timeout=10_000)
    assert window.state.calibration.path == first.path
    # loading applies the record: the camera is back at the calibrated exposure
    qtbot.waitUntil(
        lambda: (
            abs(window.bench_panel.last_state["camera"]["exposure_s"] - first.exposure_s) < 1e-9
        ),
        timeout=5_000,
    )


def test_damaged_record_is_refused_and_the_current_one_kept(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    panel = window.calibration_panel
    panel.folder.mkdir(parents=True)
    bad = panel.folder / "cal-20000101-000000.h5"
    bad.write_bytes(b"not an HDF5 file")
    panel.refresh_history()
    assert panel.history.count() == 1
    panel.load(bad)
    qtbot.waitUntil(lambda: "unchanged" in panel.summary.toPlainText(), timeout=10_000)
    assert "CalibrationError" in panel.summary.toPlainText() and window.state.calibration is None
    assert "record" in window.status_line.text()


def test_flat_frames_reach_the_camera_step(qtbot, window: MainWindow) -> None:  # noqa: ANN001
    panel = window.calibration_panel
    window.bench_panel.connect_all()
    qtbot.waitUntil(
        lambda: window.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
        timeout=20_000,
    )
    panel.flat_frames.setValue(8)
    panel.run(["camera"])
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    rec = window.state.calibration
    assert rec is not None, panel.summary.toPlainText()
    q = rec.steps["camera"].quality
    assert q["flat_frames"] == 8 and q["flat_pixels"] > 0  # measured, not the unity flat
    # the flat and dark are drawn, with what they measured in the titles
    title = panel.flat_plot.getPlotItem().titleLabel.text
    assert "8 frames" in title and f"{100 * q['flat_rms']:.2f} %" in title
    shown = panel.flat_image.image
    assert shown is not None and shown.shape == rec.flat.shape and np.array_equal(shown, rec.flat)
    assert "dark: mean" in panel.dark_plot.getPlotItem().titleLabel.text
    assert panel.dark_image.image is not None
    panel.flat_frames.setValue(0)
    panel.run(["camera"])
    qtbot.waitUntil(lambda: not panel.running, timeout=60_000)
    assert window.state.calibration.steps["camera"].quality.get("flat_frames", 0) == 0
    assert (
        "unity" in panel.flat_plot.getPlotItem().titleLabel.text and panel.flat_image.image is None
    )


def test_fourier_grid_and_gains_settings_reach_their_steps(
    qtbot, window: MainWindow, monkeypatch
) -> None:  # noqa: ANN001
    """The panel's step settings are `lab4f calibrate`'s --array-* and --gains-* options: units and tooltips shown,
    only the values changed from the step's defaults passed, and the Fourier grid used as set."""
    from lab4f.errors import CalibrationCancelled

    panel = window.calibration_panel
    assert (
        panel.step_options() == {}
    )  # the defaults: nothing passed, the step functions' own values apply
    assert panel.array_pitch.suffix() == " knm" and "k-space" in panel.array_pitch.toolTip()
    assert panel.gains_frames.suffix() == " frames" and "averaged" in panel.gains_frames.toolTip()
    assert all("knm" in w.suffix() and w.toolTip() for w in panel.array_center)
    panel.gains_frames.setValue(16)
    panel.gains_filter.setValue(7)
    assert panel.step_options() == {"gains": {"frames": 16, "filter_size": 7}}
    seen: list[dict] = []

    def fake(*args, **_kw):  # noqa: ANN002, ANN003, ANN202
        seen.append(args[-1])
        raise CalibrationCancelled("not run: the test only looks at the options")

    monkeypatch.setattr(window.bench_worker, "calibrate", fake)
    panel.run(["camera"])
    qtbot.waitUntil(lambda: not panel.running, timeout=10_000)
    assert seen == [{"gains": {"frames": 16, "filter_size": 7}}]
    monkeypatch.undo()
    panel.gains_frames.setValue(4)
    panel.gains_filter.setValue(5)

    window.bench_panel.connect_all()
    qtbot.waitUntil(
        lambda: window.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected"),
        timeout=20_000,
    )
    panel.array_shape.setValue(7)
    panel.array_pitch.setValue(24)
    panel.array_center[0].setValue(4.0)
    panel.array_center[1].setValue(-3.0)
    panel.fourier_retry.setChecked(False)
    assert panel.step_options() == {
        "fourier": {
            "array_shape": 7,
            "array_pitch": 24,
            "retry": False,
            "array_center": (4.0, -3.0),
        }
    }
    panel.run(["camera", "fourier"])
    qtbot.waitUntil(lambda: not panel.running, timeout=90_000)
    rec = window.state.calibration
    assert rec is not None and "fourier" in rec.steps, panel.summary.toPlainText()
    values = rec.steps["fourier"].values
    assert (values["array_shape"], values["array_pitch"], tuple(values["array_center"])) == (
        7,
        24,
        (4.0, -3.0),
    )
