"""A run without --program uses the program its calibration record was measured with, verified by hash."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lab4f.bench.compile import compile_checkpoint
from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.bench.hybrid import prepare, record_program
from lab4f.errors import MismatchError
from lab4f.optics import compile_bank
from lab4f.optics.registration import PlaneToCamera
from lab4f.spectral import KernelBank
from lab4f.storage import file_sha256


def _record(path, sha=None, where=None):
    return SimpleNamespace(
        program_path=str(path),
        program_sha256=sha or file_sha256(path),
        path=where,
        registration=PlaneToCamera.identity((512, 512)),
    )


def test_record_program_finds_verifies_and_refuses(tmp_path):
    prog = tmp_path / "cal" / "p.program.h5"
    prog.parent.mkdir()
    prog.write_bytes(b"program bytes")
    assert record_program(_record(prog)) == prog
    # an older record stored the path relative to where it was calibrated: found beside the record
    rel = _record("p.program.h5", file_sha256(prog), tmp_path / "cal" / "cal-1.h5")
    assert record_program(rel) == tmp_path / "cal" / "p.program.h5"
    changed = _record(prog, sha="0" * 64)
    with pytest.raises(MismatchError, match="has changed since.*--program"):
        record_program(changed)
    with pytest.raises(MismatchError, match="no longer exists.*lab4f calibrate tiles --program"):
        record_program(_record(tmp_path / "gone.h5", sha="0" * 64))


def test_run_without_program_uses_the_records_program_and_catches_another_checkpoint(
    trained_checkpoints, tmp_path
):
    # a stand-in record with a nominal (not measured) registration: no drift check at the start of the run
    with Bench(load_bench_config(None).model_copy(update={"drift_limit_px": None})) as bench:
        program, path, _ = compile_checkpoint(
            trained_checkpoints["student"], bench, tmp_path / "s.program.h5", progress=False
        )
        setup = prepare(bench, trained_checkpoints["student"], record=_record(path))
        assert setup.program_path == path and setup.program.channels == program.channels
        # a record measured with a program compiled from other kernels (same shapes): refused, not silently used
        other = compile_bank(
            KernelBank(torch.randn(program.channels, 1, program.kernel_size, program.kernel_size)),
            program.input_size,
            bench.geometry,
            camera_cells=bench.camera_cells(),
        )
        other.save(tmp_path / "other.program.h5")
        with pytest.raises(MismatchError, match="kernel values"):
            prepare(
                bench, trained_checkpoints["student"], record=_record(tmp_path / "other.program.h5")
            )


def test_time_multiplexed_run_keeps_every_program_frame_of_its_samples(
    trained_checkpoints, mnist_splits
):
    import numpy as np

    from lab4f.bench.run import run_dataset

    x, y = mnist_splits.test.tensors[:2]
    with Bench(load_bench_config(None)) as bench:
        setup = prepare(
            bench, trained_checkpoints["student"], compile_kwargs={"multiplex": "always"}
        )
        frames = len(setup.program.frames)
        assert frames > 1
        result = run_dataset(setup, x[:3], y[:3], samples=2)
        assert result.sample_frames.shape == (2, frames, *bench.camera.shape)
        assert result.sample_features.shape == (2, setup.program.channels, 28, 28)
        again = setup.features(result.sample_frames).numpy()
        np.testing.assert_allclose(result.sample_features, again, rtol=1e-6, atol=1e-6)
        assert np.abs(result.sample_features).max() > 0
