"""No view keeps showing what is no longer true: a record without gains clears the R² bars and residual map, another
checkpoint resets the Kernels progress, the last frame of a disconnected camera is marked stale, and a failed Start
leaves the live view streaming."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from lab4f.calibration import CalibrationRecord
from lab4f.calibration.base import StepResult
from lab4f.gui.app_state import Loaded
from lab4f.gui.main_window import MainWindow
from lab4f.gui.views import show_image


def test_a_record_without_gains_clears_r2_and_residuals(qtbot) -> None:  # noqa: ANN001
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    cal = win.calibration_panel
    # what a record with a gains step left drawn
    cal.r2_bars.setOpts(x=np.arange(4), height=np.full(4, 0.99), width=0.6)
    show_image(cal.resid_image, np.ones((8, 8)))
    cal.bars["gains"].setValue(1000)
    cal.use(CalibrationRecord(steps={"camera": StepResult("camera")}), "a record without gains")
    assert len(cal.r2_bars.opts["height"]) == 0 and cal.resid_image.image is None
    assert cal.bars["gains"].value() == 0 and cal.bars["gains"].format().startswith("not run")
    win.close()


def test_another_checkpoint_resets_the_kernels_progress(
    qtbot,
    connected_window,
    tiny_checkpoint: Path,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    win = connected_window()
    k = win.kernels_panel
    k.auto_confirm = True
    k.load_checkpoint(str(tiny_checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    k.iterations.setValue(5)
    k.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)
    assert k.progress.value() == 1000 and k.progress.format().startswith("compiled")
    other = tmp_path / "other.pt"
    shutil.copy(tiny_checkpoint, other)
    k.load_checkpoint(str(other))
    qtbot.waitUntil(lambda: win.state.checkpoint.path == str(other), timeout=30_000)
    assert k.progress.value() == 0 and k.progress.format().startswith("not compiled")
    assert "still holds the program of the previous checkpoint" in k.info.text()


def test_the_last_frame_of_a_disconnected_camera_is_marked_stale(qtbot, connected_window) -> None:  # noqa: ANN001
    win = connected_window()
    live, bench = win.live_panel, win.bench_worker
    live.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: live.drawn > 3, timeout=10_000)
    assert live.stale_label.isHidden()
    bench.submit(lambda: bench.disconnect_device("camera"), where="camera")
    qtbot.waitUntil(lambda: not live.stale_label.isHidden(), timeout=5_000)
    assert "STALE: camera disconnected" in live.stale_label.text()
    assert live.image.image is not None  # the last frame stays, marked
    bench.submit(lambda: bench.connect_device("camera"), where="camera")
    qtbot.waitUntil(
        lambda: win.bench_panel.last_state["devices"]["camera"]["connected"], timeout=10_000
    )
    drawn = live.drawn
    live.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: live.drawn > drawn + 2, timeout=10_000)
    assert live.stale_label.isHidden()  # live again


def test_a_failed_start_leaves_the_live_view_streaming(
    qtbot,
    connected_window,
    monkeypatch: pytest.MonkeyPatch,  # noqa: ANN001
    tmp_path: Path,
) -> None:
    from lab4f.bench import hybrid
    from lab4f.errors import MismatchError

    def refuse(*_args: object, **_kwargs: object) -> None:
        raise MismatchError("checkpoint, optical program and calibration do not belong together")

    monkeypatch.setattr(hybrid, "prepare", refuse)
    win = connected_window()
    live, bench, inf, st = win.live_panel, win.bench_worker, win.inference_panel, win.state
    live.start_btn.setChecked(True)
    qtbot.waitUntil(lambda: bench.latest.count > 3, timeout=10_000)
    st.checkpoint = Loaded(
        str(tmp_path / "ck.pt"),
        None,
        None,
        {},
        np.zeros((1, 1, 3, 3)),
        np.zeros((2, 8, 8), np.float32),
        np.zeros(2, np.int64),
    )
    st.program, st.program_path = object(), str(tmp_path / "program.npz")
    inf.start()
    qtbot.waitUntil(lambda: "MismatchError" in win.status_line.text(), timeout=10_000)
    qtbot.waitUntil(lambda: inf.start_btn.isEnabled(), timeout=5_000)
    count = bench.latest.count
    qtbot.waitUntil(
        lambda: bench.latest.count > count + 3, timeout=10_000
    )  # the camera streams again
    assert bench.view is not None and live.start_btn.isChecked() and live.start_btn.text() == "Stop"
