"""Efficiency against input resolution: electronic MACs, accuracy, and time per image, teacher vs hybrid.

MAC counting (analytic, per image; one multiply-accumulate = one MAC, additions alone count as one too):
* conv (stride 1, 'same' padding): H·W·C_in·C_out·K² — what ``F.conv2d`` computes, padded borders included;
* BatchNorm (inference, folded to a scale and shift): one MAC per element; adaptive average pool: one per
  input element; FC: in·out; ReLU, dropout and max are free (no multiply).
* teacher = its conv stack + back end. hybrid = back end + feature extraction; its optical convolution is
  free. Feature extraction per feature element (channel × pixel), as :class:`lab4f.bench.extract.FeatureExtractor`
  does it: bilinear grid_sample of each tile (4 MACs; k⁺ and k⁻ tiles in incoherent mode, one tile otherwise),
  then the calibration's per-tile filter of f×f taps (f² MACs per tile; the default ``gains`` step fits f = 5)
  and the sum of the tiles with the channel offset (1 per tile) — with f = 1 (a scalar gain per tile)
  ``addcmul`` fuses gain, sum and offset into 1 MAC per tile; plus dark/flat correction, one MAC per camera
  pixel of every tile, estimated as tiles × pitch² (one camera pixel per output cell).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lab4f.bench.extract import DEFAULT_FILTER_SIZE
from lab4f.models import ModelConfig, TeacherCNN
from lab4f.optics.layout import slots_per_frame

TILE_GAP = 2  # cells between tiles, as lab4f.optics.layout.plan_layout's default


@dataclass(frozen=True)
class MacCount:
    """Electronic MACs per image, split into front convolutions, feature extraction and back end."""

    front: int
    extraction: int
    back: int

    @property
    def total(self) -> int:
        return self.front + self.extraction + self.back


def conv_macs(size: int, c_in: int, c_out: int, kernel_size: int) -> int:
    """MACs of one stride-1 'same' conv on a size×size input."""
    return size * size * c_in * c_out * kernel_size * kernel_size


def back_end_macs(cfg: ModelConfig, channels: int, size: int) -> int:
    """BatchNorm + adaptive average pool over (channels, size, size), then the FC layers."""
    macs = 2 * channels * size * size
    width = channels * cfg.pool_size**2
    for h in (*cfg.hidden, cfg.num_classes):
        macs += width * h
        width = h
    return macs


def teacher_macs(cfg: ModelConfig, size: int) -> MacCount:
    """All-electronic teacher: every conv layer and the back end."""
    front, c = 0, cfg.in_channels
    for w in cfg.widths:
        front += conv_macs(size, c, w, cfg.kernel_size)
        c = w
    return MacCount(front, 0, back_end_macs(cfg, c, size))


def extraction_macs(
    channels: int,
    size: int,
    kernel_size: int,
    detection: str = "incoherent",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> int:
    """Camera frame → features: dark/flat correction, bilinear tile sampling, per-tile filter (or gain), k⁺ − k⁻
    and offset."""
    if filter_size < 1 or filter_size % 2 == 0:
        raise ValueError(f"filter_size must be an odd number ≥ 1, got {filter_size}")
    tiles_per_channel = 2 if detection == "incoherent" else 1
    pitch = size + kernel_size - 1 + TILE_GAP
    correction = channels * tiles_per_channel * pitch * pitch
    if filter_size == 1:  # addcmul: gain × tile + running sum (offset first), one MAC per tile
        per_element = tiles_per_channel * (4 + 1)
    else:  # depthwise f×f filter per tile, then the tiles and the offset summed
        per_element = tiles_per_channel * (4 + filter_size**2 + 1)
    return correction + channels * size * size * per_element


def hybrid_macs(
    cfg: ModelConfig,
    size: int,
    detection: str = "incoherent",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> MacCount:
    """Hybrid: optical front end free; feature extraction and the back end are electronic."""
    c = cfg.widths[-1]
    return MacCount(
        0,
        extraction_macs(c, size, cfg.collapsed_kernel_size, detection, filter_size),
        back_end_macs(cfg, c, size),
    )


def measure_macs(model: nn.Module, x: torch.Tensor) -> int:
    """MACs per image counted by forward hooks on Conv2d/Linear/BatchNorm2d/AdaptiveAvgPool2d (a cross-check)."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += out.numel() * module.in_channels // module.groups * k
        elif isinstance(module, nn.Linear):
            total += out.numel() * module.in_features
        elif isinstance(module, (nn.BatchNorm2d, nn.AdaptiveAvgPool2d)):
            total += inputs[0].numel()

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear, nn.BatchNorm2d, nn.AdaptiveAvgPool2d))
    ]
    try:
        with torch.no_grad():
            model.eval()(x)
    finally:
        for h in handles:
            h.remove()
    return total // x.shape[0]


