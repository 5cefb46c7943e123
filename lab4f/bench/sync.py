"""Synchronisation: every frame lab4f uses provably shows the input it is paired with.

A real bench is a pipeline of delays (DESIGN §2a): a display shows an image one to three refreshes after it is
sent and its pixels then take milliseconds to rise; a liquid-crystal SLM settles for tens of ms after a write; a
free-running camera queues frames in a few buffers, so the next frame fetched after a change is usually an old
one. The policies (``[sync] policy`` in the bench config, ``--sync`` on the commands):

- ``settle``: after the last change (display, SLM, light) wait its delay — measured by the ``timing``
  calibration step, else the devices' nominal values — then accept only a frame whose exposure STARTED later,
  as its timestamp proves; older queued frames are drained and counted ``stale``.
- ``trigger``: the same wait, then a software trigger (or the frame a hardware trigger line exposed); the
  frame must still start after the change has settled.
- ``none``: fetch the next frame, whatever it shows: the naive loop, kept to demonstrate the failure. Frames it
  uses that their timestamps show were exposed before the input settled are counted ``stale``.

Counters (:class:`SyncCounters`, in every run's metrics): ``paired`` frames are used and proven fresh;
``skipped`` stale frames were drained or passed over and never used; ``stale`` / ``unpaired`` count frames used
WITHOUT that proof (policy ``none`` only), so a run whose ``stale + unpaired`` is not 0 must not be trusted.

- ``marker``: the display shows a binary code of the input's index where no tile reads it
  (:mod:`lab4f.bench.marker`) and every frame is decoded: a frame is paired with the input it spells, frames of
  other inputs or mixing two are skipped — no trigger and no timestamps needed. Single frames outside a stream
  (calibration) are taken as by ``settle``.

Streams of inputs (:meth:`Sync.stream`) are pipelined: the next input is sent while the display still shows
the previous one, every ``hold_s`` (a whole number of display refreshes that covers the latency spread, the
response, an exposure and a camera period), and each frame is paired to the input whose settled window holds
its whole exposure; a frame in no window is ``stale``, an input whose window passed without a frame is shown
again (``retried``). Throughput then approaches 1 / hold_s instead of 1 / (every wait in a row).
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from slmsuite.hardware.cameras.camera import Camera

from lab4f.drivers.frames import Frame
from lab4f.errors import ConfigError, DeviceTimeout

log = logging.getLogger(__name__)

SyncPolicy = Literal["none", "settle", "trigger", "marker"]
SYNC_POLICIES: tuple[str, ...] = ("none", "settle", "trigger", "marker")


class SyncConfig(BaseModel):
    """``[sync]`` in the bench config: how frames are paired with inputs, and the delays if not measured."""

    model_config = ConfigDict(extra="forbid")

    policy: SyncPolicy = Field(
        "settle", description="none | settle | trigger | marker (see lab4f.bench.sync)"
    )
    display_latency_s: tuple[float, float] | None = Field(
        None,
        description="(min, max) s from show() until the new image starts to appear; None: measured by the "
        "timing step, else the display's nominal value",
    )
    display_response_s: float | None = Field(
        None, ge=0, description="s from appearing to 99 % of the new image"
    )
    slm_settle_s: float | None = Field(
        None, ge=0, description="s from an SLM write to a settled pattern"
    )
    light_settle_s: float = Field(
        0.01, ge=0, description="s for a shutter move / source switch to take effect"
    )
    margin_s: float = Field(0.0005, ge=0, description="extra wait on top of every delay")
    pipeline: bool = Field(
        True, description="send the next input while the previous one is read (streams)"
    )
    marker_bits: int = Field(
        4,
        ge=2,
        le=12,
        description="marker policy: bits of the input index code (the index "
        "modulo 2^bits: enough to tell an input from the few before it still in the queue)",
    )
    marker_threshold: float = Field(
        0.05,
        gt=0,
        lt=0.5,
        description="marker policy: a bit reading between "
        "threshold and 1 - threshold of its references marks a frame mixing inputs",
    )


@dataclass
class Timing:
    """The bench's delays, and where each came from ("measured", "config" or "nominal")."""

    display_latency_min_s: float = 0.0
    display_latency_max_s: float = 0.0
    display_response_s: float = 0.0
    display_period_s: float | None = None
    slm_settle_s: float = 0.0
    source: dict[str, str] | None = None

    @property
    def display_delay_s(self) -> float:
        """Longest time from show() until the image is settled."""
        return self.display_latency_max_s + self.display_response_s

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def nominal_timing(bench: Any) -> Timing:
    """What the devices declare (their settings, the SLM's ``settle_time_s``): a guess until measured."""
    disp = bench.devices.get("display")
    slm = bench.devices.get("slm")
    t = Timing(source={"display": "nominal", "slm": "nominal"})
    s = getattr(disp, "settings", None)
    if s is not None and hasattr(s, "refresh_hz"):  # lab4f's simulated display: its spec sheet
        period = None if s.refresh_hz is None else 1.0 / s.refresh_hz
        t.display_period_s = period
        t.display_latency_min_s = (period or 0.0) * s.latency_frames
        t.display_latency_max_s = (period or 0.0) * (s.latency_frames + 1)
        t.display_response_s = s.response_s / math.log(9.0) * math.log(100.0)
    elif disp is not None:  # an slmsuite device as display: its declared settle time
        settle = float(getattr(getattr(disp, "slm", disp), "settle_time_s", 0.0) or 0.0)
        t.display_latency_max_s = settle
    if slm is not None:
        t.slm_settle_s = float(
            getattr(getattr(slm, "settings", None), "settle_s", None)
            or getattr(slm, "settle_time_s", 0.0)
            or 0.0
        )
    return t


