"""Worker objects, each living in its own QThread: the device thread (owns the Bench and every device,
runs calibration and starts/stops the streaming pipeline) and the job thread (checkpoint loading). The GUI
never calls them directly: it `submit`s a callable that runs in the worker's thread, and results come back
as queued signals. Acquisition and inference run in :class:`lab4f.bench.stream.Pipeline`'s own threads.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from PySide6 import QtCore

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import ROLES, Bench, build_device, identity_of, stamp_writes
from lab4f.bench.stream import Pipeline
from lab4f.calibration import CalibrationRecord, resolve_steps, run_calibration
from lab4f.calibration import steps as calibration_steps
from lab4f.errors import CalibrationCancelled, DeviceError, Lab4fError
from lab4f.gui.live import DEFAULT_RATE_HZ, LatestFrame, LiveRun, camera_pipeline

#: What to do when a device of this role fails (shown under the error): the buttons to press in this window.
ADVICE = {
    "camera": "Check the cable and trigger, then Disconnect and Connect the camera again (Bench panel).",
    "slm": "Check the SLM controller, then Disconnect and Connect the SLM in the Bench panel (the camera that looks "
    "through it is reconnected with it: press Connect for the camera too).",
    "display": "Check the input display, then Disconnect and Connect the display in the Bench panel (and then "
    "Connect the camera, which is released with it).",
    "light_source": "Check the source is powered and cabled, then Disconnect and Connect the light source "
    "(Bench panel).",
    "shutter": "Check the shutter controller, then Disconnect and Connect the shutter (Bench panel).",
}


class JobCancelled(Lab4fError):
    """A GUI job (compile) was cancelled by the user or by closing the window."""


class NothingToSave(Lab4fError):
    """File ▸ Save run without a stopped run."""


def unique_path(path: str | Path) -> Path:
    """``path``, or ``name-1.h5``, ``name-2.h5`` … if it exists: a recording never overwrites a file."""
    path = Path(path)
    if not path.exists():
        return path
    for k in range(1, 10_000):
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise OSError(f"no free file name next to {path}: choose another name")


def default_run_path(calibration_dir: str | Path, folder: str | Path | None = None) -> Path:
    """Where a run is recorded when no file is named: ``run-YYYYmmdd-HHMMSS.h5`` in ``folder``, by default
    ``runs/`` beside the calibration folder (absolute: it does not depend on the working folder later)."""
    folder = (
        Path(folder) if folder is not None else Path(calibration_dir).absolute().parent / "runs"
    )
    return unique_path(folder.absolute() / f"run-{datetime.now():%Y%m%d-%H%M%S}.h5")


#: Where each kind of file dialog opens, in order of preference (relative to the working folder), when no file of that
#: kind was opened before: checkpoints where the demo caches them, bench configs among the examples.
START_FOLDERS = {"checkpoint": (".lab4f_cache", "checkpoints", "runs"), "config": ("examples",)}


def start_folder(
    kind: str, worker: BenchWorker | None = None, recent: str | Path | None = None
) -> str:
    """The folder a file dialog for ``kind`` ("run", "snapshot", "record", "checkpoint", "config") starts in: the
    folder of ``recent`` (the last such file), else runs/ beside the calibration folder for runs and snapshots, the
    calibration folder for records, else the ``START_FOLDERS``; the working folder if none exists."""
    calibrations = Path(
        worker.bench.config.calibration_dir if worker is not None else "calibrations"
    ).absolute()
    candidates = [Path(recent).expanduser().parent] if recent else []
    candidates += {
        "run": [calibrations.parent / "runs"],
        "snapshot": [calibrations.parent / "runs"],
        "record": [calibrations],
    }.get(kind, [])
    candidates += [Path(p) for p in START_FOLDERS.get(kind, ())]
    for folder in candidates:
        if folder.is_dir():
            return str(folder.absolute())
    return str(Path.cwd())


def cancellable(
    fn: Callable[[Callable[[int, int], None]], Any],
    cancel: threading.Event,
    report: Callable[[int, int], None] | None = None,
) -> Any:
    """Run ``fn(on_iteration)`` (a compile) in this thread; ``on_iteration(done, total)`` — which the core calls
    after every phase-retrieval iteration — raises `JobCancelled` once ``cancel`` is set, else calls ``report``."""

    def on_iteration(done: int, total: int) -> None:
        if cancel.is_set():
            raise JobCancelled("compile cancelled: nothing was uploaded, the SLM keeps its program")
        if report is not None:
            report(done, total)

    if cancel.is_set():
        raise JobCancelled("compile cancelled before it started: nothing was uploaded")
    return fn(on_iteration)


#: Simulated cameras render through the SLM and display objects: they go when those go.
DEPENDENTS = {"slm": ("camera",), "display": ("camera",)}


class Worker(QtCore.QObject):
    """Runs submitted callables in its own thread; errors come back as `failed(where, message)`."""

    _run = QtCore.Signal(object, str)
    failed = QtCore.Signal(str, str)
    cancelled = QtCore.Signal(
        str, str
    )  # where, message: the user (or closing) stopped a job; not an error
    succeeded = QtCore.Signal(
        str
    )  # where: a request of this kind worked (earlier error text may be cleared)
    done = QtCore.Signal(str, object)

    def __init__(self) -> None:
        super().__init__()
        self._run.connect(self._execute, QtCore.Qt.ConnectionType.QueuedConnection)
        self._call_failed = (
            False  # a request that reported a failure (e.g. from emit_state) is no success
        )
        self.failed.connect(self._mark_failed, QtCore.Qt.ConnectionType.DirectConnection)

    def _mark_failed(self, *_: object) -> None:
        self._call_failed = True

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
        self._call_failed = False
        try:
            result = fn()
        except (CalibrationCancelled, JobCancelled) as exc:
            self.cancelled.emit(where, str(exc))
            return
        except Lab4fError as exc:
            self.failed.emit(where, f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:  # a bug or a vendor SDK error: keep the thread alive and say so
            traceback.print_exc()
            self.failed.emit(
                where, f"unexpected {type(exc).__name__}: {exc}. {ADVICE.get(where, '')}"
            )
            return
        if not self._call_failed:
            self.succeeded.emit(where)
        if name:
            self.done.emit(name, result)


def start_in_thread(worker: Worker, name: str) -> QtCore.QThread:
    thread = QtCore.QThread()
    thread.setObjectName(name)
    worker.moveToThread(thread)
    thread.start()
    return thread


class BenchWorker(Worker):
    """Owns the Bench: device calls, calibration, and the start/stop of the streaming pipeline happen here."""

    state = QtCore.Signal(dict)
    progress = QtCore.Signal(str, float, str)  # step, fraction of that step, message
    streaming = QtCore.Signal(bool)
    run_ended = QtCore.Signal(dict)  # stop reason, error, processed, record path
    stream_failed = QtCore.Signal(
        str, str
    )  # where (the faulty device's role, or "inference"), message
    compile_progress = QtCore.Signal(
        int, int
    )  # phase-retrieval iterations done, in all (over every frame)

    def __init__(self, config_path: str | None = None) -> None:
        super().__init__()
        self.config_path = config_path
        self.bench = Bench(load_bench_config(config_path))
        self.latest = LatestFrame()
        self.device_lock = (
            threading.RLock()
        )  # the pipeline's acquisition thread holds it while grabbing
        self.view: Pipeline | None = None  # live view only
        self.run: LiveRun | None = None  # live inference
        self.last_run: LiveRun | None = (
            None  # the run stopped last (File ▸ Save run), until the next starts
        )
        self.record_path: str | None = None
        self.cancel = threading.Event()  # calibration
        self.compile_cancel = (
            threading.Event()
        )  # set from the GUI thread (Cancel, closing the window)
        self.record: CalibrationRecord | None = (
            None  # the calibration in use, as of this thread's queue
        )
        self.record_applied = False  # its exposure, phase LUT … are on the connected camera and SLM
        self.uploaded_phase: np.ndarray | None = None
        self._watch: QtCore.QTimer | None = None
        self._torch_threads = 1

    # -- device lifecycle (run in the worker thread through submit) ----------------------------------
    def open_config(self, path: str | None) -> dict[str, Any]:
        self.stop_stream()
        config = load_bench_config(path)  # a bad file raises before the current bench is touched
        self.bench.close()
        self.bench, self.config_path, self.uploaded_phase = Bench(config), path, None
        self.record_applied = False
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
                raise DeviceError(
                    f"the {r} needs the {exc.args[0]} connected first; connect it, then the {r}"
                ) from None
        self.bench.couple_light()  # a simulated camera follows a newly connected source or shutter
        stamp_writes(
            self.bench.devices.get("slm")
        )  # the sync policy needs to know when the SLM changed
        self.apply_record()
        return self.emit_state()

    def apply_record(self) -> bool:
        """Put the calibration in use on the bench once its camera and SLM are connected (a record restored or
        loaded before connecting, or devices reconnected since); says so with ``done("record_applied", record)``."""
        if (
            self.record is None
            or self.record_applied
            or not {"camera", "slm"} <= set(self.bench.devices)
        ):
            return False
        try:
            with self.device_lock:
                self.record.apply(self.bench)
                if self.uploaded_phase is not None:
                    self.bench.upload_phase(self.uploaded_phase)  # through the record's phase LUT
        except Lab4fError as exc:  # the devices are connected; the record just is not on them
            self.failed.emit("record", f"applying the calibration record failed: {exc}")
            return False
        self.record_applied = True
        self.done.emit("record_applied", self.record)
        return True

    def set_sync(self, policy: str) -> dict[str, Any]:
        """Pair frames with inputs by ``policy`` from now on (lab4f.bench.sync), for this bench."""
        self.bench.set_sync_policy(policy)
        return self.emit_state()

    def disconnect_device(self, role: str | None = None) -> dict[str, Any]:
        if role is None:
            self.stop_stream()
            self.bench.close()
            self.record_applied = False
            return self.emit_state()
        for r in (*DEPENDENTS.get(role, ()), role):
            if r in ("camera", "display", "slm"):
                self.stop_stream()
            if r in ("camera", "slm"):
                self.record_applied = False  # a reconnected device starts from its own defaults
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
            entry: dict[str, Any] = {
                "configured": cfg is not None and cfg.enabled,
                "driver": cfg.driver if cfg else "",
                "connected": dev is not None,
            }
            if dev is not None:
                entry["identity"] = ", ".join(f"{k}={v}" for k, v in identity_of(dev).items() if v)
            devices[role] = entry
        st: dict[str, Any] = {
            "config": self.config_path or "(built-in simulated bench)",
            "name": self.bench.config.name,
            "devices": devices,
            "sync": self.bench.sync.policy,
            "sync_counters": self.bench.sync.counters.to_dict(),
            "streaming": self.view is not None or self.run is not None,
        }
        try:
            with self.device_lock:
                if "camera" in self.bench.devices:
                    cam = self.bench.camera
                    settings = getattr(cam, "settings", None)
                    st["camera"] = {
                        "exposure_s": float(cam.get_exposure()),
                        "shape": list(cam.shape),
                        "gain": getattr(settings, "gain", None),
                        "bitdepth": getattr(cam, "bitdepth", None)
                        or getattr(settings, "bitdepth", None),
                    }
                if "light_source" in self.bench.devices:
                    ls = self.bench.light_source
                    st["light_source"] = {
                        "power_mw": ls.power_mw,
                        "on": ls.output_on,
                        "max_power_mw": ls.settings.max_power_mw,
                    }
                if "shutter" in self.bench.devices:
                    st["shutter"] = {"open": self.bench.shutter.is_open}
        except DeviceError as exc:
            self.failed.emit("bench", f"reading the device status failed: {exc}")
        self.state.emit(st)
        return st

    # -- settings (under the device lock: a running pipeline grabs from another thread) ---------------
    def set_exposure(self, exposure_s: float) -> dict[str, Any]:
        with self.device_lock:
            self.bench.camera.set_exposure(exposure_s)
        return self.emit_state()

    def set_gain(self, gain: float) -> dict[str, Any]:
        settings = getattr(self.bench.camera, "settings", None)
        if settings is None or not hasattr(settings, "gain"):
            raise DeviceError(
                "this camera driver offers no gain setting; adjust the exposure instead"
            )
        with self.device_lock:
            settings.gain = float(gain)
        return self.emit_state()

    def set_power(self, power_mw: float) -> dict[str, Any]:
        try:
            with self.device_lock:
                self.bench.light_source.power_mw = power_mw
        finally:
            self.emit_state()  # a refused setpoint shows the value the device really holds
        return {}

    def set_light(self, on: bool) -> dict[str, Any]:
        with self.device_lock:
            ls = self.bench.light_source
            ls.on() if on else ls.off()
        return self.emit_state()

    def set_shutter(self, open_: bool) -> dict[str, Any]:
        with self.device_lock:
            sh = self.bench.shutter
            sh.open_shutter() if open_ else sh.close_shutter()
        return self.emit_state()

    def compile(
        self, checkpoint: str, iterations: int, kernels_per_frame: int | None = None
    ) -> tuple[Any, Path, Path]:
        """Compile ``checkpoint`` for this bench (``lab4f compile``, ``--kernels-per-frame``: None is as many as
        fit); cancellable at every phase-retrieval iteration through `compile_cancel`, with `compile_progress` at
        most 20 times a second."""
        from lab4f.bench.compile import compile_checkpoint

        last = [0.0]

        def report(i: int, n: int) -> None:
            now = time.perf_counter()
            if i >= n or now - last[0] > 0.05:
                last[0] = now
                self.compile_progress.emit(i, n)

        return cancellable(
            lambda hook: compile_checkpoint(
                checkpoint,
                self.bench,
                iterations=iterations,
                progress=False,
                on_iteration=hook,
                kernels_per_frame=kernels_per_frame,
            ),
            self.compile_cancel,
            report,
        )

    def set_record(self, record: CalibrationRecord | None) -> None:
        """The record in use (one calibrated or loaded here already is; another is applied when it can be)."""
        if record is not self.record:
            self.record, self.record_applied = record, False
            self.apply_record()

    def upload_phase(self, phase: np.ndarray) -> np.ndarray:
        with self.device_lock:
            self.bench.upload_phase(phase)
        self.uploaded_phase = np.asarray(phase)
        return self.uploaded_phase

    # -- streaming ---------------------------------------------------------------------------------
    def set_streaming(self, on: bool) -> None:
        """The Live panel's Start/Stop: start the live view or stop what streams; the button always learns the
        outcome (a failed start unchecks it)."""
        try:
            self.start_stream() if on else self.stop_stream()
        finally:
            self.streaming.emit(self.view is not None or self.run is not None)

    def start_stream(self, rate_hz: float | None = DEFAULT_RATE_HZ) -> None:
        """Live view only: the pipeline's acquisition thread grabs up to ``rate_hz`` frames/s."""
        if self.view is not None or self.run is not None:
            return
        self.view = camera_pipeline(self.bench, self.latest, self.device_lock, rate_hz).start()
        self._watch_streams()

    def start_run(
        self,
        checkpoint: str,
        program_path: str,
        record: CalibrationRecord | None | str,
        images: np.ndarray,
        labels: np.ndarray,
        record_path: str | None = None,
        rate_hz: float | None = DEFAULT_RATE_HZ,
        class_names: tuple[str, ...] = (),
        notes: dict[str, Any] | None = None,
    ) -> LiveRun:
        """Live inference: check checkpoint/program/calibration belong together, upload, start the pipeline.
        ``record="current"``: the calibration in use when the run starts (not when Start was clicked). ``notes`` go
        into the run file's metrics (a calibration warning the user acknowledged)."""
        import torch

        from lab4f.bench.hybrid import prepare

        if isinstance(record, str):
            record = self.record
        resume_view = self.view is not None
        self.stop_stream()
        self.last_run = None  # its results go: a new run starts
        threads = torch.get_num_threads()
        try:
            with self.device_lock:
                setup = prepare(self.bench, checkpoint, record=record, program=program_path)
            setup.calibration_path = getattr(record, "path", None)
            self.uploaded_phase = setup.program.frames[0].phase
            # small batches gain nothing from intra-op threads, which would take the GUI thread's core; restored at
            # stop, because prepare()'s checkpoint/program hash check is exact and kernel_bank() rounds differently
            # with another thread count
            self._torch_threads = threads
            torch.set_num_threads(1)
            run = LiveRun(
                setup,
                images,
                labels,
                self.latest,
                self.device_lock,
                checkpoint=checkpoint,
                rate_hz=rate_hz,
                class_names=class_names,
                notes=dict(notes or {}),
            )
        except BaseException:
            torch.set_num_threads(threads)
            if (
                resume_view and "camera" in self.bench.devices
            ):  # a failed Start leaves the live view as it was
                try:
                    self.start_stream()
                except Lab4fError as exc:
                    self.failed.emit("camera", f"the live view could not resume: {exc}")
            raise
        self.run = run.start()
        self.record_path = record_path
        self._watch_streams()
        self.emit_state()  # prepare() switched the source on and opened the shutter: the Bench panel shows it
        return self.run

    def stop_stream(self) -> dict[str, Any]:
        """Stop the live view or the run (recorded to file if asked at its start); returns how the run ended."""
        was_active = self.view is not None or self.run is not None
        ended: dict[str, Any] = {}
        if self.view is not None:
            view, self.view = self.view, None
            view.stop()
        if self.run is not None:
            run, self.run = self.run, None
            run.stop()
            self.last_run = run
            import torch

            torch.set_num_threads(self._torch_threads)
            s = run.pipeline.stats()
            ended = {"stop_reason": s.stop_reason, "error": s.error, "processed": s.processed}
            if self.record_path:
                try:
                    path = unique_path(
                        self.record_path
                    )  # never overwrite a file written since the start
                    path.parent.mkdir(parents=True, exist_ok=True)
                    ended["record"] = str(run.save(path))
                except (Lab4fError, OSError) as exc:
                    self.failed.emit(
                        "inference", f"recording the run to {self.record_path} failed: {exc}"
                    )
            self.run_ended.emit(ended)
        if self._watch is not None:
            self._watch.stop()
        if was_active:
            self.streaming.emit(False)
        return ended

    def _watch_streams(self) -> None:
        if self._watch is None:
            self._watch = QtCore.QTimer(self)
            self._watch.setInterval(100)
            self._watch.timeout.connect(self._check_streams)
        self._watch.start()
        self.streaming.emit(True)

    def _check_streams(self) -> None:
        """A pipeline that ended by itself (device fault, bug) is stopped here and its error reported."""
        pipeline = self.run.pipeline if self.run is not None else self.view
        if pipeline is None:
            return
        s = pipeline.stats()
        if s.running:
            return
        self.stop_stream()
        if s.error:
            where = (
                self.faulty_role(s.error_device) if s.stop_reason == "device_error" else "inference"
            )
            self.stream_failed.emit(where, s.error)
            self.failed.emit(where, s.error)
            self.emit_state()

    def faulty_role(self, device: str | None) -> str:
        """The bench role of the device a DeviceError names (``DeviceError.device``: a role or a device's name),
        else the camera (the acquisition thread talks to the camera, which drives the display and SLM on a simulated
        bench)."""
        if (
            device in ROLES
        ):  # the bench's own refusals name the role, also one that is not connected
            return device
        for role, dev in self.bench.devices.items():
            if device is not None and device == getattr(dev, "name", None):
                return role
        return "camera"

    def save_run(self, path: str | Path) -> Path:
        """Record the run stopped last to ``path`` (a free name if it exists): File ▸ Save run."""
        if self.run is not None:
            raise NothingToSave(
                "a run is streaming: stop it first (or tick 'record run to' before Start)"
            )
        if self.last_run is None:
            raise NothingToSave(
                "no run to save: start live inference in the Inference panel, then stop it"
            )
        target = unique_path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        return self.last_run.save(target)

    # -- calibration -------------------------------------------------------------------------------
    def calibrate(
        self,
        steps: str | list[str],
        program: Any = None,
        program_path: str | None = None,
        base: CalibrationRecord | None = None,
        out_dir: str | None = None,
        wavefront: bool = False,
        step_options: dict[str, dict[str, Any]] | None = None,
    ) -> CalibrationRecord:
        """`run_calibration` with per-step progress; the live view pauses meanwhile, a run is ended."""
        names = resolve_steps(
            steps, program, wavefront
        )  # a bad request is refused before anything stops
        resume_view = self.view is not None
        self.stop_stream()
        self.cancel.clear()
        # the runner reports (steps done + fraction of this one) / steps, refits included (fourier after wavefront)
        total, done, last_emit = len(calibration_steps.with_refits(names)), [0], [0.0]

        def progress(fraction: float, message: str) -> None:
            step = message.split(":", 1)[0]
            own = min(max(fraction * total - done[0], 0.0), 1.0)
            now = time.perf_counter()
            if own >= 1.0 or now - last_emit[0] > 0.05:  # ≤ 20 updates/s reach the GUI
                last_emit[0] = now
                self.progress.emit(step, own, message)

        def on_step(_result: Any) -> None:
            done[0] += 1

        try:
            record = run_calibration(
                self.bench,
                steps,
                program=program,
                program_path=program_path,
                out_dir=out_dir,
                base=base,
                progress=progress,
                cancel=self.cancel,
                on_step=on_step,
                wavefront=wavefront,
                step_options=step_options,
            )
        except CalibrationCancelled as exc:
            self.progress.emit("cancelled", 0.0, str(exc))
            raise
        finally:
            if self.uploaded_phase is not None and "slm" in self.bench.devices:
                self.bench.upload_phase(
                    self.uploaded_phase
                )  # the steps left their own patterns on the SLM
            if resume_view:
                self.start_stream()
        self.record, self.record_applied = record, True  # the steps left the bench as calibrated
        self.emit_state()
        return record

    def load_record(self, path: str) -> tuple[CalibrationRecord, str]:
        """Read a record and put its exposure and phase LUT on the bench (when camera and SLM are connected)."""
        record = CalibrationRecord.load(path)
        note = ""
        if self.bench.devices:
            differ = record.check_identities(self.bench.info())
            if differ:
                note = f"measured with other devices ({', '.join(differ)}): calibrate this bench again. "
        self.record, self.record_applied = record, False
        if self.apply_record():
            self.emit_state()
        else:
            note += "Not applied to the bench yet: it is applied when the camera and SLM are connected (Connect all)."
        return record, note

    def shutdown(self) -> None:
        self.cancel.set()
        self.compile_cancel.set()
        self.stop_stream()
        self.bench.close()


__all__ = [
    "ADVICE",
    "BenchWorker",
    "JobCancelled",
    "Worker",
    "cancellable",
    "default_run_path",
    "start_folder",
    "start_in_thread",
    "unique_path",
]
