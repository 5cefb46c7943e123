"""Efficiency report: MAC counts against a hand count and forward hooks, crossover, bench timing, files."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch

from lab4f.efficiency import (
    bench_rates,
    bench_time_per_image_s,
    crossover_statement,
    efficiency_report,
    hybrid_macs,
    mac_crossover,
    measure_macs,
    teacher_macs,
)
from lab4f.models import ModelConfig, TeacherCNN

TINY = ModelConfig(widths=(2, 3), kernel_size=3, pool_size=2, hidden=(4,), num_classes=5)


def test_mac_counts_equal_a_hand_count() -> None:
    # teacher at 8x8: conv 64·1·2·9 = 1152, conv 64·2·3·9 = 3456; BN 3·64 + pool 3·64 = 384; FC 12·4 + 4·5 = 68
    t = teacher_macs(TINY, 8)
    assert (t.front, t.extraction, t.back, t.total) == (4608, 0, 452, 5060)
    # hybrid: collapsed 5x5 bank, 3 channels, k⁺ and k⁻ tiles of pitch 8 + 5 − 1 + 2 = 14: dark/flat 3·2·14² = 1176;
    # default calibration (5x5 filter per tile): per feature element 2·(4 + 25 + 1) = 60 → 3·64·60 = 11520
    h = hybrid_macs(TINY, 8)
    assert (h.front, h.extraction, h.back) == (0, 1176 + 11520, 452)
    # a scalar gain per tile (filter_size 1): addcmul per tile, 2·(4 + 1) = 10 → 3·64·10 = 1920
    assert hybrid_macs(TINY, 8, filter_size=1).extraction == 1176 + 1920
    # ideal detection reads one tile per channel: 3·14² + 3·64·(4 + 1)
    assert hybrid_macs(TINY, 8, "ideal", filter_size=1).extraction == 3 * 196 + 3 * 64 * 5
    with pytest.raises(ValueError, match="odd"):
        hybrid_macs(TINY, 8, filter_size=4)


def test_counted_filter_macs_are_what_the_extractor_computes() -> None:
    """The per-tile filter term (tiles · f² per feature element) against the FLOPs torch counts when the real
    FeatureExtractor runs with the default calibration's filter shape (one constant, shared with the gains step)."""
    import numpy as np
    from torch.utils.flop_counter import FlopCounterMode

    from lab4f.bench.extract import DEFAULT_FILTER_SIZE, FeatureExtractor
    from lab4f.optics import FourfGeometry, compile_bank
    from lab4f.optics.registration import PlaneToCamera
    from lab4f.spectral import KernelBank

    torch.manual_seed(0)
    c, n, f = 3, 8, DEFAULT_FILTER_SIZE
    program = compile_bank(
        KernelBank(torch.randn(c, 1, 5, 5)),
        n,
        FourfGeometry(slm_shape=(64, 64)),
        modulation="complex",
        multiplex="never",
    )
    ex = FeatureExtractor.for_program(
        program,
        PlaneToCamera(np.eye(2), np.array([40.0, 40.0])),
        (80, 80),
        channel_filter=np.ones((c, 2, f, f), np.float32),
    )
    frames = np.zeros((4, 80, 80), np.uint16)
    with FlopCounterMode(display=False) as counter:
        ex(frames)
    conv_flops = sum(
        v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op)
    )
    no_filter = hybrid_macs(ModelConfig(widths=(c,)), n, filter_size=1).extraction
    with_filter = hybrid_macs(ModelConfig(widths=(c,)), n, filter_size=f).extraction
    # 2 FLOPs per MAC; the filter replaces the per-tile gain MAC and adds one sum per tile
    assert conv_flops / 2 / len(frames) == c * n * n * 2 * f * f
    assert with_filter - no_filter == c * n * n * 2 * f * f


def test_crossover_is_where_the_formulas_cross() -> None:
    # widths (1, 2), scalar gain per tile: teacher 27 MACs/px; hybrid 20/px + dark/flat 4·(N + 6)²; the back ends
    # are equal → lower once 4(N + 6)² < 7N², i.e. (1 + 6/N)² < 1.75, N > 18.6
    cfg = ModelConfig(widths=(1, 2), kernel_size=3)
    n = mac_crossover(cfg, 224, filter_size=1)
    assert n == 19
    assert hybrid_macs(cfg, 19, filter_size=1).total < teacher_macs(cfg, 19).total
    assert hybrid_macs(cfg, 18, filter_size=1).total >= teacher_macs(cfg, 18).total
    rows = [
        {
            "resolution": r,
            "t": teacher_macs(cfg, r).total,
            "h": hybrid_macs(cfg, r, filter_size=1).total,
        }
        for r in (16, 28, 56)
    ]
    first, text = crossover_statement(rows, n, "t", "h", "MACs")
    assert first == 28 and "from 28 px upward" in text and "N = 19 px" in text
    # with the default 5x5 filters the extraction costs 2·(4 + 25 + 1) = 120 MACs/px: never below 27
    assert mac_crossover(cfg, 224) is None
    assert (
        mac_crossover(ModelConfig(widths=(2,)), 224, filter_size=1) is None
    )  # 18 MACs/px never beats 20


