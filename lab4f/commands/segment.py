"""`lab4f segment`: segmentation teacher / SCLC+KD / linear — `reproduce` over seeds, or `train` one model."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab4f.commands.train import parse_int_list
from lab4f.detection import DETECTION_MODELS
from lab4f.errors import ConfigError
from lab4f.models import KINDS


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from lab4f.segmentation.reproduce import SegReproduceConfig
    from lab4f.segmentation.train import SegTrainConfig

    d = SegReproduceConfig()
    cfg = SegReproduceConfig(kind=args.scenes, canvas_size=args.canvas, n_train=args.n_train,
                             n_val=args.n_val, n_test=args.n_test, data_seed=args.data_seed,
                             widths=parse_int_list(args.widths) if args.widths else d.widths,
                             decoder_width=args.decoder_width, detection=args.detection)
    tc = SegTrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, T=args.T, alpha=args.alpha)
    return cfg, tc


def _reproduce(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.segmentation.reproduce import reproduce

    cfg, tc = _configs(args)
    result = reproduce(parse_int_list(args.seeds), args.out, cfg, tc, verbose=args.verbose_epochs)
    if not args.json:
        print(Path(result.files["table_md"]).read_text())
        print(f"results in {result.out_dir} ({result.wall_time_s:.0f} s)")
    summary = result.summary()
    summary["rows"] = [{k: v for k, v in r.items() if k != "history"} for r in summary["rows"]]
    return summary


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from lab4f.segmentation.data import generated_splits
    from lab4f.segmentation.models import SegConfig
    from lab4f.segmentation.train import load_seg_checkpoint, train_segmentation

    cfg, tc = _configs(args)
    tc = replace(tc, seed=args.seed)
    teacher = None
    if args.kind == "student":
        if args.teacher is None:
            raise ConfigError("--kind student needs --teacher CKPT (make one: `lab4f segment train --kind teacher`)")
        teacher, tcfg, tmeta = load_seg_checkpoint(args.teacher)
        cfg = replace(cfg, widths=tcfg.widths, decoder_width=tcfg.decoder_width)
    data = generated_splits(cfg.kind, cfg.n_train, cfg.n_val, cfg.n_test, cfg.canvas_size, cfg.data_seed)
    if teacher is not None and tmeta.get("dataset", {}).get("source") != data.train.source:
        raise ConfigError(f"teacher {args.teacher} was trained on {tmeta.get('dataset', {}).get('source')!r}, not "
                          f"{data.train.source!r}: pass the same --scenes/--canvas/--data-seed as for the teacher")
    mcfg = SegConfig(kind=args.kind, in_channels=data.train.in_channels, num_classes=data.train.num_classes,
                     widths=cfg.widths, decoder_width=cfg.decoder_width,
                     detection=cfg.detection if args.kind != "teacher" else "ideal")
    out = args.out or Path("runs") / f"seg-{cfg.kind}-{args.kind}-seed{args.seed}.pt"
    res = train_segmentation(mcfg, data.train, data.val, data.test, tc, teacher, out,
                             log=None if args.json else print)
    if not args.json:
        print(f"{args.kind}: test mean IoU {res.test['mean_iou']:.4f}, mean Dice {res.test['mean_dice']:.4f} "
              f"({res.wall_time_s:.0f} s) → {out}")
    return {"kind": args.kind, "test": res.test, "history": res.history, "wall_time_s": res.wall_time_s,
            "checkpoint": str(out)}


def _common(p: argparse.ArgumentParser) -> None:
    from lab4f.segmentation.data import SCENE_KINDS
    from lab4f.segmentation.reproduce import SegReproduceConfig
    from lab4f.segmentation.train import SegTrainConfig

    d, t = SegReproduceConfig(), SegTrainConfig()
    p.add_argument("--scenes", choices=SCENE_KINDS, default=d.kind, help="generated data: shapes or digits")
    p.add_argument("--canvas", type=int, default=d.canvas_size, help="scene size in pixels")
    p.add_argument("--n-train", type=int, default=d.n_train)
    p.add_argument("--n-val", type=int, default=d.n_val)
    p.add_argument("--n-test", type=int, default=d.n_test)
    p.add_argument("--data-seed", type=int, default=d.data_seed, help="seed of the generated scenes")
    p.add_argument("--widths", default=None, help=f"front conv widths (default {','.join(map(str, d.widths))})")
    p.add_argument("--decoder-width", type=int, default=d.decoder_width)
    p.add_argument("--detection", choices=DETECTION_MODELS, default=d.detection)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--T", type=float, default=t.T, help="KD temperature")
    p.add_argument("--alpha", type=float, default=t.alpha, help="KD weight of the soft-target term")


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("segment", help="segmentation: reproduce teacher/SCLC+KD/linear, or train one",
                       description=__doc__)
    actions = p.add_subparsers(dest="segment_command", required=True)
    r = actions.add_parser("reproduce", parents=[common], help="teacher vs SCLC+KD vs linear over seeds")
    _common(r)
    r.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    r.add_argument("--out", type=Path, default=Path("results/segmentation"))
    r.add_argument("--verbose-epochs", action="store_true", help="log every epoch")
    r.set_defaults(func=_reproduce)
    t = actions.add_parser("train", parents=[common], help="train one segmentation model → checkpoint")
    _common(t)
    t.add_argument("--kind", choices=KINDS, default="teacher")
    t.add_argument("--teacher", type=Path, help="teacher checkpoint (for --kind student)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=None)
    t.set_defaults(func=_train)
