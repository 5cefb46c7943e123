"""A process killed (SIGKILL) inside a record write leaves a hidden temporary file; `lab4f calibration show` and
`lab4f bench info` report it (size, complete or not) and `lab4f calibration recover` names the complete ones and,
with --remove, deletes the incomplete ones."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lab4f.calibration import CalibrationRecord, latest_record, list_records
from lab4f.cli import main

#: saves one record into FOLDER, and SIGKILLs itself at WHERE: "publish" (the file is complete, not yet named),
#: "step_names" (inside the write, before the list of steps), "unlink" (named, the temporary name not yet removed)
KILLED_SAVE = r"""
import os, signal, sys
from datetime import datetime, UTC
import numpy as np
import lab4f.storage as storage
from lab4f.calibration import record as record_module
from lab4f.calibration import CalibrationRecord, StepResult

folder, where, hour = sys.argv[1], sys.argv[2], int(sys.argv[3])
def die(*a, **k):
    os.kill(os.getpid(), signal.SIGKILL)
if where == "publish":
    storage.publish = die
elif where == "unlink":
    os.unlink = die
else:
    inner = record_module.write_json_attr
    record_module.write_json_attr = lambda g, name, v: die() if name == where else inner(g, name, v)
steps = {n: StepResult(n, {"q": 1.0}, {"a": np.random.default_rng(0).random((64, 64))}, {"where": where})
         for n in ("camera", "fourier")}
CalibrationRecord({"name": where}, steps).save_new(folder, when=datetime(2030, 1, 1, hour, tzinfo=UTC))
"""


def _killed_save(folder: Path, where: str, hour: int) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_SAVE, str(folder), where, str(hour)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr


def _json(capsys) -> dict:
    out = capsys.readouterr().out
    return json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} in JSON"))


@pytest.fixture(scope="module")
def killed(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("records")
    _killed_save(folder, "publish", 1)  # complete, never named
    _killed_save(folder, "step_names", 2)  # incomplete
    _killed_save(
        folder, "unlink", 3
    )  # named cal-20300101-030000.h5, and a second (temporary) name left
    return folder


def test_leftovers_are_reported_by_calibration_show_and_bench_info(
    killed: Path, tmp_path: Path, capsys
) -> None:
    assert [p.name for p in list_records(killed)] == ["cal-20300101-030000.h5"]
    assert (
        main(["calibration", "show", str(killed), "--plots", str(tmp_path / "plots"), "--json"])
        == 0
    )
    shown = _json(capsys)
    assert shown["path"].endswith("cal-20300101-030000.h5")
    by_time = {
        Path(item["path"]).name[len(".cal-20300101-") :][:2]: item for item in shown["leftovers"]
    }
    assert sorted(by_time) == ["01", "02", "03"]
    assert all(
        item["size_bytes"] > 10_000 and not item["writer_alive"] for item in shown["leftovers"]
    )
    assert by_time["01"]["complete"] and by_time["01"]["duplicate_of"] is None
    assert not by_time["02"]["complete"] and by_time["02"]["problem"]
    assert by_time["03"]["complete"] and by_time["03"]["duplicate_of"].endswith(
        "cal-20300101-030000.h5"
    )
    config = tmp_path / "bench.toml"
    config.write_text(f"calibration_dir = {json.dumps(str(killed))}\n")
    assert main(["bench", "info", "--config", str(config), "--json"]) == 0
    info = _json(capsys)
    assert info["calibration_dir"] == str(killed)
    assert [item["path"] for item in info["leftovers"]] == [
        item["path"] for item in shown["leftovers"]
    ]
    assert main(["bench", "info", "--config", str(config)]) == 0  # and in words, with what to do
    out = capsys.readouterr().out
    assert (
        "a complete record lab4f does not use yet" in out
        and "calibration recover" in out
        and "--remove" in out
    )


def test_recover_names_complete_ones_and_removes_incomplete_ones_only_when_asked(
    killed: Path, tmp_path: Path, capsys
) -> None:
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(
        killed, folder
    )  # (copying breaks the hard link: the duplicate is then a complete copy)
    for src in (
        killed.iterdir()
    ):  # restore the duplicate as a hard link of the record, as the kill left it
        if src.name.startswith(".cal-20300101-03"):
            (folder / src.name).unlink()
            (folder / src.name).hardlink_to(folder / "cal-20300101-030000.h5")
    assert main(["calibration", "recover", str(folder), "--json"]) == 0
    done = _json(capsys)
    assert [Path(r["to"]).name for r in done["recovered"]] == [
        "cal-20300101-010000.h5",
        "cal-20300101-030000.h5",
    ]
    assert [r["already_saved"] for r in done["recovered"]] == [False, True]
    assert (
        done["removed"] == [] and len(done["kept"]) == 1 and "--remove" in done["kept"][0]["reason"]
    )
    assert [p.name for p in list_records(folder)] == [
        "cal-20300101-010000.h5",
        "cal-20300101-030000.h5",
    ]
    assert CalibrationRecord.load(folder / "cal-20300101-010000.h5").bench_info == {
        "name": "publish"
    }
    assert (
        latest_record(folder).path.name == "cal-20300101-030000.h5"
    )  # sorted where it would have been saved
    assert main(["calibration", "recover", str(folder), "--remove", "--json"]) == 0
    done = _json(capsys)
    assert done["recovered"] == [] and len(done["removed"]) == 1 and done["kept"] == []
    assert sorted(p.name for p in folder.iterdir()) == [
        "cal-20300101-010000.h5",
        "cal-20300101-030000.h5",
    ]


def test_show_of_a_folder_with_only_a_complete_leftover_says_to_recover(
    tmp_path: Path, capsys
) -> None:
    _killed_save(tmp_path, "publish", 4)
    assert main(["calibration", "show", str(tmp_path), "--json"]) == 2
    msg = _json(capsys)["message"]
    assert (
        "1 complete record(s) left by an interrupted save" in msg
        and "lab4f calibration recover" in msg
    )
