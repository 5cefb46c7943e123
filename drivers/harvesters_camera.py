"""GenICam camera through harvesters (any GenTL producer .cti), as a slmsuite Camera that knows its frames.

Nodes a device lacks (viky.cti has no ExposureTime or Gain) are recorded in ``missing_nodes`` and
handled in software instead of failing. Frames are always fetched with a timeout (harvesters waits forever
on ``timeout=0``), copied before the buffer is queued back, and every genicam/harvesters exception becomes a
:class:`~lab4f.errors.DeviceError` (``DeviceTimeout``, ``DeviceDisconnected``) naming the device and the fix.

**A linear sensor**, where the nodes exist: ``GammaEnable`` off (or ``Gamma`` = 1), every ``LUTEnable`` off,
``ExposureAuto``/``GainAuto``/``BlackLevelAuto`` off, ``BlackLevel`` as configured (default: left as it is), and
``DeviceTemperature`` read into every settings snapshot (so calibration and run files say how warm the sensor
was). ROI sizes and offsets are moved to the nearest value their node takes (``min + k·inc``). Binning
(``BinningHorizontal``/``BinningVertical``, set from the settings at open) is slmsuite's hardware binning: the
camera's ``binning`` reads the nodes — also a binning a previous program left — and its ``pitch_um`` is the
sensor's pitch times it. ``exposure_multiple_of_s`` keeps every exposure a whole number of periods of a display that
flickers (a DMD's or PWM-dimmed monitor's refresh), so each frame integrates the same light.

Beside slmsuite's ``get_image()`` the camera is a :class:`~lab4f.drivers.frames.FrameSource`:

- ``read_frame(timeout_s)``: the next queued frame as a :class:`~lab4f.drivers.frames.Frame` — pixels, frame
  ID, exposure start on the host clock, completeness;
- ``drain()``: every frame already queued (a flush that really empties the queue; ``flush()`` uses it —
  slmsuite's own flush fetches two frames, which leaves a third stale one with GenTL's default three
  buffers in ``OldestFirst`` mode);
- ``trigger_mode`` / ``trigger()``, ``frame_period_s``, ``clock_uncertainty_s``.

Why this matters: a free-running camera keeps exposing while nobody fetches. With ``OldestFirst`` (GenTL's
default) the queue fills with the first ``buffer_count`` frames after a pause and later frames are lost, so
the next ``buffer_count`` fetches return frames exposed long ago.

**Frame IDs** come from the buffer (GenTL ``BUFFER_INFO_FRAMEID``, ``frame_id_source == "buffer"``); a
producer that does not fill it gets a host counter (``"host_counter"``, which cannot show lost frames). IDs
are kept increasing across stop/start (a device that restarts its counter is rebased). A gap in the IDs is
counted in ``frames_lost``.

**Device time** (``timestamp_source``): the buffer's ``timestamp_ns`` (``"device_ns"``); else its raw
``timestamp`` in ticks of ``TimestampTickFrequency`` / ``GevTimestampTickFrequency`` / the device module's
timestamp frequency, or nanoseconds assumed where none is known (``"device_ticks"``, logged); else — viky.cti
has no timestamps at all — ``frame_id × 1/AcquisitionFrameRate`` for a free-running camera whose frame IDs
count every exposed frame, including those lost for want of a buffer (``"frame_id"``, verified on viky);
else nothing (``"host"``, below). The buffer timestamp is taken to mark the exposure start
(``timestamp_at`` says otherwise).

**Device → host clock** (``clock_sync``):

- ``"latch"``: ``TimestampLatch`` + ``TimestampLatchValue`` (or ``GevTimestampControlLatch`` +
  ``GevTimestampValue``) read between two ``time.perf_counter()`` calls, refreshed every ``clock_resync_s``;
  uncertainty: half the bracket plus 100 ppm drift over the refresh interval.
- ``"fetch"`` (no latch nodes, or the ``frame_id`` clock): every fetched frame gives an upper bound on the
  offset, ``host time the fetch returned − device start − exposure`` (its exposure ended before it was
  fetched); the offset used is the smallest bound among the last 32 frames and the last frame that arrived
  while we waited (the queue was empty). The bias is one-sided: ``start_s`` can only be LATER than the true
  start, by the readout + transfer + delivery latency of the best frame, at most ``clock_uncertainty_s``
  (``clock_margin_s``, default one frame period, plus 2 ms of polling). The bias is the other way only by
  clock drift within the window (viky's frame_id clock: its real period is ~0.3 % longer than the nominal
  one, a few ms), or where the exposure set in software is longer than the device's real one (viky: it has
  no exposure). So a frame is fresh after ``t`` if ``start_s - clock_uncertainty_s >= t``.
- ``"host"`` (no device time): a frame that arrived while we waited, or within 2 ms of a moment the queue
  was seen empty, starts at ``host return time − exposure`` (same one-sided bias); any other queued frame
  cannot be dated and gets ``start_s = -inf`` (never fresh).

Incomplete buffers: harvesters 1.4 discards buffers GenTL marks incomplete inside ``fetch()`` (queues them
back and emits ``INCOMPLETE_BUFFER``), so they never reach ``read_frame``: they are counted in
``frames_incomplete`` (through that callback) and show as gaps (``frames_lost``). A buffer marked complete
whose pixel data is too short is returned with ``complete=False`` (the missing pixels zero) and counted.
"""

from __future__ import annotations

import importlib.resources
import logging
import math
import re
import threading
import time
from collections import deque
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple

import genicam.genapi as genapi
import genicam.gentl as gentl
import numpy as np
from harvesters.core import Callback, Harvester, ImageAcquirer
from pydantic import BaseModel, ConfigDict, Field
from slmsuite.hardware.cameras.camera import Camera

from lab4f.drivers.frames import Frame
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceError, DeviceTimeout, Lab4fError

logger = logging.getLogger(__name__)

#: Exposure nodes in the order GenICam SFNC and older firmware name them; both count microseconds.
_EXPOSURE_NODES = ("ExposureTime", "ExposureTimeAbs")
#: Trigger delay nodes (SFNC, older firmware), microseconds.
_TRIGGER_DELAY_NODES = ("TriggerDelay", "TriggerDelayAbs")
#: (latch command, latched value) node pairs: SFNC, then GigE Vision.
_LATCH_NODES = (
    ("TimestampLatch", "TimestampLatchValue"),
    ("GevTimestampControlLatch", "GevTimestampValue"),
)
#: Tick frequency nodes (Hz) for device timestamps counted in ticks.
_TICK_FREQUENCY_NODES = ("TimestampTickFrequency", "GevTimestampTickFrequency")
#: harvesters polls GenTL's new-buffer event every 1 ms: a fetch returns up to this long after a frame arrived.
_POLL_LATENCY_S = 0.002
#: Frames whose clock samples are kept (drift tracking vs. a long memory of good samples).
_CLOCK_WINDOW = 32
#: A crystal's drift allowance for the latch mapping between refreshes.
_DRIFT = 1e-4
#: gentl errors that mean the device or its link is gone, not that one request failed.
_GONE = (
    gentl.InvalidHandleException,
    gentl.NotInitializedException,
    gentl.ClosedException,
    gentl.IoException,
    gentl.AccessDeniedException,
    gentl.ResourceInUseException,
)
_GENICAM_ERRORS = (gentl.GenericException, genapi.GenericException)

