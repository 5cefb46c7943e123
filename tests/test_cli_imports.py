"""`lab4f --help` and usage errors are answered without importing torch (or the bench, numpy, slmsuite, ...).

Each case runs the CLI's ``main`` in a fresh interpreter, so that what it imports is what ``sys.modules`` shows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# modules that building the parser must not import: each costs from 0.1 s (numpy) to 2 s (torch)
HEAVY = ("torch", "numpy", "scipy", "slmsuite", "h5py", "matplotlib", "pydantic", "PySide6")

PROBE = """
import contextlib, io, json, sys
from lab4f.cli import main
out, err = io.StringIO(), io.StringIO()
with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
        code = main(json.loads(sys.argv[1]))
    except SystemExit as exc:
        code = exc.code
heavy = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.argv[2])))
print(json.dumps({"code": code, "stdout": out.getvalue(), "stderr": err.getvalue(), "heavy": heavy}))
"""


def _probe(argv: list[str], cwd: Path) -> dict:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(argv), json.dumps(HEAVY)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def _strict_json(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def test_help_imports_nothing_heavy(tmp_path: Path) -> None:
    r = _probe(["--help"], tmp_path)
    assert r["code"] == 0 and "usage: lab4f" in r["stdout"]
    for command in ("bench", "calibrate", "compile", "demo", "finetune", "run", "segment", "train"):
        assert command in r["stdout"]
    assert r["heavy"] == []


@pytest.mark.parametrize(
    "argv",
    [
        ["--json", "frobnicate"],  # unknown command
        ["run", "--json"],  # missing --checkpoint
        ["finetune", "--json", "--checkpoint", "s.pt", "--epochs", "0"],  # bad value
        ["demo", "--json", "--no-such-option"],
        ["train", "--json", "--kind", "bogus"],  # bad choice
        ["segment", "--json", "train", "--detection", "bogus"],
        ["reproduce", "--json", "--epochs", "x"],
        ["compile", "--json"],
        ["bench", "--json", "info", "--config"],  # option without its value
    ],
)
def test_json_usage_errors_import_nothing_heavy(tmp_path: Path, argv: list[str]) -> None:
    r = _probe(argv, tmp_path)
    assert r["code"] == 2
    payload = _strict_json(r["stdout"])
    assert (
        payload["ok"] is False
        and payload["error"] == "UsageError"
        and "--help" in payload["message"]
    )
    assert r["heavy"] == []


def test_usage_error_without_json_imports_nothing_heavy(tmp_path: Path) -> None:
    r = _probe(["run"], tmp_path)
    assert r["code"] == 2 and r["stdout"] == ""
    assert "usage: lab4f run" in r["stderr"] and "--checkpoint" in r["stderr"]
    assert r["heavy"] == []


def test_choices_and_defaults_spelled_out_for_the_parser_agree_with_their_sources() -> None:
    """lab4f.commands copies them so that building the parser imports no torch: the copies must not drift."""
    from lab4f import commands
    from lab4f.detection import DETECTION_MODELS
    from lab4f.models import KINDS
    from lab4f.reproduce import DEFAULT_EPOCHS
    from lab4f.segmentation.data import SCENE_KINDS, SEG_DATASETS
    from lab4f.segmentation.reproduce import SegReproduceConfig
    from lab4f.segmentation.train import SegTrainConfig
    from lab4f.training import TrainConfig

    assert commands.DETECTION_MODELS == DETECTION_MODELS
    assert commands.KINDS == KINDS
    assert commands.SCENE_KINDS == SCENE_KINDS
    assert commands.SEG_DATASETS == SEG_DATASETS
    assert commands.REPRODUCE_EPOCHS == DEFAULT_EPOCHS
    for copy, config in (
        (commands.TRAIN_DEFAULTS, TrainConfig()),
        (commands.SEG_DATA_DEFAULTS, SegReproduceConfig()),
        (commands.SEG_TRAIN_DEFAULTS, SegTrainConfig()),
    ):
        differ = {
            k: (v, getattr(config, k)) for k, v in vars(copy).items() if getattr(config, k) != v
        }
        assert not differ, (
            f"lab4f.commands' defaults differ from {type(config).__name__}'s: {differ}"
        )
