"""The Qt-free pacing of live runs: inputs at most `rate_hz` a second, on a schedule, no burst after a stall."""

from __future__ import annotations

import time

from lab4f.gui.live import Pacer


def test_pacer_holds_the_rate_and_does_not_burst_after_a_stall() -> None:
    pacer = Pacer(200.0)
    t0 = time.perf_counter()
    for _ in range(41):
        pacer.wait()
    elapsed_s = time.perf_counter() - t0
    assert 0.195 <= elapsed_s < 0.4, elapsed_s  # 40 intervals of 5 ms; the upper bound allows a loaded host
    time.sleep(0.1)  # a stall of 20 intervals
    t1 = time.perf_counter()
    for _ in range(5):
        pacer.wait()
    assert time.perf_counter() - t1 >= 0.0195  # the first call is due at once, the next four keep 5 ms apart


def test_unpaced_never_sleeps() -> None:
    pacer = Pacer(0)
    t0 = time.perf_counter()
    for _ in range(1000):
        pacer.wait()
    assert time.perf_counter() - t0 < 0.05
