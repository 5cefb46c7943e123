"""The options every training command shares: where it runs, mixed precision, threads, train-to-plateau.

Used by `lab4f train`, `lab4f segment train|reproduce` and `lab4f reproduce`. Torch-free (building the
parser imports no torch), so the device names are spelled out here (lab4f.device.DEVICES).
"""

from __future__ import annotations

import argparse

from lab4f.argtypes import positive_int

DEVICES = ("cpu", "cuda", "mps", "auto")  # lab4f.device.DEVICES


def add_device_arguments(p: argparse.ArgumentParser, threads: bool = True) -> None:
    """--device, --amp, --patience (and --threads unless the parser has its own)."""
    p.add_argument(
        "--device",
        choices=DEVICES,
        default="cpu",
        help="where to train: cpu (default), cuda, mps, or auto (cuda, else mps, else cpu); "
        "DDP uses NCCL on cuda, gloo on cpu",
    )
    p.add_argument(
        "--amp",
        action="store_true",
        help="mixed precision: float16 + gradient scaling on cuda, bfloat16 on cpu/mps",
    )
    p.add_argument(
        "--patience",
        type=positive_int,
        default=None,
        help="train to plateau: stop after this many epochs without a better validation score "
        "(never the test split) and keep the best epoch; --epochs is then the cap",
    )
    if threads:
        p.add_argument(
            "--threads",
            type=positive_int,
            default=None,
            help="torch CPU threads (default: the machine's free cores, cpu_count - load average, "
            ">= 1)",
        )
