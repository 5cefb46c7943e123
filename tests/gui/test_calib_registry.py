"""The calibration steps are described once (lab4f.calibration.steps): registering a step is all it takes for the
runner to order and run it, ``lab4f calibrate`` to offer it, the record to save and check it, and the Calibration
panel to show a row for it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lab4f.calibration import latest_record, resolve_steps, run_calibration
from lab4f.calibration import steps as registry
from lab4f.calibration.base import StepControl, StepResult
from lab4f.calibration.steps import Step, StepContext, StepSchema

RUNS: list[str] = []


def toy_step(ctx: StepContext) -> StepResult:
    """Measures the camera's current exposure (a step needs nothing more to be a step)."""
    ctl = StepControl("toy", ctx.progress, ctx.cancel)
    RUNS.append("toy")
    exposure = float(ctx.bench.camera.get_exposure())
    ctl.report(0.5, "measuring")
    return ctl.finish(
        StepResult(
            "toy",
            {"exposure_s": exposure},
            {"level": np.full(3, exposure)},
            {"exposure_s": exposure},
            message=f"exposure {exposure:.4f} s",
        )
    )


@pytest.fixture
def toy() -> Iterator[Step]:
    RUNS.clear()
    step = registry.register(
        Step(
            "toy",
            "Toy step: the exposure, as a test",
            toy_step,
            invalidates=("gains",),
            schema=StepSchema(2, {"level": "the exposure, thrice"}, {"exposure_s": ""}),
        ),
        after="timing",
    )
    yield step
    registry.unregister("toy")


def test_a_registered_step_is_in_the_runner_the_cli_the_record_and_the_panel(
    toy: Step,
    qtbot,
    tmp_path: Path,  # noqa: ANN001
    capsys,
) -> None:  # noqa: ANN001
    from lab4f.calibration import BENCH_ORDER, STEP_ORDER
    from lab4f.cli import build_parser, main

    # runner: bench order, `all`, what a re-run leaves stale
    assert BENCH_ORDER[:3] == ("camera", "timing", "toy") and "toy" in STEP_ORDER
    assert resolve_steps("all", None)[:3] == ["camera", "timing", "toy"]
    assert resolve_steps(["gains", "toy"], object()) == ["toy", "gains"]
    assert registry.builds_on("gains")[:2] == ("camera", "toy")
    # CLI: a step choice (and still refused when unknown)
    assert build_parser().parse_args(["calibrate", "toy"]).step == "toy"
    out = tmp_path / "records"
    assert main(["calibrate", "toy", "--out", str(out), "--json"]) == 0
    reply = json.loads(capsys.readouterr().out)
    assert RUNS == ["toy"] and "toy" in reply["steps"]
    rec = latest_record(out)
    assert rec.value("toy", "exposure_s") > 0 and rec.steps["toy"].provenance is not None
    np.testing.assert_array_equal(
        rec._array("toy", "level"), np.full(3, rec.value("toy", "exposure_s"))
    )
    with pytest.raises(KeyError, match="declares no array 'nope'"):
        rec._array("toy", "nope")
    import h5py

    with h5py.File(rec.path) as f:
        assert f["steps/toy"].attrs["schema_version"] == 2
    # the panel: a row with the step's title, a bar and a Run button
    from lab4f.gui.main_window import MainWindow

    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    try:
        panel = win.calibration_panel
        assert "toy" in panel.bars and "toy" in panel.run_btns
        from PySide6 import QtWidgets

        titles = [w.text() for w in panel.findChildren(QtWidgets.QLabel)]
        assert "Toy step: the exposure, as a test" in titles
        win.bench_panel.connect_all()
        qtbot.waitUntil(
            lambda: (
                win.bench_panel.last_state.get("devices", {}).get("camera", {}).get("connected")
            ),
            timeout=20_000,
        )
        panel.folder = tmp_path / "gui-records"
        panel.run_btns["toy"].click()
        qtbot.waitUntil(lambda: not panel.running, timeout=30_000)
        assert win.state.calibration is not None and "toy" in win.state.calibration.steps, (
            panel.summary.toPlainText()
        )
        assert panel.bars["toy"].value() == 1000 and RUNS == ["toy", "toy"]
    finally:
        win.close()


def test_a_record_step_of_a_newer_schema_is_refused(toy: Step, tmp_path: Path) -> None:  # noqa: ARG001
    import h5py

    from lab4f.bench.config import BenchConfig
    from lab4f.bench.devices import Bench
    from lab4f.calibration import CalibrationRecord
    from lab4f.errors import CalibrationError

    with Bench(BenchConfig()).connect() as b:
        rec = run_calibration(b, ["toy"], out_dir=tmp_path)
    with h5py.File(rec.path, "r+") as f:
        f["steps/toy"].attrs["schema_version"] = 3
    with pytest.raises(
        CalibrationError, match="its toy step has schema version 3, this lab4f reads up to 2"
    ):
        CalibrationRecord.load(rec.path)
