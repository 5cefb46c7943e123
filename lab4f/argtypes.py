"""argparse value types shared by the commands (counts, sizes, rates, integer lists).

Kept out of any one command so that commands import each other for nothing but these helpers."""

from __future__ import annotations

import argparse
import math

from lab4f.errors import ConfigError


def parse_int_list(text: str) -> tuple[int, ...]:
    """'16,32,32' → (16, 32, 32)."""
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"expected comma-separated integers like 16,32,32, got {text!r}"
        ) from None
    if not values:
        raise ConfigError("expected at least one integer")
    return values


def positive_int(text: str) -> int:
    """argparse type of counts and sizes (epochs, batch sizes, --limit, threads, ...): an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def positive_float(text: str) -> float:
    """argparse type of a strictly positive, finite number (learning rate, temperature, seconds)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number (> 0), got {text}")
    return value


#: help of every command's --config
CONFIG_HELP = (
    "bench config (TOML/YAML); default: the file $LAB4F_BENCH_CONFIG names, else the built-in simulated "
    "bench (a real bench's timing)"
)
