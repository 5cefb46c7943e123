"""The streaming pipeline: policies, counters, faults and clean shutdown, with a fake frame source."""

import gc
import threading
import time

import numpy as np
import pytest

from lab4f.bench.stream import Pipeline, StreamStats, warm_up
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceTimeout


class FakeCamera:
    """Frames (4×4 uint16 filled with the index) at most every ``period_s``; optional skips and a fault."""

    def __init__(
        self,
        n: int | None = None,
        period_s: float = 0.0,
        skip: tuple[int, ...] = (),
        fault_at: int | None = None,
        fault: type[Exception] = DeviceTimeout,
    ) -> None:
        self.n, self.period_s, self.skip, self.fault_at, self.fault = (
            n,
            period_s,
            set(skip),
            fault_at,
            fault,
        )
        self.index, self.delivered = -1, 0

    def __call__(self):
        if self.fault_at is not None and self.delivered >= self.fault_at:
            raise self.fault("camera: no frame within 1 s; check the trigger cable")
        if self.n is not None and self.delivered >= self.n:
            return None
        if self.period_s:
            time.sleep(self.period_s)
        self.index += 1
        while self.index in self.skip:  # the camera lost this frame
            self.index += 1
        self.delivered += 1
        return self.index, np.full((4, 4), self.index, np.uint16), f"label-{self.index}"


def slow_process(delay_s: float):
    def process(frames: np.ndarray) -> list[int]:
        time.sleep(delay_s)
        return [int(f[0, 0]) * 2 for f in frames]

    return process


def no_pipeline_threads() -> bool:
    return not any(t.name.startswith("lab4f-") for t in threading.enumerate())


def test_evaluate_with_a_slow_consumer_drops_nothing_and_keeps_order() -> None:
    pipe = Pipeline(
        FakeCamera(n=60), slow_process(0.01), policy="evaluate", capacity=8, batch_size=4
    )
    summary = pipe.run(timeout=20)
    s = summary.stats
    assert s.stop_reason == "source_exhausted" and summary.ok
    assert (s.acquired, s.processed, s.dropped, s.unprocessed) == (60, 60, 0, 0)
    assert [r[0] for r in summary.results] == list(range(60))
    assert all(
        out == 2 * idx and payload == f"label-{idx}" for idx, payload, out in summary.results
    )
    assert no_pipeline_threads()


def test_live_with_a_slow_consumer_counts_every_drop() -> None:
    pipe = Pipeline(
        FakeCamera(n=200, period_s=0.0005),
        slow_process(0.02),
        policy="live",
        capacity=4,
        batch_size=2,
        max_wait_s=0.0,
    )
    s = pipe.run(timeout=20).stats
    assert (
        s.acquired == 200 and s.dropped_overflow > 100
    )  # consumer ~100 frames/s, source ~2000 frames/s
    assert s.acquired == s.processed + s.dropped_overflow + s.unprocessed
    indices = [r[0] for r in pipe.results]
    assert indices == sorted(indices) and indices[-1] == 199  # the newest frames won
    assert no_pipeline_threads()


def test_stop_mid_run_accounts_for_frames_in_flight_and_is_idempotent() -> None:
    pipe = Pipeline(
        FakeCamera(period_s=0.001), slow_process(0.03), policy="live", capacity=16, batch_size=4
    )
    with pipe:
        time.sleep(0.3)
        live = pipe.stats()
        assert live.running and live.stop_reason is None and live.acquired > 0
        assert gc.get_freeze_count() > 0  # no full collection over the whole heap mid-run
    s = pipe.stats()
    assert s.stop_reason == "stopped" and not s.running
    assert s.acquired == s.processed + s.dropped_overflow + s.unprocessed
    pipe.stop()
    pipe.stop()
    assert pipe.stats() == s
    assert no_pipeline_threads() and gc.get_freeze_count() == 0


@pytest.mark.parametrize("fault", [DeviceTimeout, DeviceDisconnected])
def test_device_fault_stops_cleanly_and_keeps_results(fault: type[Exception]) -> None:
    pipe = Pipeline(
        FakeCamera(fault_at=37, fault=fault), slow_process(0.002), capacity=8, batch_size=5
    )
    summary = pipe.run(timeout=20)
    assert summary.stop_reason == "device_error" and not summary.ok
    assert summary.error.startswith(f"{fault.__name__}: camera: no frame")
    assert summary.stats.processed == 37 and [r[0] for r in summary.results] == list(range(37))
    assert no_pipeline_threads()


def test_camera_index_gaps_count_as_drops() -> None:
    s = Pipeline(FakeCamera(n=50, skip=(3, 10, 11, 12)), slow_process(0.0)).run(timeout=20).stats
    assert (s.acquired, s.processed, s.dropped_camera, s.dropped_overflow, s.dropped) == (
        50,
        50,
        4,
        0,
        4,
    )


