"""Records saved at the same second by concurrent writers never overwrite each other: the final name is taken
exclusively (a hard link that fails if the name exists), never checked first and renamed over later."""

from __future__ import annotations

import errno
import os
import threading
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from lab4f.calibration import CalibrationRecord, StepResult, list_records
from lab4f.calibration import record as record_module
from lab4f.errors import CalibrationError
from lab4f.storage import ExistsError, atomic_h5, atomic_write, publish

SECOND = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)


def _record(i: int) -> CalibrationRecord:
    step = StepResult(
        "camera", {"writer": float(i)}, {"dark": np.full((4, 4), i, np.float32)}, {"writer": i}
    )
    return CalibrationRecord(bench_info={"name": f"writer {i}"}, steps={"camera": step})


def test_writers_at_the_same_second_each_keep_their_record(tmp_path: Path, monkeypatch) -> None:
    """Six threads are all inside the write (a slow disk) before any finishes: each had a free name in view."""
    n = 6
    barrier = threading.Barrier(n, timeout=30)
    inner = record_module.write_json_attr

    def slow_disk(group, name, value):  # every writer has started its file before any publishes it
        if name == "bench_info":
            barrier.wait()
        return inner(group, name, value)

    monkeypatch.setattr(record_module, "write_json_attr", slow_disk)
    paths: list[Path | BaseException] = [None] * n  # type: ignore[list-item]

    def save(i: int) -> None:
        try:
            paths[i] = _record(i).save_new(tmp_path, when=SECOND)
        except BaseException as exc:  # reported below
            paths[i] = exc

    threads = [threading.Thread(target=save, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert all(isinstance(p, Path) for p in paths), paths
    assert len(set(paths)) == n  # every writer reported its own file
    assert sorted(p.name for p in paths) == sorted(
        ["cal-20300102-030405.h5"] + [f"cal-20300102-030405-{k}.h5" for k in range(1, n)]
    )
    assert len(list_records(tmp_path)) == n  # none lost
    for i, p in enumerate(paths):
        assert (
            CalibrationRecord.load(p).bench_info["name"] == f"writer {i}"
        )  # and none holds another's data
    assert not [
        p for p in os.listdir(tmp_path) if p.endswith(".tmp")
    ]  # no temporary file left behind


def test_save_to_a_taken_name_is_refused_even_when_taken_during_the_write(tmp_path: Path) -> None:
    target = tmp_path / "cal-20300102-030405.h5"
    _record(0).save(target)
    with pytest.raises(CalibrationError, match="never overwritten"):
        _record(1).save(target)
    # the name is taken by another writer after the check: the exclusive link still refuses, nothing is replaced
    late = tmp_path / "late.h5"
    with pytest.raises(ExistsError), atomic_h5(late, "calibration_record", 1, overwrite=False):
        _record(2).save(late)
    assert CalibrationRecord.load(late).bench_info["name"] == "writer 2"
    assert CalibrationRecord.load(target).bench_info["name"] == "writer 0"
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_publish_without_hard_links_still_refuses_to_replace(tmp_path: Path, monkeypatch) -> None:
    def no_links(src, dst):
        raise OSError(errno.EPERM, "hard links not supported")

    monkeypatch.setattr(os, "link", no_links)
    first = tmp_path / "run.h5"
    for i in range(3):
        with atomic_write(first, overwrite=False, unique=True) as t:
            t.tmp.write_text(f"run {i}")
        assert t.path is not None and t.path.read_text() == f"run {i}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run-1.h5", "run-2.h5", "run.h5"]
    tmp = tmp_path / "x.tmp"
    tmp.write_text("x")
    with pytest.raises(ExistsError):
        publish(tmp, first, overwrite=False)
    assert first.read_text() == "run 0"
