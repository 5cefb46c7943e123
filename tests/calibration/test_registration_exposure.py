"""Display registration keeps each fiducial unsaturated: a fiducial brighter than the first is re-exposed."""

from __future__ import annotations

import numpy as np
import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.bench.devices import Bench
from lab4f.calibration import display_registration_step

ALIGNED = {"affine_shift_px": (0.0, 0.0), "affine_rotation_deg": 0.0, "affine_scale": 1.0, "seed": 5, "noise": True}


def test_fiducial_brighter_than_the_first_is_reexposed_not_refused(monkeypatch):
    """The first fiducial shown at 30 % (as a point split over pixels is dimmer than one on a single pixel):
    one exposure for all, pinned at 35 % of full scale on the first, would saturate every later fiducial."""
    linear = DeviceConfig(driver="SimulatedDisplay", settings={"gamma": 1.0})  # 0.3 shows 0.3 of the light
    with Bench(BenchConfig(camera=DeviceConfig(driver="Simulated4fCamera", settings=ALIGNED), display=linear)) as bench:
        display, camera = bench.display, bench.camera
        show_point, shown = display.show_point, []

        def first_dim(y: int | None = None, x: int | None = None) -> None:
            shown.append((y, x))
            if len(shown) > 1:
                return show_point(y, x)
            image = np.zeros(display.shape, dtype=np.float32)
            image[y, x] = 0.3
            display.show(image)

        autoexposures = []
        autoexpose = camera.autoexpose
        monkeypatch.setattr(display, "show_point", first_dim)
        monkeypatch.setattr(camera, "autoexpose", lambda **kw: autoexposures.append(autoexpose(**kw)) or
                            autoexposures[-1])
        exposure_s = camera.get_exposure()
        result = display_registration_step(bench)
        assert len(autoexposures) == 2  # the first fiducial, then the second (3.3× brighter) once
        assert autoexposures[1] == pytest.approx(0.3 * autoexposures[0], rel=0.15)
        assert result.quality["scale"] == pytest.approx(1.0, abs=0.002)
        assert result.quality["rotation_deg"] == pytest.approx(0.0, abs=0.05)
        assert result.quality["rms_residual_px"] < 0.1
        assert camera.get_exposure() == exposure_s
