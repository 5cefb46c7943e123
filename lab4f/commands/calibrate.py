"""`lab4f calibrate STEP|all` (run calibration steps, save a new record), `lab4f calibration show RECORD` and
`lab4f calibration recover FOLDER` (records left by an interrupted save)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from lab4f.argtypes import CONFIG_HELP
from lab4f.calibration import (
    steps as registry,
)  # stdlib only: the steps' code is imported when they run
from lab4f.commands import SYNC_CHOICES


def __getattr__(attr: str) -> Any:
    if (
        attr == "STEP_NAMES"
    ):  # the registry's steps, in bench order (read when asked: a registered step is in it)
        return registry.names()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "calibrate", parents=[common], help="calibrate the bench; saves a new calibration record"
    )
    p.add_argument(
        "step", choices=[*registry.names(), "all"], help="one step, or all of them in bench order"
    )
    p.add_argument("--config", type=Path, default=None, help=CONFIG_HELP)
    p.add_argument(
        "--sync",
        choices=SYNC_CHOICES,
        default=None,
        help="how frames are paired with inputs: settle, trigger, none (default: the bench config's)",
    )
    p.add_argument(
        "--program", type=Path, default=None, help="compiled optical program (for tiles/gains)"
    )
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="record folder (default: the config's calibration_dir)",
    )
    p.add_argument(
        "--wavefront",
        action="store_true",
        help="with `all`: include the optional wavefront (aberration) step, ~20 s on a 512² SLM",
    )
    p.add_argument(
        "--flat-frames",
        type=int,
        default=0,
        metavar="N",
        help="with `camera` or `all`: measure the sensor's flat field (pixel response non-uniformity) "
        "from N diffuse frames (32 is a good choice: ~0.4 %% error per pixel on the simulated "
        "bench); 0 (default): a unity flat",
    )
    grid = p.add_argument_group(
        "Fourier step spot grid (fourier, all; a refused grid is retried once with a finer "
        "pitch, on the axis if it was off the camera)"
    )
    grid.add_argument(
        "--array-shape", type=int, default=None, metavar="N", help="N×N spots (default 9)"
    )
    grid.add_argument(
        "--array-pitch",
        type=int,
        default=None,
        metavar="K",
        help="spot spacing in SLM k-space pixels, knm (default 30)",
    )
    grid.add_argument(
        "--array-center",
        type=_pair,
        default=None,
        metavar="X,Y",
        help="grid centre offset from the optical axis, knm (default: on the axis)",
    )
    grid.add_argument(
        "--no-fourier-retry",
        dest="fourier_retry",
        action="store_false",
        help="refuse a grid at once instead of retrying it with an adapted one",
    )
    gains = p.add_argument_group("gains step (gains, all; and display, which re-fits the gains)")
    gains.add_argument(
        "--gains-frames",
        type=int,
        default=None,
        metavar="N",
        help="camera frames averaged per calibration image (default 4); more frames, less noise in "
        "the fitted filters",
    )
    gains.add_argument(
        "--gains-filter-size",
        type=int,
        default=None,
        metavar="K",
        help="per-channel FIR filter size K×K, odd (default 5); 1 is a scalar gain",
    )
    gains.add_argument(
        "--gains-images",
        type=int,
        default=None,
        metavar="N",
        help="calibration images shown (default 48; every second one is held out for the R²)",
    )
    p.set_defaults(func=run_calibrate)
    s = sub.add_parser("calibration", parents=[common], help="inspect calibration records")
    ssub = s.add_subparsers(dest="action", required=True)
    show = ssub.add_parser("show", parents=[common], help="summary and PNG plots of a record")
    show.add_argument("record", type=Path, help="a record file, or a folder (its latest record)")
    show.add_argument(
        "--plots", type=Path, default=None, help="folder for PNGs (default: next to the record)"
    )
    show.set_defaults(func=run_show)
    rec = ssub.add_parser(
        "recover",
        parents=[common],
        help="give complete records left by a killed write (hidden .cal-….tmp files) their names",
    )
    rec.add_argument("folder", type=Path, help="the record folder")
    rec.add_argument(
        "--remove",
        action="store_true",
        help="also delete the incomplete leftovers (never a file a running process is writing)",
    )
    rec.set_defaults(func=run_recover)


def _pair(text: str) -> tuple[float, float]:
    """``X,Y`` → (x, y) floats (argparse type)."""
    parts = text.replace(" ", "").split(",")
    try:
        x, y = (float(v) for v in parts)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected X,Y (two numbers, e.g. 10,-5), got {text!r}"
        ) from None
    return x, y


def fourier_options(args: argparse.Namespace) -> dict[str, Any]:
    """The Fourier step's grid options given on the command line (refused for steps that do not run it)."""
    from lab4f.errors import ConfigError

    given = {
        k: v
        for k, v in (
            ("array_shape", args.array_shape),
            ("array_pitch", args.array_pitch),
            ("array_center", args.array_center),
        )
        if v is not None
    }
    if not args.fourier_retry:
        given["retry"] = False
    if not given:
        return {}
    if not registry.runs(args.step, "fourier"):
        raise ConfigError(
            f"--array-shape/--array-pitch/--array-center/--no-fourier-retry belong to the Fourier step; "
            f"`lab4f calibrate {args.step}` does not run it. Use `lab4f calibrate fourier` (or `all`)."
        )
    for name in ("array_shape", "array_pitch"):
        if name in given and given[name] < (2 if name == "array_shape" else 1):
            raise ConfigError(
                f"--{name.replace('_', '-')} must be ≥ {2 if name == 'array_shape' else 1}, "
                f"got {given[name]}"
            )
    return given


