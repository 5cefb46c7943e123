"""The data's identity (hashes of the images and of the split) and the warnings when data differ from what a
checkpoint was trained and distilled on."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from PIL import Image

from lab4f.data import load_dataset
from lab4f.data_identity import (
    check_teacher_data,
    collect_data_warnings,
    compare,
    slug,
    warn_if_data_differ,
)
from tests.core.test_dataset_own import make_folder


def meta_of(splits) -> dict:
    return {"dataset": splits.checkpoint_meta()}


def test_identity_follows_the_pixels_and_the_split_not_the_encoding(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 10, "b": 10})
    spec = f"folder:{tmp_path}"
    base = load_dataset(spec)
    assert load_dataset(spec).identity == base.identity
    assert (
        base.identity["sizes"] == {"train": 14, "val": 2, "test": 4}
        and base.identity["images"] == 20
    )
    # the same pixels saved another way (PNG compression, and a TIFF instead) are the same data
    p = tmp_path / "a" / "3.png"
    arr = np.asarray(Image.open(p))
    Image.fromarray(arr).save(p, compress_level=0)
    assert load_dataset(spec).identity == base.identity
    p.unlink()
    Image.fromarray(arr).save(p.with_suffix(".tif"))
    assert load_dataset(spec).identity == base.identity
    limited = load_dataset(spec, limit=3)
    assert limited.identity == base.identity and len(limited.train) == 3  # the split, not the cap
    reseeded = load_dataset(spec, split_seed=1)
    assert (
        reseeded.identity["data"] == base.identity["data"]
        and compare(base.identity, reseeded.identity) == "split"
    )
    assert compare(base.identity, load_dataset(spec, test_fraction=0.3).identity) == "split"
    Image.fromarray(arr[::-1].copy()).save(tmp_path / "a" / "new.png")
    assert compare(base.identity, load_dataset(spec).identity) == "data"
    assert compare(None, base.identity) is None and compare({}, base.identity) is None


def test_builtin_sets_have_an_identity_too() -> None:
    a, b = load_dataset("digits8"), load_dataset("digits8", split_seed=5)
    assert a.identity["images"] == 1797 and a.identity["duplicates"]["copies"] == 0
    assert compare(a.identity, b.identity) == "split"
    assert (
        a.checkpoint_meta()["identity"] == a.identity
        and a.checkpoint_meta()["class_names"][9] == "9"
    )


def test_warnings_for_other_data_another_split_its_teacher_and_class_names(
    tmp_path: Path, caplog
) -> None:
    make_folder(tmp_path, {"a": 10, "b": 10})
    spec = f"folder:{tmp_path}"
    trained = load_dataset(spec)
    assert warn_if_data_differ(meta_of(trained), load_dataset(spec), "s.pt") == []
    assert (
        warn_if_data_differ({"dataset": {"name": spec}}, trained, "old.pt") == []
    )  # nothing recorded: no check
    with (
        caplog.at_level(logging.WARNING, logger="lab4f.data"),
        collect_data_warnings() as collected,
    ):
        split = warn_if_data_differ(meta_of(trained), load_dataset(spec, split_seed=2), "s.pt")
    assert len(split) == 1 and "s.pt was trained on these images split another way" in split[0]
    assert "images it was trained on may be in this test split" in split[0]
    assert split[0] in caplog.text and collected == split
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "b" / "black.png")
    other = warn_if_data_differ(meta_of(trained), load_dataset(spec), "s.pt", split="val")
    assert len(other) == 1 and "s.pt was trained on other data than folder:" in other[0]
    assert "then 20 images, data " in other[0] and "now 21 images, data " in other[0]
    # a student distilled on a teacher's split: the student's own data check passes, the teacher's does not
    teacher = load_dataset(spec, split_seed=3)
    student = check_teacher_data(meta_of(teacher), load_dataset(spec), "t.pt")
    assert "teacher t.pt was trained on these images split another way" in student.warnings[-1]
    assert student.identity["teacher"] == teacher.identity
    run = warn_if_data_differ(meta_of(student), student, "s.pt")
    assert (
        len(run) == 1
        and "s.pt was distilled from a teacher trained on these images split another way" in run[0]
    )
    renamed = meta_of(trained)
    renamed["dataset"]["class_names"] = ["x", "y"]
    assert (
        "s.pt names its classes ['x', 'y'], these data ['a', 'b']"
        in warn_if_data_differ(renamed, trained, "s.pt")[0]
    )


def test_same_teacher_data_is_quiet_and_recorded(tmp_path: Path) -> None:
    make_folder(tmp_path, {"a": 6, "b": 6})
    teacher = load_dataset(f"folder:{tmp_path}")
    student = check_teacher_data(meta_of(teacher), load_dataset(f"folder:{tmp_path}"), "t.pt")
    assert (
        student.warnings == teacher.warnings
        and student.identity["teacher"]["data"] == teacher.identity["data"]
    )
    assert warn_if_data_differ(meta_of(student), load_dataset(f"folder:{tmp_path}"), "s.pt") == []


def test_slug_names_files_safely() -> None:
    assert slug("mnist5k") == "mnist5k"
    assert slug("folder:/data/my set/") == "folder-my_set" and slug("npz:x/y.npz") == "npz-y.npz"
