"""Compile report: a PNG that shows whether the SLM pattern realises the kernel bank."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from lab4f.optics.program import OpticalProgram


def _crop(a: np.ndarray, half: int) -> np.ndarray:
    cy, cx = a.shape[0] // 2, a.shape[1] // 2
    return a[cy - half : cy + half, cx - half : cx + half]


def _forecast_axes(ax, fc: dict) -> None:  # noqa: ANN001 — a matplotlib Axes
    """Predicted feature SNR per channel (log scale) with the warning threshold."""
    snr = np.asarray([np.nan if v is None else v for v in fc["snr"]], dtype=float)
    low = snr < fc["threshold_snr"]
    ax.bar(np.arange(len(snr)), snr, color=np.where(low, "tab:red", "tab:green"))
    ax.axhline(fc["threshold_snr"], color="k", lw=1, ls="--")
    ax.set_yscale("log")
    ax.set_xlabel("channel")
    ax.set_ylabel("predicted SNR")
    exp = fc.get("exposure_s")
    ax.set_title(
        f"fidelity forecast ({fc['average']} frame/input"
        + (f", exposure ≈ {1e3 * exp:.1f} ms" if exp else "")
        + f"): {int(low.sum())} channel(s) below "
        f"SNR {fc['threshold_snr']:.0f}, predicted R² min {fc['min_predicted_r2']:.3f}"
    )


def save_report_png(program: OpticalProgram, path: str | os.PathLike[str], frame: int = 0) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fr = program.frames[frame]
    half = min(fr.layout.extent(), fr.target_psf.shape[0] // 2)
    fc = program.source.get("forecast")
    if fc:
        fig = plt.figure(figsize=(10, 12))
        grid = fig.add_gridspec(3, 2, height_ratios=(1, 1, 0.6))
        ax = np.array([[fig.add_subplot(grid[r, c]) for c in range(2)] for r in range(2)])
        _forecast_axes(fig.add_subplot(grid[2, :]), fc)
    else:
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
