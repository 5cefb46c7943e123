"""GenICam camera through harvesters (any GenTL producer .cti), as a slmsuite Camera.

Nodes a device lacks (viky.cti has no ExposureTime or Gain) are recorded in ``missing_nodes`` and
handled in software instead of failing. Frames are always fetched with a timeout, copied before the
buffer is queued back, and a fetch timeout becomes DeviceTimeout.
"""

from __future__ import annotations

import importlib.resources
import logging
import re
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from genicam.gentl import TimeoutException
from harvesters.core import Harvester, ImageAcquirer
from pydantic import BaseModel, ConfigDict, Field
from slmsuite.hardware.cameras.camera import Camera

from lab4f.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceTimeout

logger = logging.getLogger(__name__)

#: Exposure nodes in the order GenICam SFNC and older firmware name them; both count microseconds.
_EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")


def default_cti_path() -> str:
    """The simulated GenTL producer shipped in the genicam wheel (three 'Viky' devices)."""
    return str(importlib.resources.files("genicam") / "viky.cti")


class HarvestersCameraSettings(BaseModel):
    """Which GenTL producer and device to open, and how to set it up."""

    model_config = ConfigDict(extra="forbid")

    cti_path: str | None = Field(None, description="GenTL producer file; None = genicam's simulated viky.cti")
    serial: str | None = Field(None, description="device serial number; None = first device found")
    exposure_s: float = Field(0.01, gt=0)
    gain_db: float | None = Field(None, description="None leaves the device's gain untouched")
    pixel_format: str | None = Field("Mono8", description="PFNC name, e.g. Mono8, Mono12, Mono16; None = keep")
    roi: tuple[int, int, int, int] | None = Field(None, description="(x, y, width, height) px on the sensor")
    frame_rate_hz: float | None = Field(None, gt=0, description="AcquisitionFrameRate, where the node exists")
    timeout_s: float = Field(1.0, gt=0, description="longest wait for one frame")
    capture_attempts: int = Field(1, ge=1, description="fetch retries before a DeviceTimeout is raised")
    pitch_um: tuple[float, float] | None = None


class CameraIdentity(NamedTuple):
    """Who the camera says it is (from the producer's device info)."""

    vendor: str
    model: str
    serial: str


