"""What the bench's display can show: checked before a run streams inputs to it (not as an error in its thread)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lab4f.errors import ConfigError, MismatchError


def check_display_fits(setup: Any, images: torch.Tensor | np.ndarray) -> None:
    """Refuse inputs (N, 1, H, W) or (N, H, W) the display cannot show, saying which config setting to change.
    ``setup``: a :class:`lab4f.bench.hybrid.HybridSetup`, or the :class:`lab4f.bench.devices.Bench` itself."""
    hw = tuple(int(v) for v in images.shape[-2:])
    bench = getattr(setup, "bench", setup)  # a HybridSetup, or the Bench itself
    shape = tuple(getattr(bench.display, "shape", hw))
    policy = getattr(getattr(bench, "sync", None), "policy", None)
    if policy == "marker" and shape[0] >= hw[0] and shape[1] >= hw[1]:
        pass  # the image is shown centred, the marker code beside it (Bench.show checks the code fits)
    elif shape != hw:
        raise MismatchError(
            f"the display shows {shape} images but the inputs are {hw}; set the bench config's "
            f"[display] settings.shape = {list(hw)}"
        )
    if images.ndim == 4 and images.shape[1] != 1:
        raise ConfigError(
            f"the display shows one intensity channel; the inputs have {images.shape[1]}"
        )
