"""HarvestersCamera on viky.cti: where the frames fall on the host clock around a pause (side by side, one run).

The tests (tests/drivers/test_harvesters_timing.py) check what does not depend on machine load: frame IDs, their
order, that the queue holds the frames from before a pause. This prints the host-clock margins, which a loaded
machine stretches: how long before the pause ended the frame slmsuite's flush + get_image returns was exposed
(positive: stale), and how long after lab4f's drain the next frame started (positive: fresh).

    python benchmarks/bench_harvesters_timing.py [--json] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import time

from slmsuite.hardware.cameras.camera import Camera

from lab4f.drivers.harvesters_camera import HarvestersCamera, HarvestersCameraSettings


def _pause(cam: HarvestersCamera) -> tuple[float, float]:
    cam.drain()
    cam.read_frame()
    start = time.perf_counter()
    time.sleep((cam.buffer_count_in_use + 7) * cam.frame_period_s)
    return start, time.perf_counter()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    cam = HarvestersCamera(HarvestersCameraSettings(serial="1", roi=(0, 0, 200, 160)))
    naive_stale_by, drain_fresh_by = [], []
    try:
        for _ in range(args.repeats):
            _, pause_end = _pause(cam)
            Camera.flush(cam)  # slmsuite's own flush, then get_image: the naive loop
            cam.get_image()
            naive_stale_by.append(pause_end - (cam.last_frame.end_s + cam.clock_uncertainty_s))
            _pause(cam)
            cam.drain()
            drained_at = time.perf_counter()
            frame = cam.read_frame()
            drain_fresh_by.append(frame.start_s + cam.clock_uncertainty_s - drained_at)
    finally:
        cam.close()
    out = {
        "frame_period_s": cam.frame_period_s,
        "clock_uncertainty_s": cam.clock_uncertainty_s,
        "naive_frame_exposed_before_pause_end_s": naive_stale_by,
        "drained_next_frame_started_after_drain_s": drain_fresh_by,
        "naive_stale_fraction": sum(d > 0 for d in naive_stale_by) / len(naive_stale_by),
        "drain_fresh_fraction": sum(d > -cam.frame_period_s for d in drain_fresh_by)
        / len(drain_fresh_by),
    }
    print(json.dumps(out, allow_nan=False) if args.json else json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