class HarvestersCamera(Camera):
    """A GenICam camera opened by serial number through a GenTL producer."""

    def __init__(self, settings: HarvestersCameraSettings | None = None, **camera_kwargs: Any) -> None:
        """Open and configure the device, start acquisition; ``camera_kwargs`` go to slmsuite's Camera."""
        self.settings = settings or HarvestersCameraSettings()
        self._harvester: Harvester | None = None
        self._ia: ImageAcquirer | None = None
        self.missing_nodes: list[str] = []
        self._exposure_node: str | None = None
        self._software_exposure_s = self.settings.exposure_s
        self.cti_path = resolve_cti_path(self.settings.cti_path)
        try:
            self._open()
            self._configure()
            width, height = self._node_value("Width"), self._node_value("Height")
            self.pixel_format = str(self._node_value("PixelFormat") or "Mono8")
            self._ia.start()
            super().__init__(
                (int(width), int(height)),
                bitdepth=_bitdepth(self.pixel_format),
                pitch_um=self.settings.pitch_um,
                name=f"{self.identity.model}-{self.identity.serial}",
                exposure_bounds_s=self._exposure_bounds_s(),
                capture_attempts=self.settings.capture_attempts,
                **camera_kwargs,
            )
        except BaseException:
            self.close()
            raise

    # --- opening and configuring -------------------------------------------------------------------------

    def _open(self) -> None:
        self._harvester = Harvester()
        self._harvester.add_file(self.cti_path)
        self._harvester.update()
        infos = self._harvester.device_info_list
        serials = [str(info.serial_number) for info in infos]
        if not serials:
            raise DeviceDisconnected(
                f"GenTL producer {self.cti_path} lists no devices: connect the camera, check that no other "
                "program holds it, or check that the .cti matches the camera's interface."
            )
        wanted = self.settings.serial
        if wanted is not None and wanted not in serials:
            raise DeviceDisconnected(
                f"No camera with serial {wanted!r} on {self.cti_path}; serials present: {serials}. "
                "Fix 'serial' in the camera settings."
            )
        index = 0 if wanted is None else serials.index(wanted)
        info = infos[index]
        self.identity = CameraIdentity(str(info.vendor), str(info.model), serials[index])
        self._ia = self._harvester.create(index)
        logger.info("Opened %s via %s", self.identity, self.cti_path)

    def _configure(self) -> None:
        """Apply the settings node by node; absent optional nodes are recorded, not fatal."""
        s = self.settings
        if s.pixel_format is not None:
            self._set_enum("PixelFormat", s.pixel_format)
        if s.roi is not None:
            self._set_roi(*s.roi)
        for auto in ("ExposureAuto", "GainAuto"):  # manual control, where the camera offers it
            if self._has_node(auto) and "Off" in getattr(self._node(auto), "symbolics", ()):
                self._set_enum(auto, "Off")
        self._exposure_node = next((n for n in _EXPOSURE_NODES if self._has_node(n)), None)
        if self._exposure_node is None:
            self.missing_nodes.append("ExposureTime")
            logger.warning("%s has no ExposureTime node: exposure_s is kept in software only.", self.identity)
        self._set_exposure_hw(s.exposure_s)
        if s.gain_db is not None:
            self._set_number("Gain", s.gain_db)
        if s.frame_rate_hz is not None:
            self._set_number("AcquisitionFrameRate", s.frame_rate_hz)

    def _set_roi(self, x: int, y: int, width: int, height: int) -> None:
        # Offsets to zero first so that the new width/height is always within the sensor.
        for node in ("OffsetX", "OffsetY"):
            if self._has_node(node):
                self._set_number(node, 0)
        self._set_number("Width", width)
        self._set_number("Height", height)
        for node, value in (("OffsetX", x), ("OffsetY", y)):
            if value != 0 or self._has_node(node):
                self._set_number(node, value)

    def _node(self, name: str) -> Any:
        return getattr(self._ia.remote_device.node_map, name)

    def _has_node(self, name: str) -> bool:
        return hasattr(self._ia.remote_device.node_map, name)

    def _node_value(self, name: str) -> Any:
        return self._node(name).value if self._has_node(name) else None

    def _set_number(self, name: str, value: float) -> None:
        if not self._has_node(name):
            self.missing_nodes.append(name)
            logger.warning("%s has no %s node; the setting %s is ignored.", self.identity, name, value)
            return
        node = self._node(name)
        low, high = getattr(node, "min", None), getattr(node, "max", None)
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(f"Camera {name}={value} is outside the device range [{low}, {high}].")
        try:
            node.value = type(node.value)(value)
        except Exception as exc:  # genicam raises its own exception family
            raise DeviceError(f"Camera refused {name}={value}: {exc}", device=self.name) from exc

    def _set_enum(self, name: str, symbol: str) -> None:
        if not self._has_node(name):
            self.missing_nodes.append(name)
            logger.warning("%s has no %s node; %s=%s is ignored.", self.identity, name, name, symbol)
            return
        node = self._node(name)
        available = list(getattr(node, "symbolics", ()))
        if available and symbol not in available:
            raise ConfigError(f"Camera {name}={symbol!r} is not offered by {self.identity.model}; "
                              f"choose one of {available}.")
        node.value = symbol

    def _exposure_bounds_s(self) -> tuple[float, float] | None:
        if self._exposure_node is None:
            return None
        node = self._node(self._exposure_node)
        return (float(node.min) * 1e-6, float(node.max) * 1e-6)

    # --- slmsuite hooks ------------------------------------------------------------------------------------

    def _get_exposure_hw(self) -> float:
        if self._exposure_node is None:
            return self._software_exposure_s
        return float(self._node(self._exposure_node).value) * 1e-6

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._software_exposure_s = float(exposure_s)
        if self._exposure_node is not None:
            self._node(self._exposure_node).value = float(exposure_s) * 1e6

    def _get_image_hw(self, timeout_s: float) -> np.ndarray:
        """One frame, copied out of the producer's buffer before it is queued back."""
        ia = self._acquirer()
        # harvesters waits forever on timeout=0: never pass it on.
        timeout_s = float(timeout_s) if timeout_s and timeout_s > 0 else self.settings.timeout_s
        try:
            with ia.fetch(timeout=timeout_s) as buffer:
                frame = component_to_array(buffer.payload.components[0])
        except TimeoutException as exc:
            running = "running" if ia.is_acquiring() else "STOPPED (call start_acquisition())"
            raise DeviceTimeout(
                f"No frame from camera {self.identity.serial} within {timeout_s:g} s (acquisition {running}). "
                f"Check trigger mode and cable, that exposure_s={self.exposure_s:g} fits in the timeout, "
                "or raise timeout_s in the camera settings.", device=self.name
            ) from exc
        return frame

    def get_image(self, timeout_s: float | None = None, **kwargs: Any) -> np.ndarray:
        """slmsuite's get_image, with the timeout defaulting to the settings' timeout_s."""
        return super().get_image(timeout_s=self.settings.timeout_s if timeout_s is None else timeout_s, **kwargs)

    @staticmethod
    def info(verbose: bool = True, cti_path: str | None = None) -> list[str]:
        """Serial numbers of the devices a producer offers (default: viky.cti)."""
        with Harvester() as harvester:
            harvester.add_file(resolve_cti_path(cti_path))
            harvester.update()
            serials = [str(info.serial_number) for info in harvester.device_info_list]
        if verbose:
            print("\n".join(serials))
        return serials

    # --- acquisition control and lifecycle -------------------------------------------------------------

    def _acquirer(self) -> ImageAcquirer:
        if self._ia is None:
            raise DeviceDisconnected("Camera is closed; create a new HarvestersCamera to reopen it.", device=self.name)
        return self._ia

    @property
    def is_acquiring(self) -> bool:
        return self._ia is not None and bool(self._ia.is_acquiring())

    def start_acquisition(self) -> None:
        if not self._acquirer().is_acquiring():
            self._acquirer().start()

    def stop_acquisition(self) -> None:
        if self._acquirer().is_acquiring():
            self._acquirer().stop()

    @property
    def configured_frame_rate_hz(self) -> float | None:
        """The device's AcquisitionFrameRate, or None where the node does not exist."""
        value = self._node_value("AcquisitionFrameRate") if self._ia is not None else None
        return None if value is None else float(value)

    def close(self) -> None:
        """Stop acquisition, release the device and the producer; safe to call twice."""
        ia, harvester = getattr(self, "_ia", None), getattr(self, "_harvester", None)
        self._ia, self._harvester = None, None
        try:
            if ia is not None:
                if ia.is_acquiring():
                    ia.stop()
                ia.destroy()
        finally:
            if harvester is not None:
                harvester.reset()

    def __enter__(self) -> HarvestersCamera:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings_snapshot(self) -> dict[str, Any]:
        """Requested settings plus what the device actually runs at, as flat JSON-friendly values."""
        snap: dict[str, Any] = {"driver": type(self).__name__, **self.settings.model_dump()}
        snap.update(
            cti_path=self.cti_path,
            vendor=self.identity.vendor, model=self.identity.model, serial=self.identity.serial,
            actual_pixel_format=self.pixel_format, actual_width=self.shape[1], actual_height=self.shape[0],
            actual_exposure_s=self.exposure_s,
            exposure_source="node" if self._exposure_node else "software",
            actual_frame_rate_hz=self.configured_frame_rate_hz,
            missing_nodes=",".join(self.missing_nodes),
        )
        return snap


