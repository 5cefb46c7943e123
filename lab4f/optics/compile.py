"""Kernel bank → optical program: tile layout, target PSF, and the SLM pattern that realises it.

For a phase-only SLM the pattern comes from phase retrieval with slmsuite's holography (weighted
Gerchberg–Saxton); for an ideal complex modulator it is the exact inverse transform of the target.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Callable

import numpy as np
import torch

from lab4f.errors import CompileError
from lab4f.optics.forward import MODES, intensity_psf, transmittance_for_psf
from lab4f.optics.geometry import FourfGeometry
from lab4f.optics.layout import TileLayout, plan_layout, slots_per_frame, target_psf
from lab4f.optics.program import OpticalProgram, ProgramFrame
from lab4f.spectral import KernelBank

MODULATIONS = ("phase", "complex")
Progress = Callable[[int, int, str], None]


def _tile_masks(layout: TileLayout) -> list[tuple[slice, slice]]:
    k = layout.kernel_size
    cy, cx = layout.grid_shape[0] // 2, layout.grid_shape[1] // 2
    return [
        (
            slice(cy + t.offset[0] - k // 2, cy + t.offset[0] - k // 2 + k),
            slice(cx + t.offset[1] - k // 2, cx + t.offset[1] - k // 2 + k),
        )
        for t in layout.tiles
    ]


def _retrieve_phase(
    target: np.ndarray,
    method: str,
    iterations: int,
    seed: int,
    on_iteration: Callable[[int], None] | None = None,
) -> np.ndarray:
    """Phase-only pattern whose far field intensity approximates ``target`` (slmsuite holography).

    ``on_iteration(k)`` is called after iteration k (1-based); an exception it raises (a cancellation) aborts."""
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "cupy is not installed": numpy is the intended backend here
        from slmsuite.holography.algorithms import Hologram

    logging.getLogger("slmsuite").setLevel(logging.WARNING)
    np.random.seed(seed)  # slmsuite draws its initial random phase from numpy's global state
    amp = np.sqrt(target / target.sum()).astype(np.float32)
    hologram = Hologram(target=amp, slm_shape=target.shape)
    with np.errstate(
        divide="ignore", invalid="ignore"
    ):  # WGS weights divide by the zero target outside tiles
        done = [0]

        def callback(_hologram: object) -> bool:
            done[0] += 1
            on_iteration(done[0])
            return False  # never asks slmsuite to stop early

        hologram.optimize(
            method=method,
            maxiter=iterations,
            verbose=False,
            callback=None if on_iteration is None else callback,
        )
    return np.mod(np.asarray(hologram.get_phase(), dtype=np.float64), 2 * np.pi)


def _frame_quality(
    layout: TileLayout, target: np.ndarray, achieved: np.ndarray
) -> tuple[np.ndarray, np.ndarray, float]:
    gains, corrs, inside = [], [], 0.0
    for sl in _tile_masks(layout):
        a, t = achieved[sl].ravel(), target[sl].ravel()
        tt = float(t @ t)
        gains.append(float(a @ t) / tt if tt > 0 else 1.0)
        corrs.append(
            float(np.corrcoef(a, t)[0, 1]) if t.std() > 0 and a.std() > 0 else float(tt == 0)
        )
        inside += float(a.sum())
    return np.array(gains), np.array(corrs), inside / float(achieved.sum())


def compile_frame(
    layout: TileLayout,
    bank: KernelBank,
    geometry: FourfGeometry,
    modulation: str,
    method: str,
    iterations: int,
    seed: int,
    on_iteration: Callable[[int], None] | None = None,
) -> ProgramFrame:
    pos, neg = bank.positive[:, 0], bank.negative[:, 0]
    raw = target_psf(layout, pos, neg).numpy()  # in kernel units
    target = raw / raw.sum()
    aperture = geometry.aperture()
    if modulation == "complex":
        t = transmittance_for_psf(torch.from_numpy(np.sqrt(target))).numpy() * aperture
        phase = None
    else:
        phase = _retrieve_phase(target, method, iterations, seed, on_iteration)
        t = np.exp(1j * phase) * aperture
    achieved = intensity_psf(torch.from_numpy(t)).numpy()
    gains, corrs, energy = _frame_quality(layout, raw, achieved)  # gain: PSF per kernel unit
    return ProgramFrame(layout, target, t, phase, achieved, gains, corrs, energy)


def compile_bank(
    bank: KernelBank,
    input_size: int,
    geometry: FourfGeometry | None = None,
    mode: str = "incoherent",
    modulation: str = "phase",
    method: str = "WGS-Kim",
    iterations: int = 50,
    multiplex: str = "auto",
    camera_cells: tuple[int, int] | None = None,
    seed: int = 0,
    progress: Progress | None = None,
    on_iteration: Callable[[int, int], None] | None = None,
    source: dict | None = None,
    gap: int = 2,
    kernels_per_frame: int | None = None,
) -> OpticalProgram:
    """Compile a single-input-channel kernel bank for the 4f bench.

    ``gap``: free output cells between neighbouring tiles' full outputs (2; the ``marker`` sync policy needs room
    there for the input's index code, :func:`lab4f.bench.marker.MarkerCode.gap_cells`).

    ``multiplex``: "never" (all tiles in one frame or a CompileError), "auto" (split into as few frames as
    needed), "always" (one kernel pair per frame — the fallback for kernels that do not tile).
    ``kernels_per_frame``: at most this many kernels (k⁺/k⁻ tile pairs) per SLM frame, the rest time-multiplexed;
    fewer tiles share a frame's light, so each gets more of it (None: as many as fit).
    ``progress(frame, frames, message)`` per program frame; ``on_iteration(done, total)`` after every
    phase-retrieval iteration, counted over all frames (an exception it raises, e.g. a user's cancel, aborts).
    """
    geometry = geometry or FourfGeometry()
    if mode != "incoherent":
        raise (
            CompileError(
                f"compiling for {mode!r} mode is not supported: signed amplitude PSFs need a complex modulator and "
                "far-field phase control; use mode='incoherent' (the default) — the coherent mode is available in "
                "the forward model and the simulator"
            )
            if mode in MODES
            else CompileError(f"mode must be one of {MODES}")
        )
    if modulation not in MODULATIONS:
        raise CompileError(
            f"modulation {modulation!r} is unknown; choose one of {', '.join(MODULATIONS)}"
        )
    if bank.channels_in != 1:
        raise CompileError(
            f"the bank has {bank.channels_in} input channels; the 4f bench displays one intensity image — "
            "train with in_channels=1 (grayscale) or compile each input channel as its own program"
        )
    scale = float(bank.weights.abs().max())
    if scale == 0:
        raise CompileError(
            "the kernel bank is all zeros: nothing to compile (was the checkpoint trained?)"
        )
    normalised = KernelBank(bank.weights / scale)
    channels = list(range(bank.channels_out))
    # a frame's tiles must fit the SLM's far field and what the camera sees of it
    grid = tuple(int(g) for g in geometry.slm_shape)
    if camera_cells is not None:
        grid = (min(grid[0], int(camera_cells[0])), min(grid[1], int(camera_cells[1])))
    per_frame = slots_per_frame(input_size, bank.kernel_size, grid, gap) // 2
    if kernels_per_frame is not None:
        if int(kernels_per_frame) < 1:
            raise CompileError(f"kernels_per_frame must be ≥ 1, got {kernels_per_frame}")
        if multiplex == "never" and kernels_per_frame < len(channels):
            raise CompileError(
                f"{len(channels)} kernels at most {kernels_per_frame} per frame need "
                f"{math.ceil(len(channels) / kernels_per_frame)} frames, but multiplex='never'"
            )
        per_frame = min(per_frame, int(kernels_per_frame)) if per_frame > 0 else per_frame
    if multiplex == "always":
        groups = [[c] for c in channels]
    elif multiplex == "never" or per_frame >= len(channels):
        groups = [channels]
    elif multiplex == "auto":
        if per_frame == 0:
            groups = [channels]  # let plan_layout explain why nothing fits
        else:
            n = math.ceil(len(channels) / per_frame)
            groups = [channels[i::n] for i in range(n)]
    else:
        raise CompileError(f"multiplex must be 'auto', 'never' or 'always', got {multiplex!r}")
    frames = []
    for i, group in enumerate(groups):
        if progress:
            progress(i, len(groups), f"frame {i + 1}/{len(groups)}: phase retrieval ({method})")
        layout = plan_layout(
            group,
            input_size,
            bank.kernel_size,
            geometry.slm_shape,
            gap=gap,
            camera_cells=camera_cells,
        )
        hook = (
            None
            if on_iteration is None
            else (lambda k, i=i: on_iteration(i * iterations + k, len(groups) * iterations))
        )
        frames.append(
            compile_frame(
                layout, normalised, geometry, modulation, method, iterations, seed + i, hook
            )
        )
    if progress:
        progress(len(groups), len(groups), "done")
    return OpticalProgram(
        bank=bank.to_numpy(),
        input_size=input_size,
        mode=mode,
        modulation=modulation,
        geometry=geometry,
        frames=frames,
        kernel_scale=scale * 1.0,
        source=source or {},
    )
