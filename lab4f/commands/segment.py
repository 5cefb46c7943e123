"""`lab4f segment`: segmentation teacher / SCLC+KD / linear — `reproduce` over seeds, or `train` one model.

Data: generated scenes (default, `--scenes shapes|digits`), or a real set from a folder with `--dataset carvana`
(Kaggle layout: train/ + train_masks/, split 80/10/10 by car) or `--dataset voc2012` (train.txt minus a 10 %
val hold-out → train/val, val.txt → test), read from `--data-dir` (else $LAB4F_DATA, else ~/.lab4f/data),
grayscale at --canvas × --canvas. `--data-seed` seeds the scenes or the split; `--n-train/--n-val/--n-test`
are the scene counts, or caps on the folder splits (0 = the whole split).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab4f.argtypes import parse_int_list
from lab4f.commands import (
    DETECTION_MODELS,
    KINDS,
    SCENE_KINDS,
    SEG_DATA_DEFAULTS,
    SEG_DATASETS,
    SEG_TRAIN_DEFAULTS,
)
from lab4f.errors import ConfigError
from lab4f.trainargs import add_device_arguments

DEFAULT_SCENES = "shapes"


def _configs(args: argparse.Namespace) -> tuple[Any, Any]:
    from lab4f.segmentation.data import FOLDER_DATASETS
    from lab4f.segmentation.reproduce import SegReproduceConfig
    from lab4f.segmentation.train import SegTrainConfig

    folder = args.dataset in FOLDER_DATASETS
    if folder and args.scenes is not None:
        raise ConfigError(
            f"--scenes {args.scenes} chooses generated scenes; it does not apply to --dataset "
            f"{args.dataset} (drop --scenes, or use --dataset generated)"
        )
    counts = {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test}
    floor = 0 if folder else 1
    for name, n in counts.items():
        if n < floor:
            what = "a cap >= 0 (0 = the whole split)" if folder else "a scene count >= 1"
            raise ConfigError(f"--{name.replace('_', '-')} must be {what}, got {n}")
    d = SegReproduceConfig()
    cfg = SegReproduceConfig(
        kind=args.scenes or DEFAULT_SCENES,
        canvas_size=args.canvas,
        **counts,
        data_seed=args.data_seed,
        widths=parse_int_list(args.widths) if args.widths else d.widths,
        decoder_width=args.decoder_width,
        detection=args.detection,
        dataset=args.dataset,
        data_dir=str(args.data_dir) if folder and args.data_dir is not None else None,
    )
    tc = SegTrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        T=args.T,
        alpha=args.alpha,
        device=args.device,
        amp=args.amp,
        patience=args.patience,
        num_threads=args.threads,
        kd_balanced=args.kd_balanced,
    )
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

    from lab4f.segmentation.models import SegConfig
    from lab4f.segmentation.reproduce import dataset_summary, load_splits
    from lab4f.segmentation.train import load_seg_checkpoint, train_segmentation

    cfg, tc = _configs(args)
    tc = replace(tc, seed=args.seed)
    teacher = None
    if args.kind == "student":
        if args.teacher is None:
            raise ConfigError(
                "--kind student needs --teacher CKPT (make one: `lab4f segment train --kind teacher`)"
            )
        teacher, tcfg, tmeta = load_seg_checkpoint(args.teacher)
        cfg = replace(cfg, widths=tcfg.widths, decoder_width=tcfg.decoder_width)
    data = load_splits(cfg)
    about = dataset_summary(cfg, data)
    if teacher is not None and tmeta.get("dataset", {}).get("source") != data.train.source:
        same = (
            "--scenes/--canvas/--data-seed"
            if cfg.dataset == "generated"
            else "--dataset/--data-dir/--canvas/--data-seed"
        )
        raise ConfigError(
            f"teacher {args.teacher} was trained on {tmeta.get('dataset', {}).get('source')!r}, not "
            f"{data.train.source!r}: pass the same {same} as for the teacher"
        )
    mcfg = SegConfig(
        kind=args.kind,
        in_channels=data.train.in_channels,
        num_classes=data.train.num_classes,
        widths=cfg.widths,
        decoder_width=cfg.decoder_width,
        detection=cfg.detection if args.kind != "teacher" else "ideal",
    )
    stem = cfg.kind if cfg.dataset == "generated" else cfg.dataset
    out = args.out or Path("runs") / f"seg-{stem}-{args.kind}-seed{args.seed}.pt"
    if not args.json:
        print(f"data: {about['description']}: {about['scheme']}")
    res = train_segmentation(
        mcfg, data.train, data.val, data.test, tc, teacher, out, log=None if args.json else print
    )
    if not args.json:
        print(
            f"{args.kind}: test mean IoU {res.test['mean_iou']:.4f}, mean Dice {res.test['mean_dice']:.4f} "
            f"({res.wall_time_s:.0f} s) → {out}"
        )
    return {
        "kind": args.kind,
        "test": res.test,
        "history": res.history,
        "wall_time_s": res.wall_time_s,
        "checkpoint": str(out),
        "dataset": about,
    }


def _common(p: argparse.ArgumentParser) -> None:
    d, t = SEG_DATA_DEFAULTS, SEG_TRAIN_DEFAULTS  # SegReproduceConfig's and SegTrainConfig's
    p.add_argument(
        "--dataset",
        choices=SEG_DATASETS,
        default=d.dataset,
        help="generated scenes (default), or a real set read from --data-dir: carvana (train/ + "
        "train_masks/, split 80/10/10 by car) or voc2012 (train.txt minus 10%% val → train/val, "
        "val.txt → test)",
    )
    p.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="folder holding the carvana / VOC2012 data (itself or in carvana/, VOC2012/, "
        "VOCdevkit/VOC2012/); default $LAB4F_DATA, else ~/.lab4f/data",
    )
    p.add_argument(
        "--scenes",
        choices=SCENE_KINDS,
        default=None,
        help=f"generated data: shapes or digits (default {DEFAULT_SCENES}; not with a folder --dataset)",
    )
    p.add_argument(
        "--canvas",
        type=int,
        default=d.canvas_size,
        help="scene size in pixels; for a folder data set the image size (images are resized)",
    )
    p.add_argument(
        "--n-train",
        type=int,
        default=d.n_train,
        help=f"training scenes (default {d.n_train}); for a folder data set a cap on the train split "
        "(0 = all)",
    )
    p.add_argument(
        "--n-val",
        type=int,
        default=d.n_val,
        help=f"validation scenes, or cap (0 = all); default {d.n_val}",
    )
    p.add_argument(
        "--n-test",
        type=int,
        default=d.n_test,
        help=f"test scenes, or cap (0 = all); default {d.n_test}",
    )
    p.add_argument(
        "--data-seed",
        type=int,
        default=d.data_seed,
        help="seed of the generated scenes, or of the train/val/test split of a folder data set",
    )
    p.add_argument(
        "--widths", default=None, help=f"front conv widths (default {','.join(map(str, d.widths))})"
    )
    p.add_argument("--decoder-width", type=int, default=d.decoder_width)
    p.add_argument("--detection", choices=DETECTION_MODELS, default=d.detection)
    p.add_argument("--epochs", type=int, default=t.epochs)
    p.add_argument("--batch-size", type=int, default=t.batch_size)
    p.add_argument("--lr", type=float, default=t.lr)
    p.add_argument("--T", type=float, default=t.T, help="KD temperature")
    p.add_argument("--alpha", type=float, default=t.alpha, help="KD weight of the soft-target term")
    p.add_argument(
        "--kd-balanced",
        action="store_true",
        help="weight the KD soft term per pixel by the inverse frequency of its class (each class "
        "present counts equally; background no longer dominates)",
    )
    add_device_arguments(p)


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "segment",
        parents=[common],
        help="segmentation: reproduce teacher/SCLC+KD/linear, or train one",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="segment_command", required=True)
    r = actions.add_parser(
        "reproduce", parents=[common], help="teacher vs SCLC+KD vs linear over seeds"
    )
    _common(r)
    r.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    r.add_argument("--out", type=Path, default=Path("results/segmentation"))
    r.add_argument("--verbose-epochs", action="store_true", help="log every epoch")
    r.set_defaults(func=_reproduce)
    t = actions.add_parser(
        "train", parents=[common], help="train one segmentation model → checkpoint"
    )
    _common(t)
    t.add_argument("--kind", choices=KINDS, default="teacher")
    t.add_argument("--teacher", type=Path, help="teacher checkpoint (for --kind student)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", type=Path, default=None)
    t.set_defaults(func=_train)
