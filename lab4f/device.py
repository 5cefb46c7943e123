"""Where training runs: the device (``cpu``, ``cuda``, ``mps``, ``auto``), mixed precision and CPU threads.

Thread rule (measured on a loaded 2-core machine: 2 intra-op threads cost ~5× the CPU per epoch of 1, because
threads that find their core busy spin and wait): a CPU run uses the cores that are *free*, i.e.
``cpu_count − round(1-minute load average)``, at least 1 and at most ``cpu_count``, divided by the number of
DDP ranks on the machine. An explicit ``--threads N`` always wins. On a GPU the threads only feed the device,
and the same rule applies.

Mixed precision (``--amp``): float16 autocast with a gradient scaler on CUDA, bfloat16 autocast on CPU and
MPS (no scaler needed). Losses and metrics are computed in float32.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import torch

from lab4f.errors import ConfigError

DEVICES = ("cpu", "cuda", "mps", "auto")


def resolve_device(name: str | None) -> str:
    """``auto`` → cuda if present, else mps, else cpu; a named device must be present (else a ConfigError)."""
    name = (name or "cpu").lower()
    base = name.split(":")[0]
    if base not in DEVICES:
        raise ConfigError(f"device {name!r} is unknown; choose one of {', '.join(DEVICES)}")
    if base == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if mps_available():
            return "mps"
        return "cpu"
    if base == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "--device cuda: no CUDA GPU is visible to this torch build "
            f"(torch {torch.__version__}); use --device cpu or auto"
        )
    if base == "mps" and not mps_available():
        raise ConfigError(
            "--device mps: Apple's Metal backend is not available here; use --device cpu or auto"
        )
    return name


def mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def default_threads(ranks_per_machine: int = 1) -> int:
    """The free cores of this machine per rank (see the module docstring), at least 1."""
    n = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not on every platform
        load = 0.0
    free = max(1, min(n, n - round(load)))
    return max(1, free // max(1, ranks_per_machine))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[int]:
    """Set torch's intra-op threads to ``n`` (None: :func:`default_threads`) for the block, then restore."""
    prev = torch.get_num_threads()
    want = int(n) if n else default_threads()
    torch.set_num_threads(want)
    try:
        yield want
    finally:
        torch.set_num_threads(prev)


def amp_dtype(device: str) -> torch.dtype:
    return torch.float16 if device.startswith("cuda") else torch.bfloat16


def autocast(device: str, enabled: bool) -> Any:
    """The autocast context for ``device`` (a no-op context when not enabled)."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=amp_dtype(device))


def grad_scaler(device: str, enabled: bool) -> Any:
    """A GradScaler for float16 AMP on CUDA; a disabled scaler (pass-through) elsewhere."""
    on = enabled and device.startswith("cuda")
    return (
        torch.amp.GradScaler("cuda", enabled=on)
        if on
        else torch.amp.GradScaler("cpu", enabled=False)
    )


def ddp_backend(device: str) -> str:
    """NCCL for CUDA ranks, gloo for CPU (and MPS, which has no collective backend of its own)."""
    return "nccl" if device.startswith("cuda") else "gloo"
