"""`lab4f run` and `lab4f finetune` never overwrite a file silently: the default name is new each time
(``runs/run-YYYYmmdd-HHMMSS[-N].h5``), an existing --out is refused unless --overwrite, and fine-tuning writes to a
temporary name of its own process. Fast: an untrained tiny student, a few inputs."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch

from lab4f.cli import main


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


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_runs_without_out_each_get_a_new_file(
    student: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    written = []
    for limit in (4, 6, 5):  # within a second or two: the same timestamp gets -1, -2
        assert main(["run", "--checkpoint", str(student), "--limit", str(limit), "--json"]) == 0
        written.append(Path(_json(capsys)["run_file"]))
    assert len(set(written)) == 3
    assert all(p.parent == Path("runs") and p.name.startswith("run-") for p in written)
    for p, limit in zip(written, (4, 6, 5), strict=True):
        with h5py.File(p) as f:  # every run's data is still there
            assert len(f["labels"]) == limit
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(p.name for p in written)


def test_an_existing_out_is_refused_unless_overwrite(student: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine.h5"
    run = ["run", "--checkpoint", str(student), "--out", str(out), "--json"]
    assert main([*run, "--limit", "4"]) == 0
    _json(capsys)
    assert main([*run, "--limit", "6"]) == 2
    payload = _json(capsys)
    assert (
        payload["error"] == "ConfigError"
        and "--overwrite" in payload["message"]
        and str(out) in payload["message"]
    )
    with h5py.File(out) as f:
        assert len(f["labels"]) == 4  # the first run is intact
    assert main([*run, "--limit", "6", "--overwrite"]) == 0
    assert _json(capsys)["run_file"] == str(out)
    with h5py.File(out) as f:
        assert len(f["labels"]) == 6
    assert [p.name for p in tmp_path.iterdir()] == ["mine.h5"]  # no temporary file left


def test_finetune_output_is_never_overwritten_and_its_temporary_name_is_its_own(
    student: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "back.pt"
    # another fine-tuning writing the same --out has its temporary file here (lab4f's old fixed name)
    (tmp_path / ".back.pt.tmp").write_bytes(b"another process is writing this")
    tune = [
        "finetune",
        "--checkpoint",
        str(student),
        "--train-images",
        "16",
        "--limit",
        "16",
        "--epochs",
        "1",
        "--json",
    ]
    assert main([*tune, "--out", str(out)]) == 0
    assert _json(capsys)["back_end"] == str(out)
    assert (tmp_path / ".back.pt.tmp").read_bytes() == b"another process is writing this"
    first = out.read_bytes()
    assert main([*tune, "--out", str(out)]) == 2
    assert "--overwrite" in _json(capsys)["message"] and out.read_bytes() == first
    assert main([*tune, "--out", str(out), "--overwrite"]) == 0
    _json(capsys)
    assert main(tune) == 0  # no --out: a new timestamped name
    default = Path(_json(capsys)["back_end"])
    assert (
        default.parent == Path("runs")
        and default.name.startswith("finetuned_back-")
        and default.suffix == ".pt"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [".back.pt.tmp", "back.pt", "runs"]
