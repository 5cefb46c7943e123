"""Rates and times the tests used to assert on the wall clock, measured here instead (tests check behaviour: a
wait happened, the order and counts are right; how close to the target a loaded machine gets is a measurement):

- the live view's Pacer at 200 Hz: achieved rate over 40 intervals (tests/gui/test_live.py checks the schedule
  on a virtual clock);
- the simulated camera's frame-rate limit (50 fps) and exposure limit (40 ms; then 1 ms → the 200 fps readout):
  achieved frame periods (tests/drivers/test_sim_camera.py checks that the camera waits at least that long);
- the streaming pipeline with a 200 frames/s source and 5 ms batches of ≤ 4: latency p50/p95/p99 and frames/s
  (tests/bench/test_stream.py checks the lower bounds and ordering);
- the two-rank DDP run is timed by tests/core/test_distributed.py (printed).

Run: .venv/bin/python benchmarks/bench_rates.py [--json]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def pacer_rate_hz(rate_hz: float = 200.0, intervals: int = 40) -> float:
    from lab4f.gui.live import Pacer

    pacer = Pacer(rate_hz)
    pacer.wait()
    t0 = time.perf_counter()
    for _ in range(intervals):
        pacer.wait()
    return intervals / (time.perf_counter() - t0)


def camera_periods_s() -> dict[str, float]:
    from lab4f.drivers.sim_camera import Simulated4fCamera, SimulatedCameraSettings
    from lab4f.drivers.sim_display import SimulatedDisplay, SimulatedDisplaySettings
    from lab4f.drivers.sim_slm import SimulatedFourierSLM, SimulatedSLMSettings

    def period(**cam: object) -> float:
        slm = SimulatedFourierSLM(SimulatedSLMSettings(resolution=(128, 128), settle_s=0.0))
        camera = Simulated4fCamera(
            slm,
            SimulatedDisplay(SimulatedDisplaySettings()),
            SimulatedCameraSettings(
                resolution=(128, 128), noise=False, acquisition="instant", **cam
            ),
        )
        camera.get_image()
        t0 = time.perf_counter()
        for _ in range(10):
            camera.get_image()
        return (time.perf_counter() - t0) / 10

    return {
        "max_fps_50": period(max_fps=50.0),
        "exposure_40ms": period(max_fps=200.0, exposure_s=0.04),
        "exposure_1ms_readout_200fps": period(max_fps=200.0, exposure_s=0.001),
    }


def pipeline(n: int = 200) -> dict[str, float]:
    from lab4f.bench.stream import Pipeline

    count = iter(range(n))

    def source() -> tuple[int, np.ndarray] | None:
        i = next(count, None)
        if i is None:
            return None
        time.sleep(0.005)
        return i, np.zeros((4, 4), np.uint16)

    def process(frames: np.ndarray) -> list[int]:
        time.sleep(0.005)
        return [0] * len(frames)

    s = Pipeline(source, process, batch_size=4, max_wait_s=0.002).run(timeout=60).stats
    return {
        "latency_p50_ms": s.latency_p50_ms,
        "latency_p95_ms": s.latency_p95_ms,
        "latency_p99_ms": s.latency_p99_ms,
        "frames_per_s": s.mean_fps,
        "processed": s.processed,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = {
        "pacer_200hz_achieved_hz": pacer_rate_hz(),
        "camera_period_s": camera_periods_s(),
        "pipeline_200fps_5ms_batches": pipeline(),
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"pacer at 200 Hz: {result['pacer_200hz_achieved_hz']:.1f} Hz")
        for k, v in result["camera_period_s"].items():
            print(f"camera {k}: {1e3 * v:.1f} ms per frame")
        p = result["pipeline_200fps_5ms_batches"]
        print(
            f"pipeline: latency p50/p95/p99 {p['latency_p50_ms']:.1f}/{p['latency_p95_ms']:.1f}/"
            f"{p['latency_p99_ms']:.1f} ms, {p['frames_per_s']:.1f} frames/s"
        )


if __name__ == "__main__":
    main()
