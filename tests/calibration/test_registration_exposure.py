"""Display registration keeps each fiducial unsaturated: a fiducial brighter than the first is re-exposed."""

from __future__ import annotations

import numpy as np
import pytest

from lab4f.bench.config import load_bench_config
from lab4f.bench.devices import Bench
from lab4f.calibration import display_registration_step

ALIGNED = {
    "affine_shift_px": (0.0, 0.0),
    "affine_rotation_deg": 0.0,
    "affine_scale": 1.0,
    "seed": 5,
    "noise": True,
}


def test_fiducial_brighter_than_the_first_is_reexposed_not_refused(monkeypatch):
    """The first fiducial shown at 30 % (as a point split over pixels is dimmer than one on a single pixel):
    one exposure for all, pinned at 35 % of full scale on the first, would saturate every later fiducial."""
    linear = {"gamma": 1.0}  # 0.3 shows 0.3 of the light
    with Bench(load_bench_config().with_settings(camera=ALIGNED, display=linear)) as bench:
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
        monkeypatch.setattr(
            camera,
            "autoexpose",
            lambda **kw: autoexposures.append(autoexpose(**kw)) or autoexposures[-1],
        )
        exposure_s = camera.get_exposure()
        result = display_registration_step(bench)
        assert len(autoexposures) == 2  # the first fiducial, then the second (3.3× brighter) once
        assert autoexposures[1] == pytest.approx(0.3 * autoexposures[0], rel=0.15)
        assert result.quality["scale"] == pytest.approx(1.0, abs=0.002)
        assert result.quality["rotation_deg"] == pytest.approx(0.0, abs=0.05)
        assert result.quality["rms_residual_px"] < 0.1
        assert camera.get_exposure() == exposure_s


def test_registration_warns_when_the_lenses_predict_another_magnification(caplog):
    """Config f2 = 100 mm predicts 2.81 px per output cell; the bench images 1.0 px per cell: say so."""
    from lab4f.bench.config import GeometryConfig

    cfg = (
        load_bench_config()
        .with_settings(camera=ALIGNED)
        .model_copy(update={"geometry": GeometryConfig(focal_length_2_mm=100.0)})
    )
    with Bench(cfg) as bench, caplog.at_level("WARNING"):
        result = display_registration_step(bench)
    assert result.quality["scale_from_lenses"] == pytest.approx(2.81, abs=0.01)
    assert result.quality["scale_vs_lenses"] == pytest.approx(1.0 / 2.81, abs=0.01)
    assert any(
        "predict" in r.getMessage() and "focal_length_2_mm" in r.getMessage()
        for r in caplog.records
    )


def test_pixels_per_cell_from_the_lenses_uses_both_axes():
    """c = λ·f2/(N·p) per SLM axis, over the camera pitch per axis; the geometric mean is what the affine's scale
    (√|det A|) measures. A 1024×512 SLM has cells half as wide as tall; 2×1 binning doubles one camera pitch."""
    from lab4f.bench.config import GeometryConfig

    cfg = (
        load_bench_config()
        .with_settings(slm={"resolution": (1024, 512)}, camera=ALIGNED)
        .model_copy(update={"geometry": GeometryConfig(focal_length_2_mm=36.3)})
    )
    with Bench(cfg) as bench:
        cell_y = 0.633 * 36.3e3 / (512 * 8.0)  # µm
        cell_x = cell_y / 2
        assert bench.pixels_per_cell() == pytest.approx(np.sqrt(cell_x * cell_y) / 5.5, rel=1e-9)
        bench.camera.pitch_um = (11.0, 5.5)
        assert bench.pixels_per_cell() == pytest.approx(
            np.sqrt(cell_x * cell_y / (11.0 * 5.5)), rel=1e-9
        )
        rows, cols = bench.camera.shape  # each axis: its pixels over its own pixels per cell
        assert bench.camera_cells() == (
            int(np.floor(rows / (cell_y / 5.5))),
            int(np.floor(cols / (cell_x / 11.0))),
        )
        bench.camera.pitch_um = None
        assert bench.pixels_per_cell() is None and bench.camera_cells() == tuple(bench.camera.shape)
