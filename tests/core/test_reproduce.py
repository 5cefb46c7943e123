"""`reproduce` on tiny digits8 settings: files exist, the table parses, the verdicts match the numbers."""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path

import pytest
import torch

from lab4f.cli import main
from lab4f.errors import ConfigError
from lab4f.reproduce import reproduce
from lab4f.training import TrainConfig

TINY = {"widths": (4, 8), "hidden": (32,)}


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    out = tmp_path_factory.mktemp("rep")
    return reproduce(
        "digits8",
        seeds=(0, 1, 2),
        detections=("ideal", "coherent"),
        epochs=2,
        out_dir=out,
        limit=200,
        train_cfg=TrainConfig(lr=0.05, batch_size=32, num_threads=1),
        model_overrides=TINY,
        progress=False,
        log=lambda _: None,
    )


def test_results_folder_has_every_file_and_checkpoint(result) -> None:
    out = result.out_dir
    for name in ("table.md", "table.csv", "accuracy.png", "summary.json"):
        assert (out / name).stat().st_size > 0, name
    assert (out / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ckpts = sorted(p.name for p in (out / "checkpoints").glob("*.pt"))
    # per seed: teacher + (linear, student, CE pre-training, authors, continued) per detection
    assert len(ckpts) == 3 * (1 + 2 * 5)
    assert (
        "teacher-seed2.pt" in ckpts
        and "student-coherent-seed0.pt" in ckpts
        and "pretrain-ideal-seed1.pt" in ckpts
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["seeds"] == [0, 1, 2] and len(summary["rows"]) == 3 * (1 + 2 * 4)


def test_csv_means_and_stds_match_per_seed_rows(result) -> None:
    rows = list(csv.DictReader((result.out_dir / "table.csv").open()))
    per_seed = [r for r in rows if r["seed"] != "mean"]
    means = [r for r in rows if r["seed"] == "mean"]
    assert len(per_seed) == 27 and len(means) == 9
    for m in means:
        accs = [
            float(r["test_accuracy"])
            for r in per_seed
            if (r["model"], r["detection"]) == (m["model"], m["detection"])
        ]
        assert len(accs) == 3 == int(m["n_seeds"])
        assert float(m["test_accuracy"]) == pytest.approx(statistics.fmean(accs), abs=1e-6)
        assert float(m["test_accuracy_std"]) == pytest.approx(statistics.stdev(accs), abs=1e-6)
        assert all(0.0 <= a <= 1.0 for a in accs)


def test_table_md_parses_and_ordering_statements_match_the_numbers(result) -> None:
    text = (result.out_dir / "table.md").read_text()
    table = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[3].isdigit():  # data rows: seeds column is a count
            mean, std = (float(v) for v in cells[2].split("±"))
            table[(cells[0], cells[1])] = (mean, std)
    assert len(table) == 9
    n_test = json.loads((result.out_dir / "summary.json").read_text())["config"]["sizes"]["test"]
    counts: dict[tuple[str, str], list[int]] = {}
    for r in csv.DictReader((result.out_dir / "table.csv").open()):
        if r["seed"] != "mean":
            k = float(r["test_accuracy"]) * n_test
            assert abs(k - round(k)) < 1e-6, (
                r,
                n_test,
            )  # an accuracy is a count of test images over n_test
            counts.setdefault((r["model"], r["detection"]), []).append(round(k))
    assert all(len(v) == 3 for v in counts.values()) and len(counts) == 9
    for det in ("ideal", "coherent"):
        t = table[("teacher (nonlinear)", "-")][0]
        s = table[("SCLC+KD", det)][0]
        lin = table[("linear, no KD", det)][0]
        holds = t > s > lin
        verdict = result.ordering[det]
        # the table shows the stored means to 4 decimals
        assert (t, s, lin) == pytest.approx(
            (verdict["teacher"], verdict["student"], verdict["linear"]), abs=5e-5
        )
        # independent verdict from the per-seed rows, in whole test images: every accuracy is correct / n_test on
        # the same test split, so summed correct counts order the models exactly as the means do, with no
        # floating-point rounding and no case skipped when two means are close (ties included)
        correct = {
            m: sum(counts[(m, d)]) for m, d in (("teacher", "-"), ("student", det), ("linear", det))
        }
        assert verdict["holds"] == (correct["teacher"] > correct["student"] > correct["linear"])
        assert verdict["teacher_gt_student"] == (correct["teacher"] > correct["student"])
        assert verdict["student_gt_linear"] == (correct["student"] > correct["linear"])
        if (
            abs(t - s) > 1e-4 and abs(s - lin) > 1e-4
        ):  # the rounded table decides it too when not close
            assert verdict["holds"] == holds
        statement = next(line for line in text.splitlines() if line.startswith(f"- {det}:"))
        assert ("HOLDS" in statement) == verdict["holds"]
        assert ("does NOT hold" in statement) == (not verdict["holds"])
        assert f"SCLC+KD {s:.4f}" in statement and f"linear without KD {lin:.4f}" in statement


def test_reproduce_cli_json_and_bad_detection(tmp_path: Path, capsys) -> None:
    args = [
        "reproduce",
        "--dataset",
        "digits8",
        "--limit",
        "120",
        "--seeds",
        "0,1",
        "--detections",
        "incoherent",
        "--epochs",
        "2",
        "--widths",
        "4",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] and set(out["ordering"]) == {"incoherent"} and len(out["rows"]) == 2 * 5
    assert {(t["kd"], t["baseline"]) for t in out["paired_tests"]} == {
        ("student", "linear"),
        ("authors", "continued"),
    }
    assert {r["model"] for r in out["rows"]} == {
        "teacher",
        "linear",
        "student",
        "authors",
        "continued",
    }
    with pytest.raises(ConfigError, match="unknown detection"):
        reproduce("digits8", detections=("optical",), out_dir=tmp_path)


def test_two_stage_rows_share_the_pretraining_and_authors_freeze_the_front(result) -> None:
    from lab4f.checkpoint import read_checkpoint

    ck = result.out_dir / "checkpoints"
    pre = read_checkpoint(ck / "pretrain-ideal-seed0.pt")["state_dict"]
    authors = read_checkpoint(ck / "authors-ideal-seed0.pt")["state_dict"]
    cont = read_checkpoint(ck / "continued-ideal-seed0.pt")["state_dict"]
    front = [k for k in pre if k.startswith("layers.")]
    assert front and all(
        torch.equal(pre[k], authors[k]) for k in front
    )  # frozen: the optics are CE's
    assert not all(torch.equal(pre[k], cont[k]) for k in front)  # CE continued trains the front too
    rows = {(r["model"], r["detection"], r["seed"]): r for r in result.rows}
    for proto in ("linear", "student", "authors", "continued"):
        assert rows[(proto, "ideal", 0)]["epochs_completed"] == 2  # the same budget for every row
    assert rows[("authors", "ideal", 0)]["pretrain_epochs"] == 1


def test_paired_tests_are_reported_per_detection_with_p_values(result) -> None:
    from scipy import stats

    assert len(result.tests) == 2 * 2
    for t in result.tests:
        a = [
            r["test_accuracy"]
            for r in sorted(result.rows, key=lambda r: r["seed"])
            if (r["model"], r["detection"]) == (t["kd"], t["detection"])
        ]
        b = [
            r["test_accuracy"]
            for r in sorted(result.rows, key=lambda r: r["seed"])
            if (r["model"], r["detection"]) == (t["baseline"], t["detection"])
        ]
        assert t["mean_diff"] == pytest.approx(
            statistics.fmean(x - y for x, y in zip(a, b, strict=True))
        )
        if t["p_value"] is not None:
            assert t["p_value"] == pytest.approx(stats.ttest_rel(a, b).pvalue)
            assert ("NOT significant" in t["verdict"]) == (t["p_value"] >= 0.05)
    assert "Paired t-test" in (result.out_dir / "table.md").read_text()


def test_paired_test_verdicts() -> None:
    from lab4f.reproduce import paired_test

    noisy = paired_test([0.90, 0.80, 0.95], [0.85, 0.88, 0.90])
    assert noisy["p_value"] > 0.05 and "NOT significant" in noisy["verdict"]
    clear = paired_test([0.91, 0.92, 0.93, 0.94], [0.81, 0.815, 0.835, 0.84])
    assert clear["p_value"] < 0.05 and clear["verdict"].startswith("significant")
    assert paired_test([0.9], [0.8])["p_value"] is None
    same = paired_test([0.9, 0.8], [0.8, 0.7])
    assert same["p_value"] is None and "no spread" in same["verdict"]


def test_staged_protocols_need_two_epochs(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="epochs >= 2"):
        reproduce("digits8", epochs=1, out_dir=tmp_path, protocols=("authors",))
    with pytest.raises(ConfigError, match="unknown protocol"):
        reproduce("digits8", out_dir=tmp_path, protocols=("magic",))
