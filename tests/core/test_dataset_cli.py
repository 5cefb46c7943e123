"""Your own data through the CLI: train on --dataset folder:PATH, its class names in the checkpoint and in
`lab4f run --images` labels, and the warnings (logged, and in --json) when the data differ from what the checkpoint
was trained and distilled on."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lab4f.cli import main

CLASSES = ("cat", "dog", "owl")


def strict(text: str) -> dict:
    def refuse(name: str) -> None:
        raise ValueError(f"not strict JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def make_set(root: Path, per_class: int = 12) -> Path:
    """28x28 16-bit images, one bright band per class (row band for cat, column band for dog, a square for owl)."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(CLASSES):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            a = rng.integers(0, 8000, (28, 28)).astype(np.uint16)
            if c == 0:
                a[10:18, :] += 50000
            elif c == 1:
                a[:, 10:18] += 50000
            else:
                a[6:22, 6:22] += 30000
            Image.fromarray(a).save(root / name / f"{i:02d}.png")
    return root


def cli(capsys, *argv: str) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    return code, strict(capsys.readouterr().out)


TRAIN = (
    "--widths",
    "4,8",
    "--epochs",
    "1",
    "--batch-size",
    "16",
    "--threads",
    "1",
    "--no-progress",
)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A folder set, and a teacher and a student (incoherent) trained on it through `lab4f train`."""
    root = tmp_path_factory.mktemp("own")
    data = make_set(root / "set")
    teacher, student = root / "teacher.pt", root / "student.pt"
    spec = f"folder:{data}"
    assert (
        main(
            [
                "train",
                "--kind",
                "teacher",
                "--dataset",
                spec,
                *TRAIN,
                "--out",
                str(teacher),
                "--json",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "train",
                "--kind",
                "student",
                "--teacher",
                str(teacher),
                "--dataset",
                spec,
                *TRAIN,
                "--detection",
                "incoherent",
                "--out",
                str(student),
                "--json",
            ]
        )
        == 0
    )
    return {"data": data, "teacher": teacher, "student": student, "root": root}


def test_the_checkpoint_records_the_names_and_the_data_identity(trained) -> None:
    from lab4f.checkpoint import read_checkpoint
    from lab4f.data import load_dataset

    meta = read_checkpoint(trained["student"])["metadata"]
    ds = meta["dataset"]
    assert ds["name"] == f"folder:{trained['data'].resolve()}" and ds["class_names"] == list(
        CLASSES
    )
    now = load_dataset(f"folder:{trained['data']}")
    assert (
        ds["identity"]["data"] == now.identity["data"]
        and ds["identity"]["split"] == now.identity["split"]
    )
    assert ds["identity"]["teacher"]["data"] == now.identity["data"]  # what it was distilled on
    assert meta["model_config"]["num_classes"] == 3


def test_evaluate_is_quiet_on_the_same_data_and_warns_on_other_data(
    trained, tmp_path: Path, capsys, caplog
) -> None:
    code, out = cli(capsys, "evaluate", str(trained["student"]))
    assert code == 0 and out["ok"] and "data_warnings" not in out and out["n"] == 6
    copy = tmp_path / "set"
    shutil.copytree(trained["data"], copy)
    Image.fromarray(np.full((28, 28), 60000, np.uint16)).save(copy / "owl" / "extra.png")
    with caplog.at_level(logging.WARNING, logger="lab4f.data"):
        code, out = cli(capsys, "evaluate", str(trained["student"]), "--dataset", f"folder:{copy}")
    assert code == 0 and out["ok"]
    # one warning: its teacher was trained on exactly its data, which says nothing more
    assert (
        len(out["data_warnings"]) == 1
        and "was trained on other data than folder:" in out["data_warnings"][0]
    )
    assert (
        "then 36 images, data " in out["data_warnings"][0]
        and "now 37 images, data " in out["data_warnings"][0]
    )
    assert "was trained on other data" in caplog.text  # a logging warning too
    code, out = cli(capsys, "evaluate", str(trained["student"]), "--split-seed", "4")
    assert code == 0 and "split another way" in out["data_warnings"][0]


def test_student_training_warns_when_the_teacher_saw_other_data(
    trained, tmp_path: Path, capsys
) -> None:
    data = tmp_path / "set"
    shutil.copytree(trained["data"], data)
    teacher = tmp_path / "t.pt"
    code, out = cli(
        capsys,
        "train",
        "--kind",
        "teacher",
        "--dataset",
        f"folder:{data}",
        *TRAIN,
        "--out",
        str(teacher),
    )
    assert code == 0 and "data_warnings" not in out
    for i in range(3):  # the folder changes between teacher and student
        Image.fromarray(np.full((28, 28), 20000 * i, np.uint16)).save(data / "cat" / f"new{i}.png")
    code, out = cli(
        capsys,
        "train",
        "--kind",
        "student",
        "--teacher",
        str(teacher),
        "--dataset",
        f"folder:{data}",
        *TRAIN,
        "--out",
        str(tmp_path / "s.pt"),
    )
    assert code == 0 and len(out["data_warnings"]) == 1
    assert (
        f"teacher {teacher} was trained on other data than this student: 36 images"
        in out["data_warnings"][0]
    )
    assert "the student's are 39 images" in out["data_warnings"][0]


def test_run_images_labels_by_the_checkpoints_class_names(trained, tmp_path: Path, capsys) -> None:
    folder = tmp_path / "imgs"
    (folder / "owl").mkdir(parents=True)
    (folder / "bat").mkdir()
    for i in range(2):
        shutil.copy(trained["data"] / "owl" / f"{i:02d}.png", folder / "owl" / f"{i}.png")
    shutil.copy(trained["data"] / "cat" / "00.png", folder / "bat" / "x.png")
    code, out = cli(
        capsys,
        "run",
        "--checkpoint",
        str(trained["student"]),
        "--images",
        str(folder),
        "--out",
        str(tmp_path / "r.h5"),
    )
    assert (
        code == 0 and out["n"] == 3 and out["labelled"] == 2
    )  # owl is class 2; bat is no class of it
    import h5py

    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert sorted(f["labels"][()].tolist()) == [-1, 2, 2]


def test_run_on_its_data_set_warns_when_the_folder_changed(trained, tmp_path: Path, capsys) -> None:
    code, out = cli(
        capsys,
        "run",
        "--checkpoint",
        str(trained["student"]),
        "--limit",
        "4",
        "--out",
        str(tmp_path / "a.h5"),
    )
    assert code == 0 and "data_warnings" not in out and out["n"] == 4
    copy = tmp_path / "set"
    shutil.copytree(trained["data"], copy)
    (copy / "dog" / "03.png").unlink()
    code, out = cli(
        capsys,
        "run",
        "--checkpoint",
        str(trained["student"]),
        "--dataset",
        f"folder:{copy}",
        "--limit",
        "4",
        "--out",
        str(tmp_path / "b.h5"),
    )
    assert code == 0 and any("was trained on other data" in w for w in out["data_warnings"])


def test_a_moved_folder_is_the_same_data_for_the_teacher(trained, tmp_path: Path, capsys) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(trained["data"], moved)  # the teacher's images and split, under another path
    code, out = cli(
        capsys,
        "train",
        "--kind",
        "student",
        "--teacher",
        str(trained["teacher"]),
        "--dataset",
        f"folder:{moved}",
        *TRAIN,
        "--out",
        str(tmp_path / "s.pt"),
    )
    assert code == 0 and "data_warnings" not in out
    (moved / "cat" / "00.png").unlink()  # other data under another name: refused, as before
    code, out = cli(
        capsys,
        "train",
        "--kind",
        "student",
        "--teacher",
        str(trained["teacher"]),
        "--dataset",
        f"folder:{moved}",
        *TRAIN,
        "--out",
        str(tmp_path / "s2.pt"),
    )
    assert (
        code == 2
        and out["error"] == "ConfigError"
        and "Train the teacher on the same dataset" in out["message"]
    )
