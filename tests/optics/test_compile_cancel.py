"""compile_bank's per-iteration hook: called once per phase-retrieval iteration, and an exception aborts."""

from __future__ import annotations

import pytest
import torch

from lab4f.optics import FourfGeometry, compile_bank
from lab4f.spectral import KernelBank


class Stop(Exception):
    pass


def test_on_iteration_is_called_every_iteration_and_can_abort() -> None:
    bank = KernelBank(torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)))
    geometry = FourfGeometry(slm_shape=(64, 64))
    calls = []
    compile_bank(
        bank,
        8,
        geometry,
        iterations=7,
        multiplex="never",
        on_iteration=lambda done, total: calls.append((done, total)),
    )
    assert len(calls) == 7
    assert calls[-1] == (7, 7)

    def stop_at_3(done: int, total: int) -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    calls.clear()
    with pytest.raises(Stop):
        compile_bank(bank, 8, geometry, iterations=50, multiplex="never", on_iteration=stop_at_3)
    assert len(calls) == 3


def test_iterations_are_counted_over_every_frame_of_a_multiplexed_program() -> None:
    bank = KernelBank(torch.randn(2, 1, 3, 3, generator=torch.Generator().manual_seed(0)))
    calls = []
    program = compile_bank(
        bank,
        8,
        FourfGeometry(slm_shape=(64, 64)),
        iterations=4,
        multiplex="always",
        on_iteration=lambda done, total: calls.append((done, total)),
    )
    n = 4 * len(program.frames)
    assert len(program.frames) == 2 and calls == [(k, n) for k in range(1, n + 1)]
