"""Bring your own kernels: a bank trained elsewhere (.npy) compiles, calibrates and captures through the CLI."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from lab4f.cli import main
from lab4f.errors import MismatchError


def strict_json(text: str) -> dict:
    return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c} in the output"))


def signed_bank(c: int = 64, k: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((c, 1, k, k)).astype(np.float32)


def test_capture_without_calibration_averages_and_time_multiplexes(tmp_path, capsys) -> None:
    """A small bank on 2 multiplexed SLM frames, 2 frames averaged per input: shapes, counts and the file."""
    np.save(tmp_path / "k.npy", signed_bank(4, 5))
    program = tmp_path / "k.program.h5"
    assert main(["compile", str(tmp_path / "k.npy"), "--kernels-per-frame", "2", "--iterations", "10",
                 "--out", str(program), "--json"]) == 0
    assert strict_json(capsys.readouterr().out)["frames"] == 2
    out = tmp_path / "cap.h5"
    assert main(["capture", "--program", str(program), "--limit", "5", "--average", "2", "--out", str(out),
                 "--json"]) == 0
    captured = capsys.readouterr()
    m = strict_json(captured.out)
    assert "no calibration record" in captured.err
    assert m["n"] == 5 and m["labelled"] == 5 and m["average"] == 2 and m["program_frames"] == 2
    assert m["frames_per_input"] == 4 and m["camera_frames"] == 20 and m["sync"]["paired"] == 20
    assert m["inputs_per_s"] > 0 and len(m["channel_r2"]) == 4 and m["hologram_error_vs_bank"] < 0.1
    with h5py.File(out) as f:
        assert f.attrs["kind"] == "capture"
        assert f["features"].shape == f["digital"].shape == (5, 4, 28, 28)
        assert list(f["indices"][()]) == [0, 1, 2, 3, 4] and (f["labels"][()] >= 0).all()
        np.testing.assert_allclose(f["bank"][()], signed_bank(4, 5))
        assert json.loads(f.attrs["metrics"])["n"] == 5 and f.attrs["program"] == str(program.resolve())
    assert main(["capture", "--program", str(program), "--limit", "2", "--out", str(out), "--json"]) == 2
    assert "exists" in strict_json(capsys.readouterr().out)["message"]


def test_prepare_without_checkpoint_needs_a_program() -> None:
    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import prepare

    with Bench() as bench, pytest.raises(MismatchError, match="compiled program"):
        prepare(bench, None)


@pytest.mark.slow
def test_a_64_kernel_npy_bank_compiles_calibrates_and_captures_through_the_cli(tmp_path, capsys) -> None:
    np.save(tmp_path / "kernels.npy", signed_bank())
    program = tmp_path / "kernels.program.h5"
    assert main(["compile", str(tmp_path / "kernels.npy"), "--out", str(program), "--json"]) == 0
    compiled = strict_json(capsys.readouterr().out)
    assert compiled["channels"] == 64 and compiled["kernel_size"] == 6
    assert main(["calibrate", "all", "--program", str(program), "--out", str(tmp_path / "cal"), "--json"]) == 0
    calibrated = strict_json(capsys.readouterr().out)
    assert "gains" in calibrated["steps"]
    out = tmp_path / "features.h5"
    assert main(["capture", "--program", str(program), "--calibration", str(tmp_path / "cal"), "--limit", "16",
                 "--out", str(out), "--json"]) == 0
    m = strict_json(capsys.readouterr().out)
    print(f"64 kernels 6×6, {compiled['frames']} frame(s): capture of 16 test digits: feature error "
          f"{m['relative_error']:.3f}, channel R² min {m['r2_min']:.3f} median {m['r2_median']:.3f}; gains step "
          f"held-out R² min {calibrated['steps']['gains']['quality']['min_r2']:.3f}")
    assert m["n"] == 16 and len(m["channel_r2"]) == 64 and m["sync"]["stale"] == 0
    assert m["relative_error"] < 0.6 and m["r2_median"] > 0.7
    with h5py.File(out) as f:
        assert f["features"].shape == (16, 64, 28, 28) and f.attrs["calibration"]
