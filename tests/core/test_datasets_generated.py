"""The generated clutter-digits task: seeded, in range, the digits' own labels, harder than the plain digits."""

from __future__ import annotations

import torch

from lab4f.data import load_mnist5k
from lab4f.datasets_generated import CLUTTER_SIZE, clutter_digits


def test_clutter_digits_is_seeded_in_range_and_varied() -> None:
    digits = load_mnist5k().images[:64]
    a, b = clutter_digits(digits, seed=0), clutter_digits(digits, seed=0)
    assert torch.equal(a, b) and a.shape == (64, 1, CLUTTER_SIZE, CLUTTER_SIZE)
    assert not torch.equal(a, clutter_digits(digits, seed=1))
    assert float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    # contrast and background vary from image to image (not one global level)
    assert float(a.amax((1, 2, 3)).std()) > 0.05 and float(a.amin((1, 2, 3)).std()) > 0.02


def test_the_digit_is_drawn_where_its_strokes_are() -> None:
    digits = torch.zeros(1, 1, 28, 28)
    digits[0, 0, 10:18, 13:15] = 1.0  # a short vertical bar at the centre
    img = clutter_digits(digits.repeat(8, 1, 1, 1), seed=3)
    centre = img[:, 0, 20:36, 20:36].mean()
    corners = torch.cat([img[:, 0, :8, :8], img[:, 0, -8:, -8:]]).mean()
    assert (
        centre > corners
    )  # bright strokes near the centre (shift ±7 px), background at the corners
