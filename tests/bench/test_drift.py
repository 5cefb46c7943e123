"""At the start of a run the registration is checked: a bench that moved since calibration is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lab4f.bench.devices import Bench
from lab4f.bench.hybrid import prepare
from lab4f.calibration import run_calibration
from lab4f.checkpoint import make_metadata, save_checkpoint
from lab4f.errors import MismatchError
from lab4f.models import ModelConfig, build_model
from lab4f.optics.program import OpticalProgram


def test_a_bench_that_moved_since_calibration_is_refused(tmp_path) -> None:
    from lab4f.bench.compile import compile_checkpoint

    cfg = ModelConfig(
        kind="student", widths=(4,), kernel_size=3, image_size=28, detection="incoherent"
    )
    torch.manual_seed(0)
    ckpt = tmp_path / "s.pt"
    save_checkpoint(ckpt, build_model(cfg), make_metadata(cfg))
    with Bench() as bench:
        _, program_path, _ = compile_checkpoint(ckpt, bench, tmp_path / "p.h5", progress=False)
        record = run_calibration(
            bench,
            ["camera", "fourier", "registration", "tiles"],
            program=OpticalProgram.load(program_path),
            program_path=program_path,
            out_dir=tmp_path / "cal",
        )
        setup = prepare(bench, ckpt, record=record, program=program_path)
        held = setup.meta["registration_drift"]
        assert held["median_px"] < 0.5 and held["tiles"] == 8
        cam = bench.devices["camera"]
        cam.set_affine(cam.M, np.ravel(cam.b) + np.array([2.5, -1.5]))  # the camera was bumped
        with pytest.raises(
            MismatchError, match=r"moved since it was calibrated.*x \+2\.\d.*y -1\.\d"
        ):
            prepare(bench, ckpt, record=record, program=program_path)
