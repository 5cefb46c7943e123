"""`lab4f evaluate CHECKPOINT`: accuracy and loss of a checkpoint on a dataset split."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab4f.argtypes import positive_int
from lab4f.errors import ConfigError

SPLITS = ("train", "val", "test")


def _cmd(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.checkpoint import load_checkpoint
    from lab4f.data import load_dataset
    from lab4f.data_identity import warn_if_data_differ
    from lab4f.training import evaluate

    model, cfg, meta = load_checkpoint(args.checkpoint)
    data = meta.get("dataset", {})
    name = args.dataset or data.get("name")
    if not name:
        raise ConfigError(f"{args.checkpoint} does not name its dataset; pass --dataset")
    split_seed = args.split_seed if args.split_seed is not None else int(data.get("split_seed", 0))
    splits = load_dataset(
        name,
        data_dir=args.data_dir,
        split_seed=split_seed,
        limit=args.limit,
        image_size=cfg.image_size,
    )
    if (splits.in_channels, splits.num_classes) != (cfg.in_channels, cfg.num_classes):
        raise ConfigError(
            f"{args.checkpoint} expects {cfg.in_channels} channel(s) and {cfg.num_classes} "
            f"classes; dataset {name} has {splits.in_channels} and {splits.num_classes}"
        )
    warn_if_data_differ(
        meta, splits, args.checkpoint, args.split
    )  # logged, and in --json (data_warnings)
    metrics = evaluate(model, getattr(splits, args.split), args.batch_size)
    if not args.json:
        print(
            f"{args.checkpoint} ({cfg.kind}, {cfg.detection}) on {name} {args.split} "
            f"(split seed {split_seed}):\n"
            f"  accuracy {metrics['accuracy']:.4f}, loss {metrics['loss']:.4f}, n {metrics['n']}"
        )
    return {
        "checkpoint": str(args.checkpoint),
        "kind": cfg.kind,
        "detection": cfg.detection,
        "dataset": name,
        "split": args.split,
        "split_seed": split_seed,
        **metrics,
    }


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "evaluate",
        parents=[common],
        help="evaluate a checkpoint on a dataset split",
        description=__doc__,
    )
    p.add_argument(
        "checkpoint",
        type=Path,
        help="a classifier checkpoint (from `lab4f train` or `lab4f reproduce`)",
    )
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument("--split", choices=SPLITS, default="test")
    p.add_argument(
        "--split-seed", type=int, default=None, help="default: the checkpoint's split seed"
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, help="cap each split at this many images"
    )
    p.add_argument("--batch-size", type=positive_int, default=512)
    p.set_defaults(func=_cmd)
