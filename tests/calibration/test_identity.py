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
    moved = BenchConfig(camera=DeviceConfig(driver="Simulated4fCamera", settings={
        "affine_rotation_deg": 3.0, "affine_scale": 1.05, "affine_shift_px": (10.0, 4.0)}))
    with Bench(moved) as other:
        with pytest.raises(MismatchError) as err:
            CalibrationRecord.load(rec.path, bench=other)
        msg = str(err.value)
        assert "camera.affine_rotation_deg: recorded 0.8, now 3.0" in msg and "affine_scale" in msg
        assert "--force" in msg
        forced = CalibrationRecord.load(rec.path, bench=other, force=True)  # a warning, not a refusal
        assert forced.steps
    with Bench() as same:
        CalibrationRecord.load(rec.path, bench=same)  # the same bench: accepted
    lenses = BenchConfig(geometry={"focal_length_2_mm": 50.0})
    with Bench(lenses) as other, pytest.raises(MismatchError, match="geometry.focal_length_2_mm"):
        CalibrationRecord.load(rec.path, bench=other)
