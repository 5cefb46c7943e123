"""Per-step provenance in the record: when each step was measured and through which versions of the steps it builds
on, so that a record loaded from disk (not only one calibrated in this session) knows its stale steps."""

from __future__ import annotations

import logging
from pathlib import Path

import h5py

from lab4f.bench.config import BenchConfig
from lab4f.bench.devices import Bench
from lab4f.calibration import CalibrationRecord, latest_record, run_calibration
from lab4f.calibration.base import Provenance, StepResult


def test_a_record_loaded_from_disk_knows_a_step_measured_before_its_upstream_was_rerun(
    tmp_path: Path, caplog
) -> None:  # noqa: ANN001
    with Bench(BenchConfig()).connect() as b:
        first = run_calibration(b, ["camera", "fourier", "registration"], out_dir=tmp_path)
        assert first.stale_steps() == {}
        reg = first.steps["registration"].provenance
        assert (
            reg is not None
            and reg.upstream["fourier"] == first.steps["fourier"].provenance.measured
        )
        assert (
            reg.upstream["wavefront"] is None
        )  # not in the record when the registration was measured
        run_calibration(
            b, "fourier", out_dir=tmp_path
        )  # the registration now predates the Fourier calibration
    loaded = latest_record(tmp_path)  # fresh from disk: nothing of this session is known to it
    assert loaded.path != first.path
    assert loaded.stale_steps() == {"registration": ["fourier"]}
    assert loaded.summary()["stale"] == {"registration": ["fourier"]}
    assert (
        loaded.steps["camera"].provenance == first.steps["camera"].provenance
    )  # kept from the base, as saved
    # building on it with another partial run that does not re-measure the registration says so
    with (
        Bench(BenchConfig()).connect() as b,
        caplog.at_level(logging.WARNING, logger="lab4f.calibration.runner"),
    ):
        again = run_calibration(b, "camera", out_dir=tmp_path, base=loaded)
    assert (
        "already has stale steps" in caplog.text
        and "registration (measured before fourier" in caplog.text
    )
    assert again.stale_steps() == {"registration": ["fourier"]}
    with Bench(BenchConfig()).connect() as b:
        run_calibration(b, "registration", out_dir=tmp_path)  # measured again: up to date
    assert latest_record(tmp_path).stale_steps() == {}


def test_a_step_added_upstream_after_makes_its_dependents_stale() -> None:
    rec = CalibrationRecord(
        steps={
            "fourier": StepResult(
                "fourier", provenance=Provenance("2026-01-01T00:00:00.000001+00:00")
            ),
            "registration": StepResult(
                "registration",
                provenance=Provenance(
                    "2026-01-01T00:00:01.000000+00:00",
                    {"fourier": "2026-01-01T00:00:00.000001+00:00", "wavefront": None},
                ),
            ),
            "wavefront": StepResult(
                "wavefront", provenance=Provenance("2026-01-01T00:00:02.000000+00:00")
            ),
        }
    )
    assert rec.stale_steps() == {"registration": ["wavefront"]}


def test_old_records_without_provenance_load_with_a_warning(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    rec = CalibrationRecord(
        steps={"camera": StepResult("camera", {"q": 1.0}), "gains": StepResult("gains", {"q": 1.0})}
    )
    path = rec.save(tmp_path / "cal-20250101-000000.h5")
    with h5py.File(path, "r") as f:
        assert "provenance" not in f["steps/camera"].attrs  # as a record of an older lab4f
    with caplog.at_level(logging.WARNING, logger="lab4f.calibration.record"):
        loaded = CalibrationRecord.load(path)
    assert loaded.steps["gains"].provenance is None and loaded.stale_steps() == {}
    assert loaded.provenance_unknown() == ["gains"]
    assert "whether they are stale cannot be checked" in caplog.text
    # a damaged provenance attribute is unknown too, never a crash
    with h5py.File(path, "r+") as f:
        f["steps/gains"].attrs["provenance"] = '{"measured": 3}'
    assert CalibrationRecord.load(path).steps["gains"].provenance is None
