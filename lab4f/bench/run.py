"""`lab4f run`: a data set through the bench, streamed, held against the digital student, saved to a run file.

The streaming loop (:class:`StreamRun`) is the one the GUI's live run uses too."""

from __future__ import annotations

import contextlib
import itertools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lab4f.bench.stream import Pipeline, RunSummary
from lab4f.errors import ConfigError
from lab4f.storage import atomic_write, file_sha256, h5_file, write_json_attr

if TYPE_CHECKING:
    from lab4f.bench.hybrid import HybridSetup

RUN_SCHEMA = 1


@dataclass
class RunResult:
    """Predictions of the optical and the digital path on the same inputs, and the stream's counters."""

    indices: np.ndarray  # which inputs were processed (a faulted run keeps what it did)
    labels: np.ndarray
    optical_probs: np.ndarray  # (n, classes)
    digital_probs: np.ndarray | None  # None: no digital model (a foreign kernel bank)
    summary: RunSummary
    sample_frames: np.ndarray  # a few raw camera frames
    sample_features: np.ndarray  # their feature maps (B, C, N, N)
    extra: dict[str, Any] = field(default_factory=dict)

    def _accuracy(self, probs: np.ndarray) -> float | None:
        """Accuracy over the labelled inputs (label ≥ 0); None when none is labelled."""
        labelled = self.labels >= 0
        return (
            float((probs.argmax(1)[labelled] == self.labels[labelled]).mean())
            if labelled.any()
            else None
        )

    @property
    def optical_accuracy(self) -> float | None:
        return self._accuracy(self.optical_probs)

    @property
    def digital_accuracy(self) -> float | None:
        return None if self.digital_probs is None else self._accuracy(self.digital_probs)

    @property
    def agreement(self) -> float | None:
        """Fraction of inputs where optics and digital agree; None for a run that processed none."""
        if self.digital_probs is None or not len(self.labels):
            return None
        return float((self.optical_probs.argmax(1) == self.digital_probs.argmax(1)).mean())

    def metrics(self) -> dict[str, Any]:
        s = self.summary.stats
        return {
            "n": int(len(self.labels)),
            "labelled": int((self.labels >= 0).sum()),
            "optical_accuracy": self.optical_accuracy,
            "digital_accuracy": self.digital_accuracy,
            "agreement": self.agreement,
            "frames_per_s": s.mean_fps,
            **latencies_ms(s),
            "acquired": s.acquired,
            "processed": s.processed,
            "dropped": s.dropped,
            "policy": s.policy,
            "stop_reason": s.stop_reason,
            "error": s.error,
            "error_device": s.error_device,
        } | self.extra


def latencies_ms(stats: Any) -> dict[str, float | None]:
    """The run's latency percentiles; None where it has none (no input was processed: the stream reports NaN)."""
    return {
        k: (v if np.isfinite(v) else None)
        for k in ("latency_p50_ms", "latency_p95_ms", "latency_p99_ms")
        for v in [float(getattr(stats, k))]
    }


class Pacer:
    """Sleeps so that calls happen at most ``rate_hz`` times a second (None or 0: never sleeps)."""

    def __init__(self, rate_hz: float | None) -> None:
        self.interval_s = 1.0 / rate_hz if rate_hz else 0.0
        self._due = 0.0

    def wait(self) -> None:
        if not self.interval_s:
            return
        now = time.perf_counter()
        if now < self._due:
            time.sleep(self._due - now)
        # the next slot is one interval after this one, or after now when this call came late: no burst
        self._due = max(self._due, now) + self.interval_s


