"""Worker objects, each living in its own QThread: the device thread (owns the Bench and every device),
the job thread (checkpoint loading) and the inference thread. The GUI never calls them directly: it
`submit`s a callable that runs in the worker's thread, and results come back as queued signals.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
from PySide6 import QtCore

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import ROLES, Bench, build_device, identity_of
from lab4f.errors import CalibrationCancelled, DeviceError, Lab4fError, SafetyLimitError
from lab4f.gui.live import Acquired, FrameQueue, LatestFrame, LiveInference

#: What to do when a device of this role fails (shown under the error).
ADVICE = {
    "camera": "Check the cable and trigger, then Disconnect and Connect the camera again.",
    "slm": "Check the SLM controller, then reconnect the SLM (and the camera that looks through it).",
    "display": "Check the input display, then reconnect it (and the camera).",
    "light_source": "Check the source is powered and cabled, then reconnect it.",
    "shutter": "Check the shutter controller, then reconnect it.",
}
#: Simulated cameras render through the SLM and display objects: they go when those go.
DEPENDENTS = {"slm": ("camera",), "display": ("camera",)}


class Worker(QtCore.QObject):
    """Runs submitted callables in its own thread; errors come back as `failed(where, message)`."""

    _run = QtCore.Signal(object, str)
    failed = QtCore.Signal(str, str)
    done = QtCore.Signal(str, object)

    def __init__(self) -> None:
        super().__init__()
        self._run.connect(self._execute, QtCore.Qt.ConnectionType.QueuedConnection)

    def submit(self, fn: Callable[[], Any], name: str = "", where: str = "job") -> None:
        """Run `fn()` in the worker thread; its return value arrives as `done(name, result)` if `name`."""
        self._run.emit(lambda: self._call(fn, name, where), name)

    def finish(self, fn: Callable[[], Any]) -> None:
        """Run `fn()` in the worker thread, then end the thread's event loop (requests queued before run first)."""

        def last() -> None:
            try:
                fn()
            finally:
                QtCore.QThread.currentThread().quit()

        self.submit(last, where="shutdown")

    @QtCore.Slot(object, str)
    def _execute(self, fn: Callable[[], None], _name: str) -> None:
        fn()

    def _call(self, fn: Callable[[], Any], name: str, where: str) -> None:
        try:
            result = fn()
        except Lab4fError as exc:
            self.failed.emit(where, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # a bug or a vendor SDK error: keep the thread alive and say so
            traceback.print_exc()
            self.failed.emit(where, f"unexpected {type(exc).__name__}: {exc}. {ADVICE.get(where, '')}")
            return
        if name:
            self.done.emit(name, result)


def start_in_thread(worker: Worker, name: str) -> QtCore.QThread:
    thread = QtCore.QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.start()
    return thread


class BenchWorker(Worker):
    """Owns the Bench: every device call happens in this thread, and so does the acquisition loop."""

    state = QtCore.Signal(dict)
    progress = QtCore.Signal(str, float, str)
    streaming = QtCore.Signal(bool)

    def __init__(self, config_path: str | None = None) -> None:
        super().__init__()
        self.config_path = config_path
        self.bench = Bench(load_bench_config(config_path))
        self.latest = LatestFrame()
        self.queue: FrameQueue | None = None
        self.feed: tuple[np.ndarray, np.ndarray] | None = None  # images (N, h, w) in [0, 1], labels (N,)
        self.cancel = threading.Event()
        self._timer: QtCore.QTimer | None = None
        self._feed_index = 0
        self.uploaded_phase: np.ndarray | None = None

    # -- device lifecycle (run in the worker thread through submit) ----------------------------------
    def open_config(self, path: str | None) -> dict[str, Any]:
        self.stop_stream()
        config = load_bench_config(path)  # a bad file raises before the current bench is touched
        self.bench.close()
        self.bench, self.config_path = Bench(config), path
        return self.emit_state()

    def connect_device(self, role: str | None = None) -> dict[str, Any]:
        roles = ROLES if role is None else (role,)
        for r in roles:
            cfg = getattr(self.bench.config, r)
            if cfg is None or not cfg.enabled or r in self.bench.devices:
                continue
            try:
                self.bench.devices[r] = build_device(r, cfg, self.bench.devices)
            except KeyError as exc:
                raise DeviceError(f"the {r} needs the {exc.args[0]} connected first; connect it, then the {r}") \
                    from None
        return self.emit_state()

    def disconnect_device(self, role: str | None = None) -> dict[str, Any]:
        if role is None:
            self.stop_stream()
            self.bench.close()
            return self.emit_state()
        for r in (*DEPENDENTS.get(role, ()), role):
            if r == "camera":
                self.stop_stream()
            device = self.bench.devices.pop(r, None)
            close = getattr(device, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # a device that is already gone may fail to close
                    self.failed.emit(r, f"closing the {r} failed ({exc}); it is released anyway")
        return self.emit_state()

    def emit_state(self) -> dict[str, Any]:
        devices = {}
        for role in ROLES:
            cfg = getattr(self.bench.config, role)
            dev = self.bench.devices.get(role)
            entry: dict[str, Any] = {"configured": cfg is not None and cfg.enabled,
                                     "driver": cfg.driver if cfg else "", "connected": dev is not None}
            if dev is not None:
                entry["identity"] = ", ".join(f"{k}={v}" for k, v in identity_of(dev).items() if v)
            devices[role] = entry
        st: dict[str, Any] = {"config": self.config_path or "(built-in simulated bench)",
                              "name": self.bench.config.name,
                              "devices": devices, "streaming": self._timer is not None and self._timer.isActive()}
        try:
            if "camera" in self.bench.devices:
                cam = self.bench.camera
                st["camera"] = {"exposure_s": float(cam.get_exposure()), "shape": list(cam.shape),
                                "gain": getattr(getattr(cam, "settings", None), "gain", None)}
            if "light_source" in self.bench.devices:
                ls = self.bench.light_source
                st["light_source"] = {"power_mw": ls.power_mw, "on": ls.output_on,
                                      "max_power_mw": ls.settings.max_power_mw}
            if "shutter" in self.bench.devices:
                st["shutter"] = {"open": self.bench.shutter.is_open}
        except DeviceError as exc:
            self.failed.emit("bench", f"reading the device status failed: {exc}")
        self.state.emit(st)
        return st

    # -- settings ----------------------------------------------------------------------------------
    def set_exposure(self, exposure_s: float) -> dict[str, Any]:
        self.bench.camera.set_exposure(exposure_s)
        return self.emit_state()

    def set_gain(self, gain: float) -> dict[str, Any]:
        settings = getattr(self.bench.camera, "settings", None)
        if settings is None or not hasattr(settings, "gain"):
            raise DeviceError("this camera driver offers no gain setting; adjust the exposure instead")
        settings.gain = float(gain)
        return self.emit_state()

    def set_power(self, power_mw: float) -> dict[str, Any]:
        try:
            self.bench.light_source.power_mw = power_mw
        finally:
            self.emit_state()  # a refused setpoint shows the value the device really holds
        return {}

    def set_light(self, on: bool) -> dict[str, Any]:
        ls = self.bench.light_source
        ls.on() if on else ls.off()
        return self.emit_state()

    def set_shutter(self, open_: bool) -> dict[str, Any]:
        sh = self.bench.shutter
        sh.open_shutter() if open_ else sh.close_shutter()
        return self.emit_state()

    def upload_phase(self, phase: np.ndarray) -> np.ndarray:
        self.bench.upload_phase(phase)
        self.uploaded_phase = np.asarray(phase)
        return self.uploaded_phase

    # -- acquisition loop --------------------------------------------------------------------------
    def start_stream(self, queue: FrameQueue | None = None,
                     feed: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Grab frames as fast as the camera gives them; with a feed, show its images and queue the frames."""
        self.bench.camera  # noqa: B018 — raises DeviceError with advice when not connected
        self.queue, self.feed, self._feed_index = queue, feed, 0
        if self._timer is None:
            self._timer = QtCore.QTimer(self)
            self._timer.setInterval(0)
            self._timer.timeout.connect(self._tick)
        self._timer.start()
        self.streaming.emit(True)

    def stop_stream(self) -> None:
        if self._timer is not None and self._timer.isActive():
            self._timer.stop()
            self.streaming.emit(False)
        self.queue = self.feed = None

    def _tick(self) -> None:
        try:
            image, label = None, -1
            if self.feed is not None:
                images, labels = self.feed
                k = self._feed_index % len(images)
                image, label = images[k], int(labels[k])
                self.bench.show(image)
            frame = self.bench.snap()
        except Lab4fError as exc:
            self.stop_stream()
            self.failed.emit("camera", f"{type(exc).__name__}: {exc}")
            self.emit_state()
            return
        self.latest.put(frame)
        if self.queue is not None and image is not None:
            self.queue.put(Acquired(self._feed_index, frame, image, label, time.perf_counter()))
        self._feed_index += 1

    # -- calibration -------------------------------------------------------------------------------
    def run_steps(self, steps: list[tuple[str, Callable[..., None]]]) -> str:
        """Run calibration steps `(name, fn(bench, progress, cancel))` in order; streaming pauses meanwhile."""
        was_streaming = self._timer is not None and self._timer.isActive()
        queue, feed = self.queue, self.feed
        self.stop_stream()
        self.cancel.clear()
        try:
            for name, fn in steps:
                fn(self.bench, lambda f, m, n=name: self.progress.emit(n, float(f), m), self.cancel)
                self.progress.emit(name, 1.0, "done")
        except CalibrationCancelled as exc:
            self.progress.emit("cancelled", 0.0, str(exc))
            raise
        finally:
            if was_streaming:
                self.start_stream(queue, feed)
        return ", ".join(n for n, _ in steps)

    def shutdown(self) -> None:
        self.cancel.set()
        self.stop_stream()
        self.bench.close()


class InferenceWorker(Worker):
    """Consumes the frame queue in batches (extraction + back end) and reports at most ~10 times a second."""

    update = QtCore.Signal(dict)

    def __init__(self) -> None:
        super().__init__()
        self.engine: LiveInference | None = None
        self._timer: QtCore.QTimer | None = None
        self._t_report = 0.0

    def start(self, engine: LiveInference, torch_threads: int = 1) -> None:
        """Small batches gain nothing from intra-op threads, which would starve the GUI thread of a core."""
        import torch

        torch.set_num_threads(torch_threads)
        self.engine = engine
        if self._timer is None:
            self._timer = QtCore.QTimer(self)
            self._timer.setInterval(1)
            self._timer.timeout.connect(self._tick)
        self._timer.start()

    def stop(self, record_path: str | None = None, context: dict | None = None) -> dict[str, Any]:
        if self._timer is not None:
            self._timer.stop()
        if self.engine is None:
            return {}
        self.engine.step()
        result = self._report()
        if record_path:
            result["record"] = str(self.engine.save_run(record_path, context))
        return result

    def _tick(self) -> None:
        if self.engine is None:
            return
        try:
            self.engine.step()
        except Lab4fError as exc:
            self._timer.stop()
            self.failed.emit("inference", f"{type(exc).__name__}: {exc}")
            return
        now = time.perf_counter()
        if now - self._t_report > 0.1:
            self._t_report = now
            self._report()

    def _report(self) -> dict[str, Any]:
        assert self.engine is not None
        out = self.engine.stats.as_dict(self.engine.queue) | {"last": self.engine.last, "t_s": time.perf_counter()}
        self.update.emit(out)
        return out


__all__ = ["BenchWorker", "InferenceWorker", "Worker", "start_in_thread", "SafetyLimitError"]
