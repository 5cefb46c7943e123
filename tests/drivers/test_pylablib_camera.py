"""PyLabLibCamera: pylablib cameras from the bench config through slmsuite's PyLabLib wrapper. pylablib is not
installed here: its absence is a ConfigError naming the install, and construction runs against a fake pylablib
package (the interface slmsuite's wrapper calls) put into sys.modules."""

from __future__ import annotations

import sys
import types
import warnings

import numpy as np
import pytest

from lab4f.bench.config import DeviceConfig
from lab4f.bench.devices import DRIVERS, build_device
from lab4f.bench.preflight import check_device
from lab4f.drivers.pylablib_camera import PyLabLibCamera, PyLabLibCameraSettings
from lab4f.errors import ConfigError, DeviceError

ANDOR = {"device": "Andor.AndorSDK3Camera", "device_settings": {"idx": 1}, "pitch_um": (6.5, 6.5)}


class FakeICamera:
    """pylablib.devices.interface.camera.ICamera: the base slmsuite's wrapper requires."""


class FakeAndorSDK3Camera(FakeICamera):
    """What slmsuite's PyLabLib calls on a pylablib camera, for a 64x48 sensor."""

    opened: list[FakeAndorSDK3Camera] = []

    def __init__(self, idx: int = 0, fail: bool = False) -> None:
        if fail:
            raise OSError("atcore.dll not found")
        self.idx, self.exposure_s, self.closed = idx, 0.01, False
        FakeAndorSDK3Camera.opened.append(self)

    def get_device_info(self):
        return ("Zyla", "VSC-01234", 1)

    def get_data_dimensions(self):
        return (48, 64)

    def get_roi(self):
        return (0, 64, 0, 48, 1, 1)

    def set_roi(self, **roi):
        self.roi = roi

    def get_exposure(self):
        return self.exposure_s

    def set_exposure(self, exposure_s):
        self.exposure_s = exposure_s

    def snap(self, timeout=None):
        return np.full((48, 64), 1000 + self.idx, dtype=np.uint16)

    def close(self):
        self.closed = True


@pytest.fixture
def fake_pylablib(monkeypatch):
    """A pylablib package with one Andor camera, and slmsuite's wrapper as it is when pylablib was missing at its
    import (ICamera None): the driver must hand pylablib to it."""
    with warnings.catch_warnings():  # slmsuite warns, at its first import, that pylablib is missing
        warnings.simplefilter("ignore")
        import slmsuite.hardware.cameras.pylablib as slm_pll

    pll = types.ModuleType("pylablib")
    pll.par = {}
    devices = types.ModuleType("pylablib.devices")
    andor = types.ModuleType("pylablib.devices.Andor")
    andor.AndorSDK3Camera = FakeAndorSDK3Camera
    interface = types.ModuleType("pylablib.devices.interface")
    camera = types.ModuleType("pylablib.devices.interface.camera")
    camera.ICamera = FakeICamera
    for name, mod in [
        ("pylablib", pll),
        ("pylablib.devices", devices),
        ("pylablib.devices.Andor", andor),
        ("pylablib.devices.interface", interface),
        ("pylablib.devices.interface.camera", camera),
    ]:
        monkeypatch.setitem(sys.modules, name, mod)
    monkeypatch.setattr(
        slm_pll, "ICamera", None
    )  # restored after the test, whatever the driver set
    FakeAndorSDK3Camera.opened = []
    return pll


def test_settings_validate_without_pylablib():
    s = PyLabLibCameraSettings(**ANDOR)
    assert s.device == "Andor.AndorSDK3Camera" and s.pitch_um == (6.5, 6.5) and s.bitdepth is None
    for bad in (
        {"device": "AndorSDK3Camera"},
        {"device": "Andor.AndorSDK3Camera()"},
        {**ANDOR, "exposure": 1},
        {**ANDOR, "bitdepth": 0},
    ):
        with pytest.raises(ValueError):
            PyLabLibCameraSettings(**bad)
    assert (
        check_device("camera", DeviceConfig(driver="PyLabLibCamera", settings=ANDOR), DRIVERS) == []
    )
    [finding] = check_device(
        "camera", DeviceConfig(driver="PyLabLibCamera", settings={"device": "Andor"}), DRIVERS
    )
    assert finding.level == "error" and "device" in finding.message


def test_missing_pylablib_is_a_config_error_naming_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pylablib", None)  # import fails as when it is not installed
    with pytest.raises(
        ConfigError,
        match=r"PyLabLibCamera needs pylablib, which is not installed here: pip install "
        r"pylablib",
    ):
        build_device("camera", DeviceConfig(driver="PyLabLibCamera", settings=ANDOR), {})


def test_built_from_the_config_and_wrapped_in_slmsuites_pylablib(fake_pylablib):
    from slmsuite.hardware.cameras.camera import Camera

    PyLabLib = sys.modules["slmsuite.hardware.cameras.pylablib"].PyLabLib  # noqa: N806

    cam = build_device(
        "camera",
        DeviceConfig(
            driver="PyLabLibCamera",
            settings={**ANDOR, "bitdepth": 16, "dlls": {"andor_sdk3": "C:/Andor"}},
        ),
        {},
    )
    try:
        [device] = FakeAndorSDK3Camera.opened
        assert (
            isinstance(cam, PyLabLib)
            and isinstance(cam, Camera)
            and cam.cam is device
            and device.idx == 1
        )
        assert fake_pylablib.par == {"devices/dlls/andor_sdk3": "C:/Andor"}
        assert cam.shape == (48, 64) and cam.bitdepth == 16 and tuple(cam.pitch_um) == (6.5, 6.5)
        assert cam.name == "Zyla_VSC-01234"
        assert int(cam.get_image().max()) == 1001
        cam.set_exposure(0.02)
        assert device.exposure_s == pytest.approx(0.02)
        snap = cam.settings_snapshot()
        assert snap["driver"] == "PyLabLibCamera" and snap["device"] == "Andor.AndorSDK3Camera"
        assert snap["device_settings"] == "{'idx': 1}" and snap[
            "actual_exposure_s"
        ] == pytest.approx(0.02)
        assert snap["actual_pitch_um"] == (6.5, 6.5) and snap["actual_width"] == 64
    finally:
        cam.close()
    assert device.closed


def test_a_wrong_class_settings_or_missing_sdk_say_which(fake_pylablib):
    with pytest.raises(
        ConfigError,
        match=r"pylablib.devices.Andor has no class 'AndorSDK2Camera'; it offers "
        r"\['AndorSDK3Camera'\]",
    ):
        PyLabLibCamera(PyLabLibCameraSettings(device="Andor.AndorSDK2Camera"))
    with pytest.raises(ConfigError, match=r"pylablib has no device module 'PCO'"):
        PyLabLibCamera(PyLabLibCameraSettings(device="PCO.PCOSC2Camera"))
    with pytest.raises(
        ConfigError, match=r"device_settings \['serial'\] do not fit pylablib.devices.Andor"
    ):
        PyLabLibCamera(
            PyLabLibCameraSettings(device="Andor.AndorSDK3Camera", device_settings={"serial": "x"})
        )
    with pytest.raises(
        DeviceError, match=r"failed to open \(OSError: atcore.dll not found\).*vendor SDK"
    ):
        PyLabLibCamera(
            PyLabLibCameraSettings(device="Andor.AndorSDK3Camera", device_settings={"fail": True})
        )
    with pytest.raises(ConfigError, match="needs settings naming the pylablib class"):
        PyLabLibCamera()
