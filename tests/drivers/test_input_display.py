"""Every input display behaves alike (the Display template): an image outside [0, 1], with a NaN or of the wrong
shape is refused with advice and nothing is sent; a valid one is quantised once to the display's gray levels."""

import numpy as np
import pytest

from lab4f.drivers.display import Display
from lab4f.drivers.sim_display import SimulatedDisplay, SimulatedDisplaySettings
from lab4f.drivers.slm_display import SLMDisplay, SLMDisplaySettings


def simulated() -> SimulatedDisplay:
    return SimulatedDisplay(SimulatedDisplaySettings(shape=(4, 6)))


def slm_display() -> SLMDisplay:
    return SLMDisplay(
        SLMDisplaySettings(slm="SimulatedSLM", slm_settings={"resolution": (16, 12)}, shape=(4, 6))
    )


def sent(display: Display) -> np.ndarray:
    """What reached the device: the simulated display's image, the SLM's frame."""
    if isinstance(display, SLMDisplay):
        return np.array(display.slm.display)
    assert isinstance(display, SimulatedDisplay)
    return display.image.copy()


DISPLAYS = pytest.mark.parametrize(
    "make", [simulated, slm_display], ids=["SimulatedDisplay", "SLMDisplay"]
)


@DISPLAYS
@pytest.mark.parametrize(
    "bad, advice",
    [
        (1.5, r"\[0, 1\].*spans \[0, 1.5\].*normalise"),
        (-0.25, r"\[0, 1\].*spans \[-0.25, 1\].*normalise"),
        (np.nan, "NaN"),
    ],
)
def test_values_outside_0_1_are_refused_and_nothing_is_sent(make, bad, advice) -> None:
    display = make()
    ramp = np.linspace(0, 1, 24).reshape(4, 6)
    display.show(ramp)
    before, levels, t = sent(display), display.levels.copy(), display.last_sent_s
    image = ramp.copy()
    image[1, 2] = bad
    with pytest.raises(ValueError, match=advice):
        display.show(image)
    np.testing.assert_array_equal(sent(display), before)  # not clipped and shown: not shown at all
    np.testing.assert_array_equal(display.levels, levels)
    assert display.last_sent_s == t


@DISPLAYS
def test_a_wrong_shape_is_refused_naming_the_fix(make) -> None:
    display = make()
    with pytest.raises(ValueError, match=r"shows \(4, 6\) images; got \(3, 3\): resize or pad"):
        display.show(np.zeros((3, 3)))


@DISPLAYS
def test_quantised_once_to_the_bit_depth(make) -> None:
    display = make()
    assert isinstance(display, Display) and display.bitdepth == 8
    image = np.full((4, 6), 0.5)
    image[0, 0] = 1 + 1e-7  # rounding error above 1 is taken as 1
    display.show(image)
    assert display.levels.dtype == np.uint8
    assert display.levels[0, 0] == 255 and display.levels[1, 1] == 128  # rint(0.5 · 255)
    t = display.last_sent_s
    assert np.isfinite(t)
    display.show_point(0, 5)
    assert display.levels.sum() == 255 and display.levels[0, 5] == 255 and display.last_sent_s >= t
    display.blank()
    assert display.levels.sum() == 0
