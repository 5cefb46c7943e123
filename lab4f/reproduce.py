"""Reproduce the paper's comparison: nonlinear teacher vs SCLC+KD vs the same linear network without KD.

For every seed (same data split, different init/shuffle/dropout) the teacher is trained once, then per
detection model the linear counterpart (CE only) and the SCLC student (KD from that seed's teacher).
Writes ``table.md``, ``table.csv`` (aggregates and per-seed rows), ``accuracy.png``, ``summary.json`` and
all checkpoints under ``checkpoints/``. The ordering teacher > SCLC+KD > linear is checked on the mean
test accuracies and stated as found — nothing is tuned to make it hold.
"""

from __future__ import annotations

import csv
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from lab4f import __version__
from lab4f.checkpoint import git_commit
from lab4f.detection import DETECTION_MODELS
from lab4f.errors import ConfigError
from lab4f.training import TrainConfig, model_config_for, train_model

LABELS = {"teacher": "teacher (nonlinear)", "student": "SCLC+KD", "linear": "linear, no KD"}
DEFAULT_EPOCHS = 10


@dataclass
class ReproduceResult:
    """Per-seed rows, mean ± std per (model, detection), the ordering verdicts and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    ordering: dict[str, dict[str, Any]]
    wall_time_s: float
    files: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"out_dir": str(self.out_dir), "wall_time_s": self.wall_time_s, "rows": self.rows,
                "aggregates": self.aggregates, "ordering": self.ordering, "files": self.files}


def _aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["detection"]), []).append(r["test_accuracy"])
    return [
        {"model": m, "detection": d, "mean": statistics.fmean(v),
         "std": statistics.stdev(v) if len(v) > 1 else 0.0, "n_seeds": len(v)}
        for (m, d), v in groups.items()
    ]


def _ordering(aggs: list[dict[str, Any]], detections: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per detection model: does mean teacher > mean SCLC+KD > mean linear hold? With the numbers."""
    by = {(a["model"], a["detection"]): a for a in aggs}
    t = by[("teacher", "-")]
    out = {}
    for det in detections:
        s, lin = by[("student", det)], by[("linear", det)]
        t_gt_s, s_gt_l = t["mean"] > s["mean"], s["mean"] > lin["mean"]
        holds = t_gt_s and s_gt_l
        nums = (f"teacher {_mean_std(t)}, SCLC+KD {_mean_std(s)}, linear without KD {_mean_std(lin)}")
        margins = "; ".join(_margin(a, b, na, nb) for a, b, na, nb in
                            ((t, s, "teacher", "SCLC+KD"), (s, lin, "SCLC+KD", "linear")))
        if holds:
            verdict = "HOLDS"
        else:
            broken = [x for x, ok in (("teacher > SCLC+KD", t_gt_s), ("SCLC+KD > linear", s_gt_l)) if not ok]
            verdict = f"does NOT hold ({' and '.join(broken)} fails)"
        out[det] = {"holds": holds, "teacher_gt_student": t_gt_s, "student_gt_linear": s_gt_l,
                    "teacher": t["mean"], "student": s["mean"], "linear": lin["mean"],
                    "student_minus_linear": s["mean"] - lin["mean"],
                    # None with a single seed: there is no spread (not a spread of 0)
                    "student_linear_spread": s["std"] + lin["std"] if min(s["n_seeds"], lin["n_seeds"]) > 1 else None,
                    "statement": f"{det}: teacher > SCLC+KD > linear-without-KD {verdict}: {nums} "
                                 f"({margins})"}
    return out


def _mean_std(a: dict[str, Any]) -> str:
    """'0.9123 ± 0.0040'; with a single seed there is no spread to show (its std is not 0, it is unknown)."""
    if a["n_seeds"] < 2:
        return f"{a['mean']:.4f} (n = 1, no spread)"
    return f"{a['mean']:.4f} ± {a['std']:.4f}"


