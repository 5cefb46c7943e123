"""Checkpoints: plain metadata loadable with weights_only, round trip, clear errors on mismatch or damage."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import torch

import lab4f
from lab4f import __version__
from lab4f.checkpoint import load_checkpoint, load_state, make_metadata, save_checkpoint
from lab4f.cli import main
from lab4f.errors import CheckpointError
from lab4f.models import ModelConfig, build_model

CFG = ModelConfig(kind="teacher", image_size=8, widths=(4, 8), hidden=(16,))


@pytest.fixture()
def ckpt(tmp_path: Path) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = build_model(CFG).eval()
    meta = make_metadata(
        CFG,
        dataset={"name": "digits8", "split_seed": 0, "image_size": [8, 8]},
        seed=5,
        metrics={"test_accuracy": 0.5},
    )
    return save_checkpoint(tmp_path / "sub" / "m.pt", model, meta), model


def repo_head() -> str | None:
    """HEAD of the git checkout holding the lab4f package, read with `git rev-parse` from the repository root
    (independently of lab4f.checkpoint.git_commit); None when lab4f is not run from a git checkout."""
    root = Path(lab4f.__file__).resolve().parent.parent
    try:
        out = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--verify", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except OSError:
        return None
    if out.returncode != 0:
        return None
    sha = out.stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}", sha), sha
    return sha


def _plain(obj: object) -> bool:
    if isinstance(obj, dict):
        return all(isinstance(k, str) and _plain(v) for k, v in obj.items())
    if isinstance(obj, list | tuple):
        return all(_plain(v) for v in obj)
    return obj is None or isinstance(obj, str | int | float | bool)


def test_round_trip_rebuilds_the_same_model(ckpt) -> None:
    path, model = ckpt
    loaded, cfg, meta = load_checkpoint(path)
    assert cfg == CFG and not loaded.training
    x = torch.rand(3, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    assert meta["kind"] == "teacher" and meta["seed"] == 5 and meta["lab4f_version"] == __version__
    assert meta["dataset"] == {"name": "digits8", "split_seed": 0, "image_size": [8, 8]}
    assert meta["model_config"] == CFG.to_dict()
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", meta["created"])
    assert (
        meta["git_commit"] == repo_head()
    )  # the commit of the tree lab4f runs from, asked of git directly
    assert _plain(meta)
    raw = torch.load(path, weights_only=True)  # the safe loader accepts the whole file
    assert raw["format"] == "lab4f-checkpoint" and set(raw["state_dict"]) == set(model.state_dict())
    assert not list(path.parent.glob(".*tmp*"))  # atomic write leaves no temp file


def test_wrong_architecture_names_keys_shapes_and_config_fields(ckpt) -> None:
    path, _ = ckpt
    wider = ModelConfig(kind="teacher", image_size=8, widths=(6, 8), hidden=(16,))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model_cfg=wider)
    msg = str(err.value)
    assert "front.0.weight: model (6, 1, 3, 3) vs checkpoint (4, 1, 3, 3)" in msg
    assert "front.2.weight: model (8, 6, 3, 3) vs checkpoint (8, 4, 3, 3)" in msg
    assert "widths: model [6, 8] vs checkpoint [4, 8]" in msg
    assert str(path) in msg


def test_teacher_weights_into_student_lists_missing_and_unexpected_keys(ckpt) -> None:
    path, _ = ckpt
    student_cfg = ModelConfig(kind="student", image_size=8, widths=(4, 8), hidden=(16,))
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path, model_cfg=student_cfg)
    msg = str(err.value)
    assert "missing keys: layers.0, layers.1." in msg
    assert "unexpected keys: front.0.bias, front.0.weight, front.2.bias, front.2.weight." in msg
    assert "kind: model 'student' vs checkpoint 'teacher'" in msg


def test_load_state_accepts_a_matching_state() -> None:
    torch.manual_seed(1)
    a, b = build_model(CFG), build_model(CFG)
    load_state(b, a.state_dict())
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_missing_and_corrupt_files_raise_checkpoint_error_naming_the_file(
    ckpt, tmp_path: Path
) -> None:
    path, _ = ckpt
    with pytest.raises(CheckpointError, match=r"nope\.pt not found"):
        load_checkpoint(tmp_path / "nope.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"this is not a checkpoint")
    with pytest.raises(CheckpointError, match=r"garbage\.pt cannot be read"):
        load_checkpoint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt cannot be read"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match=r"foreign\.pt is not a lab4f checkpoint"):
        load_checkpoint(foreign)


def test_train_then_evaluate_cli(tmp_path: Path, capsys) -> None:
    out = tmp_path / "t.pt"
    args = [
        "train",
        "--dataset",
        "digits8",
        "--limit",
        "600",
        "--epochs",
        "3",
        "--lr",
        "0.05",
        "--widths",
        "4,8",
        "--seed",
        "1",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    assert main(args) == 0
    trained = json.loads(capsys.readouterr().out)
    assert trained["ok"] and trained["epochs_completed"] == 3 and len(trained["history"]) == 3
    assert main(["evaluate", str(out), "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    assert (
        ev["dataset"] == "digits8" and ev["split"] == "test" and ev["n"] == 359
    )  # full test split
    assert ev["accuracy"] == pytest.approx(
        trained["test_accuracy"], abs=1e-12
    )  # same split, same weights
    assert 0.6 < ev["accuracy"] <= 1.0 and len(ev["per_class_accuracy"]) == 10
    assert main(["evaluate", str(tmp_path / "missing.pt"), "--json"]) == 2
    err = json.loads(capsys.readouterr().out)
    assert err["error"] == "CheckpointError" and "missing.pt" in err["message"]


class _Payload:
    """Pickles to a call of ``os.mkdir(marker)``: unpickling it with a full unpickler creates the marker folder."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # noqa: ANN204
        return (os.mkdir, (str(self.marker),))


def test_a_checkpoint_carrying_a_pickled_payload_is_refused_without_running_it(
    ckpt, tmp_path: Path
) -> None:
    path, model = ckpt
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    # a well-formed lab4f checkpoint in every other respect, with a code-running object in its metadata
    payload = torch.load(path, weights_only=True)
    payload["metadata"]["note"] = _Payload(marker)
    torch.save(payload, evil)
    # the payload is live: a full (unsafe) unpickler runs it — proof that the refusal below is what protects
    control = tmp_path / "control"
    torch.save({"x": _Payload(control)}, tmp_path / "control.pt")
    torch.load(tmp_path / "control.pt", weights_only=False)
    assert control.is_dir()

    with pytest.raises(
        CheckpointError, match=r"evil\.pt cannot be read.*not a lab4f checkpoint"
    ) as err:
        load_checkpoint(evil)
    assert not marker.exists()  # the payload did not run
    assert "retrain or restore it from a backup" in str(err.value)  # says what to do
    # and the same file without the payload loads, so it is the payload that is refused
    del payload["metadata"]["note"]
    torch.save(payload, evil)
    loaded, _, _ = load_checkpoint(evil)
    x = torch.rand(2, 1, 8, 8)
    assert torch.equal(loaded(x), model.eval()(x))
