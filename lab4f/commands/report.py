"""`lab4f report`: reports computed from the project's models — `efficiency` (MACs, accuracy, time vs resolution)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lab4f.argtypes import CONFIG_HELP, parse_int_list, positive_int
from lab4f.commands import DETECTION_MODELS


def _efficiency(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.efficiency import efficiency_report
    from lab4f.models import ModelConfig

    cfg = ModelConfig(widths=parse_int_list(args.widths)) if args.widths else ModelConfig()
    train_at = () if args.no_train else parse_int_list(args.train_resolutions)
    result = efficiency_report(
        parse_int_list(args.resolutions),
        args.out,
        train_at,
        args.epochs,
        args.limit,
        cfg,
        args.detection,
        args.config,
        timing=not args.no_timing,
        log=lambda m: print(m, file=sys.stderr),
        filter_size=args.filter_size,
        threads=args.threads,
    )
    if not args.json:
        print(Path(result["files"]["table_md"]).read_text())
        print(f"files in {args.out}")
    return result


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "report",
        parents=[common],
        help="reports: efficiency against resolution",
        description=__doc__,
    )
    reports = p.add_subparsers(dest="report_command", required=True)
    e = reports.add_parser(
        "efficiency",
        parents=[common],
        help="electronic MACs, accuracy and time per image vs input resolution, teacher vs hybrid",
    )
    e.add_argument(
        "--resolutions", default="28,56,112,224", help="comma-separated input sizes in pixels"
    )
    e.add_argument(
        "--train-resolutions",
        default="28,56",
        help="sizes at which to train teacher + SCLC+KD on mnist5k for accuracy (others: not measured)",
    )
    e.add_argument(
        "--no-train", action="store_true", help="no training: accuracy 'not measured' everywhere"
    )
    e.add_argument("--epochs", type=positive_int, default=4, help="epochs per trained classifier")
    e.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="cap each mnist5k split at this many images",
    )
    e.add_argument(
        "--widths",
        default=None,
        help="conv widths of the classifier (default lab4f.models 16,32,32)",
    )
    e.add_argument(
        "--detection",
        choices=DETECTION_MODELS,
        default="incoherent",
        help="detection model of the hybrid (sets how many tiles are extracted)",
    )
    e.add_argument(
        "--filter-size",
        type=positive_int,
        default=5,
        help="taps per axis of the calibration's per-tile filter counted in feature extraction "
        "(default 5, what `lab4f calibrate gains` fits; 1 = a scalar gain per tile)",
    )
    e.add_argument("--config", default=None, help=CONFIG_HELP)
    e.add_argument("--no-timing", action="store_true", help="skip timing the digital front end")
    e.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads while timing the digital front end (default 1: on a shared machine more "
        "threads time contention as much as convolution)",
    )
    e.add_argument("--out", type=Path, default=Path("results/efficiency"))
    e.set_defaults(func=_efficiency)