def resolve_timing(bench: Any) -> Timing:
    """Measured values (a calibration record's timing step, ``bench.measured_timing``) over the config's over the
    devices' nominal ones."""
    t = nominal_timing(bench)
    src = dict(t.source or {})
    cfg: SyncConfig = bench.config.sync
    if cfg.display_latency_s is not None:
        t.display_latency_min_s, t.display_latency_max_s = (float(v) for v in cfg.display_latency_s)
        src["display"] = "config"
    if cfg.display_response_s is not None:
        t.display_response_s = cfg.display_response_s
        src["display"] = "config"
    if cfg.slm_settle_s is not None:
        t.slm_settle_s, src["slm"] = cfg.slm_settle_s, "config"
    measured: dict[str, Any] | None = getattr(bench, "measured_timing", None)
    if measured:
        if "display_latency_min_s" in measured:
            t.display_latency_min_s = float(measured["display_latency_min_s"])
            t.display_latency_max_s = float(measured["display_latency_max_s"])
            t.display_response_s = float(measured["display_response_s"])
            if measured.get("display_period_s"):
                t.display_period_s = float(measured["display_period_s"])
            src["display"] = "measured"
        if "slm_settle_s" in measured:
            t.slm_settle_s, src["slm"] = float(measured["slm_settle_s"]), "measured"
    t.source = src
    return t


@dataclass
class SyncCounters:
    """Frames and inputs the pairing saw: only ``paired`` frames are ever used."""

    paired: int = (
        0  # frames used, shown by their timestamps to be exposed after the input had settled
    )
    stale: int = (
        0  # frames USED although exposed (partly) before the input had settled: policy none only
    )
    unpaired: int = (
        0  # frames used with no timestamps to check them (policy none with a plain camera)
    )
    skipped: int = (
        0  # stale frames drained or passed over and never used (old buffers, transitions)
    )
    incomplete: int = 0  # buffers that arrived incomplete (never used)
    retried: int = 0  # inputs shown again because no frame was paired within their window (stream)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def _last_change_s(bench: Any, cfg: SyncConfig, timing: Timing) -> float:
    """When the newest change reaching the camera will have settled (host clock)."""
    ready = -math.inf
    disp, slm = bench.devices.get("display"), bench.devices.get("slm")
    sent = getattr(disp, "last_sent_s", -math.inf)
    ready = max(ready, sent + timing.display_delay_s)
    written = getattr(slm, "last_write_s", -math.inf)
    ready = max(ready, written + timing.slm_settle_s)
    for role in ("light_source", "shutter"):
        changed = getattr(bench.devices.get(role), "changed_at", None) or {}
        if changed:
            ready = max(ready, max(changed.values()) + cfg.light_settle_s)
    return ready + cfg.margin_s