def _margin(a: dict[str, Any], b: dict[str, Any], name_a: str, name_b: str) -> str:
    """The difference of two means, and whether it exceeds the seed spread (sum of the two stds)."""
    diff, spread = a["mean"] - b["mean"], a["std"] + b["std"]
    if min(a["n_seeds"], b["n_seeds"]) < 2:
        return (f"{name_a} − {name_b} = {diff:+.4f}; no seed spread to compare it with (n = 1): "
                "run 3 or more --seeds to tell a difference from seed noise")
    clear = "larger than" if abs(diff) > spread else "within"
    return f"{name_a} − {name_b} = {diff:+.4f}, {clear} the seed spread {spread:.4f}"


def _write_table_md(path: Path, aggs: list[dict[str, Any]], rows: list[dict[str, Any]],
                    ordering: dict[str, dict[str, Any]], header: str) -> None:
    lines = [header, "", "| model | detection | test accuracy (mean ± std) | seeds | per seed |",
             "|---|---|---|---|---|"]
    for a in aggs:
        per = ", ".join(f"{r['test_accuracy']:.4f}" for r in rows
                        if (r["model"], r["detection"]) == (a["model"], a["detection"]))
        lines.append(f"| {LABELS[a['model']]} | {a['detection']} | {_mean_std(a)} | "
                     f"{a['n_seeds']} | {per} |")
    lines += ["", "Ordering (on mean test accuracy):", ""]
    lines += [f"- {o['statement']}" for o in ordering.values()]
    path.write_text("\n".join(lines) + "\n")


def _write_csv(path: Path, aggs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    cols = ["model", "detection", "seed", "test_accuracy", "test_accuracy_std", "n_seeds",
            "best_val_accuracy", "epochs_completed", "stopped_reason", "wall_time_s", "checkpoint"]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for a in aggs:
            w.writerow({"model": a["model"], "detection": a["detection"], "seed": "mean",
                        "test_accuracy": f"{a['mean']:.6f}",
                        "test_accuracy_std": f"{a['std']:.6f}" if a["n_seeds"] > 1 else "",  # n = 1: no spread
                        "n_seeds": a["n_seeds"]})
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols} | {"n_seeds": 1})


