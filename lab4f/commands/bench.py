"""`lab4f bench info|check|drivers|snap`: what the bench is, a preflight before first light, the drivers installed,
and one camera frame to PNG and HDF5."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab4f.argtypes import CONFIG_HELP

if TYPE_CHECKING:
    import numpy as np

SNAP_SCHEMA = 1


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("bench", help="bench devices: info, snap", parents=[common])
    bsub = p.add_subparsers(dest="bench_command", required=True)
    info = bsub.add_parser("info", help="devices, identities and settings", parents=[common])
    info.add_argument("--config", help=CONFIG_HELP)
    info.set_defaults(func=cmd_info)
    check = bsub.add_parser(
        "check",
        help="preflight: validate every setting, open every device, read identities, "
        "list the silent defaults in use; touches neither the light nor the SLM",
        parents=[common],
    )
    check.add_argument("--config", help=CONFIG_HELP)
    check.set_defaults(func=cmd_check)
    drivers = bsub.add_parser(
        "drivers", help="every registered driver and whether it imports here", parents=[common]
    )
    drivers.set_defaults(func=cmd_drivers)
    snap = bsub.add_parser("snap", help="grab one camera frame to PNG and HDF5", parents=[common])
    snap.add_argument("--config", help=CONFIG_HELP)
    snap.add_argument(
        "--out", default="snap", help="output path without extension (writes .png and .h5)"
    )
    snap.add_argument(
        "--image",
        choices=["point", "blank", "digit"],
        default="point",
        help="what the input display shows while the frame is grabbed",
    )
    snap.add_argument(
        "--light",
        choices=["on", "off", "as-is"],
        default="on",
        help="source and shutter during the grab: on/open (default), off/closed (a dark frame), or as "
        "they are; restored afterwards",
    )
    snap.set_defaults(func=cmd_snap)


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import DRIVERS, Bench
    from lab4f.calibration.record import record_leftovers
    from lab4f.commands.calibrate import describe_leftover

    config = load_bench_config(args.config)
    with Bench(config) as bench:
        info = bench.info()
        info["geometry"] = bench.geometry.__dict__ | {
            "output_pitch_um": bench.geometry.output_pitch_um,
            "camera_pixels_per_cell": bench.pixels_per_cell(),
            "camera_cells": list(bench.camera_cells()),
        }
    folder = Path(config.calibration_dir)
    info["calibration_dir"] = str(folder)
    # temporary record files an interrupted save left (`lab4f calibration recover` names or removes them)
    info["leftovers"] = record_leftovers(folder)
    if not args.json:
        print(f"{info['name']} ({info['mode']} mode)")
        for role, dev in info["devices"].items():
            print(f"  {role:13s} {dev['driver']:20s} {dev['identity']}")
        g = info["geometry"]
        ppc = g["camera_pixels_per_cell"]
        print(
            f"  geometry: output cell {g['output_pitch_um']:.2f} µm"
            + (
                f" = {ppc:.3f} camera pixels; the camera sees {g['camera_cells'][1]}×{g['camera_cells'][0]} cells"
                if ppc
                else " (the camera reports no pixel pitch)"
            )
        )
        print("available drivers: " + ", ".join(sorted(DRIVERS)))
        for item in info["leftovers"]:
            print(describe_leftover(item, folder))
    return info


def cmd_check(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench, check_config
    from lab4f.bench.preflight import default_warnings, raise_for_errors
    from lab4f.calibration.record import record_leftovers

    config = load_bench_config(args.config)
    raise_for_errors(check_config(config))  # every setting first: nothing opens with a wrong one
    with Bench(
        config
    ) as bench:  # opens each device (a failure closes the ones opened); no light, no SLM upload
        info = bench.info()
        findings = default_warnings(config, bench)
    leftovers = record_leftovers(Path(config.calibration_dir))
    for item in leftovers:
        findings.append(_leftover_finding(item))
    out = {
        "name": info["name"],
        "mode": info["mode"],
        "devices": info["devices"],
        "warnings": [f.to_dict() for f in findings],
        "leftovers": leftovers,
    }
    if not args.json:
        print(f"{info['name']}: every device opened")
        for role, dev in info["devices"].items():
            print(f"  {role:13s} {dev['driver']:20s} {dev['identity']}")
        for f in findings:
            print(f"  warning [{f.role}] {f.message}")
    return out


def _leftover_finding(item: dict[str, Any]) -> Any:
    from lab4f.bench.preflight import Finding

    return Finding(
        "calibration",
        "warning",
        f"a temporary record file an interrupted save left: {item}; "
        "`lab4f calibration recover` names or removes it",
    )


def cmd_drivers(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.devices import installed_drivers

    drivers = installed_drivers()
    if not args.json:
        for d in drivers:
            mark = "ok " if d["importable"] else "-- "
            print(
                f"{mark}{d['role']:13s} {d['driver']:20s} {d['doc']}"
                + (f"  ({d['why']})" if d["why"] else "")
            )
        print(
            'any other slmsuite SLM/Camera subclass or instrument class: driver = "package.module:Class"'
        )
    return {"drivers": drivers}


def _input_image(kind: str, shape: tuple[int, int]) -> np.ndarray:
    import numpy as np

    img = np.zeros(shape, dtype=np.float32)
    if kind == "point":
        img[shape[0] // 2, shape[1] // 2] = 1.0
    elif kind == "digit":
        from lab4f.data import load_dataset

        digit = load_dataset("mnist5k").test[0][0][0].numpy()
        h, w = min(shape[0], digit.shape[0]), min(shape[1], digit.shape[1])
        img[:h, :w] = digit[:h, :w]
    return img


def cmd_snap(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.calibration.camera import light_blocked, light_on
    from lab4f.storage import atomic_h5, write_json_attr

    out = Path(args.out)

    light = {"on": light_on, "off": light_blocked, "as-is": lambda bench: contextlib.nullcontext()}[
        args.light
    ]
    with Bench(load_bench_config(args.config)) as bench:
        if "display" in bench.devices:
            bench.show(_input_image(args.image, tuple(bench.display.shape)))
        with light(bench):
            frame = bench.snap()
        info = bench.info()
    with atomic_h5(out.with_suffix(".h5"), "snapshot", SNAP_SCHEMA) as f:
        f.create_dataset("frame", data=frame, compression="gzip")
        write_json_attr(f, "bench", info)
        f.attrs["input"] = args.image
        f.attrs["light"] = args.light
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.imsave(out.with_suffix(".png"), np.log1p(frame.astype(np.float64)), cmap="magma")
    result = {
        "png": str(out.with_suffix(".png")),
        "h5": str(out.with_suffix(".h5")),
        "shape": list(frame.shape),
        "dtype": str(frame.dtype),
        "max": float(frame.max()),
        "mean": float(frame.mean()),
    }
    if not args.json:
        print(
            f"frame {frame.shape} {frame.dtype}, max {frame.max()}, mean {frame.mean():.1f} → "
            f"{result['png']}, {result['h5']}"
        )
    return result
