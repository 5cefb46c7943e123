"""The one streaming loop (lab4f.bench.run.StreamRun): a finite run (`lab4f run`) and a run without an end that goes
round its feed (the GUI's live run, lab4f.gui.live.LiveRun, which is this loop with a tally)."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from lab4f.bench.devices import Bench
from lab4f.bench.hybrid import prepare
from lab4f.bench.run import StreamRun, run_dataset
from lab4f.checkpoint import make_metadata, save_checkpoint
from lab4f.errors import ConfigError
from lab4f.models import ModelConfig, build_model
from lab4f.task import CLASSIFICATION


@pytest.fixture()
def student(tmp_path):  # noqa: ANN001, ANN201
    torch.manual_seed(0)
    cfg = ModelConfig(kind="student", widths=(4, 8, 8), detection="incoherent")
    return save_checkpoint(tmp_path / "student.pt", build_model(cfg), make_metadata(cfg))


def _wait(cond, timeout_s: float = 60.0) -> None:  # noqa: ANN001
    end = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < end, "the stream did not get there"
        time.sleep(0.01)


def test_a_run_without_an_end_goes_round_its_feed(student, mnist_splits) -> None:  # noqa: ANN001
    x, y = mnist_splits.test.tensors
    x, y = x[:5], y[:5]
    frames: list[np.ndarray] = []
    lock = threading.RLock()
    with Bench() as bench:
        setup = prepare(bench, student, compile_kwargs={"iterations": 5})
        assert setup.task is CLASSIFICATION
        run = StreamRun(
            setup,
            x,
            y,
            policy="live",
            batch_size=4,
            capacity=8,
            samples=3,
            repeat=True,
            device_lock=lock,
            on_frame=frames.append,
            keep_results=100,
            digital_batch=2,
        ).start()
        try:
            _wait(lambda: len(run.pipeline.results_since(0)[0]) >= 12)
        finally:
            run.stop()
        res = run.result()
    shown = [int(k) for k in res.indices]
    assert len(shown) >= 12 and shown[:10] == [
        0,
        1,
        2,
        3,
        4,
        0,
        1,
        2,
        3,
        4,
    ]  # round the feed, in order
    assert (
        len(frames) >= len(shown)
        and len(res.sample_frames) == 3
        and res.sample_features.shape[0] == 3
    )
    with torch.no_grad():
        want = torch.softmax(setup.student(x), dim=1).numpy()
    assert np.allclose(
        run.digital, want, atol=1e-6
    )  # the digital reference, once for the feed (in chunks)
    assert np.allclose(res.digital_probs, want[res.indices], atol=1e-6)
    assert res.labels.tolist() == y[res.indices].tolist() and res.optical_probs.shape == (
        len(shown),
        10,
    )
    assert res.metrics()["policy"] == "live"


def test_a_finite_run_ends_with_its_data(student, mnist_splits) -> None:  # noqa: ANN001
    x, y = mnist_splits.test.tensors
    x, y = x[:6], y[:6]
    with Bench() as bench:
        setup = prepare(bench, student, compile_kwargs={"iterations": 5})
        res = run_dataset(setup, x, y, batch_size=4, samples=2)
        assert (
            res.indices.tolist() == list(range(6))
            and res.summary.stats.stop_reason == "source_exhausted"
        )
        assert (
            res.extra["sample_indices"] == [0, 1]
            and res.extra["sync"]["policy"] == setup.bench.sync.policy
        )
        with pytest.raises(ConfigError, match="at least one input"):
            StreamRun(setup, x[:0], y[:0], repeat=True)