def test_latency_percentiles_and_fps_are_plausible() -> None:
    # source ≤ 200 frames/s, processing 5 ms per batch of ≤ 4: latency ≥ the 5 ms of processing. Only bounds that a
    # loaded machine cannot break are asserted (it makes things slower, never faster); the latency and rate reached
    # are measured in benchmarks/bench_rates.py (and at bench scale in benchmarks/bench_pipeline.py)
    summary = Pipeline(
        FakeCamera(n=100, period_s=0.005), slow_process(0.005), batch_size=4, max_wait_s=0.002
    ).run(timeout=60)
    s = summary.stats
    assert 5.0 <= s.latency_p50_ms <= s.latency_p95_ms <= s.latency_p99_ms
    assert (
        0 < s.mean_fps <= 200 * 1.02
    )  # the source sleeps 5 ms per frame: never faster than 200 frames/s
    assert s.elapsed_s >= 100 * 0.005  # the source's waits happened
    assert isinstance(s, StreamStats) and summary.to_dict()["processed"] == 100
    assert [r[0] for r in summary.results] == list(range(100))  # in order, none lost


def test_max_items_stops_the_source() -> None:
    s = Pipeline(FakeCamera(), slow_process(0.0), max_items=25).run(timeout=20).stats
    assert (s.stop_reason, s.acquired, s.processed) == ("max_items", 25, 25)


def test_a_bug_in_process_stops_the_run_and_is_raised() -> None:
    def broken(frames: np.ndarray) -> list[int]:
        raise ZeroDivisionError("bug")

    pipe = Pipeline(FakeCamera(n=10), broken)
    with pytest.raises(ZeroDivisionError):
        pipe.run(timeout=20)
    s = pipe.stats()
    assert s.stop_reason == "error" and s.processed == 0 and s.acquired == s.unprocessed
    assert no_pipeline_threads()


def test_bad_configuration_is_refused() -> None:
    with pytest.raises(ConfigError, match="policy"):
        Pipeline(FakeCamera(), slow_process(0.0), policy="fast")
    with pytest.raises(ConfigError, match="capacity"):
        Pipeline(FakeCamera(), slow_process(0.0), capacity=0)


def test_warm_up_calls_every_batch_size_once() -> None:
    sizes: list[int] = []
    warm_up(lambda frames: sizes.append(len(frames)) or list(frames), np.zeros((4, 4)), 5)
    assert sizes == [1, 2, 3, 4, 5]


def test_warm_up_stacks_or_lists_the_frames_and_times_all_calls() -> None:
    frame = np.arange(12.0).reshape(3, 4)
    seen: list[object] = []

    def process(frames):  # noqa: ANN001, ANN202
        seen.append(frames)
        time.sleep(0.01)
        return list(frames)

    t0 = time.perf_counter()
    took = warm_up(process, frame, 3)
    outer = time.perf_counter() - t0
    # three calls that each sleep ≥ 10 ms: the returned time covers all of them (sleep never returns early,
    # so this lower bound holds on any load) and cannot exceed the time measured around the call
    assert 0.03 <= took <= outer
    assert [type(f) for f in seen] == [np.ndarray] * 3
    assert [f.shape for f in seen] == [(1, 3, 4), (2, 3, 4), (3, 3, 4)]
    assert all((f == frame).all() for f in seen)
    seen.clear()
    warm_up(process, frame, 2, stack=False)
    assert [type(f) for f in seen] == [list, list] and [len(f) for f in seen] == [1, 2]
    assert all(g is frame for f in seen for g in f)  # the frame itself, not a copy


def test_keep_results_bounds_memory_and_results_since_reads_new_results() -> None:
    """A run without an end keeps only the newest results; a reader polling by running number gets each result
    at most once, in order, and can tell how many it missed."""
    pipe = Pipeline(
        FakeCamera(n=1000, period_s=0.0002),
        slow_process(0.0),
        policy="evaluate",
        capacity=16,
        batch_size=8,
        keep_results=100,
    )
    pipe.start()
    seen, count, missed = [], 0, 0
    while pipe.stats().running or count < pipe.stats().processed:
        new, total = pipe.results_since(count)
        missed += total - count - len(new)
        seen += [r[0] for r in new]
        count = total
        time.sleep(0.001)
    summary = pipe.summary()
    assert summary.stats.processed == 1000 and count == 1000
    assert 100 <= len(summary.results) <= 200 and pipe.results_dropped == 1000 - len(
        summary.results
    )
    assert [r[0] for r in summary.results] == list(
        range(1000 - len(summary.results), 1000)
    )  # the newest kept
    assert len(pipe._latencies) <= 200
    assert (
        seen == sorted(set(seen)) and len(seen) + missed == 1000
    )  # each once, in order; the rest accounted
    assert set(range(1000 - len(summary.results), 1000)) <= set(seen)
    assert pipe.results_since(990) == (summary.results[-10:], 1000) and pipe.results_since(
        1000
    ) == ([], 1000)
    with pytest.raises(ConfigError, match="keep_results"):
        Pipeline(FakeCamera(n=1), slow_process(0.0), keep_results=0)
