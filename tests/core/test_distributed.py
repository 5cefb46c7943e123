"""DDP: two CPU processes on gloo, launched by torchrun, end with identical parameters AND buffers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lab4f.checkpoint import read_checkpoint
from lab4f.distributed import DistContext, current_context, sync_buffers


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_single_process_context_is_rank_zero_of_one() -> None:
    ctx = current_context()
    assert ctx == DistContext(rank=0, world_size=1) and ctx.is_main and not ctx.distributed
    model = torch.nn.BatchNorm1d(3)
    assert ctx.wrap(model) is model
    sync_buffers(model, ctx)  # a no-op outside a process group
    assert ctx.all_finite(torch.tensor(1.0)) and not ctx.all_finite(torch.tensor(float("nan")))


@pytest.mark.slow
def test_two_gloo_ranks_end_with_identical_weights_and_buffers(tmp_path: Path) -> None:
    out = tmp_path / "ddp.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "lab4f.cli",
        "train",
        "--ddp",
        "--dataset",
        "digits8",
        "--epochs",
        "1",
        "--lr",
        "0.05",
        "--batch-size",
        "32",
        "--seed",
        "7",
        "--out",
        str(out),
        "--rank-state-dir",
        str(tmp_path),
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=600, env=env
    )  # a hang, not a slow machine
    assert proc.returncode == 0, proc.stderr[-3000:]
    print(
        f"DDP run took {time.perf_counter() - t0:.1f} s"
    )  # a time, not a test: benchmarks/ measure speed
    assert proc.stdout.count("world_size=2") == 1  # only rank 0 prints
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert r0.keys() == r1.keys()
    assert any("running_mean" in k for k in r0)  # BatchNorm buffers are part of the check
    differing = [k for k in r0 if not torch.equal(r0[k], r1[k])]
    assert differing == []
    saved = read_checkpoint(out)  # written by rank 0 only, same weights
    assert all(torch.equal(saved["state_dict"][k], r0[k]) for k in r0)
    assert saved["train_state"]["epoch"] == 1
    assert not list(tmp_path.glob(".*tmp*"))


@pytest.mark.slow
def test_cli_train_ddp_prints_one_json_object_from_rank_zero(tmp_path: Path) -> None:
    out = tmp_path / "cli.pt"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(_free_port()),
        "-m",
        "lab4f.cli",
        "train",
        "--ddp",
        "--dataset",
        "digits8",
        "--limit",
        "200",
        "--epochs",
        "1",
        "--widths",
        "4,8",
        "--out",
        str(out),
        "--no-progress",
        "--json",
    ]
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stdout
    summary = json.loads(lines[0])
    assert summary["ok"] and summary["epochs_completed"] == 1 and summary["checkpoint"] == str(out)
    assert read_checkpoint(out)["metadata"]["model_config"]["widths"] == [4, 8]
