"""benchmarks/soak.py: a short soak on the realistic-timing bench accounts for every camera frame exactly and prints
strict JSON; its accounting flags a frame that does not add up. (Times and rates are the benchmark's figures, not
asserted here.)"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

SOAK = Path(__file__).resolve().parents[1] / "benchmarks" / "soak.py"


def _soak_module():
    spec = importlib.util.spec_from_file_location("soak_benchmark", SOAK)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _refuse(name: str) -> None:
    raise ValueError(f"not strict JSON: {name}")


def _consistent() -> dict[str, int]:
    return {
        "frames_delivered": 130,
        "paired": 40,
        "stale": 0,
        "unpaired": 0,
        "skipped": 88,
        "incomplete": 2,
        "acquired": 40,
        "processed": 38,
        "dropped_overflow": 0,
        "unprocessed": 2,
        "dropped_camera": 0,
        "shown": 43,
        "inputs": 40,
        "retried": 3,
        "exposed": 200,
        "frames_lost": 69,
        "frames_dropped": 1,
        "queued_delta": 0,
        "frames_incomplete": 2,
    }


def test_accounting_holds_on_consistent_counters_and_flags_each_missing_frame() -> None:
    acc = _soak_module().accounting
    assert all(v["holds"] for v in acc(_consistent()).values())
    for key, broken in (
        ("frames_delivered", "camera"),
        ("acquired", "pairing"),
        ("unprocessed", "stream: acquired"),
        ("dropped_camera", "dropped_camera"),
        ("retried", "inputs"),
        ("frames_lost", "sensor"),
        ("frames_incomplete", "incomplete delivered"),
    ):
        d = _consistent()
        d[key] += 1
        bad = [k for k, v in acc(d).items() if not v["holds"]]
        assert bad and any(broken in k for k in bad), (key, bad)


@pytest.mark.slow
def test_short_soak_accounts_for_every_frame(trained_checkpoints, tmp_path) -> None:
    """~25 s of streaming (after compiling and calibrating on the realistic bench) in passes of 120 inputs: every
    frame the camera delivered is paired, skipped or incomplete, every pair processed, no frame used unproven."""
    plot = tmp_path / "rss.png"
    proc = subprocess.run(
        [
            sys.executable,
            str(SOAK),
            "--minutes",
            "0.4",
            "--pass-images",
            "120",
            "--sample-s",
            "5",
            "--checkpoint",
            str(trained_checkpoints["student"]),
            "--work",
            str(tmp_path / "work"),
            "--plot",
            str(plot),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1], parse_constant=_refuse)
    c = out["counters"]
    stream, sync, cam = c["stream"], c["sync"], c["camera"]
    assert out["passes"] >= 2 and stream["inputs"] == 120 * out["passes"]
    # the identities, recomputed from the counters themselves
    used = sync["paired"] + sync["stale"] + sync["unpaired"]
    assert cam["frames_delivered"] == used + sync["skipped"] + sync["incomplete"]
    assert used == stream["acquired"]
    assert (
        stream["acquired"]
        == stream["processed"] + stream["dropped_overflow"] + stream["unprocessed"]
    )
    assert stream["dropped_camera"] == 0
    assert c["inputs_shown"] == stream["inputs"] + sync["retried"]
    assert (
        cam["exposed"]
        == cam["frames_delivered"]
        + cam["frames_lost"]
        + cam["frames_dropped"]
        + cam["queued_delta"]
    )
    assert cam["frames_incomplete"] == sync["incomplete"]
    assert out["all_accounted"] and all(v["holds"] for v in out["accounting"].values())
    # settle on the evaluate policy: nothing used unproven, nothing dropped, every input processed
    assert out["stale_used"] == 0 and sync["stale"] == 0 and sync["unpaired"] == 0
    assert stream["processed"] == stream["inputs"] and stream["dropped_overflow"] == 0
    assert (
        sync["skipped"] > 0
    )  # a free-running camera's queue holds frames exposed before the input settled
    assert out["sync_timing"]["timing_source"] == {"display": "measured", "slm": "measured"}
    # RSS sampled at start, periodically and at the end; a PNG of it
    labels = [s["label"] for s in out["samples"]]
    assert labels[0] == "start" and labels[-1] == "end" and "periodic" in labels
    assert all(s["rss_mb"] > 0 for s in out["samples"]) and out["rss_mb"]["warm"] is not None
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
