"""What the calibration steps are and how they depend on each other (stdlib only: the CLI parser reads it)."""

from __future__ import annotations

#: Steps whose results later steps are measured through: re-running one alone leaves those stale.
DEPENDS_ON_IT: dict[str, tuple[str, ...]] = {
    "camera": ("gains",),  # exposure: the channel filters carry its scale
    "fourier": ("registration", "tiles", "gains"),  # the registration's matrix is the Fourier calibration's
    "phase": ("tiles", "gains"),  # a new LUT changes the PSF the tiles and filters were fitted to
    "wavefront": ("registration", "tiles", "gains"),
    "registration": ("tiles", "gains"),
    "tiles": ("gains",),
}
#: Every step in bench order.
BENCH_ORDER = ("camera", "timing", "display", "fourier", "phase", "wavefront", "registration", "tiles", "gains")


def builds_on(step: str) -> tuple[str, ...]:
    """The steps ``step`` is measured through (re-running one of them makes ``step`` stale), in bench order."""
    return tuple(n for n in BENCH_ORDER if step in DEPENDS_ON_IT.get(n, ()))
