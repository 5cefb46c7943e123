"""The hybrid network on the bench: checkpoint + calibration + optical program → live predictions.

Orchestration only (Qt-free, synchronous API): load and cross-check what belongs together, upload the
phase, then either capture feature maps synchronously (calibration, fine-tuning) or stream a data set through
the acquisition thread / ring buffer / batched back end of :mod:`lab4f.bench.stream`.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from lab4f.bench.devices import Bench
from lab4f.bench.extract import FeatureExtractor
from lab4f.bench.fused import FusedHead, fused_head_for, why_not_fused
from lab4f.bench.inputs import check_display_fits  # noqa: F401 — where callers have always found it
from lab4f.errors import CompileError, MismatchError
from lab4f.models import ModelConfig
from lab4f.optics.compile import compile_bank
from lab4f.optics.program import OpticalProgram
from lab4f.optics.registration import PlaneToCamera
from lab4f.task import CLASSIFICATION, Task, load_bench_checkpoint, task_of_checkpoint  # noqa: F401

log = logging.getLogger(__name__)


def bank_hash(bank: np.ndarray) -> str:
    """Short content hash of a kernel bank: ties a program (and calibration) to the checkpoint it came from.

    Values are rounded to 1e-5 of the largest kernel value first: the collapse's float rounding differs with
    the number of torch threads, and that must not make a program look foreign."""
    b = np.asarray(bank, dtype=np.float64)
    scaled = np.round(b / max(float(np.abs(b).max()), 1e-30), 5) + 0.0  # + 0.0 turns −0.0 into 0.0
    return hashlib.sha256(np.ascontiguousarray(scaled).tobytes()).hexdigest()[:16]


def _record_tile_shifts(record: Any, frames: int) -> list[np.ndarray | None] | None:
    """Per-frame tile shifts of a calibration record (None where tile registration was not run)."""
    getter = getattr(record, "tile_shifts", None)
    if getter is None:
        return None
    shifts = [getter(f) for f in range(frames)] if callable(getter) else list(getter)
    return None if all(s is None for s in shifts) else shifts


def check_detection(model_cfg: Any, bench_mode: str, where: str) -> None:
    """Refuse a student trained for another detection than the bench's mode (coherent vs incoherent): the optics
    compute something else than it learnt, and it scores chance; warn for one trained without detection."""
    detection = getattr(model_cfg, "detection", None)
    if detection in ("incoherent", "coherent") and detection != bench_mode:
        raise MismatchError(
            f"{where}: the checkpoint's student was trained for {detection} detection but the bench "
            f"runs in {bench_mode} mode; train the student with --detection {bench_mode}, or set the "
            f'bench config\'s mode = "{detection}" if the bench really is {detection}'
        )
    if detection == "ideal":
        log.warning(
            "%s: the student was trained without a detection model (ideal, signed fields); the bench measures "
            "%s intensity — train with --detection %s for what the optics compute",
            where,
            bench_mode,
            bench_mode,
        )


def check_compatible(
    model_cfg: ModelConfig,
    bank: np.ndarray,
    program: OpticalProgram,
    record: Any | None,
    program_path: Path | None = None,
) -> None:
    """Refuse a checkpoint / program / calibration trio that does not belong together, saying what differs."""
    problems = []
    if program.channels != bank.shape[0]:
        problems.append(f"kernel count: checkpoint {bank.shape[0]}, program {program.channels}")
    if program.kernel_size != bank.shape[-1]:
        problems.append(f"kernel size: checkpoint {bank.shape[-1]}, program {program.kernel_size}")
    if program.input_size != model_cfg.image_size:
        problems.append(
            f"input size: checkpoint {model_cfg.image_size}, program {program.input_size}"
        )
    if not problems and not np.allclose(
        bank, program.bank, rtol=1e-4, atol=1e-5 * float(np.abs(bank).max())
    ):
        problems.append("kernel values: the program was compiled from a different checkpoint")
    if record is not None:
        want = getattr(record, "program_sha256", None)
        if want and program_path is not None:
            from lab4f.storage import file_sha256

            if file_sha256(program_path) != want:
                problems.append(
                    f"calibration: the record's tiles/gains were measured for another program "
                    f"({getattr(record, 'program_path', '?')}), not {program_path}"
                )
        shifts = _record_tile_shifts(record, len(program.frames))
        for f, (frame, sh) in enumerate(zip(program.frames, shifts or [], strict=False)):
            if sh is not None and len(sh) != len(frame.layout.tiles):
                problems.append(
                    f"tile layout: frame {f} has {len(frame.layout.tiles)} tiles, the record {len(sh)}"
                )
        gains = getattr(record, "channel_gain", None)
        if gains is not None and len(gains) != program.channels:
            problems.append(
                f"channel gains: record has {len(gains)}, program has {program.channels} channels"
            )
    if problems:
        raise MismatchError(
            "checkpoint, optical program and calibration do not belong together: "
            + "; ".join(problems)
            + ". Recompile the checkpoint (lab4f compile) and recalibrate with --program (lab4f calibrate tiles/gains)."
        )


@dataclass
class HybridSetup:
    """Everything a run needs, checked to belong together, with the phase uploaded."""

    bench: Bench
    student: torch.nn.Module
    model_cfg: ModelConfig  # a SegBenchConfig (lab4f.bench.scenes) for a segmentation student
    meta: dict[str, Any]
    program: OpticalProgram
    extractor: FeatureExtractor
    record: Any | None = None
    program_path: Path | None = None
    calibration_path: Path | None = None
    uploaded_frame: int = field(default=-1)
    fused: bool = True  # frames → logits through lab4f.bench.fused where the back end allows
    batches: Counter = field(
        default_factory=Counter
    )  # batches through logits(): "fused" or "extractor"
    fallback_reason: str | None = (
        None  # why the last batch through logits() took the extractor path
    )
    #: what the checkpoint was trained for (lab4f.task), chosen once from it; a program without a checkpoint
    #: (features only) counts as classification
    task: Task = CLASSIFICATION

    def upload(self, frame: int = 0) -> None:
        phase = self.program.frames[frame].phase
        if phase is None:
            raise CompileError(
                "the program was compiled for a complex modulator; compile with modulation='phase'"
            )
        if frame != self.uploaded_frame:
            self.bench.upload_phase(phase)
            self.uploaded_frame = frame

    def show_input(self, index: int, image: np.ndarray) -> None:
        """Show input ``index`` (with its marker code under the ``marker`` sync policy)."""
        if self.bench.sync.policy == "marker":
            layout = self.program.frames[0].layout
            self.bench.show(image, marker=index, pitch=layout.pitch, kernel_size=layout.kernel_size)
        else:
            self.bench.show(image)

    def grab(self, image: np.ndarray) -> np.ndarray:
        """Show one input and grab its camera frame(s): (F, H, W), one per program frame."""
        frames = []
        for f in range(len(self.program.frames)):
            self.upload(f)
            self.bench.show(image)
            frames.append(np.asarray(self.bench.camera.get_image()))
        return np.stack(frames)

    def _camera_frames(self, frames: np.ndarray) -> np.ndarray:
        """(B, F, H, W) as the extractor takes them: (B, H, W) for a single-frame program."""
        return frames if len(self.program.frames) > 1 else frames[:, 0]

    def features(self, frames: np.ndarray) -> torch.Tensor:
        """(B, F, H, W) camera frames → (B, C, N, N) features for the back end."""
        return self.extractor(self._camera_frames(frames))

    def fused_head(self, back: torch.nn.Module | None = None) -> FusedHead | None:
        """The fused frames → pooled-features operator for ``back`` (built on first use, a few seconds at 512²),
        or None where it does not apply (see :func:`lab4f.bench.fused.fused_head_for`). Call it before a
        stream starts so the build does not stall the first batch."""
        return fused_head_for(self.extractor, back or self.student.back) if self.fused else None

    def logits(self, frames: np.ndarray, back: torch.nn.Module | None = None) -> torch.Tensor:
        """(B, F, H, W) camera frames → the back end's output: through the fused head where it applies (the same
        numbers to float rounding, ~4× faster), else features then back end."""
        back = back or self.student.back
        x = self._camera_frames(frames)
        head = self.fused_head(back)
        out = head.logits(x, back) if head is not None else None
        self.batches["fused" if out is not None else "extractor"] += 1
        if out is not None:
            return out
        self.fallback_reason = (
            head.refusal
            if head is not None
            else why_not_fused(back)
            if self.fused
            else "HybridSetup.fused is off"
        )
        return back(self.extractor(x))


def extractor_for(
    program: OpticalProgram,
    record: Any | None,
    camera_shape: tuple[int, int],
    registration: PlaneToCamera | None = None,
) -> FeatureExtractor:
    """Feature extractor from a program and a calibration record (or an explicit registration)."""
    if record is None:
        reg = registration or PlaneToCamera.identity(camera_shape)
        return FeatureExtractor.for_program(program, reg, camera_shape)
    kwargs: dict[str, Any] = {
        "dark": getattr(record, "dark", None),
        "flat": getattr(record, "flat", None),
        "channel_gain": getattr(record, "channel_gain", None),
        "channel_offset": getattr(record, "channel_offset", None),
        "tile_shifts": _record_tile_shifts(record, len(program.frames)),
    }
    if getattr(record, "channel_filter", None) is not None:
        kwargs["channel_filter"] = record.channel_filter
    reg = registration or getattr(record, "registration", None)
    if (
        reg is None
    ):  # a record without the registration step: tiles are cut at their nominal positions
        log.warning(
            "the calibration record has no registration step: tiles are cut at their nominal positions and "
            "the optical predictions will be poor; run `lab4f calibrate registration` (or `all`)"
        )
        reg = PlaneToCamera.identity(camera_shape)
    return FeatureExtractor.for_program(program, reg, camera_shape, **kwargs)


def record_program(record: Any) -> Path:
    """The program file a calibration record's tiles and gains were measured with, verified by its hash.

    A path stored relative (by older records) is tried from the working directory and from the record's folder.
    """
    from lab4f.storage import file_sha256

    stored = Path(str(record.program_path))
    candidates = (
        [stored]
        if stored.is_absolute()
        else [stored, Path(getattr(record, "path", ".")).parent / stored]
    )
    for path in candidates:
        if path.is_file() and file_sha256(path) == record.program_sha256:
            return path
    found = next((str(c) for c in candidates if c.is_file()), None)
    why = f"{found} has changed since" if found else f"{stored} no longer exists"
    raise MismatchError(
        f"the calibration record's tiles and gains were measured with the program {stored}, but {why}; "
        "pass that program with --program, or recalibrate tiles and gains for this checkpoint "
        "(`lab4f compile CKPT`, then `lab4f calibrate tiles --program P` and "
        "`lab4f calibrate gains --program P`)"
    )


def prepare(
    bench: Bench,
    checkpoint: str | Path | None,
    record: Any | None = None,
    program: OpticalProgram | str | Path | None = None,
    registration: PlaneToCamera | None = None,
    compile_kwargs: dict[str, Any] | None = None,
) -> HybridSetup:
    """Load the student, compile (or load) its program, check the trio, switch the light on, upload the phase, build
    the extractor. ``checkpoint`` None: a program compiled from a bare kernel bank (``lab4f compile kernels.npy``),
    given or the record's; the setup then has no student (``student``, ``model_cfg`` None: features only)."""
    task = CLASSIFICATION if checkpoint is None else task_of_checkpoint(checkpoint)
    student, cfg, meta = (None, None, {}) if checkpoint is None else task.load(checkpoint)
    if student is not None and not hasattr(student, "kernel_bank"):
        raise MismatchError(
            f"{checkpoint} is a {cfg.kind} checkpoint; the bench runs SCLC (student/linear) ones"
        )
    if cfg is not None:
        check_detection(cfg, bench.config.mode, "run")
    program_path = getattr(program, "path", None) if isinstance(program, OpticalProgram) else None
    verified = program is None and bool(getattr(record, "program_sha256", None))
    if verified:  # the record's own program, found by its hash
        program_path = record_program(record)
        program = OpticalProgram.load(program_path)
        log.info("using the program the calibration record was measured with: %s", program_path)
    if program is None:
        if student is None:
            raise MismatchError(
                "without a checkpoint the bench needs a compiled program: pass --program (from "
                "`lab4f compile BANK`) or a calibration record measured with one"
            )
        kwargs = {"camera_cells": bench.camera_cells(), "mode": bench.config.mode} | (
            compile_kwargs or {}
        )
        program = compile_bank(student.kernel_bank(), cfg.image_size, bench.geometry, **kwargs)
    elif not isinstance(program, OpticalProgram):
        program_path = Path(program)
        program = OpticalProgram.load(program_path)
    bank = program.bank if student is None else student.kernel_bank().to_numpy()
    check_compatible(
        cfg or SimpleNamespace(image_size=program.input_size),
        bank,
        program,
        record,
        None if verified else program_path,
    )
    if hasattr(record, "apply"):
        # the bench as calibrated: exposure, phase LUT, wavefront correction, and the display showing images as
        # they were shown when the record's channel filters were fitted
        record.apply(bench)
    if record is not None and getattr(record, "display_linearizer", None) is None:
        log.warning(
            "the calibration record has no display step: images are shown without linearising the "
            "display's response; run `lab4f calibrate display --program P` if the display is not linear"
        )
    bench.illuminate()  # a run images its inputs: source on, shutter open (calibration restores its own state)
    camera_shape = tuple(int(s) for s in bench.camera.shape)
    setup = HybridSetup(
        bench,
        student,
        cfg,
        meta,
        program,
        extractor_for(program, record, camera_shape, registration),
        record,
        program_path,
        task=task,
    )
    setup.upload(0)
    limit = bench.config.drift_limit_px
    if record is not None and limit is not None and registration is None:
        from lab4f.bench.drift import check_drift

        report = check_drift(setup, record, limit)
        if report is not None:
            setup.meta = dict(setup.meta) | {"registration_drift": report.to_dict()}
            log.info(
                "registration holds: tiles within %.2f px (median) of the calibration",
                report.median_px,
            )
    if bench.sync.policy == "marker":
        from lab4f.bench.marker import marker_reader_for

        reg = registration or getattr(record, "registration", None)
        if reg is None:
            raise MismatchError(
                "the marker sync policy reads the code through the calibrated registration: pass a "
                "calibration record with the registration step"
            )
        bench.marker_reader = marker_reader_for(bench, program, reg)
    return setup


