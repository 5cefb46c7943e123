"""4f forward model, tile layout and kernel compilation."""

import numpy as np
import pytest
import torch

from lab4f.errors import CompileError
from lab4f.models import SCLC, ModelConfig
from lab4f.optics import (
    FourfGeometry,
    OpticalProgram,
    compile_bank,
    fourf_output,
    intensity_psf,
    plan_layout,
    transmittance_for_psf,
)
from lab4f.optics.report import save_report_png
from lab4f.spectral import KernelBank


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


def test_geometry_units_match_the_dft_grid() -> None:
    g = FourfGeometry(
        slm_shape=(512, 512),
        slm_pitch_um=8.0,
        wavelength_nm=633.0,
        focal_length_1_mm=100.0,
        focal_length_2_mm=200.0,
    )
    # λ f / (M p) = 0.633 µm · 100 mm / (512 · 8 µm)
    assert g.input_pitch_um == pytest.approx(15.454, rel=1e-3)
    assert g.output_pitch_um == pytest.approx(2 * g.input_pitch_um)
    fy, fx = g.frequencies_per_mm()
    # one SLM pixel = 1 / (M × input pitch) cycles per mm
    assert fx[257] - fx[256] == pytest.approx(1 / (512 * g.input_pitch_um * 1e-3), rel=1e-6)
    assert fx[256] == 0
    ap = FourfGeometry(slm_shape=(64, 64), aperture_radius=0.5).aperture()
    assert ap[32, 32] == 1 and ap[32, 0] == 0 and ap.sum() == pytest.approx(np.pi * 16**2, rel=0.05)


def test_point_input_images_the_psf_and_modes_differ_as_physics_says() -> None:
    g = torch.Generator().manual_seed(0)
    t = torch.exp(1j * 2 * torch.pi * torch.rand(64, 64, generator=g, dtype=torch.float64))
    point = torch.zeros(1, 5, 5, dtype=torch.float64)
    point[0, 2, 2] = 1.0
    psf = intensity_psf(t)
    torch.testing.assert_close(fourf_output(point, t, "incoherent")[0], psf)
    torch.testing.assert_close(fourf_output(point, t, "coherent")[0], psf)
    # energy conservation: a unit point through a lossless pupil keeps its unit of light (Parseval)
    assert float(psf.sum()) == pytest.approx(1.0, rel=1e-9)
    two = torch.rand(2, 5, 5, generator=g, dtype=torch.float64)
    inc = fourf_output(two, t, "incoherent")
    assert (
        rel(fourf_output(two.sum(0, keepdim=True), t, "incoherent")[0], inc.sum(0)) < 1e-9
    )  # linear in I
    coh = fourf_output(two, t, "coherent")
    assert rel(fourf_output(2 * two, t, "coherent"), 4 * coh) < 1e-9  # square law in amplitude


def test_layout_tiles_never_overlap_and_avoid_the_axis() -> None:
    lay = plan_layout(list(range(20)), 28, 7, (512, 512))
    assert lay.pitch >= 28 + 7 - 1
    offs = np.array([t.offset for t in lay.tiles])
    assert len(lay.tiles) == 40 and len({tuple(o) for o in offs}) == 40
    d = np.abs(offs[:, None, :] - offs[None, :, :]).max(-1) + np.eye(40, dtype=int) * 10**6
    assert d.min() >= 28 + 7 - 1  # full outputs N+K−1 wide never overlap
    assert np.abs(offs).max(1).min() >= lay.pitch  # the zero-order slot stays empty
    with pytest.raises(CompileError, match="at most .* kernels fit per frame"):
        plan_layout(list(range(200)), 28, 7, (512, 512))


