"""The optical program: what the bench must show to compute a kernel bank, and how well it will do it.

Saved as schema-versioned HDF5 (atomic write) and summarised by a compile report PNG.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.errors import Fix
from lab4f.optics.forward import fourf_output
from lab4f.optics.geometry import FourfGeometry
from lab4f.optics.layout import TileLayout, extract_tiles
from lab4f.storage import StorageError, atomic_h5, open_h5, read_json_attr, write_json_attr

PROGRAM_SCHEMA = 1


@dataclass
class ProgramFrame:
    """One SLM frame: a tile layout, its target PSF and the Fourier-plane pattern that realises it."""

    layout: TileLayout
    target_psf: np.ndarray  # (M, M) intensity, normalised to unit sum
    transmittance: np.ndarray  # (M, M) complex the model assumes (phase-only: exp(iφ) × aperture)
    phase: (
        np.ndarray | None
    )  # (M, M) radians in [0, 2π) for a phase-only SLM; None for complex modulation
    achieved_psf: np.ndarray  # (M, M) what the transmittance really produces
    tile_gain: (
        np.ndarray
    )  # (n_tiles,) achieved tile ≈ gain × kernel part (least squares, kernel units)
    tile_correlation: (
        np.ndarray
    )  # (n_tiles,) Pearson correlation achieved vs target inside each tile
    energy_in_tiles: float  # fraction of the PSF energy that lands in the kernel tiles

    @property
    def stray_fraction(self) -> float:
        return 1.0 - self.energy_in_tiles


@dataclass
class OpticalProgram:
    """A compiled kernel bank: one or more SLM frames (more than one = time-multiplexed)."""

    bank: np.ndarray  # (C_out, C_in, K, K) signed kernels, the digital reference
    input_size: int
    mode: str
    modulation: str  # "phase" (phase-only SLM, phase retrieval) or "complex" (ideal modulator)
    geometry: FourfGeometry
    frames: list[ProgramFrame]
    kernel_scale: float  # target tile = kernel part / kernel_scale (before PSF normalisation)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def channels(self) -> int:
        return int(self.bank.shape[0])

    @property
    def kernel_size(self) -> int:
        return int(self.bank.shape[-1])

    def summary(self) -> dict[str, Any]:
        corr = np.concatenate([f.tile_correlation for f in self.frames])
        return {
            "channels": self.channels,
            "kernel_size": self.kernel_size,
            "input_size": self.input_size,
            "mode": self.mode,
            "modulation": self.modulation,
            "frames": len(self.frames),
            "tiles": int(sum(len(f.layout.tiles) for f in self.frames)),
            "tile_pitch": self.frames[0].layout.pitch,
            "min_tile_correlation": float(corr.min()),
            "mean_tile_correlation": float(corr.mean()),
            "energy_in_tiles": float(np.mean([f.energy_in_tiles for f in self.frames])),
        }

    # -- the digital twin of the optics -------------------------------------------------------------
    def simulate(self, images: torch.Tensor) -> torch.Tensor:
        """Feature maps (B, C, N, N) the ideal bench would deliver for intensity images (B, 1, N, N).

        Runs the forward model per frame, cuts the tiles, divides each by its compiled gain and subtracts
        k⁻ from k⁺; the result estimates the bank's correlation with the images.
        """
        x = images[:, 0].to(torch.float64)
        out = images.new_zeros(
            images.shape[0], self.channels, self.input_size, self.input_size, dtype=torch.float64
        )
        for frame in self.frames:
            plane = fourf_output(x, torch.from_numpy(frame.transmittance), self.mode)
            pos, neg = extract_tiles(plane, frame.layout)
            gains = {
                (t.channel, t.sign): g
                for t, g in zip(frame.layout.tiles, frame.tile_gain, strict=True)
            }
            for i, c in enumerate(frame.layout.channels):
                out[:, c] = pos[:, i] / gains[(c, 1)] - neg[:, i] / gains[(c, -1)]
        return (out * self.kernel_scale).to(images.dtype)

    # -- storage ------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        with atomic_h5(path, "optical_program", PROGRAM_SCHEMA) as f:
            f.create_dataset("bank", data=self.bank)
            f.attrs["input_size"] = self.input_size
            f.attrs["mode"] = self.mode
            f.attrs["modulation"] = self.modulation
            f.attrs["kernel_scale"] = self.kernel_scale
            write_json_attr(f, "geometry", dataclasses.asdict(self.geometry))
            write_json_attr(f, "source", self.source)
            write_json_attr(f, "summary", self.summary())
            for i, fr in enumerate(self.frames):
                g = f.create_group(f"frames/{i}")
                g.create_dataset("layout", data=fr.layout.to_array())
                g.attrs["pitch"] = fr.layout.pitch
                g.create_dataset("target_psf", data=fr.target_psf, compression="gzip")
                g.create_dataset("transmittance", data=fr.transmittance, compression="gzip")
                if fr.phase is not None:
                    g.create_dataset("phase", data=fr.phase, compression="gzip")
                g.create_dataset("achieved_psf", data=fr.achieved_psf, compression="gzip")
                g.create_dataset("tile_gain", data=fr.tile_gain)
                g.create_dataset("tile_correlation", data=fr.tile_correlation)
                g.attrs["energy_in_tiles"] = fr.energy_in_tiles
        return Path(path)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> OpticalProgram:
        try:
            f = open_h5(path, "optical_program", PROGRAM_SCHEMA)
        except StorageError as exc:  # missing, truncated, another kind: say how to get a good one
            raise StorageError(exc.problem, fix=Fix("compile", {"path": str(path)})) from exc
        with f:
            try:
                geometry_d = read_json_attr(f, "geometry")
                geometry_d["slm_shape"] = tuple(geometry_d["slm_shape"])
                geometry = FourfGeometry(**geometry_d)
                bank = f["bank"][()]
                n, k = int(f.attrs["input_size"]), int(bank.shape[-1])
                frames = []
                for i in sorted(f["frames"], key=int):
                    g = f["frames"][i]
                    layout = TileLayout.from_array(
                        g["layout"][()], n, k, geometry.slm_shape, int(g.attrs["pitch"])
                    )
                    frames.append(
                        ProgramFrame(
                            layout=layout,
                            target_psf=g["target_psf"][()],
                            transmittance=g["transmittance"][()],
                            phase=g["phase"][()] if "phase" in g else None,
                            achieved_psf=g["achieved_psf"][()],
                            tile_gain=g["tile_gain"][()],
                            tile_correlation=g["tile_correlation"][()],
                            energy_in_tiles=float(g.attrs["energy_in_tiles"]),
                        )
                    )
                return cls(
                    bank=bank,
                    input_size=n,
                    mode=str(f.attrs["mode"]),
                    modulation=str(f.attrs["modulation"]),
                    geometry=geometry,
                    frames=frames,
                    kernel_scale=float(f.attrs["kernel_scale"]),
                    source=read_json_attr(f, "source", {}),
                )
            except (KeyError, ValueError, TypeError) as exc:
                raise StorageError(
                    f"{path} is an incomplete optical program ({exc})",
                    fix=Fix("compile", {"path": str(path)}),
                ) from exc