def resolve_cti_path(cti_path: str | None) -> str:
    """The producer file to load; ConfigError naming the path if it does not exist."""
    path = default_cti_path() if cti_path is None else str(Path(cti_path).expanduser())
    if not Path(path).is_file():
        raise ConfigError(
            f"GenTL producer not found: {path}. Set 'cti_path' to your camera vendor's .cti file "
            "(or leave it empty for the simulated viky.cti)."
        )
    return path


def component_to_array(component: Any) -> np.ndarray:
    """Copy a harvesters image component into (height, width) or (height, width, channels)."""
    height, width = int(component.height), int(component.width)
    channels = max(1, int(round(component.num_components_per_pixel)))
    data = component.data
    if data is None or data.size < height * width * channels:
        raise DeviceError(f"Incomplete frame: {0 if data is None else data.size} values for "
                          f"{height}x{width}x{channels} ({component.data_format}).")
    # Rows may carry padding; keep the first width*channels values of each row.
    rows = data[: (data.size // height) * height].reshape(height, -1)[:, : width * channels]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return rows.reshape(shape).copy()


def _bitdepth(pixel_format: str) -> int:
    """Bits per channel from a PFNC name (Mono8 -> 8, Mono12p -> 12, BayerRG16 -> 16, RGBa8 -> 8)."""
    numbers = re.findall(r"\d+", pixel_format)
    return int(numbers[-1]) if numbers else 8
