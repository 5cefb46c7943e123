"""Reproduce the paper's comparison: nonlinear teacher vs SCLC+KD vs the same linear network without KD.

For every seed (same data split, different init/shuffle/dropout) the teacher is trained once, then per
detection model the student protocols, each with the same total budget of ``epochs`` training epochs:

- ``linear``: the linear counterpart trained with cross-entropy only;
- ``student``: SCLC + KD from scratch (KD from that seed's teacher);
- ``authors``: the authors' procedure — cross-entropy pre-training for ``epochs // 2`` epochs, then the front
  end frozen and KD for the remaining epochs;
- ``continued``: the same cross-entropy pre-training, then plain cross-entropy continued for the same
  remaining epochs (the budget-matched baseline of ``authors``).

With ``patience`` every stage trains to plateau on the validation split (never the test split), ``epochs``
being the cap. A paired t-test over seeds (same seed = same split, init of the pre-trained stage) compares
each KD protocol with its budget-matched baseline (student vs linear, authors vs continued), with its
p-value, and says when the difference is not significant. Writes ``table.md``, ``table.csv`` (aggregates and
per-seed rows), ``accuracy.png``, ``summary.json`` and all checkpoints under ``checkpoints/``. The ordering
teacher > SCLC+KD > linear is checked on the mean test accuracies and stated as found — nothing is tuned to
make it hold.
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

LABELS = {
    "teacher": "teacher (nonlinear)",
    "student": "SCLC+KD",
    "linear": "linear, no KD",
    "authors": "CE then frozen front + KD",
    "continued": "CE then CE continued",
}
PROTOCOLS = ("linear", "student", "authors", "continued")
#: (KD protocol, its budget-matched baseline) pairs of the paired test
PAIRS = (("student", "linear"), ("authors", "continued"))
DEFAULT_EPOCHS = 10
SIGNIFICANCE = 0.05

#: presets: "cpu" is today's default (small widths, a few epochs); "paper" the authors' architecture and
#: optimiser (widths 32,128,256, 3x3 kernels, SGD momentum 0.9, T 10, alpha 0.5, 50 epochs), full data
PRESETS: dict[str, dict[str, Any]] = {
    "cpu": {"epochs": DEFAULT_EPOCHS, "model": {}, "train": {}},
    "paper": {
        "epochs": 50,
        "model": {"widths": (32, 128, 256), "kernel_size": 3},
        "train": {
            "lr": 0.01,
            "momentum": 0.9,
            "weight_decay": 0.0,
            "schedule": "constant",
            "batch_size": 64,
            "T": 10.0,
            "alpha": 0.5,
        },
    },
}


def paired_test(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    """Paired t-test of ``a`` vs ``b`` over the same seeds: mean difference, its std, t, p and a verdict."""
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    n = len(diffs)
    out: dict[str, Any] = {
        "n": n,
        "mean_diff": statistics.fmean(diffs) if diffs else None,
        "std_diff": statistics.stdev(diffs) if n > 1 else None,
        "t": None,
        "p_value": None,
    }
    if n < 2:
        out["verdict"] = "not testable: one seed (run 3 or more --seeds)"
        return out
    if max(diffs) - min(diffs) < 1e-12:  # equal up to float rounding
        out["verdict"] = (
            f"every seed differs by exactly {diffs[0]:+.4f}: no spread, the t-test is undefined "
            "(run more seeds)"
        )
        return out
    from scipy import stats

    res = stats.ttest_rel(a, b)
    out["t"], out["p_value"] = float(res.statistic), float(res.pvalue)
    sig = out["p_value"] < SIGNIFICANCE
    out["significant"] = sig
    out["verdict"] = (
        f"{'significant' if sig else 'NOT significant'} at p < {SIGNIFICANCE} "
        f"(p = {out['p_value']:.3g}, n = {n} seeds)"
    )
    return out


def _paired_tests(rows: list[dict[str, Any]], detections: Sequence[str]) -> list[dict[str, Any]]:
    tests = []
    for det in detections:
        for kd, base in PAIRS:
            by = {
                m: {
                    r["seed"]: r["test_accuracy"]
                    for r in rows
                    if (r["model"], r["detection"]) == (m, det)
                }
                for m in (kd, base)
            }
            seeds = sorted(set(by[kd]) & set(by[base]))
            if not seeds:
                continue
            t = paired_test([by[kd][s] for s in seeds], [by[base][s] for s in seeds])
            diff = "n/a" if t["mean_diff"] is None else f"{t['mean_diff']:+.4f}"
            tests.append(
                {
                    "detection": det,
                    "kd": kd,
                    "baseline": base,
                    "seeds": seeds,
                    **t,
                    "statement": f"{det}: {LABELS[kd]} − {LABELS[base]} = {diff} over seeds "
                    f"{', '.join(map(str, seeds))}: {t['verdict']}",
                }
            )
    return tests


@dataclass
class ReproduceResult:
    """Per-seed rows, mean ± std per (model, detection), the ordering verdicts and the files written."""

    out_dir: Path
    rows: list[dict[str, Any]]
    aggregates: list[dict[str, Any]]
    ordering: dict[str, dict[str, Any]]
    wall_time_s: float
    files: dict[str, str] = field(default_factory=dict)
    tests: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "out_dir": str(self.out_dir),
            "wall_time_s": self.wall_time_s,
            "rows": self.rows,
            "aggregates": self.aggregates,
            "ordering": self.ordering,
            "paired_tests": self.tests,
            "files": self.files,
        }


def _aggregate(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str], list[float]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["detection"]), []).append(r["test_accuracy"])
    return [
        {
            "model": m,
            "detection": d,
            "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0,
            "n_seeds": len(v),
        }
        for (m, d), v in groups.items()
    ]


def _ordering(aggs: list[dict[str, Any]], detections: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per detection model: does mean teacher > mean SCLC+KD > mean linear hold? With the numbers."""
    by = {(a["model"], a["detection"]): a for a in aggs}
    t = by[("teacher", "-")]
    out = {}
    for det in detections:
        if ("student", det) not in by or ("linear", det) not in by:
            continue  # the ordering needs both SCLC+KD and the linear network
        s, lin = by[("student", det)], by[("linear", det)]
        t_gt_s, s_gt_l = t["mean"] > s["mean"], s["mean"] > lin["mean"]
        holds = t_gt_s and s_gt_l
        nums = f"teacher {_mean_std(t)}, SCLC+KD {_mean_std(s)}, linear without KD {_mean_std(lin)}"
        margins = "; ".join(
            _margin(a, b, na, nb)
            for a, b, na, nb in ((t, s, "teacher", "SCLC+KD"), (s, lin, "SCLC+KD", "linear"))
        )
        if holds:
            verdict = "HOLDS"
        else:
            broken = [
                x
                for x, ok in (("teacher > SCLC+KD", t_gt_s), ("SCLC+KD > linear", s_gt_l))
                if not ok
            ]
            verdict = f"does NOT hold ({' and '.join(broken)} fails)"
        out[det] = {
            "holds": holds,
            "teacher_gt_student": t_gt_s,
            "student_gt_linear": s_gt_l,
            "teacher": t["mean"],
            "student": s["mean"],
            "linear": lin["mean"],
            "student_minus_linear": s["mean"] - lin["mean"],
            # None with a single seed: there is no spread (not a spread of 0)
            "student_linear_spread": s["std"] + lin["std"]
            if min(s["n_seeds"], lin["n_seeds"]) > 1
            else None,
            "statement": f"{det}: teacher > SCLC+KD > linear-without-KD {verdict}: {nums} "
            f"({margins})",
        }
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
        return (
            f"{name_a} − {name_b} = {diff:+.4f}; no seed spread to compare it with (n = 1): "
            "run 3 or more --seeds to tell a difference from seed noise"
        )
    clear = "larger than" if abs(diff) > spread else "within"
    return f"{name_a} − {name_b} = {diff:+.4f}, {clear} the seed spread {spread:.4f}"


