"""Fault rehearsal without Python: ``[faults.ROLE]`` in the bench config and ``LAB4F_FAULTS`` for one run arm the
simulated devices' FaultPlans (and the SCPI instruments') when the bench connects; a bad key or value is a
ConfigError naming it; `lab4f run` then stops with exit code 3 and names the device."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from lab4f.bench.config import BenchConfig, load_bench_config
from lab4f.bench.devices import Bench
from lab4f.bench.faults import apply_faults, faults_from_env
from lab4f.cli import main
from lab4f.errors import ConfigError


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


def _run(capsys, student: Path, out: Path, *extra: str) -> tuple[int, dict]:
    code = main(
        ["run", "--checkpoint", str(student), "--limit", "60", "--out", str(out), *extra, "--json"]
    )
    return code, json.loads(capsys.readouterr().out)


def test_faults_table_in_the_config_arms_the_device(
    tmp_path: Path, student: Path, capsys, monkeypatch, instant_bench_toml: str
) -> None:
    monkeypatch.delenv("LAB4F_FAULTS", raising=False)
    config = (
        tmp_path / "bench.toml"
    )  # instant timing: every camera frame is an input's (no stale frames skipped)
    config.write_text(
        instant_bench_toml
        + "[faults.camera]\ndisconnect_after_n = 30\n[faults.slm]\nslm_write_failure_after_n = 5\n"
    )
    cfg = load_bench_config(config)
    assert cfg.faults == {
        "camera": {"disconnect_after_n": 30},
        "slm": {"slm_write_failure_after_n": 5},
    }
    with Bench(cfg) as bench:
        assert bench.devices["camera"].faults.disconnect_after_n == 30
        assert bench.devices["slm"].faults.slm_write_failure_after_n == 5
        assert bench.devices["display"].faults.disconnect_after_n is None
    code, payload = _run(capsys, student, tmp_path / "run.h5", "--config", str(config))
    assert code == 3 and payload["ok"] is False and payload["stop_reason"] == "device_error"
    assert payload["error_role"] == "camera" and payload["error_device"] == "sim-4f-camera"
    assert payload["processed"] == 30 and "DeviceDisconnected" in payload["error"]
    with h5py.File(tmp_path / "run.h5") as f:
        assert len(f["labels"]) == 30  # the partial run is kept


def test_lab4f_faults_for_one_run(tmp_path: Path, student: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv(
        "LAB4F_FAULTS", "camera.disconnect_after_n=30,slm.slm_write_failure_after_n=2"
    )
    assert load_bench_config(None).faults == {
        "camera": {"disconnect_after_n": 30},
        "slm": {"slm_write_failure_after_n": 2},
    }
    code, payload = _run(capsys, student, tmp_path / "a.h5")
    assert code == 3 and payload["error_role"] == "camera" and payload["processed"] == 30
    # the SLM refuses its first write (the program's phase): the run cannot start, and says which device
    monkeypatch.setenv("LAB4F_FAULTS", "slm.slm_write_failure_after_n=0")
    code, payload = _run(capsys, student, tmp_path / "b.h5")
    assert code == 3 and payload["error"] == "DeviceError" and payload["error_role"] == "slm"
    assert "sim-fourier-slm" in payload["message"] and "nothing was saved" in payload["message"]
    assert not (tmp_path / "b.h5").exists()
    # an instrument that stops answering (SCPI exchanges counted from connect)
    monkeypatch.setenv("LAB4F_FAULTS", "light_source.disconnect_after_n=2")
    code, payload = _run(capsys, student, tmp_path / "c.h5")
    assert (
        code == 3
        and payload["error"] == "DeviceDisconnected"
        and payload["error_role"] == "light_source"
    )
    # the environment adds to the config's table, field by field
    config = tmp_path / "bench.toml"
    config.write_text("[faults.camera]\ndisconnect_after_n = 30\ndrop_every_n = 7\n")
    monkeypatch.setenv("LAB4F_FAULTS", "camera.disconnect_after_n=5")
    assert load_bench_config(config).faults == {
        "camera": {"disconnect_after_n": 5, "drop_every_n": 7}
    }


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("camera.disconect_after_n=3", "'disconect_after_n' is not a fault"),
        ("camera.disconnect_after_n=soon", "valid integer"),
        ("camera.drop_every_n=1", "drop_every_n=1 would drop every frame"),
        ("kamera.disconnect=true", "'kamera' is not a bench role"),
        ("camera=3", "is not role.field=value"),
        ("shutter.drop_every_n=3", "do not apply to an SCPI instrument"),
    ],
)
def test_bad_lab4f_faults_is_a_config_error_naming_it(
    value: str, says: str, capsys, monkeypatch
) -> None:
    with pytest.raises(ConfigError, match=says):
        faults_from_env(value)
    monkeypatch.setenv("LAB4F_FAULTS", value)
    assert main(["bench", "info", "--json"]) == 2
    payload = json.loads(capsys.readouterr().out)
    assert (
        payload["error"] == "ConfigError"
        and "LAB4F_FAULTS" in payload["message"]
        and says in payload["message"]
    )


def test_bad_faults_table_names_the_config_and_the_key(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("LAB4F_FAULTS", raising=False)
    config = tmp_path / "bench.toml"
    config.write_text("[faults.camera]\ndisconnect_after = 30\n")
    assert main(["bench", "info", "--config", str(config), "--json"]) == 2
    msg = json.loads(capsys.readouterr().out)["message"]
    assert (
        str(config) in msg
        and "[faults.camera]" in msg
        and "'disconnect_after' is not a fault" in msg
    )


def test_faults_only_for_devices_that_can_inject_them() -> None:
    with pytest.raises(ConfigError, match="cannot inject faults"):
        apply_faults({"camera": object()}, {"camera": {"disconnect": True}})
    with pytest.raises(ConfigError, match="has no display connected"):
        apply_faults({}, {"display": {"disconnect": True}})
    assert BenchConfig().faults == {}  # nothing armed by default
