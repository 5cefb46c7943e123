"""Any camera pylablib opens — Andor, pco, Hamamatsu, Photometrics, Thorlabs DCx/TSI, ... — from the bench config,
as slmsuite's :class:`~slmsuite.hardware.cameras.pylablib.PyLabLib` camera: no code, only settings::

    [camera]
    driver = "PyLabLibCamera"
    settings = { device = "Andor.AndorSDK3Camera", device_settings = { idx = 0 }, pitch_um = [6.5, 6.5] }

``device`` is the class's path under ``pylablib.devices`` (``Andor.AndorSDK3Camera`` is
``pylablib.devices.Andor.AndorSDK3Camera``); ``device_settings`` are its constructor's keyword arguments; ``dlls``
points pylablib at vendor DLLs (``pylablib.par["devices/dlls/<name>"]``, e.g. ``uc480``). pylablib is optional:
without it the driver says how to install it.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from lab4f.errors import ConfigError, DeviceError

logger = logging.getLogger(__name__)

_INSTALL = "pip install pylablib (and the camera vendor's SDK, which pylablib loads)"


class PyLabLibCameraSettings(BaseModel):
    """Which pylablib camera class to build, with what, and what pylablib does not report."""

    model_config = ConfigDict(extra="forbid")

    device: str = Field(
        description="class path under pylablib.devices, e.g. 'Andor.AndorSDK3Camera', "
        "'PCO.PCOSC2Camera', 'DCAM.DCAMCamera', 'Thorlabs.ThorlabsTLCamera', "
        "'uc480.UC480Camera'",
        pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$",
    )
    device_settings: dict[str, Any] = Field(
        default_factory=dict,
        description="keyword arguments of the pylablib class (idx, serial, ...)",
    )
    pitch_um: tuple[float, float] | None = Field(
        None, description="pixel pitch (x, y) in µm; pylablib does not report it"
    )
    bitdepth: int | None = Field(
        None,
        ge=1,
        le=32,
        description="bits per pixel the camera delivers; None = "
        "slmsuite's default of 8 (pylablib does not report it)",
    )
    dlls: dict[str, str] = Field(
        default_factory=dict,
        description="vendor DLL folders: pylablib.par"
        "['devices/dlls/<name>'] = path, e.g. {uc480 = 'C:/Program Files/Thorlabs/...'}",
    )


def _pylablib_class(device: str) -> type:
    try:
        importlib.import_module("pylablib")
    except ImportError as exc:
        raise ConfigError(
            f"driver PyLabLibCamera needs pylablib, which is not installed here: {_INSTALL}."
        ) from exc
    module, _, name = device.rpartition(".")
    try:
        mod = importlib.import_module(f"pylablib.devices.{module}")
    except ImportError as exc:
        raise ConfigError(
            f"pylablib has no device module {module!r} (pylablib.devices.{module}: {exc}); check "
            "'device' against pylablib's camera list, e.g. 'Andor.AndorSDK3Camera'."
        ) from exc
    cls = getattr(mod, name, None)
    if not isinstance(cls, type):
        offered = sorted(n for n in dir(mod) if n.endswith("Camera"))
        raise ConfigError(f"pylablib.devices.{module} has no class {name!r}; it offers {offered}.")
    return cls


def _slmsuite_wrapper() -> type:
    """slmsuite's PyLabLib class. slmsuite looks pylablib up once, when its module is first imported, and warns when
    it is missing; a pylablib installed (or imported) after that is handed to it here."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mod = importlib.import_module("slmsuite.hardware.cameras.pylablib")
    if getattr(mod, "ICamera", None) is None:
        mod.ICamera = importlib.import_module("pylablib.devices.interface.camera").ICamera
    return mod.PyLabLib


def PyLabLibCamera(settings: PyLabLibCameraSettings | None = None, **camera_kwargs: Any) -> Any:  # noqa: N802
    """Build the pylablib camera the settings name and return it wrapped in slmsuite's PyLabLib camera (with the
    settings and a ``settings_snapshot()``). ``camera_kwargs`` go to slmsuite's Camera."""
    if settings is None:
        raise ConfigError(
            "PyLabLibCamera needs settings naming the pylablib class, e.g. "
            'device = "Andor.AndorSDK3Camera"'
        )
    cls = _pylablib_class(settings.device)
    if settings.dlls:
        pll = importlib.import_module("pylablib")
        for name, path in settings.dlls.items():
            pll.par[f"devices/dlls/{name}"] = path
    try:
        device = cls(**settings.device_settings)
    except TypeError as exc:
        raise ConfigError(
            f"device_settings {sorted(settings.device_settings)} do not fit "
            f"pylablib.devices.{settings.device}: {exc}"
        ) from exc
    except Exception as exc:  # vendor SDKs raise anything
        raise DeviceError(
            f"pylablib.devices.{settings.device} failed to open ({type(exc).__name__}: {exc}): check "
            "that the camera is connected and powered, that no other program holds it, and that its "
            "vendor SDK is installed (or 'dlls' points at it).",
            device="camera",
        ) from exc
    wrapper = _lab4f_wrapper(_slmsuite_wrapper())
    kwargs = dict(camera_kwargs, pitch_um=settings.pitch_um)
    if settings.bitdepth is not None:
        kwargs["bitdepth"] = settings.bitdepth
    try:
        camera = wrapper(device, **kwargs)
    except BaseException:
        try:
            device.close()
        except Exception as exc:  # the error that stopped the wrap is the one to show
            logger.warning(
                "closing pylablib.devices.%s after a failed wrap: %s", settings.device, exc
            )
        raise
    camera.settings = settings
    return camera


def _lab4f_wrapper(base: type) -> type:
    """slmsuite's PyLabLib with the snapshot every lab4f device gives its records."""

    class LabPyLabLib(base):  # type: ignore[misc, valid-type]
        settings: PyLabLibCameraSettings

        def settings_snapshot(self) -> dict[str, Any]:
            snap: dict[str, Any] = {
                "driver": "PyLabLibCamera",
                **self.settings.model_dump(mode="json"),
            }
            snap["device_settings"] = repr(snap["device_settings"])  # flat, for HDF5 attributes
            snap["dlls"] = repr(snap["dlls"])
            snap.update(
                name=self.name,
                actual_width=int(self.shape[1]),
                actual_height=int(self.shape[0]),
                bitdepth=int(self.bitdepth),
                actual_exposure_s=float(self.exposure_s),
                actual_binning=tuple(int(b) for b in self.binning),
                actual_pitch_um=None
                if self.pitch_um is None
                else tuple(float(p) for p in self.pitch_um),
            )
            return snap

    LabPyLabLib.__name__ = LabPyLabLib.__qualname__ = "PyLabLibCamera"
    return LabPyLabLib