def _write_table_md(
    path: Path,
    aggs: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    ordering: dict[str, dict[str, Any]],
    header: str,
    tests: list[dict[str, Any]] | None = None,
) -> None:
    lines = [
        header,
        "",
        "| model | detection | test accuracy (mean ± std) | seeds | per seed |",
        "|---|---|---|---|---|",
    ]
    for a in aggs:
        per = ", ".join(
            f"{r['test_accuracy']:.4f}"
            for r in rows
            if (r["model"], r["detection"]) == (a["model"], a["detection"])
        )
        lines.append(
            f"| {LABELS[a['model']]} | {a['detection']} | {_mean_std(a)} | {a['n_seeds']} | {per} |"
        )
    lines += ["", "Ordering (on mean test accuracy):", ""]
    lines += [f"- {o['statement']}" for o in ordering.values()]
    if tests:
        lines += [
            "",
            "Paired t-test over seeds, each KD protocol vs its budget-matched baseline:",
            "",
        ]
        lines += [f"- {t['statement']}" for t in tests]
    path.write_text("\n".join(lines) + "\n")


def _write_csv(path: Path, aggs: list[dict[str, Any]], rows: list[dict[str, Any]]) -> None:
    cols = [
        "model",
        "detection",
        "seed",
        "test_accuracy",
        "test_accuracy_std",
        "n_seeds",
        "best_val_accuracy",
        "epochs_completed",
        "stopped_reason",
        "wall_time_s",
        "checkpoint",
    ]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, cols)
        w.writeheader()
        for a in aggs:
            w.writerow(
                {
                    "model": a["model"],
                    "detection": a["detection"],
                    "seed": "mean",
                    "test_accuracy": f"{a['mean']:.6f}",
                    "test_accuracy_std": f"{a['std']:.6f}"
                    if a["n_seeds"] > 1
                    else "",  # n = 1: no spread
                    "n_seeds": a["n_seeds"],
                }
            )
        for r in rows:
            w.writerow({k: r.get(k, "") for k in cols} | {"n_seeds": 1})


