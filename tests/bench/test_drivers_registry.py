"""The driver registry names only device classes that exist; the README's real-bench config is the example file."""

from __future__ import annotations

import importlib
import re
import warnings
from pathlib import Path

import pytest

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import DRIVERS, build_device
from lab4f.errors import ConfigError, DeviceError

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "name", sorted(n for n, d in DRIVERS.items() if d.doc.startswith("slmsuite"))
)
def test_every_slmsuite_driver_is_a_class_slmsuite_ships(name: str) -> None:
    from slmsuite.hardware.cameras.camera import Camera
    from slmsuite.hardware.slms.slm import SLM

    module = re.search(r"\((hardware\.\w+\.\w+)\)", DRIVERS[name].doc).group(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # vendor SDKs are absent here; slmsuite warns on import
        cls = getattr(importlib.import_module(f"slmsuite.{module}"), name, None)
    assert isinstance(cls, type), f"slmsuite.{module} has no {name} class"
    assert issubclass(cls, SLM if DRIVERS[name].role == "slm" else Camera)


def test_a_driver_slmsuite_lacks_is_a_config_error_not_a_device_fault() -> None:
    from lab4f.bench.config import DeviceConfig
    from lab4f.bench.devices import Driver, _slmsuite

    DRIVERS["Nonexistent"] = Driver("slm", _slmsuite("slms.thorlabs", "Thorlabs"), "slmsuite test")
    try:
        with pytest.raises(ConfigError, match="has no Thorlabs class"):
            build_device("slm", DeviceConfig(driver="Nonexistent"), {})
    finally:
        del DRIVERS["Nonexistent"]
    with pytest.raises(ConfigError, match="unknown slm driver 'Thorlabs'"):
        build_device("slm", DeviceConfig(driver="Thorlabs"), {})


def test_readme_bench_config_is_the_example_file_and_validates() -> None:
    # the docs include the example file itself (docs/physics.md), so the two cannot drift apart
    assert "examples/lab_bench.toml" in (ROOT / "docs" / "physics.md").read_text()
    cfg = load_bench_config(ROOT / "examples" / "lab_bench.toml")
    for role in ("slm", "display", "camera", "light_source", "shutter"):
        dev = getattr(cfg, role)
        assert DRIVERS[dev.driver].role == role
    # the lab4f drivers' settings validate; opening them fails only because the hardware (or its SDK) is absent
    with pytest.raises(DeviceError, match="ScreenMirrored SLM failed to open.*SDK installed"):
        build_device("display", cfg.display, {})
    with pytest.raises(ConfigError, match="GenTL producer not found.*producer.cti"):
        build_device("camera", cfg.camera, {})
