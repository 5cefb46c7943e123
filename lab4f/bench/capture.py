"""Feature maps captured through the calibrated bench, for banks with no lab4f back end (``lab4f capture``).

Inputs stream through the bench's sync pipeline (:meth:`lab4f.bench.sync.Sync.stream`) a chunk at a time; a
time-multiplexed program uploads each SLM frame once per chunk and streams the chunk through it, so the SLM settles
once per frame and chunk, not once per input. ``average`` frames are taken per input and SLM frame (each paired
with its own showing of the input) and averaged before extraction: the features are linear in the frames, so this
is the mean of the features, with the noise of one frame divided by √average. The time they take is in the
throughput figures.

The digital reference is the program's forward model (:meth:`~lab4f.optics.program.OpticalProgram.simulate`:
the compiled SLM pattern through the ideal 4f optics), which the calibration's channel filters are fitted to; the
bank's own ``F.conv2d(x, w, padding="same")`` is reported beside it (its difference is the hologram's error).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.hybrid import HybridSetup
from lab4f.errors import ConfigError
from lab4f.spectral import KernelBank
from lab4f.storage import atomic_write, h5_file, write_json_attr

CAPTURE_SCHEMA = 1


def _finite(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def channel_r2(features: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """R² per channel of ``features`` against ``reference`` (B, C, N, N), over every input and pixel (NaN for a
    channel whose reference is constant)."""
    f = np.asarray(features, np.float64)
    d = np.asarray(reference, np.float64)
    res = ((f - d) ** 2).sum(axis=(0, 2, 3))
    tot = ((d - d.mean(axis=(0, 2, 3), keepdims=True)) ** 2).sum(axis=(0, 2, 3))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(tot > 0, 1.0 - res / tot, np.nan)


@dataclass
class CaptureResult:
    """Calibrated feature maps of the inputs and their digital references."""

    indices: np.ndarray  # (n,) the inputs' indices in the data set / folder
    labels: np.ndarray  # (n,) class labels, −1 where unknown
    features: np.ndarray  # (n, C, N, N) float32 from the bench
    digital: np.ndarray  # (n, C, N, N) float32, the program's forward model
    average: int
    program_frames: int
    elapsed_s: float
    bank_error: (
        float  # ‖digital − bank conv‖ / ‖bank conv‖: the compiled hologram against the bank itself
    )
    bank_feature_error: float  # ‖features − bank conv‖ / ‖bank conv‖
    sync: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def relative_error(self) -> float:
        d = np.asarray(self.digital, np.float64)
        return float(
            np.linalg.norm(np.asarray(self.features, np.float64) - d)
            / max(np.linalg.norm(d), 1e-30)
        )

    def metrics(self) -> dict[str, Any]:
        r2 = channel_r2(self.features, self.digital)
        n = len(self.indices)
        frames = n * self.program_frames * self.average
        ok = r2[np.isfinite(r2)]
        return {
            "n": int(n),
            "labelled": int((self.labels >= 0).sum()),
            "relative_error": self.relative_error,
            "relative_error_vs_bank": _finite(self.bank_feature_error),
            "hologram_error_vs_bank": _finite(self.bank_error),
            "r2_min": float(ok.min()) if ok.size else None,
            "r2_median": float(np.median(ok)) if ok.size else None,
            "r2_mean": float(ok.mean()) if ok.size else None,
            "channel_r2": [_finite(v) for v in r2],
            "average": int(self.average),
            "program_frames": int(self.program_frames),
            "frames_per_input": int(self.program_frames * self.average),
            "camera_frames": int(frames),
            "elapsed_s": float(self.elapsed_s),
            "inputs_per_s": float(n / self.elapsed_s) if self.elapsed_s > 0 else None,
            "camera_frames_per_s": float(frames / self.elapsed_s) if self.elapsed_s > 0 else None,
            "sync": dict(self.sync),
        } | self.extra


def capture_dataset(
    setup: HybridSetup,
    images: torch.Tensor,
    labels: torch.Tensor | None = None,
    average: int = 1,
    chunk: int | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> CaptureResult:
    """Stream ``images`` (B, 1, N, N) through the bench; ``average`` frames per input and SLM frame."""
    if average < 1:
        raise ConfigError(f"average must be ≥ 1 frame per input, got {average}")
    program = setup.program
    n_in = len(images)
    if (
        images.ndim != 4
        or images.shape[1] != 1
        or tuple(images.shape[-2:]) != (program.input_size,) * 2
    ):
        raise ConfigError(
            f"the program was compiled for {program.input_size}×{program.input_size} inputs; the "
            f"images are {tuple(images.shape)}"
        )
    n_frames = len(program.frames)
    chunk = chunk or (64 if n_frames == 1 else 16)
    cam_shape = tuple(int(s) for s in setup.bench.camera.shape)
    c, n = program.channels, program.input_size
    features = np.empty((n_in, c, n, n), np.float32)
    digital = np.empty((n_in, c, n, n), np.float32)
    reference = KernelBank.from_numpy(program.bank)
    sq_bank = sq_holo = sq_feat = 0.0
    sync = setup.bench.sync
    before = sync.counters.to_dict()
    elapsed = 0.0
    for start in range(0, n_in, chunk):
        stop = min(start + chunk, n_in)
        batch = images[start:stop]
        raw = np.zeros((stop - start, n_frames, *cam_shape), np.float32)
        t0 = time.perf_counter()
        for f in range(n_frames):
            setup.upload(f)

            def show(j: int, batch: torch.Tensor = batch) -> None:
                setup.show_input(j, batch[j // average, 0].numpy())

            for j, frame in sync.stream((stop - start) * average, show):
                raw[j // average, f] += np.asarray(frame.image, np.float32)
        if average > 1:
            raw /= average
        features[start:stop] = setup.features(raw).numpy()
        elapsed += time.perf_counter() - t0
        with torch.no_grad():
            sim = program.simulate(batch.to(torch.float64))
            bank = reference.apply(batch.to(torch.float64))
        digital[start:stop] = sim.numpy()
        sq_bank += float((bank**2).sum())
        sq_holo += float(((sim - bank) ** 2).sum())
        sq_feat += float(((torch.from_numpy(features[start:stop]).double() - bank) ** 2).sum())
        if on_progress is not None:
            on_progress(stop, n_in)
    after = sync.counters.to_dict()
    labels_np = (
        np.full(n_in, -1, np.int64) if labels is None else np.asarray(labels, np.int64).reshape(-1)
    )
    return CaptureResult(
        indices=np.arange(n_in, dtype=np.int64),
        labels=labels_np,
        features=features,
        digital=digital,
        average=int(average),
        program_frames=n_frames,
        elapsed_s=elapsed,
        bank_error=math.sqrt(sq_holo / sq_bank) if sq_bank > 0 else math.nan,
        bank_feature_error=math.sqrt(sq_feat / sq_bank) if sq_bank > 0 else math.nan,
        sync={"policy": sync.policy} | {k: after[k] - before[k] for k in after},
    )


def save_capture(
    path: str | Path,
    result: CaptureResult,
    setup: HybridSetup,
    overwrite: bool = True,
    unique: bool = False,
    extra: dict[str, Any] | None = None,
) -> Path:
    """One HDF5 file (kind ``capture``, atomic write): indices, labels, features, digital reference, the bank, the
    metrics and what produced them (bench, program, calibration record). Returns the name it was saved under."""
    from lab4f.bench.run import write_provenance

    with (
        atomic_write(path, overwrite=overwrite, unique=unique) as target,
        h5_file(target.tmp, "capture", CAPTURE_SCHEMA) as f,
    ):
        f.create_dataset("indices", data=result.indices)
        f.create_dataset("labels", data=result.labels)
        chunks = (1, *result.features.shape[1:]) if len(result.features) else None
        f.create_dataset("features", data=result.features, compression="gzip", chunks=chunks)
        f.create_dataset("digital", data=result.digital, compression="gzip", chunks=chunks)
        f.create_dataset("bank", data=np.asarray(setup.program.bank))
        f.attrs["convention"] = (
            'F.conv2d(x, bank, padding="same") (cross-correlation, PyTorch placement)'
        )
        write_json_attr(f, "metrics", result.metrics())
        write_json_attr(f, "inputs", extra or {})
        write_provenance(f, setup, None)
    assert target.path is not None
    return target.path