def _plot(path: Path, aggs: list[dict[str, Any]], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {
        "teacher": "#444444",
        "linear": "#d98c3a",
        "student": "#3a7dd9",
        "authors": "#2a9d6a",
        "continued": "#b5a03a",
    }
    names = [
        f"{LABELS[a['model']]}\n{a['detection']}" if a["model"] != "teacher" else LABELS["teacher"]
        for a in aggs
    ]
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
    protocols: Sequence[str] = PROTOCOLS,
    teacher_epochs: int | None = None,
    image_size: int | None = None,
) -> ReproduceResult:
    """Train the teacher and the student ``protocols`` over ``seeds`` and ``detections``; write the results.

    Every student protocol gets ``epochs`` epochs in total (with ``train_cfg.patience``: at most, stopping at
    the validation plateau); the teacher ``teacher_epochs`` (default ``epochs``).
    """
    from lab4f.data import load_dataset

    unknown = [d for d in detections if d not in DETECTION_MODELS]
    if unknown or not detections:
        raise ConfigError(
            f"unknown detection model(s) {unknown or 'none given'}; "
            f"choose from {', '.join(DETECTION_MODELS)}"
        )
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ConfigError(
            f"unknown protocol(s) {bad or 'none given'}; choose from {', '.join(PROTOCOLS)}"
        )
    staged = [p for p in protocols if p in ("authors", "continued")]
    if staged and epochs < 2:
        raise ConfigError(
            f"protocol(s) {', '.join(staged)} split the budget into CE pre-training and a second "
            f"stage: they need --epochs >= 2 (got {epochs})"
        )
    if not seeds:
        raise ConfigError("reproduce needs at least one seed (3 or more for a meaningful std)")
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    out = Path(out_dir)
    (out / "checkpoints").mkdir(parents=True, exist_ok=True)
    base = replace(train_cfg or TrainConfig(), epochs=epochs)
    t_epochs = teacher_epochs or epochs
    pre_epochs = epochs // 2
    overrides = dict(model_overrides or {})
    splits = load_dataset(
        dataset, data_dir=data_dir, split_seed=split_seed, limit=limit, image_size=image_size
    )
    t0 = time.perf_counter()
    rows: list[dict[str, Any]] = []
    per_det = sum(p in protocols for p in ("linear", "student")) + (
        1 + len(staged) if staged else 0
    )
    n_runs, k = len(seeds) * (1 + len(detections) * per_det), 0

    def run(
        kind: str,
        det: str,
        seed: int,
        name: str,
        n_epochs: int,
        teacher: Any = None,
        *,
        protocol: str | None = None,
        init: Any = None,
        frozen: bool = False,
        record: bool = True,
    ) -> Any:
        nonlocal k
        k += 1
        det_kw = {} if kind == "teacher" else {"detection": det}
        mcfg = model_config_for(splits, kind, **overrides, **det_kw)
        res = train_model(
            mcfg,
            splits,
            replace(base, seed=seed, epochs=n_epochs),
            teacher=teacher,
            checkpoint_path=out / "checkpoints" / name,
            progress=progress,
            init_state=init,
            frozen_front=frozen,
            log=log,
        )
        model = protocol or kind
        if record:
            rows.append(
                {
                    "model": model,
                    "detection": det,
                    "seed": seed,
                    "test_accuracy": res.test["accuracy"],
                    "best_val_accuracy": res.best_val_accuracy,
                    "epochs_completed": res.epochs_completed,
                    "stopped_reason": res.stopped_reason,
                    "wall_time_s": round(res.wall_time_s, 2),
                    "checkpoint": str(Path("checkpoints") / name),
                }
            )
        log(
            f"[{k}/{n_runs}] {LABELS.get(model, model)} {det} seed {seed} ({n_epochs} epochs max, "
            f"{res.epochs_completed} run): val {res.best_val_accuracy:.4f}, test {res.test['accuracy']:.4f} "
            f"({res.wall_time_s:.1f} s, {time.perf_counter() - t0:.0f} s total)"
        )
        return res

    def stage_row(protocol: str, det: str, seed: int, pre: Any, second: Any, name: str) -> None:
        rows[-1].update(
            {
                "model": protocol,
                "epochs_completed": pre.epochs_completed + second.epochs_completed,
                "pretrain_epochs": pre.epochs_completed,
                "wall_time_s": round(pre.wall_time_s + second.wall_time_s, 2),
                "checkpoint": str(Path("checkpoints") / name),
            }
        )

    for seed in seeds:
        teacher = run("teacher", "-", seed, f"teacher-seed{seed}.pt", t_epochs).model
        for det in detections:
            if "linear" in protocols:
                run("linear", det, seed, f"linear-{det}-seed{seed}.pt", epochs)
            if "student" in protocols:
                run("student", det, seed, f"student-{det}-seed{seed}.pt", epochs, teacher)
            if staged:
                pre = run(
                    "linear", det, seed, f"pretrain-{det}-seed{seed}.pt", pre_epochs, record=False
                )
                init = {k_: v.detach().cpu().clone() for k_, v in pre.model.state_dict().items()}
                if "authors" in protocols:
                    name = f"authors-{det}-seed{seed}.pt"
                    second = run(
                        "student",
                        det,
                        seed,
                        name,
                        epochs - pre_epochs,
                        teacher,
                        protocol="authors",
                        init=init,
                        frozen=True,
                    )
                    stage_row("authors", det, seed, pre, second, name)
                if "continued" in protocols:
                    name = f"continued-{det}-seed{seed}.pt"
                    second = run(
                        "linear",
                        det,
                        seed,
                        name,
                        epochs - pre_epochs,
                        protocol="continued",
                        init=init,
                    )
                    stage_row("continued", det, seed, pre, second, name)
    config = {
        "dataset": dataset,
        "split_seed": split_seed,
        "seeds": list(seeds),
        "detections": list(detections),
        "epochs": epochs,
        "teacher_epochs": t_epochs,
        "pretrain_epochs": pre_epochs if staged else None,
        "protocols": list(protocols),
        "limit": limit,
        "image_size": list(splits.image_size),
        "sizes": {"train": len(splits.train), "val": len(splits.val), "test": len(splits.test)},
        "train_config": base.to_dict(),
        "model_overrides": {
            k_: list(v) if isinstance(v, tuple) else v for k_, v in overrides.items()
        },
    }
    return write_report(out, rows, config, time.perf_counter() - t0)


