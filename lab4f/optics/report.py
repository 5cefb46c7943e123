"""Compile report: a PNG that shows whether the SLM pattern realises the kernel bank."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lab4f.optics.program import OpticalProgram


def _crop(a: np.ndarray, half: int) -> np.ndarray:
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    return a[cy - half : cy + half, cx - half : cx + half]


def save_report_png(program: OpticalProgram, path: str | os.PathLike[str], frame: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = program.frames[frame]
    half = min(fr.layout.extent(), fr.target_psf.shape[0] // 2)
    fig, ax = plt.subplots(2, 2, figsize=(10, 9))
    vmax = float(_crop(fr.target_psf, half).max())
    ax[0, 0].imshow(_crop(fr.target_psf, half), cmap="magma", vmin=0, vmax=vmax)
    ax[0, 0].set_title("target PSF (k⁺/k⁻ tiles)")
    achieved = _crop(fr.achieved_psf, half) / max(fr.achieved_psf.sum(), 1e-30)
    ax[0, 1].imshow(achieved, cmap="magma", vmin=0, vmax=vmax)
    ax[0, 1].set_title(f"achieved PSF ({100 * fr.energy_in_tiles:.1f} % of light in tiles)")
    if fr.phase is not None:
        im = ax[1, 0].imshow(fr.phase, cmap="twilight", vmin=0, vmax=2 * np.pi)
        ax[1, 0].set_title("SLM phase (rad)")
    else:
        im = ax[1, 0].imshow(np.abs(fr.transmittance), cmap="gray")
        ax[1, 0].set_title("Fourier-plane amplitude (complex modulation)")
    fig.colorbar(im, ax=ax[1, 0], fraction=0.046)
    labels = [f"{t.channel}{'+' if t.sign > 0 else '−'}" for t in fr.layout.tiles]
    ax[1, 1].bar(range(len(labels)), fr.tile_correlation, color="tab:blue")
    ax[1, 1].set_ylim(min(0.9, float(fr.tile_correlation.min()) - 0.01), 1.0)
    ax[1, 1].set_xlabel("tile (channel, sign)")
    ax[1, 1].set_ylabel("correlation with target")
    ax[1, 1].set_title("PSF fidelity per tile")
    for a in ax.flat[:2]:
        a.set_xticks([])
        a.set_yticks([])
    s = program.summary()
    fig.suptitle(
        f"{s['channels']} kernels {s['kernel_size']}×{s['kernel_size']}, {s['frames']} frame(s), "
        f"{program.modulation} modulation, min tile corr {s['min_tile_correlation']:.4f}"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