TriggerMode = Literal["off", "software", "hardware"]


def default_cti_path() -> str:
    """The simulated GenTL producer shipped in the genicam wheel (three 'Viky' devices)."""
    return str(importlib.resources.files("genicam") / "viky.cti")


class HarvestersCameraSettings(BaseModel):
    """Which GenTL producer and device to open, and how to set it up."""

    model_config = ConfigDict(extra="forbid")

    cti_path: str | None = Field(
        None, description="GenTL producer file; None = genicam's simulated viky.cti"
    )
    serial: str | None = Field(None, description="device serial number; None = first device found")
    exposure_s: float = Field(
        0.01,
        gt=0,
        description="exposure (ExposureTime node in µs; software-only where the node is missing)",
    )
    gain_db: float | None = Field(None, description="None leaves the device's gain untouched")
    pixel_format: str | None = Field(
        "Mono8", description="PFNC name, e.g. Mono8, Mono12, Mono16; None = keep"
    )
    roi: tuple[int, int, int, int] | None = Field(
        None, description="(x, y, width, height) px on the sensor"
    )
    frame_rate_hz: float | None = Field(
        None, gt=0, description="AcquisitionFrameRate, where the node exists"
    )
    timeout_s: float = Field(1.0, gt=0, description="longest wait for one frame")
    capture_attempts: int = Field(
        1, ge=1, description="fetch retries before a DeviceTimeout is raised"
    )
    pitch_um: tuple[float, float] | None = Field(
        None,
        description="pixel pitch (x, y) in µm of the unbinned sensor "
        "(the camera's pitch_um is this times its binning)",
    )
    binning: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]] | None = Field(
        None,
        description="(horizontal, vertical): the BinningHorizontal/BinningVertical nodes; None = the device's",
    )
    black_level: float | None = Field(
        None, description="BlackLevel node (the device's unit, usually DN); None = leave it"
    )
    exposure_multiple_of_s: float | None = Field(
        None,
        gt=0,
        description="round every exposure to a whole multiple of this period, e.g. the input display's "
        "refresh period (1/60 s), so a DMD or PWM-dimmed display does not flicker into the data; None = as asked",
    )
    trigger_mode: TriggerMode = Field(
        "off",
        description="off: free-running (TriggerMode=Off where the node exists); software: "
        "TriggerSelector=FrameStart, TriggerMode=On, TriggerSource=Software, one frame per trigger(); hardware: "
        "TriggerSource=trigger_line. Cameras without the trigger nodes (viky.cti) only run 'off': synchronise "
        "them with the settle or marker sync policy",
    )
    trigger_line: str | None = Field(
        None, description="hardware trigger: the TriggerSource, e.g. 'Line1'"
    )
    trigger_activation: str | None = Field(
        None,
        description="hardware trigger: TriggerActivation, e.g. RisingEdge, FallingEdge, AnyEdge, "
        "LevelHigh; None = the device's setting",
    )
    trigger_delay_s: float = Field(
        0.0,
        ge=0,
        description="triggered modes: delay from the trigger to the "
        "exposure (TriggerDelay node, µs); 0 leaves the node untouched",
    )
    buffer_handling: str | None = Field(
        None,
        description="the data stream's StreamBufferHandlingMode, e.g. OldestFirst (GenTL's default: a full "
        "queue loses NEW frames), OldestFirstOverwrite, NewestOnly; None = the producer's default",
    )
    buffer_count: int | None = Field(
        None,
        ge=1,
        description="buffers announced to the producer (harvesters' "
        "num_buffers, set before acquisition starts); None = harvesters' default (3)",
    )
    drain_timeout_s: float = Field(
        0.002,
        gt=0,
        description="drain(): a fetch waiting this long without a frame means the queue is empty",
    )
    timestamp_source: Literal["auto", "device", "frame_id", "host"] = Field(
        "auto",
        description="device time of a frame: device = the buffer's timestamp; frame_id = frame ID / "
        "AcquisitionFrameRate (free-running cameras without timestamps, e.g. viky.cti); host = none, frames are "
        "dated by when they arrive; auto = the first of these the camera offers",
    )
    timestamp_at: Literal["exposure_start", "exposure_end"] = Field(
        "exposure_start",
        description="which instant the device's buffer timestamps mark (vendor-dependent)",
    )
    clock_margin_s: float | None = Field(
        None,
        ge=0,
        description="longest exposure end -> frame returned by fetch (readout, transfer, delivery) for "
        "the fetch-based clock mapping; None = one frame period (0.1 s where the period is unknown)",
    )
    clock_resync_s: float = Field(
        10.0,
        gt=0,
        description="refresh the device->host clock latch and the nominal frame rate this often",
    )


class CameraIdentity(NamedTuple):
    """Who the camera says it is (from the producer's device info)."""

    vendor: str
    model: str
    serial: str


class _RawFrame(NamedTuple):
    """What one fetch returned, read out of the buffer before it was queued back."""

    image: np.ndarray
    complete: bool
    raw_id: int | None
    timestamp_s: float | None
    t_call: float
    t_return: float
    prompt: bool  # the frame arrived while the fetch waited (the queue was empty when it began)


class _QueueEmpty(Exception):
    """drain(): the short fetch timed out."""


class _IncompleteCounter(Callback):
    """harvesters' INCOMPLETE_BUFFER callback: the buffer was discarded inside fetch()."""

    def __init__(self, camera: HarvestersCamera) -> None:
        self._camera = camera

    def emit(self, context: Any = None) -> None:
        self._camera.frames_incomplete += 1


