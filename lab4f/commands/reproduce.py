"""`lab4f reproduce`: teacher vs the student protocols over seeds → table, CSV, plot, paired tests, checkpoints.

Protocols (each the same total budget of --epochs): linear (cross-entropy only), student (KD from scratch),
authors (cross-entropy pre-training for half the epochs, then the front end frozen and KD), continued (the same
pre-training, then plain cross-entropy for the same extra epochs). A paired t-test over seeds compares student
with linear and authors with continued. --preset paper: the authors' widths 32,128,256, 3x3 kernels and
optimiser (SGD momentum 0.9, lr 0.01, constant schedule, 50 epochs) on the full data set; --preset cpu: small
defaults that run on a laptop CPU in minutes.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lab4f.argtypes import parse_int_list, positive_float, positive_int
from lab4f.commands import DETECTION_MODELS, REPRODUCE_EPOCHS, TRAIN_DEFAULTS
from lab4f.errors import ConfigError
from lab4f.trainargs import add_device_arguments

# options that only apply to --task classification. On the command line they (and --epochs, --out) default to None,
# so that an explicit value, even one equal to the default, is seen (and refused with --task segmentation)
CLASSIFICATION_ONLY = (
    "dataset",
    "data_dir",
    "split_seed",
    "limit",
    "detections",
    "lr",
    "batch_size",
    "widths",
    "threads",
    "protocols",
    "preset",
    "teacher_epochs",
    "image_size",
)
PROTOCOLS = ("linear", "student", "authors", "continued")  # lab4f.reproduce.PROTOCOLS
PRESETS = ("cpu", "paper")  # lab4f.reproduce.PRESETS
SEGMENTATION_OUT = Path("results/segmentation")


def _flag(dest: str) -> str:
    return "--" + dest.replace("_", "-")


def _segmentation(args: argparse.Namespace) -> dict[str, Any]:
    """`--task segmentation` is `lab4f segment reproduce` with the same seeds, epochs, output folder and --json."""
    from lab4f.cli import build_parser

    extra = [_flag(d) for d in CLASSIFICATION_ONLY if d in args.given]
    if extra:
        raise ConfigError(
            f"{', '.join(extra)} only appl{'ies' if len(extra) == 1 else 'y'} to --task classification; "
            "--task segmentation takes only --seeds, --epochs and --out. For the segmentation "
            "settings (--dataset generated|carvana|voc2012, --data-dir, --widths, --lr, --batch-size, "
            "scene counts, ...) run `lab4f segment reproduce` (see `lab4f segment reproduce --help`)"
        )
    out = args.out if "out" in args.given else SEGMENTATION_OUT
    argv = ["segment", "reproduce", "--seeds", args.seeds, "--out", str(out)]
    if "epochs" in args.given:
        argv += ["--epochs", str(args.epochs)]
    argv += ["--device", args.device] + (["--amp"] if args.amp else [])
    if args.patience:
        argv += ["--patience", str(args.patience)]
    ns = build_parser().parse_args(argv)
    ns.json = args.json
    return ns.func(ns)


def _cmd(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.reproduce import reproduce

    if args.task == "segmentation":
        return _segmentation(args)
    from lab4f.training import TrainConfig

    detections = [d.strip() for d in args.detections.split(",") if d.strip()]
    bad = [d for d in detections if d not in DETECTION_MODELS]
    if bad:
        raise ConfigError(
            f"unknown detection model(s) {bad}; choose from {', '.join(DETECTION_MODELS)}"
        )
    from lab4f.reproduce import PRESETS as PRESET_SETTINGS

    preset = PRESET_SETTINGS[args.preset]
    protocols = [p.strip() for p in args.protocols.split(",") if p.strip()]
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ConfigError(
            f"unknown protocol(s) {bad or 'none given'}; choose from {', '.join(PROTOCOLS)}"
        )
    overrides = dict(preset["model"])
    if args.widths:
        overrides["widths"] = parse_int_list(args.widths)
    train = dict(preset["train"])
    for k in ("lr", "batch_size"):  # an explicit option wins over the preset
        if k in args.given or k not in train:
            train[k] = getattr(args, k)
    epochs = args.epochs if "epochs" in args.given else preset["epochs"]
    cfg = TrainConfig(
        **train, num_threads=args.threads, device=args.device, amp=args.amp, patience=args.patience
    )
    result = reproduce(
        args.dataset,
        parse_int_list(args.seeds),
        detections,
        epochs,
        args.out,
        data_dir=args.data_dir,
        split_seed=args.split_seed,
        limit=args.limit,
        train_cfg=cfg,
        model_overrides=overrides,
        progress=not args.no_progress,
        protocols=protocols,
        teacher_epochs=args.teacher_epochs,
        image_size=args.image_size,
    )
    if not args.json:
        print(Path(result.files["table_md"]).read_text())
        print(f"results in {result.out_dir} ({result.wall_time_s:.0f} s)")
    return result.summary()


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    d = TRAIN_DEFAULTS  # lab4f.training.TrainConfig's
    defaults = {
        "dataset": "mnist5k",
        "data_dir": None,
        "split_seed": 0,
        "limit": None,
        "detections": ",".join(DETECTION_MODELS),
        "epochs": REPRODUCE_EPOCHS,
        "lr": d.lr,
        "batch_size": d.batch_size,
        "widths": None,
        "threads": None,
        "out": Path("results/reproduce"),
        "protocols": ",".join(PROTOCOLS),
        "preset": "cpu",
        "teacher_epochs": None,
        "image_size": None,
    }
    p = sub.add_parser(
        "reproduce",
        parents=[common],
        help="teacher vs SCLC+KD vs linear table over seeds",
        description=__doc__,
    )
    p.add_argument(
        "--task",
        choices=["classification", "segmentation"],
        default="classification",
        help="segmentation runs `lab4f segment reproduce` (generated scenes, mean IoU) with --seeds, "
        "--epochs and --out; its other settings are options of `lab4f segment reproduce`",
    )
    p.add_argument("--dataset", default=None, help=f"default {defaults['dataset']}")
    p.add_argument("--data-dir", type=Path, default=None)
    p.add_argument(
        "--split-seed",
        type=int,
        default=None,
        help=f"one data split shared by all seeds (default {defaults['split_seed']})",
    )
    p.add_argument(
        "--limit", type=positive_int, default=None, help="cap each split at this many images"
    )
    p.add_argument("--seeds", default="0,1,2", help="comma-separated training seeds")
    p.add_argument(
        "--detections",
        default=None,
        help=f"comma-separated detection models (default {defaults['detections']})",
    )
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"default {REPRODUCE_EPOCHS} (classification), the segment reproduce default (segmentation)",
    )
    p.add_argument("--lr", type=positive_float, default=None, help=f"default {d.lr}")
    p.add_argument("--batch-size", type=positive_int, default=None, help=f"default {d.batch_size}")
    p.add_argument("--widths", default=None, help="conv widths, e.g. 16,32,32")
    p.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        help="torch CPU threads (default: the machine's free cores, cpu_count - load average, >= 1)",
    )
    p.add_argument(
        "--protocols",
        default=None,
        help=f"comma-separated student protocols (default {defaults['protocols']}): linear (CE), "
        "student (KD from scratch), authors (CE pre-training, then frozen front + KD), continued "
        "(CE pre-training, then CE); each gets --epochs in total",
    )
    p.add_argument(
        "--preset",
        choices=PRESETS,
        default=None,
        help="cpu (default: widths 16,32,32, 10 epochs, SGD lr 0.02 cosine) or paper (widths "
        "32,128,256, 3x3, SGD momentum 0.9 lr 0.01 constant, 50 epochs; pair it with the full data "
        "set from --data-dir); explicit options win over the preset",
    )
    p.add_argument(
        "--teacher-epochs",
        type=positive_int,
        default=None,
        help="teacher epochs (default --epochs)",
    )
    p.add_argument(
        "--image-size", type=positive_int, default=None, help="resize images to this size"
    )
    add_device_arguments(p, threads=False)
    p.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results folder (default results/reproduce; results/segmentation with --task segmentation)",
    )
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=_with_defaults(_cmd, defaults))


def _with_defaults(func: Any, defaults: dict[str, Any]) -> Any:
    """Record in ``args.given`` which options were given (--task segmentation refuses the classification ones and
    has its own defaults), then fill in the defaults of the others."""

    def run(args: argparse.Namespace) -> dict[str, Any]:
        args.given = {k for k in defaults if getattr(args, k) is not None}
        for k, v in defaults.items():
            if getattr(args, k) is None:
                setattr(args, k, v)
        return func(args)

    return run
