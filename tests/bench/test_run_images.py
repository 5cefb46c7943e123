"""`lab4f run --images FOLDER`: labels come from the checkpoint's class names, unlabelled images score agreement."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from lab4f.bench.run import RunResult
from lab4f.bench.stream import RunSummary
from lab4f.cli import main


def _write(folder, images: torch.Tensor) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(images):
        Image.fromarray((img[0].clamp(0, 1).numpy() * 255).round().astype(np.uint8)).save(
            folder / f"{i:03d}.png"
        )


def test_run_images_labels_by_the_checkpoints_class_names(
    trained_checkpoints, mnist_splits, tmp_path, capsys
):
    x, y = mnist_splits.test.tensors[:2]
    folder = tmp_path / "imgs"
    _write(folder / "3", x[y == 3][:12])
    _write(folder / "7", x[y == 7][:12])
    _write(folder / "misc", x[y == 1][:4])  # not a class name: run unlabelled
    _write(folder, x[y == 0][:4])  # loose images: unlabelled
    out = tmp_path / "run.h5"
    code = main(
        [
            "run",
            "--checkpoint",
            str(trained_checkpoints["student"]),
            "--images",
            str(folder),
            "--out",
            str(out),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    m = json.loads(captured.out)
    assert m["n"] == 32 and m["labelled"] == 24
    # with labels 3 and 7 (not the folders' sorted indices 0 and 1) the student scores like it does on MNIST;
    # (the optical score is not: this run has no calibration record, so tiles are cut at nominal positions)
    assert m["digital_accuracy"] > 0.8 and m["optical_accuracy"] is not None
    assert "misc" in captured.err and "unlabelled" in captured.err
    import h5py

    with h5py.File(out) as f:
        labels = np.asarray(f["labels"])
    assert sorted(set(labels.tolist())) == [-1, 3, 7] and (labels == -1).sum() == 8


def test_accuracy_is_over_labelled_inputs_and_none_without_labels() -> None:
    probs = np.eye(3)[[0, 1, 2, 2]]
    summary = RunSummary.__new__(RunSummary)
    r = RunResult(
        np.arange(4), np.array([0, -1, 2, 1]), probs, probs, summary, np.zeros(0), np.zeros(0)
    )
    assert r.optical_accuracy == 2 / 3 and r.agreement == 1.0
    r = RunResult(np.arange(4), np.full(4, -1), probs, probs, summary, np.zeros(0), np.zeros(0))
    assert r.optical_accuracy is None and r.digital_accuracy is None


def test_run_back_refuses_a_corrupt_or_foreign_back_end(trained_checkpoints, tmp_path, capsys):
    ck = ["run", "--checkpoint", str(trained_checkpoints["student"]), "--limit", "4", "--json"]
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    foreign = tmp_path / "foreign.pt"
    torch.save({"0.weight": torch.zeros(3)}, foreign)
    for path, says in (
        (garbage, "is not a back-end state dict"),
        (foreign, "does not hold this student's back end"),
        (tmp_path / "missing.pt", "does not exist"),
    ):
        code = main([*ck, "--back", str(path), "--out", str(tmp_path / "r.h5")])
        out = json.loads(capsys.readouterr().out)
        assert (
            code != 0
            and out["ok"] is False
            and out["error"] == "CheckpointError"
            and says in out["message"]
        )
    assert not (tmp_path / "r.h5").exists()
