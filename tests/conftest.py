"""Shared fixtures: small trained teacher/student checkpoints on the built-in MNIST digits (session-scoped)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: The suite runs on the simulated bench with INSTANT timing, chosen explicitly: the built-in default has a real
#: bench's timing (display latency, a free-running camera's buffer queue, SLM settle) and is ~10x slower. Every
#: command and `Bench()` without a config read this variable; tests of timing and sync use the realistic default
#: (`realistic_default_bench` below) or examples/realistic_timing*.toml.
INSTANT_BENCH = Path(__file__).resolve().parents[1] / "examples" / "instant_timing.toml"
os.environ["LAB4F_BENCH_CONFIG"] = str(INSTANT_BENCH)

TEST_WIDTHS = (8, 16, 16)


@pytest.fixture(scope="module", autouse=True)
def sim_instruments_at_power_up():
    """Each test module starts with the simulated light source off at 1 mW and the shutter closed.

    pyvisa-sim keeps an instrument's state for the whole process, as a real instrument keeps it between sessions,
    so without this a module would see whatever the modules before it left (runs leave the light on). Module-scoped
    and autouse, so it runs before a module's own bench fixtures connect (their instruments then read this state).
    """
    from lab4f.drivers.instruments import LightSource, LightSourceSettings, Shutter, ShutterSettings

    with LightSource(LightSourceSettings(visa_library="@lab4f-sim")) as source:
        source.output_on, source.power_mw, source.current_ma = False, 1.0, 20.0
    with Shutter(ShutterSettings(visa_library="@lab4f-sim")) as shutter:
        shutter.is_open = False


@pytest.fixture
def realistic_default_bench(monkeypatch):
    """The built-in default bench, as a user gets it (no LAB4F_BENCH_CONFIG): real timing."""
    monkeypatch.delenv("LAB4F_BENCH_CONFIG", raising=False)


@pytest.fixture(scope="session")
def instant_bench_toml() -> str:
    """The instant-timing bench as TOML, for tests that write their own config on top of it."""
    return INSTANT_BENCH.read_text()


@pytest.fixture(scope="session")
def mnist_splits():
    from lab4f.data import load_dataset

    return load_dataset("mnist5k", split_seed=0)


@pytest.fixture(scope="session")
def trained_checkpoints(tmp_path_factory, mnist_splits) -> dict[str, Path]:
    """Teacher and SCLC student (KD, incoherent detection) trained for a few epochs: real, small, ~30 s."""
    from lab4f.checkpoint import load_checkpoint
    from lab4f.training import TrainConfig, model_config_for, train_model

    folder = tmp_path_factory.mktemp("checkpoints")
    teacher_path, student_path = folder / "teacher.pt", folder / "student.pt"
    train_model(
        model_config_for(mnist_splits, "teacher", widths=TEST_WIDTHS),
        mnist_splits,
        TrainConfig(epochs=2, seed=0),
        checkpoint_path=teacher_path,
        progress=False,
    )
    teacher, _, _ = load_checkpoint(teacher_path)
    train_model(
        model_config_for(mnist_splits, "student", widths=TEST_WIDTHS, detection="incoherent"),
        mnist_splits,
        TrainConfig(epochs=3, seed=0),
        teacher=teacher,
        checkpoint_path=student_path,
        progress=False,
    )
    return {"teacher": teacher_path, "student": student_path}
