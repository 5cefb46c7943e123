"""Vendor phase-correction and LUT files through slmsuite, recorded in the SLM's snapshot: on lab4f's simulated SLM (a
slmsuite SimulatedSLM, so slmsuite's own load_vendor_phase_correction and set_gamma run) and on an SLM whose class
loads LUT files itself (Meadowlark's load_lut)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from lab4f.drivers.sim_slm import SimulatedFourierSLM, SimulatedSLMSettings
from lab4f.drivers.vendor_files import apply_vendor_files, read_phase_response, split_vendor_files
from lab4f.errors import ConfigError

SHAPE = (48, 64)  # (rows, cols) of a 64x48 SLM


@pytest.fixture
def slm():
    dev = SimulatedFourierSLM(SimulatedSLMSettings(resolution=(SHAPE[1], SHAPE[0])))
    yield dev
    dev.close()


def _correction_png(path, shape=SHAPE):
    gray = (np.arange(shape[0] * shape[1]) % 256).reshape(shape).astype(np.uint8)
    Image.fromarray(gray).save(path)
    return gray


def test_phase_correction_is_loaded_by_slmsuite_and_recorded(slm, tmp_path):
    path = tmp_path / "flatness_633nm.png"
    gray = _correction_png(path)
    before = (
        slm.settings_snapshot()
        if hasattr(slm, "settings_snapshot")
        else slm.settings.model_dump(mode="json")
    )
    record = apply_vendor_files(slm, phase_correction_path=str(path))
    # slmsuite's convention: phase = (levels - 1 - gray) · 2π / (levels · phase_scaling), in source["phase"]
    expected = (255 - gray.astype(float)) * 2 * np.pi / (slm.phase_scaling * 256)
    assert np.allclose(slm.source["phase"], expected)
    assert record == {
        "phase_correction_path": str(path),
        "phase_correction_loaded": "source_phase",
        "phase_correction_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
    }
    snap = slm.settings_snapshot()
    assert snap == {**before, **record}  # the SLM's own settings stay, the file is added
    assert snap["resolution"] == [64, 48]


def test_a_phase_response_table_becomes_slmsuites_lut(slm, tmp_path):
    path = tmp_path / "response.csv"
    levels = np.arange(0, 256, 17)
    path.write_text(
        "# level, phase (units of 2 pi)\n"
        + "\n".join(f"{g}, {1.05 * (g / 255) ** 1.3:.6f}" for g in levels)
    )
    record = apply_vendor_files(slm, lut_path=str(path))
    assert record["lut_loaded"] == "set_gamma" and record["lut_levels"] == len(levels)
    assert slm.lut is not None and len(slm.gamma) == 256
    assert slm.gamma[255] == pytest.approx(1.05, abs=1e-5) and slm.gamma[0] == pytest.approx(
        0.0, abs=1e-6
    )
    assert slm.settings_snapshot()["lut_path"] == str(path)
    phase_correction = tmp_path / "flat.png"
    _correction_png(phase_correction)
    apply_vendor_files(
        slm, phase_correction_path=str(phase_correction)
    )  # a second call adds to the record
    snap = slm.settings_snapshot()
    assert snap["lut_path"] == str(path) and snap["phase_correction_path"] == str(phase_correction)


def test_an_slm_that_loads_lut_files_itself_gets_them_its_way(tmp_path):
    class MeadowlarkLike:
        shape = SHAPE

        def __init__(self):
            self.loaded = []

        def load_lut(self, lut_path):
            self.loaded.append(lut_path)
            return lut_path

        def load_vendor_phase_correction(
            self, file_path
        ):  # Holoeye: into the SDK, nothing returned
            self.loaded.append(file_path)

    lut, flat = tmp_path / "slm5758_at633.lut", tmp_path / "flat.h5"
    lut.write_text("0 0\n255 255\n")
    flat.write_bytes(b"vendor")
    dev = MeadowlarkLike()
    record = apply_vendor_files(dev, phase_correction_path=str(flat), lut_path=str(lut))
    assert dev.loaded == [str(flat), str(lut)]
    assert record["lut_loaded"] == "load_lut" and record["phase_correction_loaded"] == "sdk"
    assert dev.settings_snapshot() == record  # an SLM without a snapshot of its own gets one


def test_missing_or_unfitting_files_name_the_setting(slm, tmp_path):
    with pytest.raises(
        ConfigError,
        match=r"phase_correction_path .*nope.png does not exist: fix \[slm\] "
        r"settings.phase_correction_path",
    ):
        apply_vendor_files(slm, phase_correction_path=str(tmp_path / "nope.png"))
    wrong = tmp_path / "other_slm.png"
    _correction_png(
        wrong, shape=(30, 100)
    )  # taller in one axis, shorter in the other: no pad/unpad fits
    with pytest.raises(ConfigError, match=r"does not fit the SLM \(\(48, 64\) pixels\)"):
        apply_vendor_files(slm, phase_correction_path=str(wrong))
    table = tmp_path / "lut.txt"
    table.write_text("0 0 1\n1 2 3\n")
    with pytest.raises(ConfigError, match=r"lut_path .*shape \(2, 3\)"):
        apply_vendor_files(slm, lut_path=str(table))
    table.write_text(
        "\n".join(str(0.004 * g) for g in range(100))
    )  # one column, but not every level
    with pytest.raises(
        ConfigError, match=r"Expected gamma to span all 256 levels.*256 grey levels"
    ):
        apply_vendor_files(slm, lut_path=str(table))
    assert not hasattr(slm, "vendor_files")  # nothing was recorded


def test_split_keeps_what_the_constructor_takes():
    settings = {"wav_um": 0.633, "phase_correction_path": "a.bmp", "lut_path": "b.lut"}
    assert split_vendor_files(settings, {"wav_um", "lut_path"}) == (
        {"wav_um": 0.633, "lut_path": "b.lut"},
        {"phase_correction_path": "a.bmp", "lut_path": "b.lut"},
    )
    assert split_vendor_files(settings, None) == (
        {"wav_um": 0.633},
        {"phase_correction_path": "a.bmp", "lut_path": "b.lut"},
    )
    assert split_vendor_files({"wav_um": 1.0}) == ({"wav_um": 1.0}, {})


def test_read_phase_response_formats(tmp_path):
    one = tmp_path / "one.txt"
    one.write_text("0.0\n0.5\n1.0\n")
    assert read_phase_response(one)[0] is None and list(read_phase_response(one)[1]) == [
        0.0,
        0.5,
        1.0,
    ]
    npy = tmp_path / "t.npy"
    np.save(npy, np.array([[0, 0.0], [255, 1.0]]))
    levels, phase = read_phase_response(npy)
    assert list(levels) == [0, 255] and list(phase) == [0.0, 1.0]