@pytest.mark.parametrize("size", [8, 28, 56])
def test_analytic_teacher_macs_match_forward_hooks(size: int) -> None:
    cfg = ModelConfig()
    model = TeacherCNN(cfg)
    assert measure_macs(model, torch.rand(2, 1, size, size)) == teacher_macs(cfg, size).total
    assert (
        measure_macs(TeacherCNN(TINY), torch.rand(1, 1, size, size))
        == teacher_macs(TINY, size).total
    )


def test_bench_time_per_image_from_the_simulated_bench_defaults(realistic_default_bench) -> None:
    rates = bench_rates()
    assert (
        rates.camera_max_fps == 200.0
        and rates.camera_exposure_s == 0.002
        and rates.slm_settle_s == 0.03
    )
    assert rates.camera_frame_s == pytest.approx(
        0.005
    )  # readout-limited: 200 frames/s (a 2 ms exposure allows 500)
    assert bench_time_per_image_s(rates, 32, 28, 7) == (pytest.approx(0.005), 1)
    slow = dataclasses.replace(rates, camera_exposure_s=0.05)
    assert slow.camera_frame_s == pytest.approx(0.05)  # exposure-limited: 20 frames/s, not 200
    # 56 px: pitch 64 on a 512 grid → 7x7 slots − 1 = 48 tiles = 24 kernels per frame → 2 frames, SLM-settle bound
    assert bench_time_per_image_s(rates, 32, 56, 7) == (pytest.approx(0.06), 2)
    assert bench_time_per_image_s(rates, 32, 224, 7) == (None, 0)


def test_report_files_and_crossover_consistent_with_table(tmp_path: Path) -> None:
    res = efficiency_report(
        (16, 28, 56, 112, 224),
        tmp_path,
        train_resolutions=(16,),
        epochs=1,
        limit=100,
        cfg=ModelConfig(widths=(8, 16), hidden=(32,)),
        timing=False,
    )
    for f in ("table.md", "table.csv", "efficiency.png"):
        assert (tmp_path / f).is_file()
    rows = list(csv.DictReader((tmp_path / "table.csv").open()))
    assert [int(r["resolution"]) for r in rows] == [16, 28, 56, 112, 224]
    assert 0.0 < float(rows[0]["teacher_accuracy"]) <= 1.0 and rows[1]["teacher_accuracy"] == ""
    assert "not measured" in (tmp_path / "table.md").read_text()
    at = res["mac_crossover_resolution"]
    lower = [int(r["hybrid_macs"]) < int(r["teacher_macs"]) for r in rows]
    assert at is not None and all(lower[[int(r["resolution"]) for r in rows].index(at) :])
    assert res["statements"][0] in (tmp_path / "table.md").read_text()
    json.dumps(res)  # the --json summary is plain data
    for r in rows:
        assert (
            int(r["teacher_macs"])
            == teacher_macs(ModelConfig(widths=(8, 16), hidden=(32,)), int(r["resolution"])).total
        )


def test_cli_report_efficiency_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lab4f.cli import main

    code = main(
        [
            "report",
            "efficiency",
            "--resolutions",
            "28,56",
            "--no-train",
            "--no-timing",
            "--out",
            str(tmp_path),
            "--json",
        ]
    )
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["ok"] and [r["resolution"] for r in out["rows"]] == [28, 56]
    assert out["rows"][0]["teacher_macs"] == teacher_macs(ModelConfig(), 28).total


def test_front_end_timing_uses_the_given_threads_and_restores_them(monkeypatch) -> None:
    from lab4f import efficiency

    seen = []
    monkeypatch.setattr(
        efficiency, "_time_front_end_s", lambda *a: seen.append(torch.get_num_threads()) or 1e-3
    )
    before = torch.get_num_threads()
    assert efficiency.time_front_end_s(TINY, 8, threads=1) == 1e-3
    assert seen == [1] and torch.get_num_threads() == before
    assert "(1 torch thread)" in " ".join(
        efficiency.assumptions(TINY, bench_rates(), "incoherent", threads=1)
    )
