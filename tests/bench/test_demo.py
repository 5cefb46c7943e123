"""`lab4f demo`, the main job, at a small size: every stage runs, the table and files appear, and a second run
(checkpoints reused from the cache) gives the very same table — the simulated camera's noise is seeded."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.demo import DemoConfig, run_demo, seeded


def test_seeded_leaves_explicit_seeds_and_real_cameras_alone() -> None:
    assert seeded(None, 7).camera.settings["seed"] == 7
    own = BenchConfig(camera=DeviceConfig(driver="Simulated4fCamera", settings={"seed": 3}))
    assert seeded(own, 7).camera.settings["seed"] == 3
    real = BenchConfig(
        camera=DeviceConfig(driver="HarvestersCamera", settings={"cti_path": "x.cti"})
    )
    assert "seed" not in seeded(real, 7).camera.settings
    assert "seed" not in BenchConfig().camera.settings  # the default config itself is not changed


@pytest.mark.slow
def test_demo_runs_every_stage_and_is_reproducible(tmp_path) -> None:
    cfg = DemoConfig(
        widths=(4, 8),
        teacher_epochs=1,
        student_epochs=1,
        finetune_images=200,
        finetune_epochs=2,
        test_images=150,
        out=str(tmp_path / "demo"),
        cache=str(tmp_path / "cache"),
    )
    first = run_demo(cfg, progress=False)
    assert [r["path"] for r in first.rows] == [
        "digital",
        "digital",
        "optical (calibrated)",
        "optical + fine-tuned back end",
    ]
    assert {
        "train_teacher_s",
        "train_student_s",
        "calibrate_s",
        "optical_run_s",
        "finetune_s",
    } <= set(first.timings_s)
    assert first.run_metrics["dropped"] == 0 and first.run_metrics["n"] == 150
    assert (
        first.run_metrics["back_end"] == "fine-tuned"
        and first.calibrated_run_metrics["back_end"] == "as trained"
    )
    # each run's accuracy is the one its table row reports
    assert first.calibrated_run_metrics["optical_accuracy"] == first.rows[2]["accuracy"]
    assert first.run_metrics["optical_accuracy"] == first.rows[3]["accuracy"]
    for key in ("program", "calibration", "run", "run_calibrated", "table"):
        assert Path(first.files[key]).is_file(), key
    digital, optical = first.rows[1]["accuracy"], first.rows[2]["accuracy"]
    assert abs(optical - digital) <= 0.05, (
        first.rows
    )  # a 1-epoch student; the 1 pp claim is test_end_to_end's
    second = run_demo(cfg, progress=False)
    assert "train_teacher_s" not in second.timings_s  # reused from the cache
    assert json.dumps(second.rows) == json.dumps(first.rows)  # the same table, to the last image


def test_demo_refuses_a_display_too_small_before_compiling(tmp_path) -> None:
    from lab4f.bench.config import DeviceConfig
    from lab4f.errors import MismatchError

    cfg = DemoConfig(
        widths=(4, 8),
        teacher_epochs=1,
        student_epochs=1,
        test_images=10,
        out=str(tmp_path / "demo"),
        cache=str(tmp_path / "cache"),
    )
    bench = BenchConfig(
        display=DeviceConfig(driver="SimulatedDisplay", settings={"shape": (48, 48)})
    )
    with pytest.raises(
        MismatchError, match=r"display shows \(48, 48\) images but the inputs are \(28, 28\)"
    ):
        run_demo(cfg, bench, progress=False)
    assert not (tmp_path / "demo" / "student.program.h5").exists()  # refused before compiling