def gains_options(args: argparse.Namespace) -> dict[str, Any]:
    """The gains step's options given on the command line (refused for steps that do not run it)."""
    from lab4f.errors import ConfigError

    given = {
        k: v
        for k, v in (
            ("frames", args.gains_frames),
            ("filter_size", args.gains_filter_size),
            ("count", args.gains_images),
        )
        if v is not None
    }
    if not given:
        return {}
    if not registry.runs(args.step, "gains"):
        raise ConfigError(
            f"--gains-frames/--gains-filter-size/--gains-images belong to the gains step; `lab4f "
            f"calibrate {args.step}` does not run it. Use `lab4f calibrate gains --program P` (or "
            "`all`)."
        )
    if given.get("frames", 1) < 1:
        raise ConfigError(f"--gains-frames must be ≥ 1, got {given['frames']}")
    k = given.get("filter_size", 1)
    if k < 1 or k % 2 == 0:
        raise ConfigError(
            f"--gains-filter-size must be an odd number ≥ 1 (1: a scalar gain), got {k}"
        )
    if given.get("count", 2) < 2:
        raise ConfigError(f"--gains-images must be ≥ 2 (one is held out), got {given['count']}")
    return given


def run_calibrate(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.calibration.runner import run_calibration
    from lab4f.errors import ConfigError
    from lab4f.optics.program import OpticalProgram

    flat_frames = args.flat_frames
    if flat_frames < 0:
        raise ConfigError(f"--flat-frames must be ≥ 0 (0: a unity flat), got {flat_frames}")
    if flat_frames and not registry.runs(args.step, "camera"):
        raise ConfigError(
            f"--flat-frames belongs to the camera step; `lab4f calibrate {args.step}` does not run it. "
            "Use `lab4f calibrate camera --flat-frames N` (or `all`)."
        )
    step_options: dict[str, dict[str, Any]] = (
        {"camera": {"flat_frames": flat_frames}} if flat_frames else {}
    )
    if fourier := fourier_options(args):
        step_options["fourier"] = fourier
    if gains := gains_options(args):
        step_options["gains"] = gains
    program = OpticalProgram.load(args.program) if args.program is not None else None
    t0 = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        if not args.json:
            print(
                f"\r[{100 * fraction:5.1f} %] {message[:90]:<90}",
                end="",
                file=sys.stderr,
                flush=True,
            )

    from lab4f.bench.faults import device_fault_context

    with (
        Bench(load_bench_config(args.config, sync=args.sync)) as bench,
        device_fault_context(
            bench.devices,
            "the calibration stopped; nothing was saved: the records in "
            f"{args.out or bench.config.calibration_dir} are unchanged",
        ),
    ):
        record = run_calibration(
            bench,
            args.step,
            program=program,
            program_path=args.program,
            out_dir=args.out,
            progress=progress,
            wavefront=args.wavefront,
            step_options=step_options or None,
        )
    elapsed_s = time.perf_counter() - t0
    if not args.json:
        print(file=sys.stderr)
        for r in record.steps.values():
            print(f"{r.name:>12}: {r.message}")
        print(f"saved {record.path} in {elapsed_s:.1f} s")
    return {
        "record": str(record.path),
        "elapsed_s": elapsed_s,
        **record.summary(),
        "flat": flat_summary(record),
    }


def flat_summary(record: Any) -> dict[str, Any] | None:
    """The flat field's statistics from the record's camera step (None without one): frames (0: a unity flat),
    relative RMS, estimated error RMS, range, pixels measured, coverage of the tiles' pixels."""
    step = record.steps.get("camera")
    if step is None:
        return None
    q = step.quality
    keys = (
        "flat_rms",
        "flat_noise_rms",
        "flat_min",
        "flat_max",
        "flat_pixels",
        "flat_coverage",
        "flat_exposure_s",
    )
    out: dict[str, Any] = {
        "frames": int(step.values.get("flat_frames", q.get("flat_frames", 0)) or 0)
    }
    out.update({k.removeprefix("flat_"): float(q[k]) for k in keys if k in q})
    return out


def describe_leftover(item: dict[str, Any], folder: Path) -> str:
    """One line on a leftover temporary record file and what to do with it."""
    size = f"{item['size_bytes'] / 1e6:.2f} MB"
    if item["writer_alive"]:
        what = f"being written by process {item['pid']}"
    elif item["duplicate_of"]:
        what = f"a second name of {item['duplicate_of']}; `lab4f calibration recover {folder}` removes it"
    elif item["complete"]:
        what = f"a complete record lab4f does not use yet; `lab4f calibration recover {folder}` names it"
    else:
        what = f"incomplete ({item['problem']}); `lab4f calibration recover {folder} --remove` deletes it"
    return f"leftover {item['path']} ({size}): {what}"


def run_show(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.calibration.plots import write_plots
    from lab4f.calibration.record import CalibrationRecord, latest_record, record_leftovers
    from lab4f.errors import CalibrationError

    folder = args.record if args.record.is_dir() else args.record.parent
    leftovers = record_leftovers(folder)
    if args.record.is_dir():
        record = latest_record(args.record)
        if record is None:
            complete = sum(1 for item in leftovers if item["complete"] and not item["writer_alive"])
            hint = (
                f"; it holds {complete} complete record(s) left by an interrupted save: run `lab4f calibration "
                f"recover {args.record}`"
                if complete
                else ""
            )
            raise CalibrationError(
                f"no readable calibration record in {args.record}{hint}; or run "
                "`lab4f calibrate all`"
            )
    else:
        record = CalibrationRecord.load(args.record)
    plots = write_plots(record, args.plots or record.path.with_suffix(""))
    summary = record.summary()
    if not args.json:
        print(f"{record.path}  created {record.created}  bench {summary['bench']}")
        for name, s in summary["steps"].items():
            q = ", ".join(f"{k}={v:.4g}" for k, v in s["quality"].items())
            print(f"  {name:>12}: {s['message']}  [{q}]")
        for p in plots:
            print(f"  plot: {p}")
        for item in leftovers:
            print(f"  {describe_leftover(item, folder)}")
    return {**summary, "plots": [str(p) for p in plots], "leftovers": leftovers}


def run_recover(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.calibration.record import recover_leftovers
    from lab4f.errors import ConfigError

    if not args.folder.is_dir():
        raise ConfigError(f"{args.folder} is not a folder; pass the folder the records are in")
    done = recover_leftovers(args.folder, remove=args.remove)
    if not args.json:
        for r in done["recovered"]:
            print(
                f"{r['from']} → {r['to']}"
                + (
                    " (already saved under that name; the extra name is removed)"
                    if r["already_saved"]
                    else ""
                )
            )
        for r in done["removed"]:
            print(f"removed {r['path']} ({r['problem']})")
        for r in done["kept"]:
            print(f"kept {r['path']}: {r['reason']}")
        if not any(done.values()):
            print(f"no leftover temporary record files in {args.folder}")
    return done
