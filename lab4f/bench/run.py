"""`lab4f run`: a data set through the bench, streamed, held against the digital student, saved to a run file."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f.bench.hybrid import HybridSetup
from lab4f.bench.stream import Pipeline, RunSummary
from lab4f.storage import atomic_write, file_sha256, h5_file, write_json_attr

RUN_SCHEMA = 1


@dataclass
class RunResult:
    """Predictions of the optical and the digital path on the same inputs, and the stream's counters."""

    indices: np.ndarray  # which inputs were processed (a faulted run keeps what it did)
    labels: np.ndarray
    optical_probs: np.ndarray  # (n, classes)
    digital_probs: np.ndarray
    summary: RunSummary
    sample_frames: np.ndarray  # a few raw camera frames
    sample_features: np.ndarray  # their feature maps (B, C, N, N)
    extra: dict[str, Any] = field(default_factory=dict)

    def _accuracy(self, probs: np.ndarray) -> float | None:
        """Accuracy over the labelled inputs (label ≥ 0); None when none is labelled."""
        labelled = self.labels >= 0
        return float((probs.argmax(1)[labelled] == self.labels[labelled]).mean()) if labelled.any() else None

    @property
    def optical_accuracy(self) -> float | None:
        return self._accuracy(self.optical_probs)

    @property
    def digital_accuracy(self) -> float | None:
        return self._accuracy(self.digital_probs)

    @property
    def agreement(self) -> float | None:
        """Fraction of inputs where optics and digital agree; None for a run that processed none."""
        return float((self.optical_probs.argmax(1) == self.digital_probs.argmax(1)).mean()) if len(self.labels) \
            else None

    def metrics(self) -> dict[str, Any]:
        s = self.summary.stats
        return {
            "n": int(len(self.labels)), "labelled": int((self.labels >= 0).sum()),
            "optical_accuracy": self.optical_accuracy,
            "digital_accuracy": self.digital_accuracy, "agreement": self.agreement,
            "frames_per_s": s.mean_fps, **latencies_ms(s), "acquired": s.acquired, "processed": s.processed,
            "dropped": s.dropped, "policy": s.policy, "stop_reason": s.stop_reason, "error": s.error,
            "error_device": s.error_device,
        } | self.extra


def latencies_ms(stats: Any) -> dict[str, float | None]:
    """The run's latency percentiles; None where it has none (no input was processed: the stream reports NaN)."""
    return {k: (v if np.isfinite(v) else None) for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
            for v in [float(getattr(stats, k))]}


