"""The main job on the built-in default: train (or reuse) teacher and SCLC student, build and calibrate the
simulated bench, compile and upload the kernels, run the test split through the optics, fine-tune the back end
on captured features, and print one table."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from lab4f.bench.config import BenchConfig, load_bench_config
from lab4f.bench.devices import Bench
from lab4f.bench.finetune import finetune_backend
from lab4f.bench.hybrid import capture_features, check_display_fits, prepare
from lab4f.bench.run import run_dataset, save_run
from lab4f.checkpoint import load_checkpoint
from lab4f.data import load_dataset
from lab4f.training import TrainConfig, model_config_for, train_model

log = logging.getLogger(__name__)


@dataclass
class DemoConfig:
    dataset: str = "mnist5k"
    widths: tuple[int, ...] = (16, 32, 32)
    detection: str = "incoherent"
    teacher_epochs: int = 6
    student_epochs: int = 8
    seed: int = 0
    finetune_images: int = 1500  # training images captured through the optics for fine-tuning
    finetune_epochs: int = 15
    test_images: int | None = None  # None: the whole test split
    out: str = "runs/demo"
    cache: str = ".lab4f_cache"


@dataclass
class DemoResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    run_metrics: dict[str, Any] = field(
        default_factory=dict
    )  # the run with the fine-tuned back end
    calibrated_run_metrics: dict[str, Any] = field(
        default_factory=dict
    )  # the run with the back end as trained

    def table(self) -> str:
        lines = ["| model | path | test accuracy |", "|---|---|---|"]
        lines += [f"| {r['model']} | {r['path']} | {r['accuracy']:.4f} |" for r in self.rows]
        m = {
            "frames_per_s": float("nan"),
            "latency_p50_ms": float("nan"),
            "latency_p95_ms": float("nan"),
        }
        m |= {
            k: v for k, v in self.run_metrics.items() if v is not None
        }  # None: a run with no latencies
        lines.append("")
        lines.append(
            f"optical stream (fine-tuned run): {m['frames_per_s']:.1f} frames/s, latency p50 "
            f"{m['latency_p50_ms']:.1f} ms / p95 {m['latency_p95_ms']:.1f} ms, dropped {m.get('dropped')}, "
            f"policy {m.get('policy')}"
        )
        return "\n".join(lines)


def _cached(cache: Path, name: str, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return cache / f"{name}-{digest}.pt"


def train_or_reuse(
    cfg: DemoConfig, splits: Any, progress: bool = True
) -> tuple[Path, Path, dict[str, float]]:
    """Teacher and student checkpoints, trained once per configuration and cached."""
    cache = Path(cfg.cache)
    timings = {}
    base = {"dataset": cfg.dataset, "widths": list(cfg.widths), "seed": cfg.seed, "version": 1}
    t_path = _cached(cache, "teacher", base | {"epochs": cfg.teacher_epochs})
    if not t_path.exists():
        t0 = time.perf_counter()
        train_model(
            model_config_for(splits, "teacher", widths=cfg.widths),
            splits,
            TrainConfig(epochs=cfg.teacher_epochs, seed=cfg.seed),
            checkpoint_path=t_path,
            progress=progress,
        )
        timings["train_teacher_s"] = time.perf_counter() - t0
    s_path = _cached(
        cache,
        "student",
        base | {"epochs": cfg.student_epochs, "teacher": t_path.name, "detection": cfg.detection},
    )
    if not s_path.exists():
        teacher, _, _ = load_checkpoint(t_path)
        t0 = time.perf_counter()
        train_model(
            model_config_for(splits, "student", widths=cfg.widths, detection=cfg.detection),
            splits,
            TrainConfig(epochs=cfg.student_epochs, seed=cfg.seed),
            teacher=teacher,
            checkpoint_path=s_path,
            progress=progress,
        )
        timings["train_student_s"] = time.perf_counter() - t0
    return t_path, s_path, timings


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(images).argmax(1) == labels).float().mean())


def seeded(bench_config: BenchConfig | None, seed: int) -> BenchConfig:
    """The bench config with the simulated camera's noise seeded (unless it sets its own seed): the noise is still
    drawn afresh for every frame, but the demo's table is then the same from run to run (training is seeded too)."""
    config = bench_config or load_bench_config()
    cam = config.camera
    if cam.driver != "Simulated4fCamera" or cam.settings.get("seed") is not None:
        return config
    return config.with_settings(camera={"seed": seed})