class HarvestersCamera(Camera):
    """A GenICam camera opened by serial number through a GenTL producer (see the module docstring)."""

    def __init__(
        self, settings: HarvestersCameraSettings | None = None, **camera_kwargs: Any
    ) -> None:
        """Open and configure the device, start acquisition; ``camera_kwargs`` go to slmsuite's Camera."""
        self.settings = settings or HarvestersCameraSettings()
        self._harvester: Harvester | None = None
        self._ia: ImageAcquirer | None = None
        self._initialised = False
        self._lock = threading.RLock()
        self._device_name = "HarvestersCamera"
        self.missing_nodes: list[str] = []
        #: the PixelFormat entries the camera offers (preflight warns about Mono8 when 10/12 bits are offered)
        self.pixel_formats_offered: tuple[str, ...] = ()
        #: what the linearity setup found and did: gamma ("off", 1.0, or None: no such node), LUTs (False, or None)
        self.gamma_in_use: str | float | None = None
        self.lut_enabled: bool | None = None
        self._exposure_node: str | None = None
        self._software_exposure_s = self.settings.exposure_s
        # frame bookkeeping
        self.frames_lost = 0
        self.frames_incomplete = 0
        self.last_frame_index = -1
        self.last_frame: Frame | None = None
        self.last_trigger_s: float | None = None
        self._frame_id_source: str | None = None  # "buffer" | "host_counter"
        self._ts_kind: str | None = None  # "ns" | "ticks" | "none"
        self._timestamp_source: str | None = (
            None  # resolved: device_ns | device_ticks | frame_id | host
        )
        self._tick_hz: float | None = None
        self._tick_hz_assumed = False
        self._latch: tuple[str, str] | None = None
        self._latch_rejected = False
        self._nominal_period_s: float | None = None
        self._reset_acquisition_state()
        self.cti_path = resolve_cti_path(self.settings.cti_path)
        try:
            self._open()
            self._configure()
            self._configure_stream()
            self._configure_trigger()
            self._configure_clock()
            width, height = self._node_value("Width"), self._node_value("Height")
            self.pixel_format = str(self._node_value("PixelFormat") or "Mono8")
            bin_x, bin_y = self._get_binning_hw()
            self._start()
            super().__init__(
                (
                    int(width) * bin_x,
                    int(height) * bin_y,
                ),  # slmsuite: the unbinned region; shape = it / binning
                bitdepth=_bitdepth(self.pixel_format),
                pitch_um=self.settings.pitch_um,  # the sensor's: slmsuite's pitch_um multiplies it by the binning
                name=self._device_name,
                exposure_bounds_s=self._exposure_bounds_s(),
                capture_attempts=self.settings.capture_attempts,
                **camera_kwargs,
            )
            self._initialised = True
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
        self._device_name = f"{self.identity.model}-{self.identity.serial}"
        self._ia = self._harvester.create(index)
        self._ia.add_callback(ImageAcquirer.Events.INCOMPLETE_BUFFER, _IncompleteCounter(self))
        logger.info("Opened %s via %s", self.identity, self.cti_path)

    def _configure(self) -> None:
        """Apply the settings node by node; absent optional nodes are recorded, not fatal."""
        s = self.settings
        self.pixel_formats_offered = tuple(self._symbolics("PixelFormat"))
        if s.pixel_format is not None:
            self._set_enum("PixelFormat", s.pixel_format)
        self._configure_binning()  # before the ROI: binning changes the sizes the ROI nodes take
        if s.roi is not None:
            self._set_roi(*s.roi)
        for auto in (
            "ExposureAuto",
            "GainAuto",
            "BlackLevelAuto",
        ):  # manual control, where the camera offers it
            if self._has_node(auto) and "Off" in self._symbolics(auto):
                self._set_enum(auto, "Off")
        self._configure_linearity()
        self._exposure_node = next((n for n in _EXPOSURE_NODES if self._has_node(n)), None)
        if self._exposure_node is None:
            self.missing_nodes.append("ExposureTime")
            logger.warning(
                "%s has no ExposureTime node: exposure_s is kept in software only.", self.identity
            )
        self._set_exposure_hw(s.exposure_s)
        if s.gain_db is not None:
            self._set_number("Gain", s.gain_db)
        if s.frame_rate_hz is not None:
            self._set_number("AcquisitionFrameRate", s.frame_rate_hz)

    def _configure_binning(self) -> None:
        b = self.settings.binning
        if b is None:
            return
        for name, value in zip(("BinningHorizontal", "BinningVertical"), b, strict=True):
            if self._has_node(name):
                self._set_number(name, value)
            elif value != 1:
                raise ConfigError(
                    f"Camera {self.identity.model} has no {name} node, so binning={tuple(b)} is "
                    "impossible (and its pixel pitch would be wrong); remove binning from the settings."
                )

    def _configure_linearity(self) -> None:
        """Counts proportional to light: gamma and every LUT off, the black level as configured."""
        if self._has_node("GammaEnable"):
            self._write(self._node("GammaEnable"), False, "GammaEnable")
            self.gamma_in_use = "off"
        elif self._has_node("Gamma"):
            self._set_number("Gamma", 1.0)
            self.gamma_in_use = float(self._node_value("Gamma"))
        if self._has_node("LUTEnable"):
            for selector in self._symbolics("LUTSelector") or [
                None
            ]:  # each LUT (luminance, red, ...) has its own
                if selector is not None:
                    self._set_enum("LUTSelector", selector)
                self._write(self._node("LUTEnable"), False, "LUTEnable")
            self.lut_enabled = False
        if self.settings.black_level is not None:
            if "All" in self._symbolics("BlackLevelSelector"):
                self._set_enum("BlackLevelSelector", "All")
            self._set_number("BlackLevel", self.settings.black_level)

    def _on_increment(self, name: str, value: int) -> int:
        """The value nearest ``value`` that node ``name`` takes (``min + k·inc``, within its range); one outside the
        range is left for the range check to refuse."""
        if not self._has_node(name):
            return value
        node = self._node(name)
        inc = int(getattr(node, "inc", 1) or 1)
        low, high = getattr(node, "min", None), getattr(node, "max", None)
        if inc <= 1 or low is None or high is None or not low <= value <= high:
            return value
        low, high = int(low), int(high)
        snapped = min(
            low + math.floor((value - low) / inc + 0.5) * inc, low + (high - low) // inc * inc
        )
        if snapped != value:
            logger.warning(
                "%s: %s=%d is not a multiple of its increment %d; using %d.",
                self._device_name,
                name,
                value,
                inc,
                snapped,
            )
        return snapped

    def _configure_stream(self) -> None:
        """Buffer handling and count: both only take effect before acquisition starts."""
        s, ia = self.settings, self._ia
        if s.buffer_handling is not None:
            nm = ia.data_streams[0].node_map
            if not hasattr(nm, "StreamBufferHandlingMode"):
                raise ConfigError(
                    f"The data stream of camera {self.identity.model} has no StreamBufferHandlingMode node, so "
                    f"buffer_handling={s.buffer_handling!r} cannot be set; leave buffer_handling empty and rely on "
                    "drain() before each fresh frame."
                )
            node = nm.StreamBufferHandlingMode
            offered = list(getattr(node, "symbolics", ()))
            if s.buffer_handling not in offered:
                raise ConfigError(
                    f"buffer_handling={s.buffer_handling!r} is not offered by the data stream of "
                    f"camera {self.identity.model}; choose one of {offered}."
                )
            self._write(node, s.buffer_handling, "StreamBufferHandlingMode")
        if s.buffer_count is not None:
            minimum = int(ia.min_num_buffers)
            if s.buffer_count < minimum:
                raise ConfigError(
                    f"buffer_count={s.buffer_count} is below the producer's minimum of {minimum} "
                    f"buffers; set buffer_count >= {minimum}."
                )
            ia.num_buffers = int(s.buffer_count)

    def _configure_trigger(self) -> None:
        s = self.settings
        mode = s.trigger_mode
        if mode != "hardware" and (s.trigger_line is not None or s.trigger_activation is not None):
            raise ConfigError(
                f"trigger_line and trigger_activation are only used with trigger_mode='hardware' "
                f"(trigger_mode is {mode!r}); remove them or set trigger_mode='hardware'."
            )
        if mode == "off":
            if s.trigger_delay_s:
                raise ConfigError(
                    "trigger_delay_s needs trigger_mode 'software' or 'hardware'; a free-running "
                    "camera has no trigger to delay: set trigger_delay_s = 0."
                )
            if self._has_node(
                "TriggerMode"
            ):  # make sure the camera free-runs (FrameStart is the exposing one)
                self._select_frame_start(required=False)
                self._set_enum("TriggerMode", "Off")
            return
        required = ["TriggerMode", "TriggerSource"] + (
            ["TriggerSoftware"] if mode == "software" else []
        )
        missing = [n for n in required if not self._has_node(n)]
        if missing:
            raise ConfigError(
                f"Camera {self.identity.model} has no {' / '.join(missing)} node, so trigger_mode={mode!r} is "
                f"impossible. Use trigger_mode='off' (free-running) with the settle or marker sync policy, or a "
                f"camera that offers {mode} triggering."
            )
        self._select_frame_start(required=True)
        if mode == "software":
            self._set_enum("TriggerSource", "Software")
        else:
            if s.trigger_line is None:
                offered = list(getattr(self._node("TriggerSource"), "symbolics", ()))
                raise ConfigError(
                    f"trigger_mode='hardware' needs trigger_line, the input the trigger comes on; "
                    f"camera {self.identity.model} offers {offered}."
                )
            self._set_enum("TriggerSource", s.trigger_line)
            if s.trigger_activation is not None:
                if not self._has_node("TriggerActivation"):
                    raise ConfigError(
                        f"Camera {self.identity.model} has no TriggerActivation node; remove "
                        f"trigger_activation={s.trigger_activation!r} from the settings."
                    )
                self._set_enum("TriggerActivation", s.trigger_activation)
        if s.trigger_delay_s:
            node = next((n for n in _TRIGGER_DELAY_NODES if self._has_node(n)), None)
            if node is None:
                raise ConfigError(
                    f"Camera {self.identity.model} has no TriggerDelay node; set trigger_delay_s = 0 "
                    "and delay the trigger source instead."
                )
            self._set_number(node, s.trigger_delay_s * 1e6)
        self._set_enum("TriggerMode", "On")

    def _select_frame_start(self, required: bool) -> None:
        if not self._has_node("TriggerSelector"):
            return
        offered = list(getattr(self._node("TriggerSelector"), "symbolics", ()))
        if "FrameStart" in offered:
            self._set_enum("TriggerSelector", "FrameStart")
        elif required:
            raise ConfigError(
                f"Camera {self.identity.model}'s TriggerSelector offers {offered}, not FrameStart: "
                "lab4f triggers single frames only; use trigger_mode='off'."
            )

    def _configure_clock(self) -> None:
        s = self.settings
        self._latch = next(
            ((c, v) for c, v in _LATCH_NODES if self._has_node(c) and self._has_node(v)), None
        )
        freq = next((self._node_value(n) for n in _TICK_FREQUENCY_NODES if self._has_node(n)), None)
        if not freq:
            try:
                freq = self._ia.device.module.timestamp_frequency
            except (*_GENICAM_ERRORS, AttributeError):
                freq = None
        self._tick_hz = float(freq) if freq else None
        if s.timestamp_source == "frame_id" and s.trigger_mode != "off":
            raise ConfigError(
                "timestamp_source='frame_id' dates frames by their ID at the nominal frame rate, "
                "which only holds for a free-running camera; use trigger_mode='off' or "
                "timestamp_source='auto'."
            )

    def _set_roi(self, x: int, y: int, width: int, height: int) -> None:
        # Offsets to zero first so that the new width/height is always within the sensor.
        for node in ("OffsetX", "OffsetY"):
            if self._has_node(node):
                self._set_number(node, 0)
        self._set_number("Width", self._on_increment("Width", width))
        self._set_number("Height", self._on_increment("Height", height))
        for node, value in (("OffsetX", x), ("OffsetY", y)):
            if value != 0 or self._has_node(node):
                self._set_number(node, self._on_increment(node, value))

    def _node(self, name: str) -> Any:
        return getattr(self._ia.remote_device.node_map, name)

    def _has_node(self, name: str) -> bool:
        return hasattr(self._ia.remote_device.node_map, name)

    def _node_value(self, name: str) -> Any:
        return self._node(name).value if self._has_node(name) else None

    def _symbolics(self, name: str) -> list[str]:
        """The entries an enumeration node offers ([] where there is no such node)."""
        return list(getattr(self._node(name), "symbolics", ())) if self._has_node(name) else []

    def _write(self, node: Any, value: Any, name: str) -> None:
        try:
            node.value = value
        except _GENICAM_ERRORS as exc:
            raise DeviceError(
                f"Camera refused {name}={value}: {exc}. Stop acquisition before changing it, or "
                "check the value against the camera's documentation.",
                device=self._device_name,
            ) from exc

    def _set_number(self, name: str, value: float) -> None:
        if not self._has_node(name):
            self.missing_nodes.append(name)
            logger.warning(
                "%s has no %s node; the setting %s is ignored.", self.identity, name, value
            )
            return
        node = self._node(name)
        low, high = getattr(node, "min", None), getattr(node, "max", None)
        if low is not None and high is not None and not low <= value <= high:
            raise ConfigError(f"Camera {name}={value} is outside the device range [{low}, {high}].")
        self._write(node, type(node.value)(value), name)

    def _set_enum(self, name: str, symbol: str) -> None:
        if not self._has_node(name):
            self.missing_nodes.append(name)
            logger.warning(
                "%s has no %s node; %s=%s is ignored.", self.identity, name, name, symbol
            )
            return
        node = self._node(name)
        available = list(getattr(node, "symbolics", ()))
        if available and symbol not in available:
            raise ConfigError(
                f"Camera {name}={symbol!r} is not offered by {self.identity.model}; "
                f"choose one of {available}."
            )
        self._write(node, symbol, name)

    def _exposure_bounds_s(self) -> tuple[float, float] | None:
        if self._exposure_node is None:
            return None
        node = self._node(self._exposure_node)
        return (float(node.min) * 1e-6, float(node.max) * 1e-6)

    # --- errors ----------------------------------------------------------------------------------------------

    def _device_error(self, exc: BaseException, doing: str) -> DeviceError:
        """A genicam/harvesters exception as lab4f's error, naming the device and what to do."""
        serial = getattr(getattr(self, "identity", None), "serial", "?")
        what = f"{type(exc).__name__}: {exc}"
        if isinstance(exc, (gentl.TimeoutException, genapi.TimeoutException)):
            return DeviceTimeout(
                f"Camera {serial} did not answer while {doing} ({what}). Check the cable and the "
                "camera's power, or raise timeout_s in the camera settings.",
                device=self._device_name,
            )
        if isinstance(exc, _GONE):
            return DeviceDisconnected(
                f"Camera {serial} stopped answering while {doing} ({what}). Check the cable "
                "and power and that no other program holds the camera, then close it and "
                "create a new HarvestersCamera.",
                device=self._device_name,
            )
        return DeviceError(
            f"Camera {serial} failed while {doing} ({what}). Stop and restart acquisition "
            "(stop_acquisition(), start_acquisition()); if it persists, close the camera and open it "
            "again.",
            device=self._device_name,
        )

    # --- acquisition state -----------------------------------------------------------------------------------

    def _reset_acquisition_state(self) -> None:
        """What one acquisition run knows: the clock samples, the ID continuity, when the queue was empty."""
        self._samples: deque[float] = deque(maxlen=_CLOCK_WINDOW)
        self._prompt_sample: float | None = None
        self._latch_offset_s: float | None = None
        self._latch_half_s = 0.0
        self._last_resync = -math.inf
        self._last_raw_id: int | None = None
        self._id_base = max(self.last_frame_index, 0)
        self._host_count = 0
        self._t_acq_start = time.perf_counter()
        self._t_known_empty = -math.inf
        self._synthetic_anchor: tuple[int, float] | None = (
            None  # (raw id, device s) for the frame_id clock
        )
        self._history: deque[tuple[int, float]] = deque(maxlen=16)  # (frame id, device start s)

    def _start(self) -> None:
        self._reset_acquisition_state()
        try:
            self._ia.start()
        except _GENICAM_ERRORS as exc:
            raise self._device_error(exc, "starting acquisition") from exc
        self._t_acq_start = time.perf_counter()
        self._resync()

    def _resync(self) -> None:
        """Refresh the nominal frame period and, where the nodes exist, the device->host clock latch."""
        self._last_resync = time.perf_counter()
        old = self._nominal_period_s
        self._nominal_period_s = self._read_nominal_period()
        if (
            old
            and self._nominal_period_s != old
            and self._synthetic_anchor
            and self._last_raw_id is not None
        ):
            # keep the frame_id clock continuous across a frame-rate change: re-anchor at the last frame
            raw0, d0 = self._synthetic_anchor
            self._synthetic_anchor = (self._last_raw_id, d0 + (self._last_raw_id - raw0) * old)
        if self._latch is None:
            return
        cmd, val = self._latch
        try:
            before = time.perf_counter()
            self._node(cmd).execute()
            after = time.perf_counter()
            value = float(self._node(val).value)
        except _GENICAM_ERRORS as exc:
            raise self._device_error(exc, "latching the device clock") from exc
        value_s = value / self._tick_hz if self._tick_hz else value * 1e-9
        self._latch_offset_s = 0.5 * (before + after) - value_s
        self._latch_half_s = 0.5 * (after - before)

    def _read_nominal_period(self) -> float | None:
        try:
            enable = self._node_value("AcquisitionFrameRateEnable")
            if enable is not None and not bool(enable):
                return None  # the camera runs as fast as exposure and readout allow
            rate = self._node_value("AcquisitionFrameRate")
        except _GENICAM_ERRORS:
            return None
        return 1.0 / float(rate) if rate else None

    # --- frames ------------------------------------------------------------------------------------------------

    @property
    def trigger_mode(self) -> str:
        """``"off"`` (free-running), ``"software"`` or ``"hardware"``: what the camera was configured with."""
        return self.settings.trigger_mode

    @property
    def frame_id_source(self) -> str:
        """``"buffer"`` (GenTL BUFFER_INFO_FRAMEID: gaps show lost frames), ``"host_counter"`` (the producer gives
        none: IDs count fetched frames) or ``"unknown"`` before the first frame."""
        return self._frame_id_source or "unknown"

    @property
    def timestamp_source(self) -> str:
        """Where a frame's device time comes from: ``device_ns``, ``device_ticks``, ``frame_id`` or ``host``
        (``unknown`` before the first frame); see the module docstring."""
        return self._timestamp_source or "unknown"

    @property
    def clock_sync(self) -> str:
        """How device time is mapped onto the host clock: ``latch``, ``fetch`` or ``host``."""
        src = self._timestamp_source
        if src is None:
            return "unknown"
        if src == "host":
            return "host"
        latched = self._latch is not None and not self._latch_rejected and src.startswith("device")
        return "latch" if latched else "fetch"

    @property
    def frame_period_s(self) -> float | None:
        """Time between frame starts: 1/AcquisitionFrameRate where the device states it, else measured from the
        last frames' device timestamps, else None."""
        if self._nominal_period_s:
            return self._nominal_period_s
        pairs = list(self._history)
        steps = [
            (d1 - d0) / (i1 - i0)
            for (i0, d0), (i1, d1) in zip(pairs, pairs[1:], strict=False)
            if i1 > i0
        ]
        return float(np.median(steps)) if steps else None

    @property
    def clock_uncertainty_s(self) -> float:
        """How much later than the true exposure start a frame's ``start_s`` may be: a frame is fresh after
        ``t`` if ``frame.start_s - clock_uncertainty_s >= t``."""
        if self.clock_sync == "latch":
            return self._latch_half_s + _DRIFT * self.settings.clock_resync_s
        margin = self.settings.clock_margin_s
        if margin is None:
            margin = self.frame_period_s or 0.1
        return float(margin) + _POLL_LATENCY_S

    @property
    def buffers_frames(self) -> bool:
        """Frames queue in the producer's buffers (the sync layer pipelines streams on such cameras)."""
        return True

    @property
    def buffer_handling_in_use(self) -> str | None:
        """The data stream's StreamBufferHandlingMode, or None where the producer has no such node."""
        if self._ia is None:
            return None
        nm = self._ia.data_streams[0].node_map
        return (
            str(nm.StreamBufferHandlingMode.value)
            if hasattr(nm, "StreamBufferHandlingMode")
            else None
        )

    @property
    def buffer_count_in_use(self) -> int | None:
        """Buffers announced to the producer (while acquiring), else the count the next start announces; None
        once closed."""
        ia = self._ia
        if ia is None:
            return None
        if ia.is_acquiring():
            try:
                return int(ia.data_streams[0].module.num_announced)
            except _GENICAM_ERRORS:
                pass
        return int(ia.num_buffers)

    def _queued(self) -> int | None:
        """Frames waiting in the producer's output queue (GenTL STREAM_INFO_NUM_AWAIT_DELIVERY), None if unknown."""
        try:
            return int(self._ia.data_streams[0].module.num_awaiting_delivery)
        except (*_GENICAM_ERRORS, AttributeError, IndexError):
            return None

    def _check_timeout(self, timeout_s: float | None) -> float:
        if timeout_s is None:
            return self.settings.timeout_s
        timeout_s = float(timeout_s)
        if not timeout_s > 0:  # harvesters' fetch(timeout=0) waits forever
            raise ConfigError(
                f"read_frame(timeout_s={timeout_s:g}): the timeout must be > 0 s (harvesters would wait "
                "forever); use drain() to take what is queued without waiting."
            )
        return timeout_s

    def read_frame(self, timeout_s: float | None = None) -> Frame:
        """The next frame in the producer's queue (oldest first in ``OldestFirst`` mode), waiting up to
        ``timeout_s`` (None: the settings' ``timeout_s``); DeviceTimeout when none comes."""
        timeout = self._check_timeout(timeout_s)
        with self._lock:
            return self._make_frame(self._fetch(timeout, draining=False))

    def drain(self) -> list[Frame]:
        """Every frame already queued, oldest first, without waiting for a new one: fetches with
        ``drain_timeout_s`` until one times out (at most 2 × buffers + 2 fetches, for cameras faster than that)."""
        frames: list[Frame] = []
        with self._lock:
            self._acquirer()
            cap = 2 * (self.buffer_count_in_use or 3) + 2
            for _ in range(cap):
                try:
                    frames.append(
                        self._make_frame(self._fetch(self.settings.drain_timeout_s, draining=True))
                    )
                except _QueueEmpty:
                    break
            else:
                logger.debug(
                    "%s: drain() stopped after %d frames; the camera delivers faster than drain_timeout_s",
                    self._device_name,
                    cap,
                )
        return frames

    def flush(self, timeout_s: float = 1) -> None:
        """Empty the queue (``drain()``): the next frame is one exposed from now on (at most one period earlier).
        slmsuite's flush fetches only two frames, which leaves stale ones queued."""
        self.drain()

    def trigger(self) -> None:
        """Expose one frame now (``trigger_mode='software'``: executes TriggerSoftware)."""
        if self.trigger_mode != "software":
            how = (
                "free-running (trigger_mode='off'): frames come without trigger()"
                if self.trigger_mode == "off"
                else f"triggered by hardware line {self.settings.trigger_line!r}"
            )
            raise ConfigError(
                f"Camera {self._device_name} is {how}; trigger() needs trigger_mode='software' in the "
                "camera settings."
            )
        with self._lock:
            self._acquirer()
            t = time.perf_counter()
            try:
                self._node("TriggerSoftware").execute()
            except _GENICAM_ERRORS as exc:
                raise self._device_error(exc, "executing TriggerSoftware") from exc
            self.last_trigger_s = t

    def _fetch(self, timeout_s: float, draining: bool) -> _RawFrame:
        """One buffer: fetched with a timeout, read out and queued back."""
        ia = self._acquirer()
        deadline = time.perf_counter() + timeout_s
        while True:
            t_call = time.perf_counter()
            queued = self._queued()
            if queued == 0:
                self._t_known_empty = t_call
            try:
                buffer = ia.fetch(timeout=max(deadline - t_call, 1e-4))
                t_return = time.perf_counter()
                if buffer is None:  # harvesters could not read the buffer's info and queued it back
                    self.frames_incomplete += 1
                    if time.perf_counter() < deadline:
                        continue
                    raise gentl.TimeoutException("only unreadable buffers arrived")
                try:
                    image, complete, raw_id, ts_s = self._read_buffer(buffer)
                finally:
                    buffer.queue()
            except gentl.TimeoutException as exc:
                if draining:
                    self._t_known_empty = time.perf_counter()
                    raise _QueueEmpty from exc
                running = "running" if ia.is_acquiring() else "STOPPED (call start_acquisition())"
                raise DeviceTimeout(
                    f"No frame from camera {self.identity.serial} within {timeout_s:g} s (acquisition {running}). "
                    f"Check trigger mode and cable, that exposure_s={self._software_exposure_s:g} fits in the "
                    "timeout, or raise timeout_s in the camera settings.",
                    device=self._device_name,
                ) from exc
            except Lab4fError:
                raise
            except (
                Exception
            ) as exc:  # genicam's families, and harvesters' own (AttributeError, TypeError...)
                raise self._device_error(exc, "fetching a frame") from exc
            prompt = queued == 0 if queued is not None else (t_return - t_call) >= _POLL_LATENCY_S
            return _RawFrame(image, complete, raw_id, ts_s, t_call, t_return, prompt)

    def _read_buffer(self, buffer: Any) -> tuple[np.ndarray, bool, int | None, float | None]:
        """Pixels (copied), completeness, the buffer's frame ID and timestamp (s) — before it is queued back."""
        payload = buffer.payload
        components = list(payload.components) if payload is not None else []
        if components:
            image, complete = _component_pixels(components[0])
        else:
            image, complete = (
                np.zeros(self._frame_shape(), dtype=_dtype_for(self.pixel_format)),
                False,
            )
        module = buffer.module
        try:
            complete = complete and bool(module.is_complete())
        except _GENICAM_ERRORS:
            pass
        raw_id: int | None = None
        if self._frame_id_source != "host_counter":
            try:
                raw_id = int(module.frame_id)
                self._frame_id_source = "buffer"
            except _GENICAM_ERRORS:
                if self._frame_id_source is None:
                    self._frame_id_source = "host_counter"
                    logger.warning(
                        "%s: the producer gives no frame IDs; counting frames on the host (lost frames "
                        "cannot be seen).",
                        self._device_name,
                    )
        return image, complete, raw_id, self._buffer_timestamp_s(module)

    def _buffer_timestamp_s(self, module: Any) -> float | None:
        if self._ts_kind in (None, "ns"):
            try:
                value = module.timestamp_ns
                self._ts_kind = "ns"
                return float(value) * 1e-9
            except _GENICAM_ERRORS:
                if self._ts_kind == "ns":
                    return None
        if self._ts_kind in (None, "ticks"):
            try:
                ticks = float(module.timestamp)
            except _GENICAM_ERRORS:
                self._ts_kind = "none"
                return None
            if self._ts_kind is None and self._tick_hz is None:
                self._tick_hz_assumed = True
                logger.warning(
                    "%s: buffer timestamps come in ticks of unknown frequency; assuming ns.",
                    self._device_name,
                )
            self._ts_kind = "ticks"
            return ticks / self._tick_hz if self._tick_hz else ticks * 1e-9
        return None

    def _frame_shape(self) -> tuple[int, ...]:
        width, height = int(self._node_value("Width") or 0), int(self._node_value("Height") or 0)
        channels = (
            4
            if "a8" in self.pixel_format.lower()
            else 3
            if self.pixel_format.startswith(("RGB", "BGR"))
            else 1
        )
        return (height, width) if channels == 1 else (height, width, channels)

    def _resolve_timestamp_source(self, raw: _RawFrame) -> str:
        s = self.settings
        has_ts = raw.timestamp_s is not None
        kind = "device_ns" if self._ts_kind == "ns" else "device_ticks"
        can_frame_id = (
            self._frame_id_source == "buffer"
            and s.trigger_mode == "off"
            and self._nominal_period_s is not None
        )
        if s.timestamp_source == "device":
            if not has_ts:
                raise ConfigError(
                    f"Camera {self._device_name}'s buffers carry no timestamps, so "
                    "timestamp_source='device' is impossible; use timestamp_source='auto'."
                )
            return kind
        if s.timestamp_source == "frame_id":
            if not can_frame_id:
                raise ConfigError(
                    f"timestamp_source='frame_id' needs frame IDs from the buffer "
                    f"({self.frame_id_source}), a free-running camera and a known AcquisitionFrameRate;"
                    " use timestamp_source='auto'."
                )
            return "frame_id"
        if s.timestamp_source == "host":
            return "host"
        return kind if has_ts else "frame_id" if can_frame_id else "host"

    def _make_frame(self, raw: _RawFrame) -> Frame:
        """Frame ID bookkeeping and the device -> host clock mapping (see the module docstring)."""
        if self._timestamp_source is None:
            self._timestamp_source = self._resolve_timestamp_source(raw)
        raw_id = raw.raw_id
        if raw_id is None:
            self._host_count += 1
            raw_id = self._host_count
        if self._last_raw_id is not None:
            if raw_id > self._last_raw_id + 1:
                self.frames_lost += raw_id - self._last_raw_id - 1
            elif (
                raw_id <= self._last_raw_id
            ):  # the device restarted its counter: keep our IDs increasing
                logger.warning(
                    "%s: frame ID went from %d to %d; rebasing.",
                    self._device_name,
                    self._last_raw_id,
                    raw_id,
                )
                self._id_base = self.last_frame_index + 1 - raw_id
                self._samples.clear()
                self._prompt_sample = None
                self._synthetic_anchor = None
        self._last_raw_id = raw_id
        frame_id = self._id_base + raw_id
        exposure = self._software_exposure_s
        src = self._timestamp_source
        device_start: float | None = None
        if src in ("device_ns", "device_ticks") and raw.timestamp_s is not None:
            device_start = raw.timestamp_s - (
                exposure if self.settings.timestamp_at == "exposure_end" else 0.0
            )
        elif src == "frame_id" and self._nominal_period_s:
            if self._synthetic_anchor is None:
                self._synthetic_anchor = (raw_id, 0.0)
            raw0, d0 = self._synthetic_anchor
            device_start = d0 + (raw_id - raw0) * self._nominal_period_s
        if device_start is None:
            start = self._host_start(raw, exposure)
        else:
            if src != "frame_id":
                self._history.append((frame_id, device_start))
            start = math.nan
            if self.clock_sync == "latch" and self._latch_offset_s is not None:
                start = device_start + self._latch_offset_s
                if start + exposure > raw.t_return + self.clock_uncertainty_s + _POLL_LATENCY_S:
                    # ended after it was fetched: the buffer timestamps are not on the latched clock
                    logger.warning(
                        "%s: buffer timestamps disagree with the latched device clock (a frame would "
                        "end %.3g s after it was fetched); mapping them from fetch times instead.",
                        self._device_name,
                        start + exposure - raw.t_return,
                    )
                    self._latch_rejected = True
            if self.clock_sync != "latch":
                sample = (
                    raw.t_return - device_start - exposure
                )  # >= the true offset: exposure ended before
                self._samples.append(sample)
                if raw.prompt:
                    self._prompt_sample = sample
                offset = min(
                    min(self._samples),
                    math.inf if self._prompt_sample is None else self._prompt_sample,
                )
                start = device_start + offset
        frame = Frame(
            raw.image, frame_id, start, exposure, complete=raw.complete, timestamp_s=raw.timestamp_s
        )
        if not raw.complete:
            self.frames_incomplete += 1
        self.last_frame_index = frame_id
        self.last_frame = frame
        if time.perf_counter() - self._last_resync > self.settings.clock_resync_s:
            self._resync()
        return frame

    def _host_start(self, raw: _RawFrame, exposure: float) -> float:
        """No device time: a frame that arrived while we waited (or just after the queue was seen empty) started
        an exposure before it was returned; any other queued frame cannot be dated (-inf: never fresh)."""
        if raw.prompt or raw.t_return - self._t_known_empty <= _POLL_LATENCY_S:
            return raw.t_return - exposure
        return -math.inf

    # --- slmsuite hooks ------------------------------------------------------------------------------------

    def _get_binning_hw(self) -> tuple[int, int]:
        return (
            int(self._node_value("BinningHorizontal") or 1),
            int(self._node_value("BinningVertical") or 1),
        )

    def _set_binning_hw(self, binning: tuple[int, int]) -> None:
        raise ConfigError(
            f"Camera {self._device_name}: binning is set when the camera opens (it changes the ROI the "
            f"nodes take); set binning = {list(binning)} in its settings and open it again."
        )

    def _get_exposure_hw(self) -> float:
        if self._exposure_node is None:
            return self._software_exposure_s
        return float(self._node(self._exposure_node).value) * 1e-6

    def _on_exposure_multiple(self, exposure_s: float) -> float:
        """``exposure_s`` rounded to a whole number (>= 1) of ``exposure_multiple_of_s``, within the exposure node's
        range (unchanged when no multiple is configured)."""
        period = self.settings.exposure_multiple_of_s
        if period is None:
            return exposure_s
        n = max(1, math.floor(exposure_s / period + 0.5))
        bounds = self._exposure_bounds_s() if self._exposure_node is not None else None
        if bounds is not None:
            n = min(
                max(n, math.ceil(bounds[0] / period - 1e-9)), math.floor(bounds[1] / period + 1e-9)
            )
            if n < 1:
                raise ConfigError(
                    f"exposure_multiple_of_s={period:g} s is longer than camera {self._device_name}'s "
                    f"longest exposure ({bounds[1]:g} s); use a shorter period or none."
                )
        if not math.isclose(n * period, exposure_s, rel_tol=1e-9):
            logger.info(
                "%s: exposure %.6g s rounded to %d x %.6g s (exposure_multiple_of_s)",
                self._device_name,
                exposure_s,
                n,
                period,
            )
        return n * period

    def _set_exposure_hw(self, exposure_s: float) -> None:
        exposure_s = self._on_exposure_multiple(float(exposure_s))
        self._software_exposure_s = float(exposure_s)
        if self._exposure_node is not None:
            node = self._node(self._exposure_node)
            self._write(node, float(exposure_s) * 1e6, self._exposure_node)
            self._software_exposure_s = float(node.value) * 1e-6  # what the device really set

    def _get_image_hw(self, timeout_s: float) -> np.ndarray:
        """One frame (``read_frame``), copied out of the producer's buffer before it is queued back. A
        software-triggered camera is drained and triggered first; an incomplete frame raises DeviceError."""
        if not self._initialised and self.trigger_mode == "hardware":
            raise RuntimeError(
                "no frame before a hardware trigger"
            )  # slmsuite's dtype probe: it uses bitdepth
        # harvesters waits forever on timeout=0: never pass it on.
        timeout_s = float(timeout_s) if timeout_s and timeout_s > 0 else self.settings.timeout_s
        if self.trigger_mode == "software":
            self.drain()
            self.trigger()
        frame = self.read_frame(timeout_s)
        if not frame.complete:
            raise DeviceError(
                f"Incomplete frame {frame.frame_id} from camera {self.identity.serial} "
                f"({self.frames_incomplete} so far): check the cable, and on GigE the packet size "
                "and inter-packet delay.",
                device=self._device_name,
            )
        return frame.image

    def get_image(self, timeout_s: float | None = None, **kwargs: Any) -> np.ndarray:
        """slmsuite's get_image, with the timeout defaulting to the settings' timeout_s."""
        return super().get_image(
            timeout_s=self.settings.timeout_s if timeout_s is None else timeout_s, **kwargs
        )

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
            raise DeviceDisconnected(
                "Camera is closed; create a new HarvestersCamera to reopen it.",
                device=self._device_name,
            )
        return self._ia

    @property
    def is_acquiring(self) -> bool:
        return self._ia is not None and bool(self._ia.is_acquiring())

    def start_acquisition(self) -> None:
        with self._lock:
            if not self._acquirer().is_acquiring():
                self._start()

    def stop_acquisition(self) -> None:
        with self._lock:
            if self._acquirer().is_acquiring():
                try:
                    self._acquirer().stop()
                except _GENICAM_ERRORS as exc:
                    raise self._device_error(exc, "stopping acquisition") from exc

    @property
    def device_temperature_c(self) -> float | None:
        """The sensor's temperature (``DeviceTemperature``, °C, read now); None where the camera has no such node."""
        if self._ia is None or not self._has_node("DeviceTemperature"):
            return None
        try:
            return float(self._node("DeviceTemperature").value)
        except _GENICAM_ERRORS as exc:
            raise self._device_error(exc, "reading DeviceTemperature") from exc

    @property
    def actual_roi(self) -> tuple[int, int, int, int] | None:
        """(x, y, width, height) as the device holds them (offsets 0 where it has no offset nodes)."""
        if self._ia is None:
            return None
        return (
            int(self._node_value("OffsetX") or 0),
            int(self._node_value("OffsetY") or 0),
            int(self._node_value("Width") or 0),
            int(self._node_value("Height") or 0),
        )

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
                ia.remove_callbacks()
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
            vendor=self.identity.vendor,
            model=self.identity.model,
            serial=self.identity.serial,
            actual_pixel_format=self.pixel_format,
            actual_width=self.shape[1],
            actual_height=self.shape[0],
            pixel_formats_offered=",".join(self.pixel_formats_offered),
            actual_roi=self.actual_roi,
            actual_binning=tuple(int(b) for b in self.binning),
            actual_pitch_um=None
            if self.pitch_um is None
            else tuple(float(p) for p in self.pitch_um),
            gamma=self.gamma_in_use,
            lut_enabled=self.lut_enabled,
            actual_black_level=self._node_value("BlackLevel") if self._ia is not None else None,
            device_temperature_c=self.device_temperature_c,
            actual_exposure_s=self.exposure_s,
            exposure_source="node" if self._exposure_node else "software",
            actual_frame_rate_hz=self.configured_frame_rate_hz,
            actual_trigger_mode=self.trigger_mode,
            actual_trigger_source=self._node_value("TriggerSource")
            if self._ia is not None
            else None,
            actual_buffer_handling=self.buffer_handling_in_use,
            actual_buffer_count=self.buffer_count_in_use,
            frame_id_source=self.frame_id_source,
            actual_timestamp_source=self.timestamp_source,
            tick_frequency_hz=self._tick_hz,
            tick_frequency_assumed=self._tick_hz_assumed,
            clock_sync=self.clock_sync,
            clock_uncertainty_s=self.clock_uncertainty_s,
            frame_period_s=self.frame_period_s,
            frames_lost=self.frames_lost,
            frames_incomplete=self.frames_incomplete,
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