def _plot(path: Path, aggs: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"teacher": "#444444", "linear": "#d98c3a", "student": "#3a7dd9"}
    names = [f"{LABELS[a['model']]}\n{a['detection']}" if a["model"] != "teacher" else LABELS["teacher"]
             for a in aggs]
    fig, ax = plt.subplots(figsize=(1.2 + 1.1 * len(aggs), 4.2))
    means, stds = [a["mean"] for a in aggs], [a["std"] for a in aggs]
    ax.bar(range(len(aggs)), means, yerr=stds, capsize=4, color=[colors[a["model"]] for a in aggs])
    for i, (m, s) in enumerate(zip(means, stds, strict=True)):
        ax.text(i, m + s + 0.002, f"{m:.3f}", ha="center", va="bottom", fontsize=8)
    lo = min(m - s for m, s in zip(means, stds, strict=True))
    ax.set_ylim(max(0.0, lo - 0.05), min(1.0, max(means) + 0.03))
    ax.set_xticks(range(len(aggs)), names, fontsize=8)
    ax.set_ylabel("test accuracy (mean ± std over seeds)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def reproduce(
    dataset: str = "mnist5k",
    seeds: Sequence[int] = (0, 1, 2),
    detections: Sequence[str] = DETECTION_MODELS,
    epochs: int = DEFAULT_EPOCHS,
    out_dir: str | Path = "results/reproduce",
    *,
    data_dir: str | Path | None = None,
    split_seed: int = 0,
    limit: int | None = None,
    train_cfg: TrainConfig | None = None,
    model_overrides: dict[str, Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> ReproduceResult:
    """Train teacher / linear / SCLC+KD over ``seeds`` and ``detections``; write the results folder."""
    from lab4f.data import load_dataset

    unknown = [d for d in detections if d not in DETECTION_MODELS]
    if unknown or not detections:
        raise ConfigError(f"unknown detection model(s) {unknown or 'none given'}; "
                          f"choose from {', '.join(DETECTION_MODELS)}")
    if not seeds:
        raise ConfigError("reproduce needs at least one seed (3 or more for a meaningful std)")
    log = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    base = replace(train_cfg or TrainConfig(), epochs=epochs)
    overrides = dict(model_overrides or {})
    splits = load_dataset(dataset, data_dir=data_dir, split_seed=split_seed, limit=limit)
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    n_runs, k = len(seeds) * (1 + 2 * len(detections)), 0

    def run(kind: str, det: str, seed: int, teacher: Any = None) -> Any:
        nonlocal k
        k += 1
        name = f"{kind}-seed{seed}.pt" if kind == "teacher" else f"{kind}-{det}-seed{seed}.pt"
        det_kw = {} if kind == "teacher" else {"detection": det}
        mcfg = model_config_for(splits, kind, **overrides, **det_kw)
        res = train_model(mcfg, splits, replace(base, seed=seed), teacher=teacher,
                          checkpoint_path=out / "checkpoints" / name, progress=progress)
        rows.append({"model": kind, "detection": det, "seed": seed, "test_accuracy": res.test["accuracy"],
                     "best_val_accuracy": res.best_val_accuracy, "epochs_completed": res.epochs_completed,
                     "stopped_reason": res.stopped_reason, "wall_time_s": round(res.wall_time_s, 2),
                     "checkpoint": str(Path("checkpoints") / name)})
        log(f"[{k}/{n_runs}] {LABELS[kind]} {det} seed {seed}: test {res.test['accuracy']:.4f} "
            f"({res.wall_time_s:.1f} s, {time.perf_counter() - t0:.0f} s total)")
        return res

    for seed in seeds:
        teacher = run("teacher", "-", seed).model
        for det in detections:
            run("linear", det, seed)
            run("student", det, seed, teacher)
    config = {"dataset": dataset, "split_seed": split_seed, "seeds": list(seeds),
              "detections": list(detections), "epochs": epochs, "limit": limit,
              "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
              "train_config": base.to_dict(), "model_overrides": overrides}
    return write_report(out, rows, config, time.perf_counter() - t0)


def write_report(out: Path, rows: list[dict[str, Any]], config: dict[str, Any],
                 wall: float) -> ReproduceResult:
    """Write table.md, table.csv, accuracy.png and summary.json from per-seed rows (re-runnable)."""
    aggs = _aggregate(rows)
    detections, seeds, base = config["detections"], config["seeds"], config["train_config"]
    ordering = _ordering(aggs, detections)
    n = config["sizes"]
    header = (f"# Teacher vs SCLC+KD vs linear without KD — {config['dataset']} (split seed "
              f"{config['split_seed']}: {n['train']} train / {n['val']} val / {n['test']} test), seeds "
              f"{', '.join(map(str, seeds))}, {config['epochs']} epochs, lr {base['lr']}, T {base['T']}, "
              f"alpha {base['alpha']}; wall time {wall:.0f} s")
    files = {"table_md": str(out / "table.md"), "table_csv": str(out / "table.csv"),
             "plot": str(out / "accuracy.png"), "summary": str(out / "summary.json")}
    _write_table_md(out / "table.md", aggs, rows, ordering, header)
    _write_csv(out / "table.csv", aggs, rows)
    _plot(out / "accuracy.png", aggs, f"{config['dataset']}: {len(seeds)} seeds, {config['epochs']} epochs")
    result = ReproduceResult(out, rows, aggs, ordering, wall, files)
    summary = {"config": config, **result.summary(), "lab4f_version": __version__, "git_commit": git_commit()}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return result
