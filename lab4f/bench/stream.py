"""The streaming pipeline: an acquisition thread fills a bounded ring buffer, a consumer runs batches through
feature extraction and the back end. Counters as in pylablib's camera streams — nothing is dropped silently.

Policies: ``live`` (newest frame wins: a full ring discards its OLDEST frame and counts it) and ``evaluate``
(the producer blocks until there is space: nothing is dropped by the pipeline). Frames the camera itself
lost show up as gaps in the frame index and are counted as ``dropped_camera`` in both policies.

Accounting once stopped: ``acquired == processed + dropped_overflow + unprocessed`` (``unprocessed``: frames
left in the ring or in flight when :meth:`Pipeline.stop` was called).
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lab4f.errors import ConfigError, DeviceError, DeviceTimeout, Lab4fError

log = logging.getLogger(__name__)

POLICIES = ("live", "evaluate")
# acquire() returns (index, frame) or (index, frame, payload), or None when the source is exhausted
Acquired = tuple[int, np.ndarray] | tuple[int, np.ndarray, Any] | None
AcquireFn = Callable[[], Acquired]
ProcessFn = Callable[[np.ndarray | list[np.ndarray]], Sequence[Any]]


@dataclass(frozen=True)
class StreamStats:
    """A consistent snapshot of the counters (safe to read from a GUI thread)."""

    policy: str
    running: bool
    acquired: int
    processed: int
    dropped: int  # dropped_overflow + dropped_camera
    dropped_overflow: int  # discarded from a full ring (live policy)
    dropped_camera: int  # missing frame indices reported by the source
    unprocessed: int  # left in the ring / in flight at stop()
    queue_depth: int
    in_flight: int
    capacity: int
    fps: float  # processed frames/s over the last ``fps_window_s``
    mean_fps: float  # processed frames/s since start
    latency_p50_ms: float  # acquire → result, over the recent window
    latency_p95_ms: float
    latency_p99_ms: float
    elapsed_s: float
    stop_reason: str | None  # None while running; see Pipeline.STOP_REASONS
    error: str | None  # "DeviceTimeout: ..." when the run ended on an exception
    error_device: str | None = (
        None  # the failing device's name when the error carries it (DeviceError.device)
    )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class RunSummary:
    """The end of a run: final counters (latency percentiles over the whole run) and every result."""

    stats: StreamStats
    results: list[tuple[int, Any, Any]] = field(repr=False)

    @property
    def stop_reason(self) -> str | None:
        return self.stats.stop_reason

    @property
    def error(self) -> str | None:
        return self.stats.error

    @property
    def ok(self) -> bool:
        return self.stats.error is None

    def to_dict(self) -> dict[str, Any]:
        return self.stats.to_dict()


def _percentiles_ms(latencies_s: Sequence[float]) -> tuple[float, float, float]:
    if len(latencies_s) == 0:
        return float("nan"), float("nan"), float("nan")
    p = np.percentile(np.asarray(latencies_s), [50, 95, 99]) * 1e3
    return float(p[0]), float(p[1]), float(p[2])


def warm_up(process: ProcessFn, frame: np.ndarray, batch_size: int, stack: bool = True) -> float:
    """Call ``process`` once with every batch size 1..batch_size; returns the seconds it took.

    The first call of a new batch shape can take ~0.1 s (oneDNN builds its kernels per shape); without a
    warm-up that stall lands in the first seconds of a run and a free-running camera drops frames.
    """
    t0 = time.perf_counter()
    for n in range(1, batch_size + 1):
        frames = [frame] * n
        process(np.stack(frames) if stack else frames)
    return time.perf_counter() - t0


class Pipeline:
    """Acquisition thread → bounded ring → batched ``process`` → ``results`` [(index, payload, output)].

    ``acquire()`` returns (index, frame[, payload]) or None at the end of the source; ``process(frames)``
    gets the frames of a batch stacked (B, ...) — or as a list with ``stack=False``, which saves a copy
    when ``process`` reads only part of each frame — and returns one output per frame. A
    :class:`~lab4f.errors.DeviceError` in ``acquire`` ends the run cleanly: frames already in the ring are
    still processed, results are kept and ``stop_reason`` / ``error`` say what happened.
    ``freeze_gc`` exempts the objects alive at start from garbage collection for the run (``gc.freeze``):
    a full collection otherwise stalls both threads for ~0.15 s.
    ``keep_results`` bounds memory for runs without an end (a live view left streaming for hours): only the newest
    ``keep_results`` to 2×``keep_results`` results (and latencies) are kept; ``results_dropped`` counts the others
    and :meth:`results_since` reads new results by their running number. The counters always cover the whole run.
    """

    STOP_REASONS = ("max_items", "source_exhausted", "stopped", "device_error", "error")

    def __init__(
        self,
        acquire: AcquireFn,
        process: ProcessFn,
        policy: str = "evaluate",
        capacity: int = 64,
        batch_size: int = 16,
        max_items: int | None = None,
        max_wait_s: float = 0.005,
        fps_window_s: float = 1.0,
        latency_window: int = 2048,
        join_timeout_s: float = 10.0,
        stack: bool = True,
        freeze_gc: bool = True,
        keep_results: int | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ConfigError(
                f"stream policy {policy!r} is unknown; choose one of {', '.join(POLICIES)}"
            )
        if capacity < 1 or batch_size < 1:
            raise ConfigError(f"capacity and batch_size must be ≥ 1 (got {capacity}, {batch_size})")
        if keep_results is not None and keep_results < 1:
            raise ConfigError(f"keep_results must be ≥ 1 or None, got {keep_results}")
        self.keep_results = keep_results
        self.results_dropped = 0  # results removed by keep_results (the oldest)
        self.acquire, self.process = acquire, process
        self.policy, self.capacity, self.batch_size = policy, capacity, batch_size
        self.max_items, self.max_wait_s = max_items, max_wait_s
        self.fps_window_s, self.join_timeout_s, self.stack = fps_window_s, join_timeout_s, stack
        self.freeze_gc = freeze_gc
        self.results: list[tuple[int, Any, Any]] = []
        self._ring: deque[tuple[int, np.ndarray, Any, float]] = deque()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._producer_done = False
        self._threads: list[threading.Thread] = []
        self._acquired = self._processed = self._overflow = self._camera = self._in_flight = 0
        self._unprocessed = 0
        self._last_index: int | None = None
        self._latencies: list[float] = []
        self._recent_latency: deque[float] = deque(maxlen=latency_window)
        self._batches: deque[tuple[float, int]] = (
            deque()
        )  # (time, frames) of recent batches, for fps
        self._t_start = self._t_end = 0.0
        self._stop_reason: str | None = None
        self._error: BaseException | None = None

    # -- control ---------------------------------------------------------------------------------------
    def start(self) -> Pipeline:
        if self._threads:
            raise ConfigError(
                "this pipeline was already started; make a new Pipeline for a new run"
            )
        if self.freeze_gc:
            # a full collection over everything torch & co. allocated takes ~0.15 s and holds the GIL,
            # stalling acquisition long enough for a free-running camera to drop frames: exempt them
            gc.freeze()
        self._t_start = time.perf_counter()
        self._threads = [
            threading.Thread(target=self._produce, name="lab4f-acquire", daemon=True),
            threading.Thread(target=self._consume, name="lab4f-process", daemon=True),
        ]
        for t in self._threads:
            t.start()
        return self

    def stop(self) -> None:
        """Stop both threads and join them; idempotent. Frames not processed yet count as unprocessed."""
        with self._cond:
            if not self._stop.is_set():
                self._stop.set()
                self._end("stopped")
            self._cond.notify_all()
        self._join(self.join_timeout_s)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the run ends by itself (max_items, end of source, fault); True if it has ended."""
        deadline = None if timeout is None else time.perf_counter() + timeout
        for t in self._threads:
            if t is not threading.current_thread():
                t.join(None if deadline is None else max(deadline - time.perf_counter(), 0))
        return not any(t.is_alive() for t in self._threads)

    def run(self, timeout: float | None = None) -> RunSummary:
        """Start, wait for the end (or ``timeout``, then stop) and summarise; re-raises unexpected errors."""
        self.start()
        try:
            if not self.wait(timeout):
                log.warning("stream run did not end within %s s; stopping it", timeout)
        finally:
            self.stop()
        if self._error is not None and not isinstance(self._error, Lab4fError):
            raise self._error
        return self.summary()

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- reading ---------------------------------------------------------------------------------------
    def stats(self) -> StreamStats:
        """Counters now (latency percentiles over the most recent ``latency_window`` frames)."""
        with self._cond:
            recent = list(self._recent_latency)
            return self._snapshot(_percentiles_ms(recent))

    def results_since(self, count: int) -> tuple[list[tuple[int, Any, Any]], int]:
        """(the results with running number ≥ ``count`` that are still kept, the running total so far)."""
        with self._cond:
            start = max(count - self.results_dropped, 0)
            return self.results[start:], self.results_dropped + len(self.results)

    def summary(self) -> RunSummary:
        """Counters with latency percentiles over the whole run, and the results."""
        with self._cond:
            latencies = list(self._latencies)
        p = _percentiles_ms(latencies)
        with self._cond:
            return RunSummary(self._snapshot(p), self.results)

    def _snapshot(self, p: tuple[float, float, float]) -> StreamStats:
        running = any(t.is_alive() for t in self._threads)
        now = time.perf_counter() if running or not self._t_end else self._t_end
        elapsed = now - self._t_start if self._t_start else 0.0
        while self._batches and self._batches[0][0] < now - self.fps_window_s:
            self._batches.popleft()
        window = min(self.fps_window_s, elapsed)
        recent = sum(n for _, n in self._batches)
        err = None if self._error is None else f"{type(self._error).__name__}: {self._error}"
        return StreamStats(
            policy=self.policy,
            running=running,
            acquired=self._acquired,
            processed=self._processed,
            dropped=self._overflow + self._camera,
            dropped_overflow=self._overflow,
            dropped_camera=self._camera,
            unprocessed=self._unprocessed,
            queue_depth=len(self._ring),
            in_flight=self._in_flight,
            capacity=self.capacity,
            fps=recent / window if window > 0 else 0.0,
            mean_fps=self._processed / elapsed if elapsed > 0 else 0.0,
            latency_p50_ms=p[0],
            latency_p95_ms=p[1],
            latency_p99_ms=p[2],
            elapsed_s=elapsed,
            stop_reason=self._stop_reason,
            error=err,
            error_device=getattr(self._error, "device", None),
        )

    # -- the threads -------------------------------------------------------------------------------------
    def _end(self, reason: str, error: BaseException | None = None) -> None:
        """Record why the run ends: the first error, else the first reason; call with the lock held."""
        if error is not None and self._error is None:
            self._stop_reason, self._error = reason, error
        elif self._stop_reason is None:
            self._stop_reason = reason

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                if self.max_items is not None and self._acquired >= self.max_items:
                    with self._cond:
                        self._end("max_items")
                    break
                item = self.acquire()
                t_acquired = time.perf_counter()
                if item is None:
                    with self._cond:
                        self._end("source_exhausted")
                    break
                index, frame = int(item[0]), item[1]
                payload = item[2] if len(item) > 2 else None
                self._put(index, frame, payload, t_acquired)
        except DeviceError as exc:
            log.warning("acquisition stopped by a device error: %s", exc)
            with self._cond:
                self._end("device_error", exc)
        except BaseException as exc:  # a bug in acquire(): end cleanly, run() re-raises it
            log.exception("acquisition failed")
            with self._cond:
                self._end("error", exc)
        finally:
            with self._cond:
                self._producer_done = True
                self._cond.notify_all()

    def _put(self, index: int, frame: np.ndarray, payload: Any, t_acquired: float) -> None:
        with self._cond:
            if (
                self._stop.is_set()
            ):  # the consumer is gone: acquired, but it will never be processed
                self._acquired += 1
                self._unprocessed += 1
                return
            if self._last_index is not None:
                if index > self._last_index + 1:
                    self._camera += index - self._last_index - 1
                elif index <= self._last_index:
                    log.warning(
                        "frame index went back from %d to %d (camera restarted?)",
                        self._last_index,
                        index,
                    )
            self._last_index = index
            if self.policy == "evaluate":
                while len(self._ring) >= self.capacity and not self._stop.is_set():
                    self._cond.wait()
                if self._stop.is_set():  # stopped while waiting: acquired, never queued
                    self._acquired += 1
                    self._unprocessed += 1
                    return
            elif len(self._ring) >= self.capacity:
                self._ring.popleft()  # newest frame wins
                self._overflow += 1
            self._ring.append((index, frame, payload, t_acquired))
            self._acquired += 1
            self._cond.notify_all()

    def _take_batch(self) -> list[tuple[int, np.ndarray, Any, float]] | None:
        """Up to batch_size items once the batch is full or max_wait_s passed; None when the run is over."""
        with self._cond:
            while not self._ring:
                if self._stop.is_set() or self._producer_done:
                    return None
                self._cond.wait(0.1)
            deadline = time.perf_counter() + self.max_wait_s
            while len(self._ring) < self.batch_size and not (
                self._stop.is_set() or self._producer_done
            ):
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._cond.wait(left)
            if self._stop.is_set():
                return None
            n = min(self.batch_size, len(self._ring))
            batch = [self._ring.popleft() for _ in range(n)]
            self._in_flight = n
            self._cond.notify_all()  # space for a blocked producer
            return batch

    def _consume(self) -> None:
        try:
            while (batch := self._take_batch()) is not None:
                frames = [item[1] for item in batch]
                outputs = self.process(np.stack(frames) if self.stack else frames)
                if len(outputs) != len(batch):
                    raise ConfigError(
                        f"process() gave {len(outputs)} outputs for a batch of {len(batch)}"
                    )
                t_done = time.perf_counter()
                with self._cond:
                    for item, out in zip(batch, outputs, strict=True):
                        self.results.append((item[0], item[2], out))
                        latency = t_done - item[3]
                        self._latencies.append(latency)
                        self._recent_latency.append(latency)
                    if self.keep_results is not None and len(self.results) > 2 * self.keep_results:
                        drop = (
                            len(self.results) - self.keep_results
                        )  # trimmed in chunks: amortised O(1)
                        del self.results[:drop]
                        del self._latencies[: max(len(self._latencies) - self.keep_results, 0)]
                        self.results_dropped += drop
                    self._processed += len(batch)
                    self._in_flight = 0
                    self._batches.append((t_done, len(batch)))
        except BaseException as exc:  # process() failed: stop the producer too, keep what was done
            log.exception("processing failed")
            with self._cond:
                self._end("device_error" if isinstance(exc, DeviceError) else "error", exc)
                self._stop.set()
        finally:
            with self._cond:
                self._unprocessed += len(self._ring) + self._in_flight
                self._ring.clear()
                self._in_flight = 0
                if self._stop_reason is None:
                    self._end("stopped")
                self._t_end = time.perf_counter()
                if self.freeze_gc:
                    gc.unfreeze()
                self._stop.set()  # a producer blocked on a full ring must not wait for a consumer that left
                self._cond.notify_all()

    def _join(self, timeout_s: float) -> None:
        for t in self._threads:
            if t is threading.current_thread():
                continue
            t.join(timeout_s)
            if t.is_alive():
                raise DeviceTimeout(
                    f"thread {t.name} did not finish within {timeout_s} s after stop(): the acquire() or "
                    "process() callable is blocked; give the device call a timeout"
                )
