"""A calibration process killed mid-run (SIGKILL: no cleanup runs) leaves the previous record as the latest one."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from lab4f.calibration import latest_record, list_records

RUN = "from lab4f.cli import main; raise SystemExit(main({argv!r}))"


def _cli(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", RUN.format(argv=argv)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_sigkill_mid_calibration_leaves_the_previous_record(tmp_path) -> None:
    out = tmp_path / "records"
    first = _cli(["calibrate", "camera", "--out", str(out), "--json"])
    assert first.wait(timeout=120) == 0, first.stderr.read()
    [before] = list_records(out)
    victim = _cli(["calibrate", "all", "--out", str(out), "--json"])
    time.sleep(6.0)  # imports and the first steps; `all` takes well over 10 s
    assert victim.poll() is None, "the calibration finished before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert list_records(out) == [before]
    assert latest_record(out).path == before and sorted(latest_record(out).steps) == ["camera"]
