"""Every ``--json`` output is strict JSON: no NaN or Infinity literals (which Python's json writes by default and
other parsers refuse). The figures that can be missing — per-class accuracy of a class with no images, latency
percentiles and agreement of a run that processed nothing — are None at their source, and the CLI's writer turns
any other non-finite float into null."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lab4f.cli import dumps, main


def strict(text: str) -> dict:
    """The one JSON object on stdout, parsed as a strict parser would (NaN, Infinity, -Infinity refused)."""
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, text

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(lines[0], parse_constant=refuse)


@pytest.fixture(scope="module")
def student(tmp_path_factory) -> Path:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    cfg = ModelConfig(kind="student", widths=(4, 8), detection="incoherent")
    torch.manual_seed(0)
    return save_checkpoint(
        tmp_path_factory.mktemp("ck") / "student.pt",
        build_model(cfg),
        make_metadata(cfg, dataset={"name": "mnist5k", "split_seed": 0}),
    )


def test_the_writer_makes_every_non_finite_float_null() -> None:
    payload = {
        "a": float("nan"),
        "b": [1.0, float("inf"), {"c": -math.inf}],
        "d": np.float32("nan"),
        "e": np.array([np.nan, 2.0]),
        "f": (np.inf, 3),
        "g": Path("x"),
        "ok": True,
        "n": 4,
    }
    assert strict(dumps(payload)) == {
        "a": None,
        "b": [1.0, None, {"c": None}],
        "d": None,
        "e": [None, 2.0],
        "f": [None, 3],
        "g": "x",
        "ok": True,
        "n": 4,
    }


def test_evaluate_with_classes_that_have_no_images(student, capsys) -> None:
    assert main(["evaluate", str(student), "--limit", "3", "--json"]) == 0
    payload = strict(capsys.readouterr().out)
    per_class = payload["per_class_accuracy"]
    assert len(per_class) == 10 and payload["n"] == 3
    assert per_class.count(None) >= 7  # 3 images: at most 3 classes have one
    assert all(a is None or 0.0 <= a <= 1.0 for a in per_class)


def test_bench_info(capsys) -> None:
    assert main(["bench", "info", "--json"]) == 0
    assert "devices" in strict(capsys.readouterr().out)


def test_a_short_run_and_a_run_that_processed_nothing(
    student, tmp_path, monkeypatch, capsys
) -> None:
    assert (
        main(
            [
                "run",
                "--checkpoint",
                str(student),
                "--limit",
                "3",
                "--out",
                str(tmp_path / "a.h5"),
                "--json",
            ]
        )
        == 0
    )
    payload = strict(capsys.readouterr().out)
    assert payload["n"] == 3 and payload["latency_p50_ms"] > 0 and 0 <= payload["agreement"] <= 1

    import lab4f.bench.run as run_module

    inner = run_module.run_dataset

    def dead_camera(
        setup, *args, **kwargs
    ):  # the camera is unplugged as the stream starts: nothing is processed
        setup.bench.devices["camera"].faults.disconnect = True
        return inner(setup, *args, **kwargs)

    monkeypatch.setattr(run_module, "run_dataset", dead_camera)
    code = main(
        [
            "run",
            "--checkpoint",
            str(student),
            "--limit",
            "3",
            "--out",
            str(tmp_path / "b.h5"),
            "--json",
        ]
    )
    payload = strict(capsys.readouterr().out)
    assert code == 3 and payload["n"] == payload["processed"] == 0
    assert (
        payload["agreement"] is None
        and payload["latency_p50_ms"] is None
        and payload["latency_p99_ms"] is None
    )
    assert payload["optical_accuracy"] is None
    # in words too: the figures it has none of are "n/a"
    code = main(
        ["run", "--checkpoint", str(student), "--limit", "3", "--out", str(tmp_path / "c.h5")]
    )
    assert code == 3 and "agreement n/a" in capsys.readouterr().out


def test_calibration_show(tmp_path, capsys) -> None:
    assert main(["calibrate", "camera", "--out", str(tmp_path / "rec"), "--json"]) == 0
    strict(capsys.readouterr().out)
    assert main(["calibration", "show", str(tmp_path / "rec"), "--json"]) == 0
    assert strict(capsys.readouterr().out)["steps"]["camera"]