def run_demo(
    cfg: DemoConfig | None = None, bench_config: BenchConfig | None = None, progress: bool = True
) -> DemoResult:
    from lab4f.calibration import run_calibration

    cfg = cfg or DemoConfig()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    result = DemoResult()
    t_all = time.perf_counter()
    splits = load_dataset(cfg.dataset, split_seed=cfg.seed)
    t_path, s_path, timings = train_or_reuse(cfg, splits, progress)
    result.timings_s |= timings
    test_x, test_y = splits.test.tensors
    if cfg.test_images:
        test_x, test_y = test_x[: cfg.test_images], test_y[: cfg.test_images]
    teacher, _, _ = load_checkpoint(t_path)
    student, _, _ = load_checkpoint(s_path)
    for name, model in (("teacher (nonlinear CNN)", teacher), ("SCLC student (KD)", student)):
        result.rows.append(
            {"model": name, "path": "digital", "accuracy": _accuracy(model, test_x, test_y)}
        )

    with Bench(seeded(bench_config, cfg.seed)) as bench:
        check_display_fits(bench, test_x)  # before minutes of compiling and calibrating
        t0 = time.perf_counter()
        from lab4f.bench.compile import compile_checkpoint

        program, program_path, report = compile_checkpoint(
            s_path, bench, out / "student.program.h5", progress=progress
        )
        result.timings_s["compile_s"] = time.perf_counter() - t0
        result.files |= {"program": str(program_path), "compile_report": str(report)}
        t0 = time.perf_counter()
        with tqdm(total=100, desc="calibrate", disable=not progress, leave=False) as bar:

            def step(fraction: float, message: str) -> None:
                bar.n = round(100 * fraction)
                bar.set_postfix_str(message[:60])
                bar.refresh()

            record = run_calibration(
                bench,
                "all",
                program=program,
                program_path=program_path,
                out_dir=out / "calibrations",
                progress=step,
            )
        result.timings_s["calibrate_s"] = time.perf_counter() - t0
        result.files["calibration"] = str(getattr(record, "path", ""))
        setup = prepare(bench, s_path, record=record, program=program_path)
        setup.calibration_path = getattr(record, "path", None)

        t0 = time.perf_counter()
        run = run_dataset(setup, test_x, test_y, policy="evaluate")
        result.timings_s["optical_run_s"] = time.perf_counter() - t0
        result.rows.append(
            {
                "model": "SCLC student on the bench",
                "path": "optical (calibrated)",
                "accuracy": run.optical_accuracy,
            }
        )
        result.calibrated_run_metrics = run.metrics() | {"back_end": "as trained"}
        result.files["run_calibrated"] = str(
            save_run(out / "run_calibrated.h5", run, setup, checkpoint=str(s_path))
        )

        # hardware-in-the-loop fine-tuning: train split through the optics, val split to select the epoch
        t0 = time.perf_counter()
        tr_x, tr_y = splits.train.tensors
        va_x, va_y = splits.val.tensors
        tr_x, tr_y = tr_x[: cfg.finetune_images], tr_y[: cfg.finetune_images]
        tr_f = capture_features(setup, tr_x, progress=progress)
        va_f = capture_features(setup, va_x, progress=progress)
        tuned = finetune_backend(
            setup.student.back,
            tr_f,
            tr_y,
            va_f,
            va_y,
            epochs=cfg.finetune_epochs,
            progress=progress,
        )
        run_ft = run_dataset(setup, test_x, test_y, policy="evaluate", back=tuned.back)
        result.timings_s["finetune_s"] = time.perf_counter() - t0
        result.rows.append(
            {
                "model": "SCLC student on the bench",
                "path": "optical + fine-tuned back end",
                "accuracy": run_ft.optical_accuracy,
            }
        )
        result.run_metrics = run_ft.metrics() | {"back_end": "fine-tuned"}
        result.files["run"] = str(save_run(out / "run.h5", run_ft, setup, checkpoint=str(s_path)))
    result.timings_s["total_s"] = time.perf_counter() - t_all
    (out / "table.md").write_text(result.table() + "\n")
    result.files["table"] = str(out / "table.md")
    return result