def _component_pixels(component: Any) -> tuple[np.ndarray, bool]:
    """(a copy of the component as (height, width[, channels]), complete); missing pixels of a short buffer
    are zero."""
    height, width = int(component.height), int(component.width)
    channels = max(1, int(round(component.num_components_per_pixel)))
    shape = (height, width) if channels == 1 else (height, width, channels)
    data = component.data
    need = height * width * channels
    if data is None or data.size < need:
        out = np.zeros(need, dtype=np.uint8 if data is None else data.dtype)
        if data is not None and data.size:
            out[: data.size] = data.ravel()
        return out.reshape(shape), False
    # Rows may carry padding; keep the first width*channels values of each row.
    rows = data[: (data.size // height) * height].reshape(height, -1)[:, : width * channels]
    return rows.reshape(shape).copy(), True


def component_to_array(component: Any) -> np.ndarray:
    """Copy a harvesters image component into (height, width) or (height, width, channels)."""
    image, complete = _component_pixels(component)
    if not complete:
        data = component.data
        raise DeviceError(
            f"Incomplete frame: {0 if data is None else data.size} values for "
            f"{component.height}x{component.width}x{image.shape[2] if image.ndim == 3 else 1} "
            f"({component.data_format})."
        )
    return image


def _dtype_for(pixel_format: str) -> np.dtype:
    return np.dtype(np.uint8 if _bitdepth(pixel_format) <= 8 else np.uint16)


def _bitdepth(pixel_format: str) -> int:
    """Bits per channel from a PFNC name (Mono8 -> 8, Mono12p -> 12, BayerRG16 -> 16, RGBa8 -> 8)."""
    numbers = re.findall(r"\d+", pixel_format)
    return int(numbers[-1]) if numbers else 8
