"""Reproduce the segmentation comparison: U-Net-like teacher vs SCLC+KD vs the same linear network without KD.

On the built-in generated scenes (one data set fixed by ``data_seed``; training seeds vary init and order),
or on a real set from a folder (``dataset`` carvana / voc2012, split by ``data_seed``, see
:func:`lab4f.segmentation.data.folder_splits`), the teacher is trained per seed, then the linear baseline
(pixel CE) and the SCLC student (pixel-wise KD from that seed's teacher). Writes ``table.md``, ``table.csv``,
``mean_iou.png``, ``summary.json``, ``overlays/<model>-seed<first seed>.png`` (predicted masks over test
inputs, ground truth below) and the checkpoints. The ordering is checked on the mean test mean-IoU and stated
as found; nothing is tuned to it.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lab4f import __version__
from lab4f.checkpoint import git_commit
from lab4f.errors import ConfigError
from lab4f.segmentation.data import (
    FOLDER_DATASETS,
    SEG_DATASETS,
    FolderSplits,
    SceneSplits,
    SegmentationSet,
    folder_splits,
    generated_splits,
)
from lab4f.segmentation.models import SegConfig
from lab4f.segmentation.train import SegTrainConfig, predict, train_segmentation

LABELS = {"teacher": "teacher (U-Net-like)", "student": "SCLC+KD", "linear": "linear, no KD"}
MODELS = ("teacher", "student", "linear")


@dataclass
class SegReproduceConfig:
    """Data and model sizes of the default run (measured to finish well inside 20 min on 2 CPU cores).

    ``dataset`` "generated" draws ``kind`` scenes; "carvana" / "voc2012" read the set from ``data_dir`` (else
    ``$LAB4F_DATA``, else ``~/.lab4f/data``). For those ``canvas_size`` is the image size, ``data_seed`` seeds
    the split and ``n_train``/``n_val``/``n_test`` cap the splits (0 = the whole split); ``kind`` is unused.
    """

    kind: str = "shapes"
    canvas_size: int = 48
    n_train: int = 1000
    n_val: int = 200
    n_test: int = 400
    data_seed: int = 0
    widths: tuple[int, ...] = (8, 8)
    decoder_width: int = 12
    detection: str = "ideal"
    dataset: str = "generated"
    data_dir: str | None = None

    def __post_init__(self) -> None:
        if self.dataset not in SEG_DATASETS:
            raise ConfigError(
                f"segmentation data set {self.dataset!r} is unknown; choose one of "
                f"{', '.join(SEG_DATASETS)}"
            )


def load_splits(cfg: SegReproduceConfig) -> SceneSplits | FolderSplits:
    """The train/val/test sets ``cfg`` describes: generated scenes or the splits of a folder data set."""
    if cfg.dataset in FOLDER_DATASETS:
        return folder_splits(
            cfg.dataset,
            cfg.data_dir,
            cfg.canvas_size,
            cfg.data_seed,
            (cfg.n_train, cfg.n_val, cfg.n_test),
        )
    return generated_splits(
        cfg.kind, cfg.n_train, cfg.n_val, cfg.n_test, cfg.canvas_size, cfg.data_seed
    )


def dataset_summary(cfg: SegReproduceConfig, data: SceneSplits | FolderSplits) -> dict[str, Any]:
    """Which data a run used: name, the training set's ``source``, every split's source and size, the scheme."""
    sets = {"train": data.train, "val": data.val, "test": data.test}
    if isinstance(data, FolderSplits):
        name, root = data.dataset, str(data.root)
        scheme = (
            f"{data.scheme}; using {len(data.train)}/{len(data.val)}/{len(data.test)} images of "
            + "/".join(map(str, data.available))
        )
        desc = f"{name} from {root}, grayscale {data.image_size}x{data.image_size}"
    else:
        name, root = "generated", None
        scheme = f"generated {data.kind} scenes, data seed {data.seed} (train/val/test seeds 3·s, 3·s+1, 3·s+2)"
        desc = f"generated {data.kind} scenes {data.canvas_size}x{data.canvas_size}"
    return {
        "name": name,
        "root": root,
        "source": data.train.source,
        "sources": {k: v.source for k, v in sets.items()},
        "sizes": {k: len(v) for k, v in sets.items()},
        "scheme": scheme,
        "description": desc,
    }


@dataclass
class SegReproduceResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    ordering: dict[str, Any]
    wall_time_s: float
    files: dict[str, str] = field(default_factory=dict)
    dataset: dict[str, Any] = field(
        default_factory=dict
    )  # what dataset_summary says about the data used
    tests: list[dict[str, Any]] = field(
        default_factory=list
    )  # paired t-test SCLC+KD vs linear over seeds

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "wall_time_s": self.wall_time_s,
            "rows": self.rows,
            "aggregates": self.aggregates,
            "ordering": self.ordering,
            "paired_tests": self.tests,
            "files": self.files,
            "dataset": self.dataset,
        }


def paired_tests(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """SCLC+KD vs its budget-matched baseline (linear, same epochs) on test mean IoU, paired by seed."""
    from lab4f.reproduce import paired_test

    by = {
        m: {r["seed"]: r["mean_iou"] for r in rows if r["model"] == m}
        for m in ("student", "linear")
    }
    seeds = sorted(set(by["student"]) & set(by["linear"]))
    if not seeds:
        return []
    t = paired_test([by["student"][s] for s in seeds], [by["linear"][s] for s in seeds])
    diff = "n/a" if t["mean_diff"] is None else f"{t['mean_diff']:+.4f}"
    return [
        {
            "kd": "student",
            "baseline": "linear",
            "metric": "mean_iou",
            "seeds": seeds,
            **t,
            "statement": f"SCLC+KD − linear without KD = {diff} mean IoU over seeds "
            f"{', '.join(map(str, seeds))}: {t['verdict']}",
        }
    ]


def _sd(values: list[float]) -> float:
    return statistics.stdev(values) if len(values) > 1 else 0.0


def _aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for m in MODELS:
        iou = [r["mean_iou"] for r in rows if r["model"] == m]
        dice = [r["mean_dice"] for r in rows if r["model"] == m]
        if iou:
            out.append(
                {
                    "model": m,
                    "mean_iou": statistics.fmean(iou),
                    "mean_iou_std": _sd(iou),
                    "mean_dice": statistics.fmean(dice),
                    "mean_dice_std": _sd(dice),
                    "n_seeds": len(iou),
                }
            )
    return out


def ordering_statement(aggs: list[dict[str, Any]]) -> dict[str, Any]:
    """Does mean teacher > mean SCLC+KD > mean linear hold (on mean IoU)? The order found, in words."""
    means = {a["model"]: a["mean_iou"] for a in aggs}
    found = sorted(means, key=lambda m: -means[m])
    holds = found == list(MODELS)
    text = " > ".join(f"{LABELS[m]} {means[m]:.4f}" for m in found)
    verdict = "holds" if holds else "does NOT hold"
    return {
        "expected": " > ".join(LABELS[m] for m in MODELS),
        "found": found,
        "holds": holds,
        "statement": f"Expected ordering teacher > SCLC+KD > linear-without-KD {verdict}: found {text} "
        "(mean test mean-IoU over seeds).",
    }


def _write_outputs(
    out: Path,
    rows: list[dict[str, Any]],
    aggs: list[dict[str, Any]],
    ordering: dict[str, Any],
    header: str,
    class_names: Sequence[str],
    tests: list[dict[str, Any]] | None = None,
) -> None:
    lines = [
        header,
        "",
        "| model | mean IoU (mean ± std) | mean Dice (mean ± std) | seeds | per-seed mean IoU |",
        "|---|---|---|---|---|",
    ]
    for a in aggs:
        per = ", ".join(f"{r['mean_iou']:.4f}" for r in rows if r["model"] == a["model"])
        lines.append(
            f"| {LABELS[a['model']]} | {a['mean_iou']:.4f} ± {a['mean_iou_std']:.4f} | "
            f"{a['mean_dice']:.4f} ± {a['mean_dice_std']:.4f} | {a['n_seeds']} | {per} |"
        )
    lines += [
        "",
        "Per-class IoU / Dice (mean over seeds):",
        "",
        "| model | " + " | ".join(class_names) + " |",
        "|---|" + "---|" * len(class_names),
    ]
    for a in aggs:
        mine = [r for r in rows if r["model"] == a["model"]]
        cells = [
            f"{np.nanmean([r['iou'][c] for r in mine]):.3f} / {np.nanmean([r['dice'][c] for r in mine]):.3f}"
            for c in range(len(class_names))
        ]
        lines.append(f"| {LABELS[a['model']]} | " + " | ".join(cells) + " |")
    lines += ["", f"Ordering: {ordering['statement']}", ""]
    if tests:
        lines += [
            "Paired t-test over seeds (same epochs for both): "
            + "; ".join(t["statement"] for t in tests),
            "",
        ]
    (out / "table.md").write_text("\n".join(lines))
    cols = [
        "model",
        "seed",
        "mean_iou",
        "mean_iou_std",
        "mean_dice",
        "mean_dice_std",
        "pixel_accuracy",
        "n_seeds",
        "wall_time_s",
        "checkpoint",
    ] + [f"iou_{n}" for n in class_names]
    with (out / "table.csv").open("w", newline="") as f:
        w = csv.DictWriter(f, cols, extrasaction="ignore")
        w.writeheader()
        for a in aggs:
            w.writerow({**a, "seed": "mean"})
        for r in rows:
            w.writerow(
                {
                    **r,
                    "n_seeds": 1,
                    **{f"iou_{n}": v for n, v in zip(class_names, r["iou"], strict=True)},
                }
            )


def _plot(path: Path, aggs: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"teacher": "#444444", "linear": "#d98c3a", "student": "#3a7dd9"}
    fig, ax = plt.subplots(figsize=(4.8, 4.0))
    means, stds = [a["mean_iou"] for a in aggs], [a["mean_iou_std"] for a in aggs]
    ax.bar(range(len(aggs)), means, yerr=stds, capsize=4, color=[colors[a["model"]] for a in aggs])
    for i, m in enumerate(means):
        ax.text(i, m, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(aggs)), [LABELS[a["model"]] for a in aggs], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("test mean IoU (mean ± std over seeds)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def save_overlays(
    path: Path, data: SegmentationSet, pred: torch.Tensor, title: str, n: int = 6
) -> None:
    """Top row: inputs with predicted masks overlaid; bottom row: with the true masks."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n, len(data))
    cmap = plt.get_cmap("tab10", max(data.num_classes, 2))
    fig, axes = plt.subplots(2, n, figsize=(1.6 * n, 3.6), squeeze=False)
    for j in range(n):
        for i, mask in enumerate((pred[j], data.masks[j])):
            ax = axes[i, j]
            ax.imshow(data.images[j].mean(0).numpy(), cmap="gray", vmin=0, vmax=1)
            m = mask.numpy().astype(float)
            ax.imshow(
                np.ma.masked_where((m == 0) | (m == 255), m),
                cmap=cmap,
                vmin=0,
                vmax=max(data.num_classes - 1, 1),
                alpha=0.55,
                interpolation="nearest",
            )
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0, 0].set_ylabel("predicted", fontsize=8)
        axes[1, 0].set_ylabel("truth", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def reproduce(
    seeds: Sequence[int] = (0, 1, 2),
    out_dir: str | Path = "results/segmentation",
    config: SegReproduceConfig | None = None,
    train_cfg: SegTrainConfig | None = None,
    log: Callable[[str], None] | None = None,
    verbose: bool = False,
) -> SegReproduceResult:
    """Train teacher / SCLC+KD / linear over ``seeds`` on ``config``'s data; write the results folder."""
    if not seeds:
        raise ConfigError("need at least one seed")
    cfg = config or SegReproduceConfig()
    base = train_cfg or SegTrainConfig()
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out_dir)
    for sub in ("checkpoints", "overlays"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    data = load_splits(cfg)
    about = dataset_summary(cfg, data)
    log(f"data: {about['description']}: {about['scheme']}")
    classes = data.train.class_names
    arch = {
        "in_channels": data.train.in_channels,
        "num_classes": data.train.num_classes,
        "widths": cfg.widths,
        "decoder_width": cfg.decoder_width,
    }
    rows: list[dict[str, Any]] = []

    def run(kind: str, seed: int, teacher: Any = None) -> Any:
        mcfg = SegConfig(
            kind=kind, **arch, **({} if kind == "teacher" else {"detection": cfg.detection})
        )
        name = f"{kind}-seed{seed}"
        res = train_segmentation(
            mcfg,
            data.train,
            data.val,
            data.test,
            replace(base, seed=seed),
            teacher,
            out / "checkpoints" / f"{name}.pt",
            log=log if verbose else None,
        )
        if (
            seed == seeds[0]
        ):  # one seed's overlays show what each model does; more would only cost time
            save_overlays(
                out / "overlays" / f"{name}.png",
                data.test,
                predict(res.model, data.test.images[:6]),
                f"{LABELS[kind]}, seed {seed}: test mean IoU {res.test['mean_iou']:.3f}",
            )
        rows.append(
            {
                "model": kind,
                "seed": seed,
                **{
                    k: res.test[k]
                    for k in ("mean_iou", "mean_dice", "pixel_accuracy", "iou", "dice")
                },
                "wall_time_s": round(res.wall_time_s, 2),
                "checkpoint": f"checkpoints/{name}.pt",
                "history": res.history,
            }
        )
        log(
            f"{LABELS[kind]} seed {seed}: test mean IoU {res.test['mean_iou']:.4f} ({res.wall_time_s:.0f} s, "
            f"{time.perf_counter() - t0:.0f} s total)"
        )
        return res

    for seed in seeds:
        teacher = run("teacher", seed).model
        run("student", seed, teacher)
        run("linear", seed)
    aggs = _aggregate(rows)
    ordering = ordering_statement(aggs)
    wall = time.perf_counter() - t0
    sizes = about["sizes"]
    header = (
        f"# Segmentation: teacher vs SCLC+KD vs linear without KD — {about['description']}, "
        f"{len(classes)} classes ({', '.join(classes)}), {sizes['train']} train / {sizes['val']} val / "
        f"{sizes['test']} test (data seed {cfg.data_seed}); seeds "
        f"{', '.join(map(str, seeds))}; {base.epochs} epochs, Adam lr {base.lr}, T {base.T}, alpha "
        f"{base.alpha}, detection {cfg.detection}; wall time {wall:.0f} s\n\nData: {about['source']} "
        f"(train source); {about['scheme']}."
    )
    tests = paired_tests(rows)
    _write_outputs(out, rows, aggs, ordering, header, classes, tests)
    what = f"{cfg.kind} scenes" if about["name"] == "generated" else about["name"]
    _plot(out / "mean_iou.png", aggs, f"{what}, {len(seeds)} seeds, {base.epochs} epochs")
    files = {
        "table_md": str(out / "table.md"),
        "table_csv": str(out / "table.csv"),
        "plot": str(out / "mean_iou.png"),
        "summary": str(out / "summary.json"),
        "overlays": str(out / "overlays"),
    }
    result = SegReproduceResult(out, rows, aggs, ordering, wall, files, about, tests)
    summary = {
        "config": {**asdict(cfg), "seeds": list(seeds), "train_config": asdict(base)},
        "class_names": list(classes),
        **result.summary(),
        "bench": "run a checkpoint on the bench with `lab4f run --checkpoint CKPT --calibration R --config "
        "examples/bench48.toml` (48×48 display)",
        "lab4f_version": __version__,
        "git_commit": git_commit(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return result