def write_report(
    out: Path, rows: list[dict[str, Any]], config: dict[str, Any], wall: float
) -> ReproduceResult:
    """Write table.md, table.csv, accuracy.png and summary.json from per-seed rows (re-runnable)."""
    aggs = _aggregate(rows)
    detections, seeds, base = config["detections"], config["seeds"], config["train_config"]
    ordering = _ordering(aggs, detections)
    tests = _paired_tests(rows, detections)
    n = config["sizes"]
    header = (
        f"# Teacher vs SCLC+KD vs linear without KD — {config['dataset']} (split seed "
        f"{config['split_seed']}: {n['train']} train / {n['val']} val / {n['test']} test), seeds "
        f"{', '.join(map(str, seeds))}, {config['epochs']} epochs, lr {base['lr']}, T {base['T']}, "
        f"alpha {base['alpha']}; wall time {wall:.0f} s"
    )
    if config.get("pretrain_epochs"):
        cap = (
            f" (a cap: early stop on validation, patience {base['patience']})"
            if base.get("patience")
            else ""
        )
        header += (
            f"\n\nEvery student row has the same budget of {config['epochs']} epochs{cap}"
            f"; the two-stage rows are {config['pretrain_epochs']} epochs of cross-entropy pre-training, "
            f"then {config['epochs'] - config['pretrain_epochs']} epochs of the second stage."
        )
    files = {
        "table_md": str(out / "table.md"),
        "table_csv": str(out / "table.csv"),
        "plot": str(out / "accuracy.png"),
        "summary": str(out / "summary.json"),
    }
    _write_table_md(out / "table.md", aggs, rows, ordering, header, tests)
    _write_csv(out / "table.csv", aggs, rows)
    _plot(
        out / "accuracy.png",
        aggs,
        f"{config['dataset']}: {len(seeds)} seeds, {config['epochs']} epochs",
    )
    result = ReproduceResult(out, rows, aggs, ordering, wall, files, tests)
    summary = {
        "config": config,
        **result.summary(),
        "lab4f_version": __version__,
        "git_commit": git_commit(),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    return result
