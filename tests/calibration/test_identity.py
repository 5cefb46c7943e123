"""A record from one bench used on a bench set up differently is refused, naming what differs."""

from __future__ import annotations

import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.devices import Bench
from lab4f.calibration import run_calibration
from lab4f.calibration.record import CalibrationRecord
from lab4f.errors import MismatchError


def test_a_record_from_another_bench_is_refused_naming_the_differences(tmp_path) -> None:
    with Bench() as bench:
        rec = run_calibration(bench, ["camera"], out_dir=tmp_path)
    moved = BenchConfig(
        camera=DeviceConfig(
            driver="Simulated4fCamera",
            settings={
                "affine_rotation_deg": 3.0,
                "affine_scale": 1.05,
                "affine_shift_px": (10.0, 4.0),
            },
        )
    )
    with Bench(moved) as other:
        with pytest.raises(MismatchError) as err:
            CalibrationRecord.load(rec.path, bench=other)
        msg = str(err.value)
        assert "camera.affine_rotation_deg: recorded 0.8, now 3.0" in msg and "affine_scale" in msg
        assert "--force" in msg
        forced = CalibrationRecord.load(
            rec.path, bench=other, force=True
        )  # a warning, not a refusal
        assert forced.steps
    with Bench() as same:
        CalibrationRecord.load(rec.path, bench=same)  # the same bench: accepted
    lenses = BenchConfig(geometry={"focal_length_2_mm": 50.0})
    with Bench(lenses) as other, pytest.raises(MismatchError, match="geometry.focal_length_2_mm"):
        CalibrationRecord.load(rec.path, bench=other)


def test_lab4f_run_refuses_a_record_from_another_bench_and_force_lets_it_through(tmp_path) -> None:
    import json
    import subprocess
    import sys

    import torch

    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    with Bench() as bench:
        run_calibration(bench, ["camera"], out_dir=tmp_path / "cal")
    cfg = ModelConfig(
        kind="student", widths=(4,), kernel_size=3, image_size=28, detection="incoherent"
    )
    torch.manual_seed(0)
    save_checkpoint(
        tmp_path / "s.pt", build_model(cfg), make_metadata(cfg, dataset={"name": "mnist5k"})
    )
    moved = tmp_path / "moved.toml"
    moved.write_text(
        '[camera]\ndriver = "Simulated4fCamera"\nsettings = { affine_rotation_deg = 2.5 }\n'
    )

    def run(*extra: str) -> tuple[int, dict]:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "lab4f.cli",
                "run",
                "--checkpoint",
                str(tmp_path / "s.pt"),
                "--calibration",
                str(tmp_path / "cal"),
                "--config",
                str(moved),
                "--limit",
                "4",
                "--out",
                str(tmp_path / "r.h5"),
                "--json",
                *extra,
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,
        )
        assert proc.stdout.strip(), proc.stderr[-3000:]
        return proc.returncode, json.loads(proc.stdout.strip().splitlines()[-1])

    code, out = run()
    assert code != 0 and out["error"] == "MismatchError"
    assert "camera.affine_rotation_deg: recorded 0.8, now 2.5" in out["message"]
    code, out = run("--force")
    assert out.get("error") != "MismatchError", out  # the record is used, with a warning