class Sync:
    """Pairs the bench's camera frames with what was shown, by the bench's policy (see the module docstring)."""

    def __init__(self, bench: Any, policy: str | None = None) -> None:
        self.bench = bench
        self.policy = policy or bench.config.sync.policy
        if self.policy not in SYNC_POLICIES:
            raise ConfigError(
                f"sync policy {self.policy!r} is unknown; choose one of {', '.join(SYNC_POLICIES)}"
            )
        self.counters = SyncCounters()
        self._warned = False

    @property
    def camera(self) -> Any:
        return self.bench._get("camera")  # a DeviceError naming the role when it is not connected

    @property
    def timing(self) -> Timing:
        return resolve_timing(self.bench)

    def _check_camera(self) -> Any:
        cam = self.camera
        if self.policy != "none" and not callable(getattr(cam, "read_frame", None)):
            raise ConfigError(
                f"the camera {getattr(cam, 'name', type(cam).__name__)} cannot say when a frame was "
                f"exposed (no frame timestamps), so sync policy {self.policy!r} cannot prove a frame "
                'is fresh; use lab4f\'s HarvestersCamera driver, or set [sync] policy = "none" '
                "knowing frames may be stale"
            )
        if self.policy == "marker" and not callable(getattr(cam, "read_frame", None)):
            return cam  # the code in the frame proves what it shows; calibration frames need timestamps
        if self.policy == "trigger" and getattr(cam, "trigger_mode", "off") == "off":
            raise ConfigError(
                "sync policy 'trigger' needs a triggered camera; set the camera's trigger mode "
                "(simulated: acquisition = \"triggered\"), or use sync policy 'settle'"
            )
        return cam

    def _warn_nominal(self, timing: Timing) -> None:
        if self._warned or timing.source is None:
            return
        simulated = {
            role: type(self.bench.devices.get(role)).__module__.startswith("lab4f.drivers.sim")
            for role in ("display", "slm")
        }
        delay = {"display": timing.display_delay_s, "slm": timing.slm_settle_s}
        # a simulated device's nominal value is its own spec; a real one's (slmsuite's 0.3 s default) a guess
        guessed = [
            k
            for k, v in timing.source.items()
            if v == "nominal" and delay[k] > 0 and not (simulated[k] and k == "slm")
        ]
        if guessed:
            log.warning(
                "sync: the %s delays are the devices' nominal values, not measured; run "
                "`lab4f calibrate timing` so frames are paired by what the bench really does",
                " and ".join(guessed),
            )
        self._warned = True

    # -- one fresh frame ----------------------------------------------------------------------------------
    def fresh_frame(self, timeout_s: float | None = None) -> Frame:
        """The first frame exposed entirely after every change so far has settled (policy ``none``: the next
        frame, counted ``unpaired``)."""
        cam = self._check_camera()
        timeout_s = 2.0 if timeout_s is None else float(timeout_s)
        timing = self.timing
        ready = _last_change_s(self.bench, self.bench.config.sync, timing)
        if (
            self.policy == "none"
        ):  # the naive loop: the next frame, whatever it shows — counted for what it was
            frame = _read(cam, timeout_s)
            if not callable(getattr(cam, "read_frame", None)):
                self.counters.unpaired += 1
            elif frame.start_s < ready:
                self.counters.stale += 1
            else:
                self.counters.paired += 1
            return frame
        self._warn_nominal(timing)
        wait = ready - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        self.counters.skipped += len(cam.drain())
        if self.policy == "trigger" and cam.trigger_mode == "software":
            cam.trigger()
        slack = float(getattr(cam, "clock_uncertainty_s", 0.0) or 0.0)
        deadline = time.perf_counter() + timeout_s
        while True:
            frame = cam.read_frame(max(deadline - time.perf_counter(), 1e-3))
            if not frame.complete:
                self.counters.incomplete += 1
            elif frame.start_s - slack >= ready:
                self.counters.paired += 1
                return frame
            else:
                self.counters.skipped += 1
            if time.perf_counter() > deadline:
                raise DeviceTimeout(
                    f"no fresh frame within {timeout_s:.3g} s after the bench settled: every frame "
                    "was exposed before the change (or incomplete); check the camera's trigger "
                    "and timestamps",
                    device=getattr(cam, "name", None),
                )
            if self.policy == "trigger" and cam.trigger_mode == "software":
                cam.trigger()

    # -- a stream of inputs ---------------------------------------------------------------------------------
    def hold_s(self, timing: Timing | None = None) -> float:
        """How long each input of a stream stays on the display: the latency spread, the response, an exposure
        and a camera period, rounded up to whole display refreshes where the period is known."""
        t = timing or self.timing
        cam = self.camera
        period = float(getattr(cam, "frame_period_s", 0.0) or 0.0)
        need = (
            (t.display_latency_max_s - t.display_latency_min_s)
            + t.display_response_s
            + cam.exposure_s
            + period
        )
        need += 2 * self.bench.config.sync.margin_s + float(
            getattr(cam, "clock_uncertainty_s", 0.0) or 0.0
        )
        if t.display_period_s:
            need = math.ceil(need / t.display_period_s - 1e-9) * t.display_period_s
        return need

    def stream(
        self, count: int, show: Callable[[int], None], timeout_s: float = 2.0
    ) -> Iterator[tuple[int, Frame]]:
        """Show inputs ``0..count-1`` (``show(i)``) and yield ``(i, frame)`` in the order frames are paired."""
        cam = self._check_camera()
        if self.policy == "marker":
            yield from self._marker_stream(count, show, timeout_s)
            return
        if (
            self.policy != "settle"
            or not self.bench.config.sync.pipeline
            or not getattr(cam, "buffers_frames", True)
        ):
            for i in range(count):
                show(i)
                yield i, self.fresh_frame(timeout_s)
            return
        timing = self.timing
        self._warn_nominal(timing)
        hold = self.hold_s(timing)
        slack = float(getattr(cam, "clock_uncertainty_s", 0.0) or 0.0)
        margin = self.bench.config.sync.margin_s
        todo: deque[int] = deque(range(count))
        windows: list[list[float]] = []  # [input, settled from, shown until] in the order sent
        # the first input waits for everything before it (the SLM upload, the light) to settle
        next_send = max(
            time.perf_counter(),
            _last_change_s(self.bench, self.bench.config.sync, timing)
            - timing.display_latency_min_s,
        )
        last_frame_t = time.perf_counter()
        lat_min = timing.display_latency_min_s
        # drained but not yet looked at: if the stream is left early (stop, an error downstream) they were
        # delivered and not used, so they are counted as skipped — every delivered frame is in a counter
        pending: deque[Frame] = deque()
        try:
            while todo or windows:
                t = time.perf_counter()
                if todo and t >= next_send:
                    i = todo.popleft()
                    show(i)
                    sent = time.perf_counter()
                    if (
                        windows and windows[-1][2] == math.inf
                    ):  # the input before is shown until this one appears
                        windows[-1][2] = sent + lat_min - margin
                    next_send = sent + hold
                    # shown until the next input appears; the last one until its frame came
                    until = (next_send + lat_min - margin) if todo else math.inf
                    windows.append([i, sent + timing.display_delay_s + margin, until])
                pending.extend(cam.drain())
                while pending:
                    frame = pending.popleft()
                    last_frame_t = time.perf_counter()
                    if not frame.complete:
                        self.counters.incomplete += 1
                        continue
                    while (
                        windows and frame.start_s - slack > windows[0][2]
                    ):  # its window passed without a frame
                        self.counters.retried += 1
                        todo.appendleft(int(windows.pop(0)[0]))
                    if (
                        windows
                        and frame.start_s - slack >= windows[0][1]
                        and frame.end_s + slack <= windows[0][2]
                    ):
                        self.counters.paired += 1
                        yield int(windows.pop(0)[0]), frame
                    else:
                        self.counters.skipped += 1
                if time.perf_counter() - last_frame_t > timeout_s:
                    raise DeviceTimeout(
                        f"no frame from the camera within {timeout_s:.3g} s during a stream",
                        device=getattr(cam, "name", None),
                    )
                wake = min(next_send if todo else math.inf, time.perf_counter() + 0.0005)
                time.sleep(max(wake - time.perf_counter(), 0.0))
        finally:
            self.counters.skipped += len(pending)

    def _marker_stream(
        self, count: int, show: Callable[[int], None], timeout_s: float
    ) -> Iterator[tuple[int, Frame]]:
        """Show each input with its code and take the first frame that spells it (no timestamps used)."""
        reader = getattr(self.bench, "marker_reader", None)
        if reader is None:
            raise ConfigError(
                "sync policy 'marker' needs the program's marker reader: run through "
                "lab4f.bench.hybrid.prepare (lab4f run), which builds it from the calibration"
            )
        cam = self.camera
        for i in range(count):
            show(i)
            want = i % (2**reader.code.bits)
            deadline = time.perf_counter() + timeout_s
            while True:
                frame = _read(cam, max(deadline - time.perf_counter(), 1e-3))
                if getattr(frame, "complete", True) and reader.read(frame.image) == want:
                    self.counters.paired += 1
                    yield i, frame
                    break
                if not getattr(frame, "complete", True):
                    self.counters.incomplete += 1
                else:
                    self.counters.skipped += 1
                if time.perf_counter() > deadline:
                    raise DeviceTimeout(
                        f"no frame showed input {i}'s marker code within {timeout_s:.3g} s; check "
                        "that the display shows the whole code (display shape) and that the "
                        "registration still holds",
                        device=getattr(cam, "name", None),
                    )


