"""An slmsuite SLM as the input display: gray level = intensity, centred, integer data past the phase LUT."""

import numpy as np
import pytest

from lab4f.bench.config import DeviceConfig
from lab4f.bench.devices import build_device
from lab4f.drivers.slm_display import SLMDisplay, SLMDisplaySettings
from lab4f.errors import ConfigError


def make(shape=(4, 6), position=(0.0, 0.0)) -> SLMDisplay:
    return SLMDisplay(
        SLMDisplaySettings(
            slm="SimulatedSLM",
            slm_settings={"resolution": (16, 12)},
            shape=shape,
            position_px=position,
        )
    )


def test_intensity_becomes_gray_levels_centred_on_the_device() -> None:
    d = make()
    assert d.slm.shape == (12, 16) and d.settings.bitdepth == 8
    img = np.linspace(0, 1, 24).reshape(4, 6)
    d.show(img)
    shown = np.asarray(d.slm.display)
    np.testing.assert_array_equal(shown[4:8, 5:11], np.rint(img * 255).astype(shown.dtype))
    assert shown.sum() == d.levels.sum()  # nothing outside the image
    d.show_point()
    assert np.asarray(d.slm.display)[6, 8] == 255 and np.asarray(d.slm.display).sum() == 255
    d.blank()
    assert np.asarray(d.slm.display).sum() == 0


def test_through_the_bench_registry_and_errors() -> None:
    dev = build_device(
        "display",
        DeviceConfig(
            driver="SLMDisplay",
            settings={
                "slm": "SimulatedSLM",
                "slm_settings": {"resolution": (32, 32)},
                "shape": (8, 8),
            },
        ),
        {},
    )
    assert isinstance(dev, SLMDisplay) and dev.shape == (8, 8)
    with pytest.raises(ConfigError, match="ScreenMirrored"):
        SLMDisplay(SLMDisplaySettings(slm="Projector"))
    with pytest.raises(ConfigError, match="do not fit"):
        make(shape=(20, 20))
    with pytest.raises(ValueError, match="shows"):
        make().show(np.zeros((3, 3)))