def iterate_grabs(setup: HybridSetup, images: torch.Tensor) -> Iterator[tuple[int, np.ndarray]]:
    """(input index, its frames (F, H, W)) for every image, in order: a single-frame program streams the inputs
    through the display, paired by the bench's sync policy (``Sync.stream``); a time-multiplexed one grabs each
    input's SLM frames in turn."""
    if len(setup.program.frames) == 1:
        setup.upload(0)
        waiting: dict[
            int, np.ndarray
        ] = {}  # paired out of order (an input shown again after a missed frame)
        following = 0
        for i, frame in setup.bench.sync.stream(
            len(images), lambda i: setup.show_input(i, images[i, 0].numpy())
        ):
            waiting[i] = frame.image[None]
            while following in waiting:
                yield following, waiting.pop(following)
                following += 1
        return
    for i in range(len(images)):
        yield i, setup.grab(images[i, 0].numpy())


def capture_features(
    setup: HybridSetup,
    images: torch.Tensor,
    batch_size: int = 32,
    progress: bool = True,
    on_batch: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Synchronously run images through the optics: (B, 1, N, N) → (B, C, N, N) features."""
    out = []
    buf: list[np.ndarray] = []
    for i, frames in tqdm(
        iterate_grabs(setup, images),
        total=len(images),
        desc="optics",
        disable=not progress,
        leave=False,
    ):
        buf.append(frames)
        if len(buf) == batch_size or i == len(images) - 1:
            out.append(setup.features(np.stack(buf)))
            buf = []
            if on_batch:
                on_batch(i + 1, len(images))
    return torch.cat(out) if out else torch.empty(0)
