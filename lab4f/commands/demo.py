"""`lab4f demo`: the main job on the built-in simulated bench (what `make demo` runs)."""

from __future__ import annotations

import argparse
from typing import Any

from lab4f.argtypes import CONFIG_HELP, positive_int
from lab4f.commands import SYNC_CHOICES


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "demo",
        help="train, calibrate, compile, run the test split through the optics",
        parents=[common],
    )
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--sync",
        choices=SYNC_CHOICES,
        default=None,
        help="how frames are paired with inputs: settle, trigger, none (default: the bench config's)",
    )
    p.add_argument("--out", default="runs/demo", help="results folder")
    p.add_argument(
        "--cache", default=".lab4f_cache", help="folder of cached teacher/student checkpoints"
    )
    p.add_argument(
        "--test-images", type=positive_int, default=None, help="limit the test split (default: all)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.config import load_bench_config
    from lab4f.demo import DemoConfig, run_demo

    cfg = DemoConfig(out=args.out, cache=args.cache, test_images=args.test_images, seed=args.seed)
    result = run_demo(cfg, load_bench_config(args.config, sync=args.sync), progress=not args.json)
    if not args.json:
        print(result.table())
        print("timings: " + ", ".join(f"{k} {v:.0f} s" for k, v in result.timings_s.items()))
        print("files: " + ", ".join(f"{k}={v}" for k, v in result.files.items()))
    return {
        "rows": result.rows,
        "timings_s": result.timings_s,
        "files": result.files,
        "run": result.run_metrics,
        "run_calibrated": result.calibrated_run_metrics,
    }