def mac_crossover(
    cfg: ModelConfig,
    max_size: int,
    detection: str = "incoherent",
    filter_size: int = DEFAULT_FILTER_SIZE,
) -> int | None:
    """Smallest N such that the hybrid needs fewer MACs than the teacher at every size from N to max_size."""
    crossover = None
    for n in range(max_size, 0, -1):
        if hybrid_macs(cfg, n, detection, filter_size).total < teacher_macs(cfg, n).total:
            crossover = n
        else:
            break
    return crossover


def time_front_end_s(
    cfg: ModelConfig, size: int, batch: int = 8, repeats: int = 5, threads: int = 1
) -> float:
    """Best-of-``repeats`` wall time per image of the teacher's conv front end (F.conv2d + ReLU) on this CPU.

    The minimum, as ``timeit`` advises: other load on the machine only ever adds time.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(
        threads
    )  # a fixed count: with every core and other jobs running, time is contention
    try:
        return _time_front_end_s(cfg, size, batch, repeats)
    finally:
        torch.set_num_threads(previous)


def _time_front_end_s(cfg: ModelConfig, size: int, batch: int, repeats: int) -> float:
    torch.manual_seed(0)
    front = TeacherCNN(cfg).front.eval()
    convs = [m for m in front if isinstance(m, nn.Conv2d)]
    x = torch.rand(batch, cfg.in_channels, size, size)
    times = []
    with torch.no_grad():
        front(x)  # warm-up
        for _ in range(repeats):
            t0 = time.perf_counter()
            y = x
            for conv in convs:
                y = F.relu(F.conv2d(y, conv.weight, conv.bias, padding=conv.padding))
            times.append(time.perf_counter() - t0)
    return min(times) / batch


@dataclass(frozen=True)
class BenchRates:
    """Frame-rate figures of the configured bench (read from the bench config's device settings)."""

    camera_max_fps: float | None
    camera_exposure_s: float
    slm_settle_s: float
    slm_pixels: int
    camera_pixels: int
    source: str

    @property
    def camera_frame_s(self) -> float:
        return max(
            self.camera_exposure_s, 1.0 / self.camera_max_fps if self.camera_max_fps else 0.0
        )


def bench_rates(config_path: str | None = None) -> BenchRates:
    """Camera max_fps/exposure and SLM settle time/size from the bench config (simulated-device defaults)."""
    from lab4f.bench.config import load_bench_config
    from lab4f.drivers.sim_camera import SimulatedCameraSettings
    from lab4f.drivers.sim_slm import SimulatedSLMSettings

    bench = load_bench_config(config_path)
    cam_settings = bench.camera.settings if bench.camera.driver == "Simulated4fCamera" else {}
    slm_settings = bench.slm.settings if bench.slm.driver == "SimulatedFourierSLM" else {}
    cam, slm = SimulatedCameraSettings(**cam_settings), SimulatedSLMSettings(**slm_settings)
    import os

    from lab4f.bench.config import BENCH_ENV

    where = config_path or os.environ.get(BENCH_ENV) or "(built-in simulated bench)"
    note = f"bench config {where}: camera {bench.camera.driver}, SLM {bench.slm.driver}"
    if bench.camera.driver != "Simulated4fCamera" or bench.slm.driver != "SimulatedFourierSLM":
        note += "; rates of non-simulated devices are not in the config — the simulated defaults are used"
    return BenchRates(
        cam.max_fps, cam.exposure_s, slm.settle_s, min(slm.resolution), min(cam.resolution), note
    )


def bench_time_per_image_s(
    rates: BenchRates, channels: int, size: int, kernel_size: int
) -> tuple[float | None, int]:
    """(time per image, SLM frames per image) on the configured bench; (None, 0) if one kernel does not fit.

    All k⁺/k⁻ tiles in one SLM frame: the phase stays, each image costs one camera frame. Otherwise the
    program is time-multiplexed: each frame rewrites the SLM, costing max(settle, camera frame) per frame.
    """
    grid = min(rates.slm_pixels, rates.camera_pixels)
    per_frame = slots_per_frame(size, kernel_size, (grid, grid), TILE_GAP) // 2
    if per_frame < 1:
        return None, 0
    frames = math.ceil(channels / per_frame)
    if frames == 1:
        return rates.camera_frame_s, 1
    return frames * max(rates.slm_settle_s, rates.camera_frame_s), frames


def row_for(
    cfg: ModelConfig,
    size: int,
    rates: BenchRates,
    detection: str = "incoherent",
    timing: bool = True,
    filter_size: int = DEFAULT_FILTER_SIZE,
    threads: int = 1,
) -> dict[str, Any]:
    """One table row: MACs of both networks, timed digital front end, bench time per image."""
    t, h = teacher_macs(cfg, size), hybrid_macs(cfg, size, detection, filter_size)
    bench_s, frames = bench_time_per_image_s(rates, cfg.widths[-1], size, cfg.collapsed_kernel_size)
    return {
        "resolution": size,
        "teacher_macs": t.total,
        "teacher_front_macs": t.front,
        "teacher_back_macs": t.back,
        "hybrid_macs": h.total,
        "hybrid_extraction_macs": h.extraction,
        "hybrid_back_macs": h.back,
        "mac_ratio": t.total / h.total,
        "digital_front_s_per_image": time_front_end_s(cfg, size, threads=threads)
        if timing
        else None,
        "bench_frames_per_image": frames,
        "bench_s_per_image": bench_s,
        "bench_one_frame_s_per_image": rates.camera_frame_s,
    }


def rates_dict(rates: BenchRates) -> dict[str, Any]:
    return {**asdict(rates), "camera_frame_s": rates.camera_frame_s}


def measure_accuracy(
    size: int,
    epochs: int = 4,
    limit: int | None = None,
    seed: int = 0,
    cfg: ModelConfig | None = None,
) -> dict[str, float]:
    """Test accuracy of the teacher (CE) and of the hybrid (SCLC+KD, incoherent detection) trained at ``size``.

    mnist5k resized to size×size (bilinear, antialiased); lab4f.training's train loop and defaults.
    """
    from dataclasses import replace

    from lab4f.data import load_dataset
    from lab4f.training import TrainConfig, model_config_for, train_model

    splits = load_dataset("mnist5k", image_size=size, limit=limit)
    arch = (
        {}
        if cfg is None
        else {
            "widths": cfg.widths,
            "kernel_size": cfg.kernel_size,
            "hidden": cfg.hidden,
            "pool_size": cfg.pool_size,
        }
    )
    tc = replace(TrainConfig(), epochs=epochs, seed=seed)
    teacher = train_model(model_config_for(splits, "teacher", **arch), splits, tc, progress=False)
    student = train_model(
        model_config_for(splits, "student", detection="incoherent", **arch),
        splits,
        tc,
        teacher=teacher.model,
        progress=False,
    )
    return {
        "teacher_accuracy": teacher.test["accuracy"],
        "hybrid_accuracy": student.test["accuracy"],
        "train_s": teacher.wall_time_s + student.wall_time_s,
    }


def crossover_statement(
    rows: list[dict[str, Any]], analytic: int | None, key_a: str, key_b: str, what: str
) -> tuple[int | None, str]:
    """First tabled resolution from which ``key_b`` < ``key_a`` on every larger row, and a sentence saying so."""
    usable = [r for r in rows if r[key_a] is not None and r[key_b] is not None]
    first = None
    for r in reversed(usable):
        if r[key_b] < r[key_a]:
            first = r["resolution"]
        else:
            break
    sizes = [r["resolution"] for r in usable]
    if first is None:
        text = f"{what}: the hybrid is not lower at the largest tabled resolution; no crossover up to {max(sizes)}."
    elif first == min(sizes):
        text = f"{what}: the hybrid is lower at every tabled resolution ({min(sizes)}–{max(sizes)} px)."
    else:
        text = f"{what}: the hybrid is lower from {first} px upward (tabled {', '.join(map(str, sizes))})."
    if analytic == 1:
        text += " Scanning every N from 1 px with the same formulas, the hybrid is lower at every N: crossover N = 1."
    elif analytic is not None:
        text += f" Scanning every N from 1 px with the same formulas, the crossover is N = {analytic} px."
    return first, text


def assumptions(
    cfg: ModelConfig,
    rates: BenchRates,
    detection: str,
    filter_size: int = DEFAULT_FILTER_SIZE,
    threads: int = 1,
) -> list[str]:
    """The assumptions printed beside the table and the plot."""
    k = cfg.collapsed_kernel_size
    return [
        f"Networks: lab4f.models classifier, conv widths {list(cfg.widths)} ({cfg.kernel_size}x{cfg.kernel_size}), "
        f"back end BN → avg-pool {cfg.pool_size}x{cfg.pool_size} → FC {list(cfg.hidden)} → {cfg.num_classes}; "
        f"the hybrid's front end is the collapsed {cfg.widths[-1]}-kernel {k}x{k} bank, {detection} detection.",
        "MACs are analytic per image: conv H·W·Cin·Cout·K², BN and avg-pool 1 per element, FC in·out; "
        "optical convolutions free; feature extraction counted per tile and feature element: bilinear 4 + "
        + (
            f"the calibration's {filter_size}x{filter_size} filter {filter_size**2} + summing tiles and offset 1"
            if filter_size > 1
            else "scalar gain fused with the tile sum and offset 1"
        )
        + "; dark/flat 1 per camera pixel, tiles × pitch².",
        "Digital time: best of 5 wall times per image (batch 8) of the teacher's conv front end (F.conv2d + ReLU) "
        f"on this machine ({threads} torch thread{'s' if threads > 1 else ''}); back end not timed.",
        f"Bench time: {rates.source}; camera frame = max(exposure {rates.camera_exposure_s} s, 1/max_fps "
        f"{rates.camera_max_fps} Hz) = {rates.camera_frame_s:.4g} s; SLM settle {rates.slm_settle_s} s "
        f"(max {1 / rates.slm_settle_s if rates.slm_settle_s else float('inf'):.0f} Hz); the input display is "
        "assumed not to limit. All tiles in one SLM frame: one camera frame per image (phase static); else "
        f"time-multiplexed frames each costing max(settle, camera frame). Tile field limited to the "
        f"{min(rates.slm_pixels, rates.camera_pixels)}-cell SLM/camera grid.",
        "Accuracy: mnist5k resized to each resolution, teacher (CE) and SCLC+KD student trained there with "
        "lab4f.training; 'not measured' where no training was run — no number is extrapolated.",
    ]


def _fmt(v: Any, spec: str) -> str:
    return "not measured" if v is None else format(v, spec)


def write_report(
    out_dir: Any, rows: list[dict[str, Any]], notes: list[str], statements: list[str]
) -> dict[str, str]:
    """table.md, table.csv and efficiency.png (MACs and time per image against resolution, notes beside)."""
    import csv
    from pathlib import Path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    head = [
        "resolution",
        "teacher MACs",
        "hybrid MACs",
        "teacher/hybrid",
        "teacher acc",
        "hybrid acc",
        "digital front s/img",
        "bench s/img (frames)",
        "bench 1-frame s/img",
    ]
    lines = [
        "# Efficiency against input resolution: teacher vs hybrid 4f network",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        bench = (
            "does not fit"
            if r["bench_s_per_image"] is None
            else f"{r['bench_s_per_image']:.4g} ({r['bench_frames_per_image']})"
        )
        lines.append(
            f"| {r['resolution']} | {r['teacher_macs']:,} | {r['hybrid_macs']:,} | {r['mac_ratio']:.1f} | "
            f"{_fmt(r['teacher_accuracy'], '.4f')} | {_fmt(r['hybrid_accuracy'], '.4f')} | "
            f"{_fmt(r['digital_front_s_per_image'], '.3g')} | {bench} | "
            f"{r['bench_one_frame_s_per_image']:.4g} |"
        )
    lines += [
        "",
        *[f"**{s}**" for s in statements],
        "",
        "Assumptions:",
        "",
        *[f"- {n}" for n in notes],
        "",
    ]
    (out / "table.md").write_text("\n".join(lines))
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    _plot(out / "efficiency.png", rows, notes, statements)
    return {
        "table_md": str(out / "table.md"),
        "table_csv": str(out / "table.csv"),
        "plot": str(out / "efficiency.png"),
    }


def _plot(path: Any, rows: list[dict[str, Any]], notes: list[str], statements: list[str]) -> None:
    import textwrap

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = [r["resolution"] for r in rows]
    fig = plt.figure(figsize=(13, 5.2))
    ax1, ax2 = fig.add_axes((0.05, 0.12, 0.26, 0.78)), fig.add_axes((0.37, 0.12, 0.26, 0.78))
    ax1.loglog(
        res,
        [r["teacher_macs"] for r in rows],
        "o-",
        color="#444444",
        label="teacher (all electronic)",
    )
    ax1.loglog(
        res, [r["hybrid_macs"] for r in rows], "s-", color="#3a7dd9", label="hybrid (optics free)"
    )
    for r in rows:
        for key, y, dy in (
            ("teacher_accuracy", r["teacher_macs"], 1.3),
            ("hybrid_accuracy", r["hybrid_macs"], 1.3),
        ):
            if r[key] is not None:
                ax1.annotate(f"{r[key]:.3f}", (r["resolution"], y * dy), fontsize=7, ha="center")
    ax1.set(
        xlabel="input resolution (px)",
        ylabel="electronic MACs per image",
        title="MACs (labels: test accuracy)",
    )
    ax1.legend(fontsize=8)
    ax2.loglog(
        res,
        [r["digital_front_s_per_image"] for r in rows],
        "o-",
        color="#444444",
        label="digital conv front end (measured)",
    )
    fit = [
        (r["resolution"], r["bench_s_per_image"])
        for r in rows
        if r["bench_s_per_image"] is not None
    ]
    if fit:
        ax2.loglog(
            *zip(*fit, strict=True), "s-", color="#3a7dd9", label="bench, configured SLM/camera"
        )
    ax2.loglog(
        res,
        [r["bench_one_frame_s_per_image"] for r in rows],
        ":",
        color="#3a7dd9",
        label="bench, one camera frame per image",
    )
    ax2.set(xlabel="input resolution (px)", ylabel="time per image (s)", title="time per image")
    for ax in (ax1, ax2):
        ax.set_xticks(res, [str(r) for r in res])
        ax.minorticks_off()
    ax2.legend(fontsize=7)
    text = "\n".join(textwrap.fill(s, 70) for s in [*statements, "", "Assumptions:", *notes])
    fig.text(0.66, 0.95, text, fontsize=6.5, va="top", family="monospace")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def efficiency_report(
    resolutions: tuple[int, ...] = (28, 56, 112, 224),
    out_dir: Any = "results/efficiency",
    train_resolutions: tuple[int, ...] = (28, 56),
    epochs: int = 4,
    limit: int | None = None,
    cfg: ModelConfig | None = None,
    detection: str = "incoherent",
    bench_config: str | None = None,
    timing: bool = True,
    log: Any = None,
    filter_size: int = DEFAULT_FILTER_SIZE,
    threads: int = 1,
) -> dict[str, Any]:
    """Compute the table for ``resolutions`` (training classifiers at ``train_resolutions``) and write it."""
    from lab4f.errors import ConfigError

    if not resolutions or min(resolutions) < 8:
        raise ConfigError(f"resolutions must be >= 8 px, got {resolutions}")
    if filter_size < 1 or filter_size % 2 == 0:
        raise ConfigError(
            f"--filter-size must be an odd number ≥ 1 (1 = a scalar gain per tile), got {filter_size}"
        )
    cfg = cfg or ModelConfig()
    rates = bench_rates(bench_config)
    rows = []
    for n in sorted(set(resolutions)):
        row = row_for(cfg, n, rates, detection, timing, filter_size, threads)
        acc = {"teacher_accuracy": None, "hybrid_accuracy": None, "train_s": None}
        if n in train_resolutions:
            if log:
                log(f"training teacher and SCLC+KD at {n}x{n} ({epochs} epochs) ...")
            acc = measure_accuracy(n, epochs, limit, cfg=cfg)
        rows.append({**row, **acc})
    analytic = mac_crossover(cfg, max(resolutions), detection, filter_size)
    macs_at, stmt_macs = crossover_statement(
        rows, analytic, "teacher_macs", "hybrid_macs", "Electronic MACs"
    )
    time_at, stmt_time = (
        (None, "Time: not measured (timing off).")
        if not timing
        else crossover_statement(
            rows,
            None,
            "digital_front_s_per_image",
            "bench_s_per_image",
            "Time per image (bench on the configured SLM/camera vs measured digital front end)",
        )
    )
    stmt_one = (
        ""
        if not timing
        else crossover_statement(
            rows,
            None,
            "digital_front_s_per_image",
            "bench_one_frame_s_per_image",
            "Time per image (bench with all tiles in one camera frame vs measured digital front end)",
        )[1]
    )
    statements = [s for s in (stmt_macs, stmt_time, stmt_one) if s]
    notes = assumptions(cfg, rates, detection, filter_size, threads)
    files = write_report(out_dir, rows, notes, statements)
    return {
        "rows": rows,
        "mac_crossover_resolution": macs_at,
        "mac_crossover_analytic": analytic,
        "filter_size": filter_size,
        "time_crossover_resolution": time_at,
        "statements": statements,
        "assumptions": notes,
        "bench_rates": rates_dict(rates),
        "model_config": cfg.to_dict(),
        "files": files,
        "measured_accuracy_at": sorted(set(train_resolutions) & set(resolutions)),
    }
