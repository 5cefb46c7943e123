"""`lab4f capture`: inputs through the calibrated bench → their feature maps (HDF5), with the digital reference.

For a kernel bank with no lab4f back end (``lab4f compile kernels.npy``): the maps can be measured, compared with
the bank's digital reference and exported. ``--json`` reports the relative error and per-channel R².
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lab4f.argtypes import CONFIG_HELP, positive_int
from lab4f.commands import SYNC_CHOICES
from lab4f.errors import ConfigError


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "capture",
        parents=[common],
        help="stream inputs through the calibrated bench → feature maps + digital reference (HDF5)",
    )
    p.add_argument(
        "--program",
        default=None,
        help="compiled optical program (.h5, from `lab4f compile BANK`); default: the program the "
        "calibration record was measured with",
    )
    p.add_argument(
        "--calibration",
        default=None,
        help="calibration record (.h5) or folder (its latest record), from `lab4f calibrate all "
        "--program P`",
    )
    p.add_argument("--config", default=None, help=CONFIG_HELP)
    p.add_argument(
        "--sync",
        choices=SYNC_CHOICES,
        default=None,
        help="how frames are paired with inputs (default: the bench config's)",
    )
    src = p.add_mutually_exclusive_group()
    src.add_argument("--dataset", default=None, help="dataset name (default: mnist5k)")
    src.add_argument(
        "--images", default=None, help="a folder of images (subfolders = class names, sorted)"
    )
    p.add_argument(
        "--split",
        choices=["train", "val", "test"],
        default="test",
        help="dataset split (default test)",
    )
    p.add_argument("--data-dir", default=None, help="local data directory (or $LAB4F_DATA)")
    p.add_argument("--limit", type=positive_int, default=None, help="only the first N inputs")
    p.add_argument(
        "--average",
        type=positive_int,
        default=1,
        metavar="N",
        help="average N camera frames per input (and SLM frame): noise / √N, N× the frames",
    )
    p.add_argument(
        "--out",
        default=None,
        help="capture file (HDF5); default: a new runs/capture-YYYYmmdd-HHMMSS[-N].h5",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    p.set_defaults(func=cmd_capture)


def _output(args: argparse.Namespace) -> tuple[Path, bool]:
    """(path, take the next free -N name instead of replacing)."""
    from datetime import datetime

    if args.out is None:
        return Path("runs") / f"capture-{datetime.now():%Y%m%d-%H%M%S}.h5", True
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; pass a file name (e.g. {out / 'capture.h5'})")
    if out.exists() and not args.overwrite:
        raise ConfigError(
            f"--out {out} exists and is not overwritten: pass another --out, or --overwrite"
        )
    return out, not args.overwrite


def _record(path: str | None, bench: Any) -> Any | None:
    if not path:
        return None
    from lab4f.calibration import CalibrationRecord, latest_record

    p = Path(path)
    if p.is_dir():
        record = latest_record(p, bench=bench)
        if record is None:
            raise ConfigError(
                f"no readable calibration record in {p}; run `lab4f calibrate all --program P --out {p}`"
            )
        return record
    return CalibrationRecord.load(p, bench=bench)


def _inputs(args: argparse.Namespace, size: int) -> tuple[Any, Any, dict[str, Any]]:
    """(images (B, 1, N, N), labels (B,), what they are) from --images or --dataset."""
    if args.images:
        from lab4f.imagefolder import read_image_folder

        folder = read_image_folder(args.images, size)
        x, y = folder.images, folder.labels
        classes = sorted(d.name for d in Path(args.images).iterdir() if d.is_dir())
        info = {
            "images": str(Path(args.images).resolve()),
            "files": folder.files,
            "class_names": classes,
            **folder.summary(),
        }
        info.pop("skipped_files", None)
    else:
        from lab4f.data import load_dataset

        name = args.dataset or "mnist5k"
        splits = load_dataset(name, data_dir=args.data_dir, split_seed=0, image_size=size)
        x, y = getattr(splits, args.split).tensors
        info = {"dataset": name, "split": args.split, "split_seed": 0}
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
        if "files" in info:
            info["files"] = info["files"][: args.limit]
    if len(x) == 0:
        raise ConfigError("no inputs to capture")
    return x, y, info


def cmd_capture(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.capture import capture_dataset, save_capture
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import check_display_fits, prepare

    out, unique = _output(args)
    with Bench(load_bench_config(args.config, sync=args.sync)) as bench:
        record = _record(args.calibration, bench)
        if record is None:
            if args.program is None:
                raise ConfigError(
                    "pass --program P (from `lab4f compile BANK`) and --calibration R (from `lab4f "
                    "calibrate all --program P`)"
                )
            print(
                "warning: no calibration record (--calibration): tiles are cut at their nominal positions without "
                "the channel filters; run `lab4f calibrate all --program P` first",
                file=sys.stderr,
            )
        setup = prepare(bench, None, record=record, program=args.program)
        setup.calibration_path = getattr(record, "path", None)
        x, y, info = _inputs(args, setup.program.input_size)
        check_display_fits(setup, x)

        def progress(done: int, total: int) -> None:
            if not args.json:
                print(f"\r{done}/{total} inputs", end="", file=sys.stderr, flush=True)

        result = capture_dataset(setup, x, y, average=args.average, on_progress=progress)
        if not args.json:
            print(file=sys.stderr)
        path = save_capture(out, result, setup, overwrite=not unique, unique=unique, extra=info)
    m = result.metrics() | {
        "capture_file": str(path),
        "inputs": {k: v for k, v in info.items() if k != "files"},
    }
    if not args.json:
        print(
            f"{m['n']} inputs × {m['frames_per_input']} frame(s): feature error {100 * m['relative_error']:.2f} % "
            f"of the digital reference (forward model; {100 * (m['relative_error_vs_bank'] or 0):.2f} % of the "
            f"bank's own conv2d), channel R² min {m['r2_min']:.4f} median {m['r2_median']:.4f}; "
            f"{m['inputs_per_s']:.1f} inputs/s ({m['camera_frames_per_s']:.1f} camera frames/s) → {path}"
        )
    return m
