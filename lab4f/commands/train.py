"""`lab4f train`: train the teacher, the linear counterpart (no KD) or the SCLC student (KD) → checkpoint."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from lab4f.argtypes import parse_int_list, positive_float, positive_int
from lab4f.commands import DETECTION_MODELS, KINDS, TRAIN_DEFAULTS
from lab4f.data_identity import slug
from lab4f.errors import ConfigError
from lab4f.trainargs import add_device_arguments

DEFAULT_OUT_DIR = Path("runs")


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """The options of `lab4f train` (also under torchrun with --ddp)."""
    d = TRAIN_DEFAULTS  # lab4f.training.TrainConfig's
    p.add_argument(
        "--kind",
        choices=KINDS,
        default="teacher",
        help="teacher (nonlinear, CE), linear (SCLC, CE only), student (SCLC + KD)",
    )
    p.add_argument("--teacher", type=Path, help="teacher checkpoint (required for --kind student)")
    p.add_argument(
        "--dataset",
        default="mnist5k",
        help="dataset name (see lab4f.data.available_datasets), or your "
        "own data: folder:PATH (class subfolders of images), idx:PATH, npz:FILE",
    )
    p.add_argument(
        "--data-dir", type=Path, default=None, help="folder holding downloaded dataset files"
    )
    p.add_argument("--split-seed", type=int, default=0, help="seed of the train/val/test split")
    p.add_argument(
        "--limit", type=positive_int, default=None, help="cap each split at this many images"
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="resize images to this size"
    )
    p.add_argument("--epochs", type=positive_int, default=d.epochs)
    p.add_argument("--batch-size", type=positive_int, default=d.batch_size)
    p.add_argument("--lr", type=positive_float, default=d.lr)
    p.add_argument(
        "--seed", type=int, default=0, help="seed of weights init, shuffling and dropout"
    )
    p.add_argument("--T", type=positive_float, default=d.T, help="KD temperature")
    p.add_argument("--alpha", type=float, default=d.alpha, help="KD weight of the soft-target term")
    p.add_argument(
        "--detection",
        choices=DETECTION_MODELS,
        default=None,
        help="what the camera measures, for linear/student (default ideal)",
    )
    p.add_argument(
        "--widths", default=None, help="conv channel widths, e.g. 16,32,32 (student: teacher's)"
    )
    p.add_argument(
        "--out", type=Path, default=None, help="checkpoint path (default runs/<kind>-...pt)"
    )
    p.add_argument("--resume", action="store_true", help="continue from the checkpoint at --out")
    add_device_arguments(p)
    p.add_argument(
        "--no-progress", action="store_true", help="no progress bar (nor per-epoch log lines)"
    )
    p.add_argument(
        "--ddp",
        action="store_true",
        help="data-parallel under torchrun (reads RANK/WORLD_SIZE); only rank 0 writes",
    )
    p.add_argument(
        "--rank-state-dir",
        type=Path,
        default=None,
        help="with --ddp: each rank saves its final state dict here as rank<N>.pt (for checks)",
    )


def default_out(args: argparse.Namespace) -> Path:
    det = f"-{args.detection or 'ideal'}" if args.kind != "teacher" else ""
    return DEFAULT_OUT_DIR / f"{slug(args.dataset)}-{args.kind}{det}-seed{args.seed}.pt"


def run_train(args: argparse.Namespace) -> Any:
    """Build everything from parsed arguments and train; returns the TrainResult."""
    from lab4f.checkpoint import load_checkpoint
    from lab4f.data import load_dataset
    from lab4f.data_identity import check_teacher_data, same
    from lab4f.device import resolve_device
    from lab4f.distributed import init_from_env, rank_device
    from lab4f.training import TrainConfig, model_config_for, train_model

    out = args.out or default_out(args)
    if args.resume and not Path(out).is_file():
        raise ConfigError(
            f"--resume: there is no checkpoint at {out} to continue from; pass the --out of the run to "
            "resume (and the same --kind/--dataset/--seed), or drop --resume to start from scratch"
        )
    if args.teacher is not None and args.kind != "student":
        raise ConfigError(
            f"--teacher is only used by --kind student (knowledge distillation); --kind {args.kind} "
            "trains without a teacher: drop --teacher, or pass --kind student"
        )
    device = resolve_device(args.device)
    ctx = init_from_env(device=device) if args.ddp else None
    if ctx is not None:
        device = rank_device(device)
    if ctx is not None and not ctx.is_main:
        # only rank 0 prints: silence this process's stdout at the file-descriptor level, which also
        # covers the CLI's --json line printed after the command returns
        sys.stdout.flush()
        os.dup2(os.open(os.devnull, os.O_WRONLY), 1)
    teacher = None
    if args.kind == "student":
        if args.teacher is None:
            raise ConfigError(
                "--kind student needs --teacher CKPT (make one: `lab4f train --kind teacher`)"
            )
        teacher, tcfg, tmeta = load_checkpoint(args.teacher)
        if tcfg.kind != "teacher":
            raise ConfigError(
                f"--teacher {args.teacher} is a {tcfg.kind!r} checkpoint, not a teacher: distillation needs the "
                "nonlinear teacher (make one with `lab4f train --kind teacher`, or pass the teacher-seed*.pt "
                "of a `lab4f reproduce` results folder)"
            )
    splits = load_dataset(
        args.dataset,
        data_dir=args.data_dir,
        split_seed=args.split_seed,
        limit=args.limit,
        image_size=args.image_size,
    )
    overrides: dict[str, Any] = {}
    if teacher is not None:
        tdata = tmeta.get("dataset", {})
        same_data = same(
            tdata.get("identity"), splits.identity
        )  # the same images and split, wherever they are
        if not same_data and (
            tdata.get("name") != splits.name or tdata.get("split_seed") != splits.split_seed
        ):
            raise ConfigError(
                f"teacher {args.teacher} was trained on {tdata.get('name')} split {tdata.get('split_seed')}, "
                f"not {splits.name} split {splits.split_seed}: its knowledge may include this test set. "
                "Train the teacher on the same dataset and --split-seed."
            )
        splits = check_teacher_data(
            tmeta, splits, args.teacher
        )  # warns; records what it is distilled on
        overrides.update(
            widths=tcfg.widths,
            kernel_size=tcfg.kernel_size,
            hidden=tcfg.hidden,
            pool_size=tcfg.pool_size,
            dropout=tcfg.dropout,
        )
    if args.widths:
        overrides["widths"] = parse_int_list(args.widths)
    if args.detection and args.kind != "teacher":
        overrides["detection"] = args.detection
    model_cfg = model_config_for(splits, args.kind, **overrides)
    train_cfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        T=args.T,
        alpha=args.alpha,
        num_threads=args.threads,
        device=device,
        amp=args.amp,
        patience=args.patience,
    )
    result = train_model(
        model_cfg,
        splits,
        train_cfg,
        teacher=teacher,
        checkpoint_path=out,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if args.rank_state_dir is not None:
        import torch

        rank = ctx.rank if ctx is not None else 0
        args.rank_state_dir.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu() for k, v in result.model.state_dict().items()}
        torch.save(state, args.rank_state_dir / f"rank{rank}.pt")
    if ctx is not None:
        from lab4f.distributed import shutdown

        shutdown()
        if ctx.is_main and not args.json:
            print(f"world_size={ctx.world_size}")
    return result


def _cmd(args: argparse.Namespace) -> dict[str, Any]:
    result = run_train(args)
    s = result.summary()
    if not args.json:
        print(
            f"{s['kind']} ({s['detection']}): {s['epochs_completed']} epochs, "
            f"val {s['last_val_accuracy']:.4f}, test {s['test_accuracy']:.4f}, "
            f"{s['wall_time_s']:.1f} s → {s['checkpoint']}"
        )
        if s["stopped_reason"] != "completed":
            print(f"stopped early: {s['stop_detail']}")
    return {**s, "history": result.history}


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "train",
        parents=[common],
        help="train teacher / linear / student → checkpoint",
        description=__doc__,
    )
    add_train_arguments(p)
    p.set_defaults(func=_cmd)
