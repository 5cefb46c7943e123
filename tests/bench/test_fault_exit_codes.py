"""A command a device fault stops fails visibly: exit code 3, ``"ok": false``, ``stop_reason``, the device (and its
bench role) named — and keeps what it can: `lab4f run` still writes its partial run file, `lab4f calibrate` leaves
the previous record as it was. The faults are armed from Python here (mid-run, after the bench is set up); the CLI's
own fault rehearsal (LAB4F_FAULTS, ``[faults.ROLE]``) is tested in tests/test_fault_campaign.py."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from lab4f.cli import main


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    cfg = ModelConfig(kind="student", widths=(4, 8), detection="incoherent")
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path_factory.mktemp("ck") / "student.pt",
        build_model(cfg),
        make_metadata(cfg, dataset={"name": "mnist5k", "split_seed": 0}),
    )


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


def _disconnect_camera_after(bench, frames: int) -> None:
    camera = bench.devices["camera"]
    camera.faults.disconnect_after_n = camera.frames_delivered + frames


def test_run_stopped_by_a_camera_fault_exits_3_and_keeps_the_partial_run(
    student, tmp_path, monkeypatch, capsys
) -> None:
    import lab4f.bench.run as run_module

    inner = run_module.run_dataset

    def faulty(setup, *args, **kwargs):
        _disconnect_camera_after(
            setup.bench, 6
        )  # once the stream runs: some inputs processed, then the fault
        return inner(setup, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_dataset", faulty)
    out = tmp_path / "run.h5"
    code = main(["run", "--checkpoint", str(student), "--limit", "40", "--out", str(out), "--json"])
    payload = _json(capsys)
    assert code == 3
    assert payload["ok"] is False and payload["stop_reason"] == "device_error"
    assert payload["error_device"] == "sim-4f-camera" and payload["error_role"] == "camera"
    assert "DeviceDisconnected" in payload["error"] and payload["run_file"] == str(out)
    assert str(out) in payload["message"] and "partial run file" in payload["message"]
    assert 0 < payload["processed"] < 40
    with h5py.File(out) as f:  # the partial run is readable
        assert len(f["labels"]) == payload["n"] == payload["processed"]
    # in words: the error on stderr names the device and the file
    code = main(
        ["run", "--checkpoint", str(student), "--limit", "40", "--out", str(tmp_path / "r2.h5")]
    )
    err = capsys.readouterr().err
    assert code == 3 and "camera (sim-4f-camera)" in err and "r2.h5" in err


def test_calibrate_stopped_by_a_device_fault_exits_3_and_keeps_the_previous_record(
    tmp_path, monkeypatch, capsys
) -> None:
    import lab4f.calibration.runner as runner
    from lab4f.calibration import latest_record, list_records

    records = tmp_path / "records"
    assert main(["calibrate", "camera", "--out", str(records), "--json"]) == 0
    _json(capsys)
    before = list_records(records)
    inner = runner.run_calibration

    def faulty(bench, *args, **kwargs):
        _disconnect_camera_after(bench, 3)  # inside the camera step
        return inner(bench, *args, **kwargs)

    monkeypatch.setattr(runner, "run_calibration", faulty)
    code = main(["calibrate", "camera", "--out", str(records), "--json"])
    payload = _json(capsys)
    assert code == 3 and payload["ok"] is False and payload["error"] == "DeviceDisconnected"
    assert payload["stop_reason"] == "device_error" and payload["error_device"] == "sim-4f-camera"
    assert payload["error_role"] == "camera"
    assert "nothing was saved" in payload["message"] and str(records) in payload["message"]
    assert list_records(records) == before and latest_record(records).path == before[-1]


def test_finetune_stopped_by_a_device_fault_exits_3(student, tmp_path, monkeypatch, capsys) -> None:
    import lab4f.bench.hybrid as hybrid

    inner = hybrid.capture_features

    def faulty(setup, *args, **kwargs):
        _disconnect_camera_after(setup.bench, 4)
        return inner(setup, *args, **kwargs)

    monkeypatch.setattr(hybrid, "capture_features", faulty)
    out = tmp_path / "back.pt"
    code = main(
        [
            "finetune",
            "--checkpoint",
            str(student),
            "--train-images",
            "16",
            "--limit",
            "16",
            "--epochs",
            "1",
            "--out",
            str(out),
            "--json",
        ]
    )
    payload = _json(capsys)
    assert code == 3 and payload["ok"] is False and payload["stop_reason"] == "device_error"
    assert payload["error_role"] == "camera" and "nothing was saved" in payload["message"]
    assert not out.exists()