class StreamRun:
    """A data set streamed through the optics and the back end: the acquisition, processing and result that
    `lab4f run` (:func:`run_dataset`) and the GUI's live run share (:class:`lab4f.bench.stream.Pipeline` around
    a :class:`lab4f.bench.hybrid.HybridSetup`; what it keeps per input is ``setup.task.outputs``).

    A finite run (``repeat`` False) pipelines a single-frame program's inputs through the display, paired by the
    bench's sync policy; a run without an end (``repeat``: the feed shown again and again until stopped) shows
    one input at a time, at most ``rate_hz`` a second, under ``device_lock``, and hands each camera frame to
    ``on_frame`` (a live view); the camera's own frame counter then reveals frames it lost. A time-multiplexed
    program grabs each input's SLM frames in turn. The digital reference (the student on the same inputs) is
    computed once for the whole feed (in chunks of ``digital_batch``; None: at once).
    """

    def __init__(
        self,
        setup: HybridSetup,
        images: torch.Tensor,
        labels: torch.Tensor,
        *,
        policy: str = "evaluate",
        batch_size: int = 32,
        capacity: int = 64,
        samples: int = 8,
        back: torch.nn.Module | None = None,
        repeat: bool = False,
        rate_hz: float | None = None,
        device_lock: Any = None,
        on_frame: Callable[[np.ndarray], None] | None = None,
        keep_results: int | None = None,
        digital_batch: int | None = None,
    ) -> None:
        if repeat and not len(images):
            raise ConfigError("a run without an end needs at least one input to show")
        self.setup, self.images, self.labels = setup, images, labels
        self.task = setup.task
        self.back = back or setup.student.back
        self.back.eval()
        self.samples, self.repeat, self.on_frame = samples, repeat, on_frame
        self.single = len(setup.program.frames) == 1
        self._lock = device_lock if device_lock is not None else contextlib.nullcontext()
        self._pacer = Pacer(rate_hz)
        self.sample_frames: list[np.ndarray] = []
        self.sample_inputs: list[
            int
        ] = []  # which input each sampled frame shows (a live run may drop frames)
        self.sync = setup.bench.sync
        self._before_sync = self.sync.counters.to_dict()
        n = len(images)
        self._stream = (
            self.sync.stream(n, lambda i: setup.show_input(i, images[i, 0].numpy()))
            if self.single and not repeat
            else None
        )
        self._count = itertools.count()
        self._position = 0  # inputs shown so far (a run without an end goes round the feed)
        # a foreign kernel bank (a program with no checkpoint) has no digital model: digital is None
        self.digital: np.ndarray | None = None
        if setup.student is not None:
            with torch.no_grad():
                student = setup.student.eval()
                chunk = digital_batch or max(n, 1)
                outs = [
                    self.task.outputs(student(images[i : i + chunk])) for i in range(0, n, chunk)
                ]
            self.digital = np.concatenate(outs) if outs else np.zeros((0, 1), np.float32)
        setup.fused_head(self.back)  # built before the stream starts, not in its first batch
        self._batches_before = dict(setup.batches)
        self.pipeline = Pipeline(
            self.acquire,
            self.process,
            policy=policy,
            capacity=capacity,
            batch_size=batch_size,
            keep_results=keep_results,
        )

    def _next(self) -> tuple[int, int, np.ndarray] | None:
        """(frame index, input index, its frames (F, H, W)), or None at the end of a finite run."""
        if (
            self._stream is not None
        ):  # one SLM frame: inputs pipelined through the display, paired by the sync policy
            item = next(self._stream, None)
            if item is None:
                return None
            i, frame = item
            return next(self._count), i, frame.image[None]
        if not self.repeat and self._position >= len(self.images):
            return None
        i = self._position % len(self.images)
        # one input at a time (a time-multiplexed program: every SLM frame in turn, each grab waits for its settle)
        frames = self.setup.grab(self.images[i, 0].numpy())
        camera = self.setup.bench.camera
        index = (
            int(getattr(camera, "last_frame_index", self._position))
            if self.repeat and self.single
            else next(self._count)
        )
        self._position += 1
        return index, i, frames

    def acquire(self) -> tuple[int, np.ndarray, int] | None:
        self._pacer.wait()
        with self._lock:
            item = self._next()
        if item is None:
            return None
        index, i, frames = item
        if self.on_frame is not None:
            self.on_frame(frames[0])
        if (
            len(self.sample_frames) < self.samples
        ):  # (H, W), or (F, H, W) for a time-multiplexed program
            self.sample_frames.append(frames[0].copy() if self.single else frames.copy())
            self.sample_inputs.append(i)
        # frames the camera lost and frames skipped as stale are in the sync counters; indices count pairs
        return index, frames, i

    def process(self, frames: np.ndarray) -> list[np.ndarray]:
        with torch.no_grad():
            return list(self.task.outputs(self.setup.logits(frames, self.back)))

    def start(self) -> StreamRun:
        self.pipeline.start()
        return self

    def stop(self) -> None:
        self.pipeline.stop()

    def run(self) -> RunResult:
        """The whole run, to the end of the data set (or a fault): its result."""
        return self.result(self.pipeline.run())

    def result(self, summary: RunSummary | None = None) -> RunResult:
        """The run so far (``summary``: the pipeline's, by default taken now) as a :class:`RunResult`."""
        setup, sync = self.setup, self.sync
        summary = summary or self.pipeline.summary()
        done = np.array([payload for _, payload, _ in summary.results], dtype=np.int64)
        optical = (
            np.stack([out for _, _, out in summary.results]) if len(done) else np.zeros((0, 1))
        )
        digital = (
            None if self.digital is None else self.digital[done] if len(done) else np.zeros((0, 1))
        )
        sample_idx = np.asarray(self.sample_inputs, dtype=np.int64)
        stacked = np.stack(self.sample_frames) if self.sample_frames else np.zeros((0,))
        with torch.no_grad():
            sample_feats = (
                setup.features(stacked[:, None] if self.single else stacked).numpy()
                if self.sample_frames
                else np.zeros((0,))
            )
        after_sync = sync.counters.to_dict()
        timing = sync.timing
        pipelined = self.single and not self.repeat
        sync_info = {
            "policy": sync.policy,
            "timing_source": timing.source,
            "display_delay_s": timing.display_delay_s,
            "display_latency_s": [timing.display_latency_min_s, timing.display_latency_max_s],
            "display_response_s": timing.display_response_s,
            "slm_settle_s": timing.slm_settle_s,
            "hold_s": sync.hold_s(timing) if pipelined and sync.policy == "settle" else None,
        }
        sync_info |= {k: after_sync[k] - self._before_sync.get(k, 0) for k in after_sync}
        extra = {
            "sample_indices": sample_idx.tolist(),
            "sync": sync_info,
            "stale": sync_info["stale"],
            "unpaired": sync_info["unpaired"],
            "skipped": sync_info["skipped"],
            # batches through the fused frames → logits kernel vs the extractor + back end
            "batches_fused": setup.batches["fused"] - self._batches_before.get("fused", 0),
            "batches_extractor": setup.batches["extractor"]
            - self._batches_before.get("extractor", 0),
        }
        if self.pipeline.results_dropped:
            extra["recorded"] = (
                f"the newest {len(done)} of {len(done) + self.pipeline.results_dropped} results "
                "(a run without an end keeps a bounded number)"
            )
        labels = self.labels[done]
        return RunResult(
            done,
            labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels),
            optical,
            digital,
            summary,
            stacked,
            sample_feats,
            extra,
        )


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
    """Stream ``images`` (B, 1, N, N) through the optics and the back end (``back`` overrides the student's), to the
    end: a :class:`StreamRun`. What it keeps per input is ``setup.task.outputs`` (probabilities, or masks)."""
    return StreamRun(
        setup,
        images,
        labels,
        policy=policy,
        batch_size=batch_size,
        capacity=capacity,
        samples=samples,
        back=back,
    ).run()


