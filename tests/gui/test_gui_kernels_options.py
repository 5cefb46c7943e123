"""The Kernels panel's compile options (``lab4f compile --kernels-per-frame N``) and the calibration step names the
GUI's messages read from the step registry."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab4f.calibration import steps as registry
from lab4f.calibration.base import StepResult
from lab4f.calibration.steps import Step
from lab4f.gui.messages import STEP_ROWS, in_gui_terms


@pytest.fixture(scope="module")
def twelve_kernels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained linear SCLC with 12 kernels 5×5 (the compile only needs its kernels; no training)."""
    import torch

    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    torch.manual_seed(0)
    cfg = ModelConfig(kind="linear", widths=(12,), kernel_size=5, hidden=(64,), dropout=0.0)
    path = tmp_path_factory.mktemp("ckpt12") / "twelve.pt"
    save_checkpoint(path, build_model(cfg), make_metadata(cfg, dataset={"name": "mnist5k"}))
    return path


def _compile(qtbot, win, checkpoint: Path, per_frame: int) -> None:  # noqa: ANN001
    panel = win.kernels_panel
    panel.auto_confirm = True
    panel.iterations.setValue(2)
    panel.kernels_per_frame.setValue(per_frame)
    before = win.state.program
    panel.load_checkpoint(str(checkpoint))
    qtbot.waitUntil(lambda: win.state.checkpoint is not None and not panel.loading, timeout=30_000)
    panel.compile()
    qtbot.waitUntil(
        lambda: win.state.program is not None and win.state.program is not before, timeout=120_000
    )


def test_kernels_per_frame_set_in_the_panel_reaches_the_compile(
    qtbot,
    connected_window,  # noqa: ANN001
    twelve_kernels: Path,
) -> None:
    win = connected_window()
    panel = win.kernels_panel
    assert (
        panel.kernels_per_frame.value() == 0 and "auto" in panel.kernels_per_frame.text()
    )  # default: auto
    assert "--kernels-per-frame" in panel.kernels_per_frame.toolTip()

    _compile(qtbot, win, twelve_kernels, 4)
    program = win.state.program
    assert program.channels == 12
    assert len(program.frames) == math.ceil(12 / 4) == 3
    assert all(
        len(f.layout.tiles) <= 2 * 4 for f in program.frames
    )  # at most 4 k⁺/k⁻ pairs per frame
    assert program.source["kernels_per_frame"] == 4
    assert (
        "frames per input: 3" in panel.frames_label.text()
        and "at most 4 per frame" in panel.frames_label.text()
    )

    # back to auto: as many as fit (12 kernels of 5×5 fit one frame of the simulated bench)
    _compile(qtbot, win, twelve_kernels, 0)
    assert (
        len(win.state.program.frames) == 1 and "kernels_per_frame" not in win.state.program.source
    )
    assert "frames per input: 1" in panel.frames_label.text()


@pytest.fixture
def toy_step() -> Iterator[Step]:
    step = registry.register(
        Step(
            "toy",
            "Toy exposure check: the camera, as a test",
            lambda ctx: StepResult("toy", {}, {}, {}),
        ),
        after="timing",
    )
    yield step
    registry.unregister("toy")


def test_step_rows_come_from_the_registry() -> None:
    assert list(STEP_ROWS) == list(registry.names())
    for name in registry.names():
        assert registry.title(name).startswith(STEP_ROWS[name])
    assert (
        STEP_ROWS["gains"] == "Per-channel filter"
        and STEP_ROWS["registration"] == "Display → camera registration"
    )


def test_a_newly_registered_step_is_named_by_its_title(toy_step: Step) -> None:
    assert STEP_ROWS["toy"] == "Toy exposure check"
    assert in_gui_terms("run `lab4f calibrate toy` first") == (
        "press Run on the Toy exposure check row of the Calibration panel first"
    )