def _read(cam: Any, timeout_s: float) -> Frame:
    """The next frame of any camera (one without ``read_frame`` gives no timing: start = now)."""
    if callable(getattr(cam, "read_frame", None)):
        return cam.read_frame(timeout_s)
    img = np.asarray(cam.get_image(timeout_s=timeout_s))
    t = time.perf_counter()
    return Frame(img, int(getattr(cam, "last_frame_index", -1)), t, float(cam.exposure_s))


class SyncedCamera(Camera):
    """The bench's camera as its users see it (``Bench.camera``): slmsuite's Camera interface, every frame fresh
    by the bench's sync policy. Attributes it does not define are the device's own."""

    def __init__(self, sync: Sync) -> None:
        self._sync = sync
        cam = sync.camera
        self._device = cam
        super().__init__(
            (cam.shape[1], cam.shape[0]),
            bitdepth=cam.bitdepth,
            pitch_um=cam.pitch_um,
            name=cam.name,
            capture_attempts=1,
        )
        self._ready = True

    def __getattr__(self, name: str) -> Any:  # only called for attributes this object lacks
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.__dict__["_device"], name)

    @property
    def device(self) -> Any:
        return self._device

    @property
    def sync(self) -> Sync:
        return self._sync

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        if not self.__dict__.get(
            "_ready"
        ):  # slmsuite's Camera.__init__ probes the dtype: no real frame needed
            return np.zeros(self._device.shape, dtype=self._device.dtype)
        return self._sync.fresh_frame(timeout_s).image

    def read_frame(self, timeout_s: float | None = None) -> Frame:
        return self._sync.fresh_frame(timeout_s)

    def _get_exposure_hw(self) -> float:
        return float(self._device.get_exposure())

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._device.set_exposure(exposure_s)

    def flush(self, timeout_s: float = 1) -> None:
        self._device.flush()

    @staticmethod
    def info(verbose: bool = True) -> list[str]:
        return []

    def close(self) -> None:
        """The device belongs to the bench; ``Bench.close`` closes it."""


__all__: Sequence[str] = (
    "SYNC_POLICIES",
    "Sync",
    "SyncConfig",
    "SyncCounters",
    "SyncedCamera",
    "Timing",
    "nominal_timing",
    "resolve_timing",
)
