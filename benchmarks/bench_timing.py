"""Throughput of synchronised acquisition on the realistic-timing bench (examples/realistic_timing.toml).

Measured side by side in one run, after the `timing` calibration step:
- the pipelined ``settle`` stream (lab4f's default): inputs/s, against the timing limit
  1 / max(display period × refreshes per input, exposure, camera frame period, SLM settle) (target ≥ 90 %);
- the fixed 0.3 s settle of slmsuite's default (show → sleep 0.3 s → flush → grab): inputs/s, and the ratio;
- the naive show → grab loop: how many of its frames show the PREVIOUS input (from the simulator's truth).

Usage: python benchmarks/bench_timing.py [--json] [--inputs N]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration.camera import camera_step
from lab4f.calibration.timing import timing_step

CONFIG = Path(__file__).resolve().parents[1] / "examples" / "realistic_timing.toml"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--inputs", type=int, default=120)
    args = ap.parse_args()
    out: dict = {}
    with Bench(load_bench_config(CONFIG)) as bench:
        camera_step(bench)
        bench.measured_timing = timing_step(bench).values
        bench.illuminate()
        shape = bench.display.shape
        versions: dict[int, int] = {}

        def show(i: int) -> None:
            bench.show(np.full(shape, 0.1 + 0.8 * (i % 7) / 7))
            versions[i] = bench.display.version

        sync = bench.sync
        timing = sync.timing
        cam = bench.devices["camera"]
        t0 = time.perf_counter()
        pairs = list(sync.stream(args.inputs, show))
        settle_rate = len(pairs) / (time.perf_counter() - t0)
        wrong = sum(f.truth["display"].get(versions[i], 0) < 0.99 for i, f in pairs)
        hold = sync.hold_s(timing)
        refreshes = round(hold / timing.display_period_s) if timing.display_period_s else None
        limit = 1.0 / max(
            hold, cam.exposure_s, cam.frame_period_s, 0.0
        )  # single-frame program: no SLM write per input
        out["settle_stream"] = {
            "inputs_per_s": settle_rate,
            "timing_limit_per_s": limit,
            "fraction_of_limit": settle_rate / limit,
            "hold_s": hold,
            "refreshes_per_input": refreshes,
            "wrongly_paired": int(wrong),
            "counters": sync.counters.to_dict(),
        }
        # slmsuite's default settle: 0.3 s after every change, then flush and grab
        n_fixed = max(6, args.inputs // 20)
        t0 = time.perf_counter()
        for i in range(n_fixed):
            show(i)
            time.sleep(0.3)
            cam.drain()
            cam.read_frame()
        fixed_rate = n_fixed / (time.perf_counter() - t0)
        out["fixed_0.3s_settle"] = {"inputs_per_s": fixed_rate}
        # the naive loop: show, take the next frame
        stale = 0
        for i in range(30):
            show(i)
            f = cam.read_frame()
            stale += f.truth["display"].get(versions[i], 0) < 0.99
        out["naive"] = {"frames": 30, "showing_another_input": int(stale)}
        out["speedup_vs_fixed_settle"] = settle_rate / fixed_rate
        out["timing"] = timing.to_dict()
    if args.json:
        print(json.dumps(out))
    else:
        s = out["settle_stream"]
        print(
            f"settle stream: {s['inputs_per_s']:.1f} inputs/s = {100 * s['fraction_of_limit']:.0f} % of the timing "
            f"limit {s['timing_limit_per_s']:.1f}/s (hold {1e3 * s['hold_s']:.1f} ms = {s['refreshes_per_input']} "
            f"refreshes), wrongly paired {s['wrongly_paired']}"
        )
        print(
            f"fixed 0.3 s settle: {fixed_rate:.2f} inputs/s → lab4f is {out['speedup_vs_fixed_settle']:.1f}× faster"
        )
        print(
            f"naive show → grab: {out['naive']['showing_another_input']}/30 frames show another input"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
