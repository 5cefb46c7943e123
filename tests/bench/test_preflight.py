"""Preflight: settings checked against their drivers before any device opens; silent defaults named; external
drivers by "package.module:Class"; `lab4f bench check` on a bench without its vendor SDKs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig, load_bench_config
from lab4f.bench.devices import Bench, check_config
from lab4f.bench.preflight import accepted_keywords, default_warnings
from lab4f.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_a_setting_that_no_constructor_takes_is_refused_before_any_device_opens(
    monkeypatch,
) -> None:
    """Meadowlark(verbose=False) reaches slmsuite's SLM.__init__, which rejects it — after the SDK loaded. The
    preflight walks the __init__ chain through **kwargs and refuses it first."""
    import slmsuite.hardware.slms.meadowlark as mdl

    cfg = BenchConfig(
        slm=DeviceConfig(driver="Meadowlark", settings={"verbose": False, "wav_um": 0.633})
    )
    findings = check_config(cfg)
    assert [f.role for f in findings if f.level == "error"] == ["slm"]
    assert (
        "verbose" in findings[0].message and "wav_um" not in findings[0].message.split("takes")[0]
    )
    calls = []
    monkeypatch.setattr(mdl.Meadowlark, "__init__", lambda self, *a, **k: calls.append(k))
    with pytest.raises(ConfigError, match="verbose"):
        Bench(cfg).connect()
    assert calls == []  # nothing opened


def test_accepted_keywords_walks_kwargs_to_the_base_class() -> None:
    from slmsuite.hardware.slms.meadowlark import Meadowlark

    names = accepted_keywords(Meadowlark)
    assert (
        names is not None
        and {"slm_number", "lut_path", "wav_um", "settle_time_s", "bitdepth"} <= names
    )

    class Anything:
        def __init__(self, **kwargs: object) -> None:
            pass

    assert (
        accepted_keywords(Anything) is None
    )  # a chain ending in **kwargs accepts anything: not checkable


def test_lab4f_drivers_are_checked_by_their_settings_models() -> None:
    cfg = BenchConfig(camera=DeviceConfig(driver="Simulated4fCamera", settings={"exposure": 0.01}))
    findings = check_config(cfg)
    assert findings and findings[0].role == "camera" and "exposure" in findings[0].message
    assert check_config(load_bench_config(EXAMPLES / "realistic_timing.toml")) == []


def test_silent_defaults_are_named_with_the_value_in_use() -> None:
    cfg = BenchConfig(slm=DeviceConfig(driver="Meadowlark", settings={}))
    text = " ".join(f.message for f in default_warnings(cfg))
    assert "1 µm" in text and "0.3 s" in text
    assert default_warnings(BenchConfig()) == []  # the simulated bench states its own values


def test_external_driver_by_module_and_class(tmp_path, monkeypatch) -> None:
    (tmp_path / "mylab_drivers.py").write_text(
        "class BeamBlock:\n"
        "    def __init__(self, port='COM1'):\n"
        "        self.port, self.is_open, self.connected = port, False, False\n"
        "    def connect(self):\n"
        "        self.connected = True\n"
        "    def known(self, name):\n"
        "        return getattr(self, name)\n"
        "    def close(self):\n"
        "        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg = BenchConfig(
        shutter=DeviceConfig(driver="mylab_drivers:BeamBlock", settings={"port": "COM7"})
    )
    with Bench(cfg) as bench:
        assert bench.shutter.port == "COM7" and bench.shutter.connected
    bad = BenchConfig(
        shutter=DeviceConfig(driver="mylab_drivers:BeamBlock", settings={"baud": 9600})
    )
    assert "baud" in check_config(bad)[0].message
    with pytest.raises(ConfigError, match="cannot import"):
        Bench(BenchConfig(shutter=DeviceConfig(driver="nosuchpackage.mod:X"))).connect()


def _cli(*args: str) -> tuple[int, dict]:
    proc = subprocess.run(
        [sys.executable, "-m", "lab4f.cli", *args], capture_output=True, text=True, timeout=300
    )
    return proc.returncode, json.loads(
        proc.stdout.strip().splitlines()[-1], parse_constant=lambda c: 1 / 0
    )


def test_bench_check_on_the_lab_example_names_the_missing_sdk() -> None:
    """examples/lab_bench.toml on a machine without the Meadowlark SDK: a clear message about the SDK, not about a
    setting, and nothing half-opened."""
    code, out = _cli("bench", "check", "--config", str(EXAMPLES / "lab_bench.toml"), "--json")
    assert code != 0 and out["ok"] is False
    assert "SDK" in out["message"] and "setting" not in out["message"]
    code, out = _cli("bench", "check", "--json")
    assert (
        code == 0
        and out["ok"]
        and set(out["devices"]) == {"slm", "display", "camera", "light_source", "shutter"}
    )
    code, out = _cli("bench", "drivers", "--json")
    assert code == 0 and any(
        d["driver"] == "HarvestersCamera" and d["importable"] for d in out["drivers"]
    )


def test_a_student_for_another_detection_is_refused_at_compile_and_run(tmp_path) -> None:
    """A student trained for coherent detection went through compile, calibrate and run on the incoherent bench and
    scored chance; now compile and prepare refuse it, saying which."""
    import torch

    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.hybrid import prepare
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.errors import MismatchError
    from lab4f.models import ModelConfig, build_model

    cfg = ModelConfig(
        kind="student", widths=(4,), kernel_size=3, image_size=28, detection="coherent"
    )
    path = tmp_path / "coherent.pt"
    torch.manual_seed(0)
    save_checkpoint(path, build_model(cfg), make_metadata(cfg))
    with Bench() as bench:
        with pytest.raises(MismatchError, match="coherent detection.*incoherent mode"):
            compile_checkpoint(path, bench, tmp_path / "p.h5", progress=False)
        with pytest.raises(MismatchError, match="coherent detection"):
            prepare(bench, path)


def test_vendor_files_in_the_slm_settings_are_loaded_and_recorded(tmp_path) -> None:
    """A vendor phase-correction file named in [slm] settings passes the preflight (it is not a constructor
    argument), is loaded through slmsuite once the SLM is open, and is recorded with its hash."""
    import numpy as np
    from PIL import Image

    path = tmp_path / "correction.png"
    Image.fromarray(np.zeros((512, 512), np.uint8)).save(path)
    cfg = BenchConfig(
        slm=DeviceConfig(
            driver="SimulatedFourierSLM", settings={"phase_correction_path": str(path)}
        )
    )
    assert check_config(cfg) == []
    with Bench(cfg) as bench:
        snap = bench.info()["devices"]["slm"]["settings"]
    assert snap["phase_correction_path"] == str(path) and len(snap["phase_correction_sha256"]) == 64
    missing = BenchConfig(
        slm=DeviceConfig(
            driver="SimulatedFourierSLM",
            settings={"phase_correction_path": str(tmp_path / "nope.png")},
        )
    )
    with pytest.raises(ConfigError, match="phase_correction_path"):
        Bench(missing).connect()
