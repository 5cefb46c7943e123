"""The fault campaign, driven through the `lab4f` command line in subprocesses as a user or CI would: kill -9
during a calibration step and inside the record write, device faults armed by LAB4F_FAULTS during run, calibrate
and finetune, truncated record / program / checkpoint, concurrent writers. Each asserts the exit code, that the
message names the device (or the file) and the fix, and that no data is lost: the partial run file is readable,
the previous record loadable and unchanged, no record overwritten."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import pytest

from lab4f.calibration import CalibrationRecord, latest_record, list_records
from lab4f.storage import file_sha256

pytestmark = pytest.mark.slow  # ~20 lab4f processes

LAB4F = [sys.executable, "-m", "lab4f.cli"]
#: `lab4f ARGV` in a process that SIGKILLs itself when the record's file is complete but not yet named
KILL_IN_WRITE = (
    "import os, signal, sys; import lab4f.storage as s; "
    "s.publish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
    "from lab4f.cli import main; main(sys.argv[1:])"
)


def lab4f(
    *argv: str, faults: str | None = None, cwd: Path | None = None, timeout: float = 300
) -> tuple[int, dict]:
    env = {k: v for k, v in os.environ.items() if k != "LAB4F_FAULTS"}
    if faults is not None:
        env["LAB4F_FAULTS"] = faults
    proc = subprocess.run(
        [*LAB4F, *argv, "--json"], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd
    )
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, (proc.stdout, proc.stderr[-2000:])
    return proc.returncode, json.loads(
        lines[0], parse_constant=lambda c: pytest.fail(f"{c} in JSON")
    )


def snapshot(folder: Path) -> dict[str, str]:
    """Every record's name and content hash: what must not change."""
    return {p.name: file_sha256(p) for p in list_records(folder)}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """A tiny student checkpoint, its compiled program and a folder with one camera record."""
    import torch

    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    root = tmp_path_factory.mktemp("campaign")
    cfg = ModelConfig(kind="student", widths=(4, 8), detection="incoherent")
    torch.manual_seed(0)
    student = save_checkpoint(
        root / "student.pt",
        build_model(cfg),
        make_metadata(cfg, dataset={"name": "mnist5k", "split_seed": 0}),
    )
    code, _ = lab4f("compile", str(student), "--out", str(root / "program.h5"))
    assert code == 0
    code, _ = lab4f("calibrate", "camera", "--out", str(root / "records"))
    assert code == 0
    return {
        "root": root,
        "student": student,
        "program": root / "program.h5",
        "records": root / "records",
    }


def test_kill_9_during_a_calibration_step_leaves_every_record_as_it_was(files, tmp_path) -> None:
    import shutil

    records = tmp_path / "records"
    shutil.copytree(files["records"], records)
    before = snapshot(records)
    env = {k: v for k, v in os.environ.items() if k != "LAB4F_FAULTS"}
    proc = subprocess.Popen(
        [*LAB4F, "calibrate", "all", "--out", str(records)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
    )
    seen = bytearray()

    def read() -> None:
        while chunk := proc.stderr.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 240
    while (
        b"fourier:" not in seen and proc.poll() is None and time.monotonic() < deadline
    ):  # a step in the middle
        time.sleep(0.05)
    assert proc.poll() is None, "the calibration ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    reader.join(10)
    assert snapshot(records) == before  # nothing added, nothing overwritten
    assert latest_record(records).path.name == sorted(before)[-1]


def test_kill_9_inside_the_record_write_loses_nothing_and_the_record_is_recovered(
    files, tmp_path
) -> None:
    import shutil

    records = tmp_path / "records"
    shutil.copytree(files["records"], records)
    before = snapshot(records)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_IN_WRITE, "calibrate", "camera", "--out", str(records)],
        capture_output=True,
        timeout=300,
    )
    assert proc.returncode == -signal.SIGKILL
    assert snapshot(records) == before  # the previous record is still the latest, unchanged
    CalibrationRecord.load(latest_record(records).path)
    code, shown = lab4f("calibration", "show", str(records), "--plots", str(tmp_path / "plots"))
    assert code == 0 and len(shown["leftovers"]) == 1
    leftover = shown["leftovers"][0]
    assert leftover["complete"] and not leftover["writer_alive"] and leftover["size_bytes"] > 0
    code, done = lab4f("calibration", "recover", str(records))
    assert code == 0 and len(done["recovered"]) == 1
    after = snapshot(records)
    assert {k: v for k, v in after.items() if k in before} == before and len(after) == len(
        before
    ) + 1
    assert sorted(CalibrationRecord.load(latest_record(records).path).steps) == ["camera"]


