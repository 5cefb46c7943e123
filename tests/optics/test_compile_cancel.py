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
    compile_bank(bank, 8, geometry, iterations=7, multiplex="never", on_iteration=lambda: calls.append(1))
    assert len(calls) == 7

    def stop_at_3() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Stop

    calls.clear()
    with pytest.raises(Stop):
        compile_bank(bank, 8, geometry, iterations=50, multiplex="never", on_iteration=stop_at_3)
    assert len(calls) == 3
