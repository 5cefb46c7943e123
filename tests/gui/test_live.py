"""The Qt-free pacing of live runs: inputs at most `rate_hz` a second, on a schedule, no burst after a stall."""

from __future__ import annotations

import pytest

import lab4f.bench.run as live  # the pacer lives with the core streaming loop
from lab4f.gui.live import Pacer  # the GUI uses the core one


class FakeClock:
    """perf_counter and sleep on a virtual clock: the pacer's schedule is checked exactly, whatever the load."""

    def __init__(self) -> None:
        self.now, self.sleeps = 100.0, []

    def perf_counter(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture()
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(live, "time", fake)
    return fake


# Behaviour on a virtual clock; the rate the pacer holds on the real clock is in benchmarks/bench_rates.py.
def test_pacer_holds_the_rate_and_does_not_burst_after_a_stall(clock: FakeClock) -> None:
    pacer = Pacer(200.0)
    starts = []
    for _ in range(41):
        pacer.wait()
        starts.append(clock.now)
    assert (
        len(clock.sleeps) == 40
    )  # the first call is due at once, each of the others waits for its slot
    assert [round(b - a, 9) for a, b in zip(starts, starts[1:], strict=False)] == [
        0.005
    ] * 40  # one slot each
    clock.now += 0.1  # a stall of 20 intervals
    before = len(clock.sleeps)
    starts = []
    for _ in range(5):
        pacer.wait()
        starts.append(clock.now)
    # no burst to catch up: the first call after the stall goes at once, the next four keep 5 ms apart
    assert len(clock.sleeps) - before == 4
    assert [round(b - a, 9) for a, b in zip(starts, starts[1:], strict=False)] == [0.005] * 4


def test_pacer_counts_the_time_a_call_took(clock: FakeClock) -> None:
    pacer = Pacer(100.0)
    pacer.wait()
    clock.now += 0.004  # the work between calls took 4 of the 10 ms
    pacer.wait()
    assert clock.sleeps == [pytest.approx(0.006)]


def test_unpaced_never_sleeps(clock: FakeClock) -> None:
    for rate in (0, None):
        pacer = Pacer(rate)
        for _ in range(1000):
            pacer.wait()
    assert clock.sleeps == []
