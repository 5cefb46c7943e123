"""`lab4f reproduce`: teacher vs SCLC+KD vs linear-without-KD over seeds → table, CSV, plot, checkpoints."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab4f.commands.train import parse_int_list
from lab4f.detection import DETECTION_MODELS
from lab4f.errors import ConfigError


def _segmentation(args: argparse.Namespace) -> dict[str, Any]:
    """`--task segmentation` is `lab4f segment reproduce` with the same seeds, output folder and --json."""
    from lab4f.cli import build_parser

    out = Path("results/segmentation") if args.out == Path("results/reproduce") else args.out
    argv = ["segment", "reproduce", "--seeds", args.seeds, "--out", str(out)] + (["--json"] if args.json else [])
    if args.epochs_given:
        argv += ["--epochs", str(args.epochs)]
    ns = build_parser().parse_args(argv)
    return ns.func(ns)


def _cmd(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.reproduce import reproduce

    if args.task == "segmentation":
        return _segmentation(args)
    from lab4f.training import TrainConfig

    detections = [d.strip() for d in args.detections.split(",") if d.strip()]
    bad = [d for d in detections if d not in DETECTION_MODELS]
    if bad:
        raise ConfigError(f"unknown detection model(s) {bad}; choose from {', '.join(DETECTION_MODELS)}")
    overrides = {"widths": parse_int_list(args.widths)} if args.widths else {}
    cfg = TrainConfig(lr=args.lr, batch_size=args.batch_size, num_threads=args.threads)
    result = reproduce(args.dataset, parse_int_list(args.seeds), detections, args.epochs, args.out,
                       data_dir=args.data_dir, split_seed=args.split_seed, limit=args.limit, train_cfg=cfg,
                       model_overrides=overrides, progress=not args.no_progress)
    if not args.json:
        print(Path(result.files["table_md"]).read_text())
        print(f"results in {result.out_dir} ({result.wall_time_s:.0f} s)")
    return result.summary()


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    from lab4f.reproduce import DEFAULT_EPOCHS
    from lab4f.training import TrainConfig

    d = TrainConfig()
    p = sub.add_parser("reproduce", parents=[common], help="teacher vs SCLC+KD vs linear table over seeds",
                       description=__doc__)
    p.add_argument("--task", choices=["classification", "segmentation"], default="classification",
                   help="segmentation runs `lab4f segment reproduce` (generated scenes, mean IoU)")
    p.add_argument("--dataset", default="mnist5k")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--split-seed", type=int, default=0, help="one data split shared by all seeds")
    p.add_argument("--limit", type=int, default=None, help="cap each split at this many images")
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument("--detections", default=",".join(DETECTION_MODELS),
                   help="comma-separated detection models")
    p.add_argument("--epochs", type=int, default=None, help=f"default {DEFAULT_EPOCHS} (classification)")
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--widths", default=None, help="conv widths, e.g. 16,32,32")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", type=Path, default=Path("results/reproduce"))
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_with_epochs(_cmd, DEFAULT_EPOCHS))


def _with_epochs(func: Any, default: int) -> Any:
    """Remember whether --epochs was given (segmentation has its own default) and fill in the default."""

    def run(args: argparse.Namespace) -> dict[str, Any]:
        args.epochs_given = args.epochs is not None
        if args.epochs is None:
            args.epochs = default
        return func(args)

    return run