def test_device_faults_during_run_calibrate_and_finetune_exit_3_naming_the_device(
    files, tmp_path
) -> None:
    ck = ["--checkpoint", str(files["student"])]
    out = tmp_path / "run.h5"
    code, m = lab4f(
        "run",
        *ck,
        "--limit",
        "60",
        "--out",
        str(out),
        faults="camera.disconnect_after_n=30,slm.slm_write_failure_after_n=2",
    )
    assert code == 3 and m["ok"] is False and m["stop_reason"] == "device_error"
    assert (
        m["error_role"] == "camera"
        and m["error_device"] == "sim-4f-camera"
        and m["run_file"] == str(out)
    )
    assert (
        "sim-4f-camera" in m["message"] and "reconnect" in m["message"]
    )  # the device and what to do
    with h5py.File(out) as f:  # the partial run file is readable and holds what was processed
        assert f.attrs["kind"] == "run" and len(f["labels"]) == m["processed"] == 30
    code, m = lab4f(
        "run",
        *ck,
        "--limit",
        "10",
        "--out",
        str(tmp_path / "slm.h5"),
        faults="slm.slm_write_failure_after_n=0",
    )
    assert (
        code == 3 and m["error_role"] == "slm" and "power-cycle the SLM controller" in m["message"]
    )
    records = tmp_path / "records"
    import shutil

    shutil.copytree(files["records"], records)
    before = snapshot(records)
    code, m = lab4f(
        "calibrate", "camera", "--out", str(records), faults="camera.disconnect_after_n=3"
    )
    assert code == 3 and m["error"] == "DeviceDisconnected" and m["error_role"] == "camera"
    assert "nothing was saved" in m["message"] and snapshot(records) == before
    code, m = lab4f(
        "calibrate", "camera", "--out", str(records), faults="shutter.frame_timeout_after_n=2"
    )
    assert (
        code == 3 and m["error_role"] == "shutter" and "timeout_ms" in m["message"]
    )  # an instrument error
    assert snapshot(records) == before
    back = tmp_path / "back.pt"
    code, m = lab4f(
        "finetune",
        *ck,
        "--train-images",
        "16",
        "--limit",
        "16",
        "--epochs",
        "1",
        "--out",
        str(back),
        faults="display.disconnect_after_n=5",
    )
    assert code == 3 and m["error_role"] == "display" and "nothing was saved" in m["message"]
    assert not back.exists()


def test_truncated_files_are_typed_errors_naming_the_fix(files, tmp_path) -> None:
    def truncated(src: Path, name: str, keep: int) -> Path:
        dst = tmp_path / name
        dst.write_bytes(src.read_bytes()[:keep])
        return dst

    record = truncated(list_records(files["records"])[0], "cal-20300101-000000.h5", 5000)
    code, m = lab4f("calibration", "show", str(record))
    assert code == 2 and m["error"] == "CalibrationError" and str(record) in m["message"]
    assert "lab4f calibrate all" in m["message"]
    program = truncated(files["program"], "program.h5", 3000)
    code, m = lab4f(
        "run",
        "--checkpoint",
        str(files["student"]),
        "--program",
        str(program),
        "--limit",
        "3",
        "--out",
        str(tmp_path / "r.h5"),
    )
    assert code == 2 and m["error"] == "StorageError" and "lab4f compile" in m["message"]
    checkpoint = truncated(files["student"], "student.pt", 2000)
    code, m = lab4f(
        "run", "--checkpoint", str(checkpoint), "--limit", "3", "--out", str(tmp_path / "r.h5")
    )
    assert code == 2 and m["error"] == "CheckpointError" and str(checkpoint) in m["message"]
    assert "retrain or restore it" in m["message"]
    assert not (tmp_path / "r.h5").exists()


def test_concurrent_writers_lose_no_record_and_no_run(files, tmp_path) -> None:
    records = tmp_path / "records"
    env = {k: v for k, v in os.environ.items() if k != "LAB4F_FAULTS"}
    procs = [
        subprocess.Popen(
            [*LAB4F, "calibrate", "camera", "--out", str(records), "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    saved = []
    for p in procs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        saved.append(json.loads(out)["record"])
    assert len(set(saved)) == 3 and sorted(saved) == sorted(str(p) for p in list_records(records))
    for path in saved:
        CalibrationRecord.load(path)
    runs = [
        subprocess.Popen(
            [*LAB4F, "run", "--checkpoint", str(files["student"]), "--limit", "4", "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        for _ in range(2)
    ]
    written = []
    for p in runs:
        out, _ = p.communicate(timeout=300)
        assert p.returncode == 0
        written.append(json.loads(out)["run_file"])
    assert len(set(written)) == 2
    for path in written:
        with h5py.File(tmp_path / path) as f:
            assert len(f["labels"]) == 4
