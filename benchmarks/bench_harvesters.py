"""Frames/s that HarvestersCamera delivers vs. the frame rate the GenTL producer is configured for.

Default device: the simulated viky.cti of the genicam wheel. Run:
    .venv/bin/python benchmarks/bench_harvesters.py [--frames 60] [--frame-rate-hz 200] [--json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from typing import Any

from lab4f.drivers.harvesters_camera import HarvestersCamera, HarvestersCameraSettings


def measure(settings: HarvestersCameraSettings, frames: int, warmup: int = 3) -> dict[str, Any]:
    """Open the camera, drop ``warmup`` frames, then time ``frames`` calls of get_image()."""
    with HarvestersCamera(settings) as cam:
        for _ in range(warmup):
            cam.get_image()
        start = time.perf_counter()
        for _ in range(frames):
            frame = cam.get_image()
        elapsed_s = time.perf_counter() - start
        configured = cam.configured_frame_rate_hz
        measured = frames / elapsed_s
        return {
            "benchmark": "harvesters_camera_fps",
            "cti_path": cam.cti_path,
            "device": f"{cam.identity.vendor} {cam.identity.model} #{cam.identity.serial}",
            "pixel_format": cam.pixel_format,
            "frame_shape": list(frame.shape),
            "frames": frames,
            "elapsed_s": round(elapsed_s, 4),
            "measured_fps": round(measured, 2),
            "configured_frame_rate_hz": configured,
            "compared_against": "AcquisitionFrameRate node"
            if configured
            else "no AcquisitionFrameRate node: "
            "nothing to compare against, measured_fps is the delivered rate",
            "measured_over_configured": round(measured / configured, 3) if configured else None,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cti-path", default=None, help="GenTL producer (default: genicam's viky.cti)"
    )
    parser.add_argument("--serial", default=None)
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument(
        "--frame-rate-hz", type=float, default=None, help="set AcquisitionFrameRate first"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # keep the output to the result
    settings = HarvestersCameraSettings(
        cti_path=args.cti_path, serial=args.serial, frame_rate_hz=args.frame_rate_hz, timeout_s=2.0
    )
    result = measure(settings, args.frames)
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"{result['device']} ({result['pixel_format']} {result['frame_shape']}) via {result['cti_path']}"
    )
    print(f"  measured   {result['measured_fps']:8.2f} frames/s over {result['frames']} frames")
    if result["configured_frame_rate_hz"]:
        print(
            f"  configured {result['configured_frame_rate_hz']:8.2f} Hz (AcquisitionFrameRate); "
            f"ratio {result['measured_over_configured']:.3f}"
        )
    else:
        print(f"  {result['compared_against']}")


if __name__ == "__main__":
    main()
