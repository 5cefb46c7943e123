"""Bench config: TOML/YAML, validation messages that name the field, unknown drivers listed."""

import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig, load_bench_config
from lab4f.bench.devices import DRIVERS, Bench, build_device, drivers_for
from lab4f.errors import ConfigError


def test_default_is_the_simulated_bench() -> None:
    cfg = load_bench_config(None)
    assert cfg.slm.driver == "SimulatedFourierSLM" and cfg.camera.driver == "Simulated4fCamera"
    assert cfg.light_source is not None and cfg.light_source.settings["max_power_mw"] == 5.0


def test_toml_and_yaml_configs_load(tmp_path) -> None:
    toml = tmp_path / "bench.toml"
    toml.write_text(
        'name = "lab A"\n[camera]\ndriver = "HarvestersCamera"\nsettings = { serial = "1" }\n'
        "[geometry]\nfocal_length_2_mm = 150.0\n"
    )
    cfg = load_bench_config(toml)
    assert cfg.name == "lab A" and cfg.camera.settings == {"serial": "1"}
    assert cfg.geometry.focal_length_2_mm == 150.0
    yml = tmp_path / "bench.yaml"
    yml.write_text("mode: incoherent\nslm:\n  driver: Meadowlark\n  settings: {verbose: false}\n")
    assert load_bench_config(yml).slm.driver == "Meadowlark"


def test_invalid_config_names_the_field_and_allowed_values(tmp_path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('mode = "holographic"\n[geometry]\nfocal_length_1_mm = -5\n')
    with pytest.raises(ConfigError) as exc:
        load_bench_config(bad)
    msg = str(exc.value)
    assert "mode" in msg and "incoherent|coherent" in msg and "geometry.focal_length_1_mm" in msg
    typo = tmp_path / "typo.toml"
    typo.write_text("[camera]\ndriver = 'HarvestersCamera'\nsetings = {}\n")
    with pytest.raises(ConfigError, match="camera.setings"):
        load_bench_config(typo)
    with pytest.raises(ConfigError, match="does not exist"):
        load_bench_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[camera\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_bench_config(broken)


def test_unknown_driver_lists_the_available_ones() -> None:
    with pytest.raises(ConfigError) as exc:
        build_device("camera", DeviceConfig(driver="Nikon"), {})
    for name in drivers_for("camera"):
        assert name in str(exc.value)
    assert "HarvestersCamera" in drivers_for("camera") and "Meadowlark" in drivers_for("slm")
    assert all(
        d.role in ("slm", "display", "camera", "light_source", "shutter") for d in DRIVERS.values()
    )


def test_driver_settings_are_validated_by_the_driver_model() -> None:
    with pytest.raises(ConfigError, match="max_power_mw"):
        build_device(
            "light_source", DeviceConfig(driver="LightSource", settings={"max_power_mw": -1}), {}
        )


def test_missing_visa_resource_says_what_was_looked_for() -> None:
    cfg = BenchConfig(
        light_source=DeviceConfig(
            driver="LightSource",
            settings={"visa_library": "@lab4f-sim", "resource": "GPIB0::9::INSTR"},
        )
    )
    from lab4f.errors import DeviceError

    with pytest.raises(DeviceError, match="GPIB0::9::INSTR"):
        build_device("light_source", cfg.light_source, {})


def test_bench_without_connect_explains() -> None:
    from lab4f.errors import DeviceError

    with pytest.raises(DeviceError, match="connect"):
        _ = Bench().camera


@pytest.mark.parametrize("name", ["bench48.toml", "lab_bench.toml"])
def test_example_configs_validate(name) -> None:
    """The shipped examples parse, name known drivers, and their lab4f drivers' settings validate."""
    import importlib
    from pathlib import Path

    from lab4f.bench.config import validate_settings

    cfg = load_bench_config(Path(__file__).parents[2] / "examples" / name)
    models = {
        "SimulatedDisplay": ("sim_display", "SimulatedDisplaySettings"),
        "SLMDisplay": ("slm_display", "SLMDisplaySettings"),
        "HarvestersCamera": ("harvesters_camera", "HarvestersCameraSettings"),
        "LightSource": ("instruments", "LightSourceSettings"),
        "Shutter": ("instruments", "ShutterSettings"),
    }
    for role in ("slm", "display", "camera", "light_source", "shutter"):
        dev = getattr(cfg, role)
        assert dev.driver in DRIVERS and DRIVERS[dev.driver].role == role
        if dev.driver in models:
            module, cls = models[dev.driver]
            model = getattr(importlib.import_module(f"lab4f.drivers.{module}"), cls)
            validate_settings(model, dev.settings, role)