def test_ideal_devices_reproduce_the_student_front_end() -> None:
    """With an ideal complex modulator the optics equal the digital convolution to ≤ 1e-3."""
    torch.manual_seed(0)
    student = SCLC(ModelConfig(kind="student", widths=(8, 16, 16)))
    bank = student.kernel_bank()
    program = compile_bank(bank, 28, modulation="complex")
    x = torch.rand(4, 1, 28, 28, dtype=torch.float64)
    with torch.no_grad():
        digital = student.features(x.float()).double()
    assert rel(program.simulate(x), digital) <= 1e-3
    assert program.summary()["min_tile_correlation"] > 0.999999


def test_phase_retrieval_with_slmsuite_realises_the_bank_closely(tmp_path) -> None:
    torch.manual_seed(1)
    bank = KernelBank(torch.randn(16, 1, 7, 7))
    program = compile_bank(bank, 28, modulation="phase", iterations=40)
    s = program.summary()
    assert s["min_tile_correlation"] > 0.995
    assert s["energy_in_tiles"] > 0.7
    phase = program.frames[0].phase
    assert phase is not None and phase.min() >= 0 and phase.max() < 2 * np.pi
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    err = rel(program.simulate(x), bank.apply(x))
    assert err < 0.05, f"phase-only realisation error {err:.3f}"
    path = program.save(tmp_path / "prog.h5")
    loaded = OpticalProgram.load(path)
    torch.testing.assert_close(loaded.simulate(x), program.simulate(x))
    png = save_report_png(loaded, tmp_path / "report.png")
    assert png.stat().st_size > 10_000


def test_time_multiplexed_program_when_the_bank_does_not_fit() -> None:
    torch.manual_seed(2)
    bank = KernelBank(torch.randn(6, 1, 5, 5))
    geom = FourfGeometry(slm_shape=(128, 128))
    with pytest.raises(CompileError, match="time-multiplexed"):
        compile_bank(bank, 28, geom, multiplex="never", modulation="complex")
    program = compile_bank(bank, 28, geom, multiplex="auto", modulation="complex")
    assert len(program.frames) > 1
    assert sorted(c for f in program.frames for c in f.layout.channels) == list(range(6))
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert rel(program.simulate(x), bank.apply(x)) <= 1e-3
    single = compile_bank(bank, 28, geom, multiplex="always", modulation="complex")
    assert len(single.frames) == 6


def test_auto_multiplexing_splits_for_the_camera_not_only_the_slm() -> None:
    """A bank that fits the SLM's far field but not what the camera sees is split into frames, not refused."""
    torch.manual_seed(3)
    bank = KernelBank(torch.randn(8, 1, 5, 5))
    geom = FourfGeometry(
        slm_shape=(256, 256)
    )  # 7×7 slots of 34 cells: all 8 kernels fit one SLM frame
    assert len(compile_bank(bank, 28, geom, modulation="complex").frames) == 1
    with pytest.raises(CompileError, match="camera sees only"):
        compile_bank(
            bank, 28, geom, modulation="complex", multiplex="never", camera_cells=(110, 130)
        )
    program = compile_bank(
        bank, 28, geom, modulation="complex", camera_cells=(110, 130)
    )  # 3×3 slots: 4 per frame
    assert len(program.frames) == 2
    assert all(2 * f.layout.extent() <= 110 for f in program.frames)
    x = torch.rand(2, 1, 28, 28, dtype=torch.float64)
    assert rel(program.simulate(x), bank.apply(x)) <= 1e-3


def test_transmittance_for_psf_inverts_the_far_field() -> None:
    amp = torch.rand(32, 32, dtype=torch.float64)
    torch.testing.assert_close(intensity_psf(transmittance_for_psf(amp)), amp**2)


def test_compile_refuses_what_the_bench_cannot_show() -> None:
    with pytest.raises(CompileError, match="input channels"):
        compile_bank(KernelBank(torch.randn(2, 3, 5, 5)), 28)
    with pytest.raises(CompileError, match="all zeros"):
        compile_bank(KernelBank(torch.zeros(2, 1, 5, 5)), 28)
    with pytest.raises(CompileError, match="incoherent"):
        compile_bank(KernelBank(torch.randn(2, 1, 5, 5)), 28, mode="coherent")