def save_run(
    path: str | os.PathLike[str],
    result: RunResult,
    setup: HybridSetup,
    checkpoint: str | None = None,
    overwrite: bool = True,
    unique: bool = False,
) -> Path:
    """One HDF5 file per run: predictions, labels, sampled frames and features, metrics, what produced it.
    ``overwrite``/``unique``: as :func:`lab4f.storage.publish`; returns the name the file was saved under."""
    with (
        atomic_write(path, overwrite=overwrite, unique=unique) as target,
        h5_file(target.tmp, "run", RUN_SCHEMA) as f,
    ):
        f.create_dataset("indices", data=result.indices)
        f.create_dataset("labels", data=result.labels)
        f.create_dataset("optical_probs", data=result.optical_probs.astype(np.float32))
        if result.digital_probs is not None:  # a foreign kernel bank has no digital model
            f.create_dataset("digital_probs", data=result.digital_probs.astype(np.float32))
        f.create_dataset("sample_frames", data=result.sample_frames, compression="gzip")
        f.create_dataset(
            "sample_features", data=result.sample_features.astype(np.float32), compression="gzip"
        )
        write_json_attr(f, "metrics", result.metrics())
        write_provenance(f, setup, checkpoint)
    assert target.path is not None
    return target.path


def write_provenance(f: Any, setup: HybridSetup, checkpoint: str | None) -> None:
    """What produced a run: the bench (devices, settings), checkpoint, optical program and calibration record."""
    write_json_attr(f, "bench", setup.bench.info())
    # absolute paths (the file is read later from anywhere; "" for a program compiled on the fly, which
    # program_summary describes) and the files' hashes (which file exactly, even if later overwritten or moved)
    for name, p in (
        ("checkpoint", checkpoint),
        ("program", setup.program_path),
        ("calibration", setup.calibration_path),
    ):
        f.attrs[name] = str(Path(p).resolve()) if p else ""
        if p and Path(p).is_file():
            f.attrs[f"{name}_sha256"] = file_sha256(p)
    write_json_attr(f, "program_summary", setup.program.summary())
