"""Never run silently on a partial or stale calibration: a record without the program-dependent steps (tiles, gains),
with them measured for another program, or with steps left stale by re-running a step they build on, is flagged in
the Calibration panel and at Start, where "Run missing steps" fixes it in one click and "Start anyway" is recorded in
the run file."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest

from lab4f.calibration import CalibrationRecord
from lab4f.calibration.base import StepResult
from lab4f.gui.calibration_check import check_calibration, stale_after
from lab4f.gui.panels import inference_panel


def record(*steps: str, sha: str | None = None) -> CalibrationRecord:
    return CalibrationRecord(steps={s: StepResult(s) for s in steps}, program_sha256=sha)


def test_missing_foreign_and_stale_steps(tmp_path: Path) -> None:
    from lab4f.storage import file_sha256

    program, other = tmp_path / "program.npz", tmp_path / "other.npz"
    program.write_bytes(b"program A")
    other.write_bytes(b"program B")
    partial = record("camera", "fourier", "registration")
    assert check_calibration(
        partial, None
    ).ok  # no program uploaded: nothing program-dependent is expected
    check = check_calibration(partial, program)
    assert check.missing == ["tiles", "gains"] and check.steps_to_run() == ["tiles", "gains"]
    assert "Missing for the uploaded program: tiles, gains" in check.text()
    assert check_calibration(record("camera"), program).steps_to_run() == [
        "registration",
        "tiles",
        "gains",
    ]
    full = record("camera", "fourier", "registration", "tiles", "gains", sha=file_sha256(program))
    assert check_calibration(full, program).ok
    foreign = check_calibration(full, other)
    assert foreign.foreign == ["tiles", "gains"] and "another program" in foreign.text()
    # a partial run on top of the full record: what builds on the re-run steps is stale
    rerun = full.merged_with(record("registration"))
    stale = stale_after(full, rerun)
    assert stale == {"tiles": ["registration"], "gains": ["registration"]}
    check = check_calibration(rerun, program, stale)
    assert (
        not check.ok
        and check.steps_to_run() == ["tiles", "gains"]
        and "Stale: tiles" in check.text()
    )
    # re-running the tiles leaves the gains stale (now after both); re-running the gains too clears it
    after_tiles = rerun.merged_with(record("tiles"))
    assert stale_after(rerun, after_tiles, stale) == {"gains": ["registration", "tiles"]}
    fixed = after_tiles.merged_with(record("gains"))
    assert stale_after(after_tiles, fixed, {"gains": ["registration", "tiles"]}) == {}


def loaded(qtbot, win, checkpoint: Path) -> None:  # noqa: ANN001
    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(str(checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None, timeout=30_000)
    win.kernels_panel.iterations.setValue(5)
    win.kernels_panel.compile()
    qtbot.waitUntil(lambda: win.state.program is not None, timeout=60_000)


def test_start_after_calibrating_without_a_program_warns(
    qtbot,
    connected_window,
    tiny_checkpoint: Path,  # noqa: ANN001
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    win = connected_window()
    cal, inf = win.calibration_panel, win.inference_panel
    cal.run(["camera", "registration"])  # no program uploaded yet: no tiles, no gains
    qtbot.waitUntil(lambda: not cal.running, timeout=60_000)
    assert win.state.calibration is not None and "gains" not in win.state.calibration.steps
    assert cal.check_box.isHidden()
    loaded(qtbot, win, tiny_checkpoint)  # then a program is uploaded
    assert not cal.check_box.isHidden() and "tiles, gains" in cal.check_label.text()
    assert (
        cal.bars["gains"].format() == "missing"
        and "uploaded program" in cal.bars["gains"].toolTip()
    )
    assert "⚠" in inf.calibration_label.text()

    asked: list[str] = []
    answer = ["cancel"]
    monkeypatch.setattr(
        inference_panel,
        "confirm_calibration",
        lambda _parent, text: asked.append(text) or answer[0],
    )
    inf.start()
    assert len(asked) == 1 and "Missing for the uploaded program: tiles, gains" in asked[0]
    assert inf.run is None and not inf.starting and "Not started" in inf.counters.text()

    # Start anyway: the run goes, and its file says what was acknowledged
    answer[0] = "start"
    inf.record.setChecked(True)
    inf.record_path.setText(str(tmp_path / "run.h5"))
    inf.start()
    qtbot.waitUntil(
        lambda: inf.run is not None and inf.latest.get("processed", 0) >= 5, timeout=30_000
    )
    inf.stop()
    qtbot.waitUntil(
        lambda: (tmp_path / "run.h5").exists() and inf.start_btn.isEnabled(), timeout=15_000
    )
    with h5py.File(tmp_path / "run.h5") as f:
        metrics = json.loads(f.attrs["metrics"])
    assert metrics["calibration_warning_acknowledged"] == asked[1]

    # Run missing steps: one click calibrates tiles and gains on top of the record, then the run starts
    answer[0] = "run"
    inf.record.setChecked(False)
    first = win.state.calibration
    inf.start()
    assert cal.running and len(asked) == 3
    qtbot.waitUntil(lambda: inf.run is not None, timeout=150_000)
    rec = win.state.calibration
    assert rec is not first and {"camera", "registration", "tiles", "gains"} <= set(rec.steps)
    assert (
        win.state.calibration_check().ok and cal.check_box.isHidden() and len(asked) == 3
    )  # no second warning
    inf.stop()
    qtbot.waitUntil(lambda: inf.run is None and inf.start_btn.isEnabled(), timeout=15_000)

    # re-running the registration leaves tiles and gains stale: flagged; the panel's button re-runs them
    cal.run(["registration"])
    qtbot.waitUntil(lambda: not cal.running, timeout=60_000)
    assert win.state.stale_steps == {"tiles": ["registration"], "gains": ["registration"]}
    assert not cal.check_box.isHidden() and "Stale: tiles" in cal.check_label.text()
    assert (
        cal.bars["tiles"].format() == "stale"
        and "registration was re-run" in cal.bars["tiles"].toolTip()
    )
    cal.fix_btn.click()
    assert cal.running
    qtbot.waitUntil(lambda: not cal.running, timeout=150_000)
    assert win.state.stale_steps == {} and cal.check_box.isHidden(), cal.summary.toPlainText()


def test_a_program_compiled_after_calibrating_is_flagged(
    qtbot, connected_window, tiny_checkpoint: Path
) -> None:  # noqa: ANN001
    """tiles/gains measured for one program; a recompile (another phase) is another program file."""
    win = connected_window()
    cal = win.calibration_panel
    loaded(qtbot, win, tiny_checkpoint)
    record_ = record(
        "camera", "registration", "tiles", "gains", sha="0" * 64
    )  # measured for another program
    cal.use(record_, "a record of another program")
    assert win.state.calibration_check().foreign == ["tiles", "gains"]
    assert not cal.check_box.isHidden() and "another program" in cal.check_label.text()
    assert cal.bars["tiles"].format() == "other program"


def test_a_stale_record_loaded_from_disk_is_flagged_in_the_panel_and_at_start(  # noqa: ANN001
    qtbot, connected_window, tiny_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The registration was re-measured after the tiles and gains (saved by another session): loaded into a fresh
    window, its per-step provenance says tiles and gains are stale — the session knows nothing of the re-run."""
    from lab4f.calibration.base import Provenance
    from lab4f.storage import file_sha256

    win = connected_window()  # a new app state: no stale steps seen in this session
    cal, inf = win.calibration_panel, win.inference_panel
    loaded(qtbot, win, tiny_checkpoint)
    sha = file_sha256(win.state.program_path)
    t = [f"2026-01-01T00:00:0{i}.000000+00:00" for i in range(5)]
    steps = {
        "camera": StepResult("camera", provenance=Provenance(t[0])),
        "registration": StepResult(
            "registration", provenance=Provenance(t[4], {"fourier": None, "wavefront": None})
        ),
        "tiles": StepResult(
            "tiles",
            provenance=Provenance(
                t[1], {"registration": t[0], "fourier": None, "phase": None, "wavefront": None}, sha
            ),
        ),
        "gains": StepResult(
            "gains",
            provenance=Provenance(t[2], {"camera": t[0], "registration": t[0], "tiles": t[1]}, sha),
        ),
    }
    path = CalibrationRecord(steps=steps, program_sha256=sha).save(
        tmp_path / "cal-20260101-000005.h5"
    )
    assert win.state.stale_steps == {}
    cal.load(path)
    qtbot.waitUntil(
        lambda: win.state.calibration is not None and win.state.calibration.path == path,
        timeout=10_000,
    )
    check = win.state.calibration_check()
    assert check.stale == {"tiles": ["registration"], "gains": ["registration"]}
    assert check.steps_to_run() == ["tiles", "gains"]
    assert (
        not cal.check_box.isHidden()
        and "Stale: tiles was measured before registration" in cal.check_label.text()
    )
    assert cal.bars["gains"].format() == "stale"
    asked: list[str] = []
    monkeypatch.setattr(
        inference_panel, "confirm_calibration", lambda _parent, text: asked.append(text) or "cancel"
    )
    inf.start()
    assert (
        len(asked) == 1
        and "Stale: gains was measured before registration" in asked[0]
        and inf.run is None
    )