def run_dataset(
    setup: HybridSetup,
    images: torch.Tensor,
    labels: torch.Tensor,
    policy: str = "evaluate",
    batch_size: int = 32,
    capacity: int = 64,
    samples: int = 8,
    back: torch.nn.Module | None = None,
) -> RunResult:
    """Stream ``images`` (B, 1, N, N) through the optics and the back end (``back`` overrides the student's)."""
    back = back or setup.student.back
    back.eval()
    single = len(setup.program.frames) == 1
    position = iter(range(len(images)))
    sample_frames: list[np.ndarray] = []
    sample_inputs: list[int] = []  # which input each sampled frame shows (a live run may drop frames)

    sync = setup.bench.sync
    before_sync = sync.counters.to_dict()
    stream = sync.stream(len(images), lambda i: setup.show_input(i, images[i, 0].numpy())) if single else None
    count = iter(range(len(images)))

    def acquire() -> tuple[int, np.ndarray, int] | None:
        if stream is not None:  # one SLM frame: inputs pipelined through the display, paired by the sync policy
            item = next(stream, None)
            if item is None:
                return None
            i, frame = item
            frames = frame.image[None]
        else:  # time-multiplexed: every SLM frame of one input in turn (each grab waits for its own settle)
            i = next(position, None)
            if i is None:
                return None
            frames = setup.grab(images[i, 0].numpy())
        if len(sample_frames) < samples:  # (H, W), or (F, H, W) for a time-multiplexed program
            sample_frames.append(frames[0].copy() if single else frames.copy())
            sample_inputs.append(i)
        # frames the camera lost and frames skipped as stale are in the sync counters; indices count pairs
        return next(count), frames, i

    def process(frames: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            probs = torch.softmax(setup.logits(frames, back), dim=1).numpy()
        return list(probs)

    setup.fused_head(back)  # built before the stream starts, not in its first batch
    before = dict(setup.batches)
    summary = Pipeline(acquire, process, policy=policy, capacity=capacity, batch_size=batch_size).run()
    done = np.array([payload for _, payload, _ in summary.results], dtype=np.int64)
    optical = np.stack([out for _, _, out in summary.results]) if len(done) else np.zeros((0, 1))
    with torch.no_grad():
        digital = torch.softmax(setup.student(images[done]), dim=1).numpy() if len(done) else np.zeros((0, 1))
        sample_idx = np.asarray(sample_inputs, dtype=np.int64)
        stacked = np.stack(sample_frames) if sample_frames else np.zeros((0,))
        sample_feats = setup.features(stacked[:, None] if single else stacked).numpy() if sample_frames \
            else np.zeros((0,))
    after_sync = sync.counters.to_dict()
    timing = sync.timing
    sync_info = {"policy": sync.policy, "timing_source": timing.source, "display_delay_s": timing.display_delay_s,
                 "display_latency_s": [timing.display_latency_min_s, timing.display_latency_max_s],
                 "display_response_s": timing.display_response_s, "slm_settle_s": timing.slm_settle_s,
                 "hold_s": sync.hold_s(timing) if single and sync.policy == "settle" else None}
    sync_info |= {k: after_sync[k] - before_sync[k] for k in after_sync}
    return RunResult(done, labels[done].numpy(), optical, digital, summary, stacked, sample_feats,
                     {"sample_indices": sample_idx.tolist(), "sync": sync_info,
                      "stale": sync_info["stale"], "unpaired": sync_info["unpaired"],
                      "skipped": sync_info["skipped"],
                      # batches through the fused frames → logits kernel vs the extractor + back end
                      "batches_fused": setup.batches["fused"] - before.get("fused", 0),
                      "batches_extractor": setup.batches["extractor"] - before.get("extractor", 0)})


def save_run(path: str | os.PathLike[str], result: RunResult, setup: HybridSetup,
             checkpoint: str | None = None, overwrite: bool = True, unique: bool = False) -> Path:
    """One HDF5 file per run: predictions, labels, sampled frames and features, metrics, what produced it.
    ``overwrite``/``unique``: as :func:`lab4f.storage.publish`; returns the name the file was saved under."""
    with atomic_write(path, overwrite=overwrite, unique=unique) as target, h5_file(target.tmp, "run", RUN_SCHEMA) as f:
        f.create_dataset("indices", data=result.indices)
        f.create_dataset("labels", data=result.labels)
        f.create_dataset("optical_probs", data=result.optical_probs.astype(np.float32))
        f.create_dataset("digital_probs", data=result.digital_probs.astype(np.float32))
        f.create_dataset("sample_frames", data=result.sample_frames, compression="gzip")
        f.create_dataset("sample_features", data=result.sample_features.astype(np.float32), compression="gzip")
        write_json_attr(f, "metrics", result.metrics())
        write_provenance(f, setup, checkpoint)
    assert target.path is not None
    return target.path


def write_provenance(f: Any, setup: HybridSetup, checkpoint: str | None) -> None:
    """What produced a run: the bench (devices, settings), checkpoint, optical program and calibration record."""
    write_json_attr(f, "bench", setup.bench.info())
    # absolute paths (the file is read later from anywhere; "" for a program compiled on the fly, which
    # program_summary describes) and the files' hashes (which file exactly, even if later overwritten or moved)
    for name, p in (("checkpoint", checkpoint), ("program", setup.program_path),
                    ("calibration", setup.calibration_path)):
        f.attrs[name] = str(Path(p).resolve()) if p else ""
        if p and Path(p).is_file():
            f.attrs[f"{name}_sha256"] = file_sha256(p)
    write_json_attr(f, "program_summary", setup.program.summary())
