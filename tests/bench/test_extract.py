"""Feature extraction from camera frames against the optical program's digital twin."""

import numpy as np
import pytest
import torch
from scipy.ndimage import map_coordinates

from lab4f.bench.extract import FeatureExtractor
from lab4f.errors import ConfigError
from lab4f.optics import FourfGeometry, OpticalProgram, compile_bank, fourf_output
from lab4f.optics.registration import PlaneToCamera
from lab4f.spectral import KernelBank

GRID = 128
CAMERA = (150, 170)


@pytest.fixture(scope="module")
def bank() -> KernelBank:
    g = torch.Generator().manual_seed(1)
    return KernelBank(torch.randn(4, 1, 5, 5, generator=g))


def program(bank: KernelBank, multiplex: str = "never") -> OpticalProgram:
    geometry = FourfGeometry(slm_shape=(GRID, GRID))
    return compile_bank(bank, 12, geometry, modulation="complex", multiplex=multiplex)


def images(n: int = 3) -> torch.Tensor:
    """Smooth positive test images (blurred noise), like display inputs."""
    g = torch.Generator().manual_seed(2)
    x = torch.rand(n, 1, 12, 12, generator=g, dtype=torch.float64)
    return torch.nn.functional.avg_pool2d(x, 3, 1, 1) + 0.1


def planes(prog: OpticalProgram, imgs: torch.Tensor) -> np.ndarray:
    """Output-plane intensities (B, F, M, M) of every program frame."""
    return np.stack(
        [
            fourf_output(imgs[:, 0], torch.from_numpy(f.transmittance), prog.mode).numpy()
            for f in prog.frames
        ],
        axis=1,
    )


def place_identity(plane: np.ndarray, camera: tuple[int, int]) -> np.ndarray:
    """Put the plane on a camera array with the optical axis at the camera centre, one cell per pixel."""
    out = np.zeros((*plane.shape[:-2], *camera))
    top, left = camera[0] // 2 - GRID // 2, camera[1] // 2 - GRID // 2
    out[..., top : top + GRID, left : left + GRID] = plane
    return out


def place_affine(plane: np.ndarray, reg: PlaneToCamera, camera: tuple[int, int]) -> np.ndarray:
    """Render the plane as a camera sees it through camera_xy = A plane_xy + b (energy conserving)."""
    yy, xx = np.mgrid[0 : camera[0], 0 : camera[1]]
    cell = reg.inverse_apply(
        np.stack([xx.ravel(), yy.ravel()], axis=1)
    )  # plane (x, y) from the axis
    coords = np.stack([cell[:, 1] + GRID // 2, cell[:, 0] + GRID // 2])
    flat = plane.reshape(-1, GRID, GRID)
    out = [map_coordinates(p, coords, order=3, mode="constant").reshape(camera) for p in flat]
    return np.stack(out).reshape(*plane.shape[:-2], *camera) / abs(np.linalg.det(reg.matrix))


@pytest.mark.parametrize("multiplex", ["never", "always"])
def test_identity_registration_reproduces_the_digital_twin(
    bank: KernelBank, multiplex: str
) -> None:
    prog = program(bank, multiplex)
    imgs = images()
    frames = place_identity(planes(prog, imgs), CAMERA).astype(np.float32)
    ex = FeatureExtractor.for_program(prog, PlaneToCamera.identity(CAMERA), CAMERA)
    got = ex(frames if multiplex == "always" else frames[:, 0])
    ref = prog.simulate(imgs).float()
    assert got.shape == (3, 4, 12, 12) and got.dtype == torch.float32
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4
    assert len(prog.frames) == (4 if multiplex == "always" else 1)


def test_dark_flat_exposure_and_channel_gain_are_undone(bank: KernelBank) -> None:
    prog = program(bank)
    imgs = images()
    clean = place_identity(planes(prog, imgs)[:, 0], CAMERA)
    rng = np.random.default_rng(0)
    dark = 100 + 5 * rng.random(CAMERA)
    flat = 0.8 + 0.4 * rng.random(CAMERA)
    scale = 3000.0 / clean.max()  # counts per plane unit, like an exposure
    frames = np.rint(clean * flat * scale + dark).clip(0, 65535).astype(np.uint16)
    gain, offset = np.array([1.0, 2.0, 0.5, -1.0]), np.array([0.0, 0.1, -0.2, 0.3])
    ex = FeatureExtractor.for_program(
        prog,
        PlaneToCamera.identity(CAMERA),
        CAMERA,
        dark=dark,
        flat=flat,
        exposure_scale=scale,
        channel_gain=gain,
        channel_offset=offset,
    )
    got = ex(frames)
    ref = prog.simulate(imgs).float() * torch.tensor(gain).float().view(1, -1, 1, 1)
    ref = ref + torch.tensor(offset).float().view(1, -1, 1, 1)
    # uint16 quantisation of ~3000-count tiles: ≤ 0.5 count per pixel, a few 1e-3 of the peak feature
    err = float((got - ref).abs().max() / ref.abs().max())
    assert err < 5e-3


@pytest.mark.parametrize(
    ("scale", "camera", "tolerance"), [(1.02, CAMERA, 0.065), (2.04, (300, 320), 0.02)]
)
def test_known_affine_is_recovered_within_interpolation_error(
    bank: KernelBank, scale: float, camera: tuple[int, int], tolerance: float
) -> None:
    """Rotation 1°, a sub-pixel shift and the given scale (camera pixels per output cell).

    Measured relative RMS error of the k⁺ − k⁻ maps: 0.053 at 1.02 px/cell and 0.016 at 2.04 px/cell (0 for an
    integer shift). It is the bilinear interpolation of a plane sampled at ≈1 px/cell (random 5×5 kernels put
    energy up to the grid's Nyquist frequency), so it falls as the camera oversamples the output plane.
    """
    prog = program(bank)
    imgs = images()
    t = np.deg2rad(1.0)
    reg = PlaneToCamera(
        scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]),
        [camera[1] / 2 + 3.3, camera[0] / 2 - 2.6],
    )
    frames = place_affine(planes(prog, imgs)[:, 0], reg, camera).astype(np.float32)
    got = FeatureExtractor.for_program(prog, reg, camera)(frames)
    ref = prog.simulate(imgs).float()
    err = float((got - ref).norm() / ref.norm())
    assert err < tolerance
    # ignoring the registration (identity) is far worse: the test can fail
    wrong = FeatureExtractor.for_program(prog, PlaneToCamera.identity(camera), camera)(frames)
    assert float((wrong - ref).norm() / ref.norm()) > 10 * err


def test_resamples_to_the_back_end_grid_and_rejects_wrong_frames(bank: KernelBank) -> None:
    prog = program(bank)
    frames = place_identity(planes(prog, images())[:, 0], CAMERA).astype(np.float32)
    ex = FeatureExtractor.for_program(prog, PlaneToCamera.identity(CAMERA), CAMERA, output_size=24)
    up = ex(frames)
    assert up.shape == (3, 4, 24, 24)
    base = FeatureExtractor.for_program(prog, PlaneToCamera.identity(CAMERA), CAMERA)(frames)
    # bilinear ×2 upsampling keeps each map's mean within 2 %
    atol = 1e-3 * float(base.abs().max())
    assert torch.allclose(up.mean((-2, -1)), base.mean((-2, -1)), rtol=0.02, atol=atol)
    with pytest.raises(ConfigError, match="expected camera frames"):
        ex(frames[:, :100])
    with pytest.raises(ConfigError, match="channel_gain"):
        FeatureExtractor.for_program(
            prog, PlaneToCamera.identity(CAMERA), CAMERA, channel_gain=[1.0]
        )


def test_a_list_of_frames_gives_the_same_features_as_a_stack(bank: KernelBank) -> None:
    prog = program(bank)
    frames = place_identity(planes(prog, images())[:, 0], CAMERA).astype(np.float32)
    rng = np.random.default_rng(3)
    ex = FeatureExtractor.for_program(
        prog,
        PlaneToCamera.identity(CAMERA),
        CAMERA,
        dark=rng.random(CAMERA),
        flat=0.9 + 0.2 * rng.random(CAMERA),
    )
    torch.testing.assert_close(ex(list(frames)), ex(frames), rtol=0, atol=0)


@pytest.mark.parametrize("multiplex", ["never", "always"])
def test_channel_filter_is_a_depthwise_correlation_after_k_plus_minus_k_minus(
    bank: KernelBank, multiplex: str
) -> None:
    """feature = filter ⋆ (k⁺ − k⁻ features) + offset, zero padded, with the dark frame still subtracted."""
    prog = program(bank, multiplex)
    imgs = images()
    clean = place_identity(planes(prog, imgs), CAMERA)
    dark = 100 + 5 * np.random.default_rng(0).random(CAMERA)
    frames = (clean + dark).astype(np.float32)
    frames = frames if multiplex == "always" else frames[:, 0]
    filt = np.random.default_rng(1).normal(size=(4, 3, 3))
    offset = np.array([0.0, 0.1, -0.2, 0.3])
    ex = FeatureExtractor.for_program(
        prog,
        PlaneToCamera.identity(CAMERA),
        CAMERA,
        dark=dark,
        channel_gain=np.full(4, 7.0),
        channel_offset=offset,
        channel_filter=filt,
    )
    got = ex(frames)
    plain = prog.simulate(imgs).double()
    ref = torch.nn.functional.conv2d(plain, torch.from_numpy(filt)[:, None], padding=1, groups=4)
    ref = ref + torch.from_numpy(offset).view(1, -1, 1, 1)
    # float32 frames: plane intensities of ~0.1 on a 100-count dark keep ~5 digits; channel_gain is ignored
    assert float((got.double() - ref).abs().max() / ref.abs().max()) < 1e-3
    delta = np.zeros((4, 1, 1))
    delta[:] = 1.0  # a 1×1 filter of ones is the plain extractor
    same = FeatureExtractor.for_program(
        prog, PlaneToCamera.identity(CAMERA), CAMERA, dark=dark, channel_filter=delta
    )
    base = FeatureExtractor.for_program(prog, PlaneToCamera.identity(CAMERA), CAMERA, dark=dark)(
        frames
    )
    # float32 rounding of the 100-count dark (1000× the signal, cancelled after sampling) differs between the two
    # evaluation orders by ~1e-7 · 1000
    assert float((same(frames) - base).abs().max() / base.abs().max()) < 3e-4
    with pytest.raises(ConfigError, match="channel_filter"):
        FeatureExtractor.for_program(
            prog, PlaneToCamera.identity(CAMERA), CAMERA, channel_filter=np.ones((4, 2, 2))
        )


@pytest.mark.parametrize("multiplex", ["never", "always"])
def test_per_tile_filters_act_on_each_tile_separately(bank: KernelBank, multiplex: str) -> None:
    """A (C, 2, k, k) bank: feature_c = f⁺_c ⋆ (k⁺ tile part) + f⁻_c ⋆ (k⁻ tile part) + offset.

    The parts come from the extractor itself with a delta on one tile and zero on the other; their sum must be the
    plain k⁺ − k⁻ extractor, and any filter pair must equal the two correlations done the straightforward way.
    """
    prog = program(bank, multiplex)
    clean = place_identity(planes(prog, images()), CAMERA)
    dark = 0.5 + 0.1 * np.random.default_rng(0).random(
        CAMERA
    )  # a dark of the signal's order keeps float32's digits
    frames = (clean + dark).astype(np.float32)
    frames = frames if multiplex == "always" else frames[:, 0]
    ident = PlaneToCamera.identity(CAMERA)

    def extract(filt: np.ndarray | None, offset: np.ndarray | None = None) -> torch.Tensor:
        return FeatureExtractor.for_program(
            prog, ident, CAMERA, dark=dark, channel_filter=filt, channel_offset=offset
        )(frames).double()

    delta = np.zeros((4, 2, 3, 3))
    delta[:, 0, 1, 1] = 1.0
    pos = extract(delta)
    neg = extract(delta[:, ::-1].copy())
    plain = extract(None)
    assert float((pos + neg - plain).abs().max() / plain.abs().max()) < 1e-5
    scale = float(plain.abs().max())
    assert (
        float(pos.min()) > -1e-5 * scale and float(neg.max()) < 1e-5 * scale
    )  # k⁺ adds light, k⁻ subtracts it
    assert float(neg.abs().max()) > 0.1 * float(pos.abs().max())  # both tiles carry signal
    filt = np.random.default_rng(3).normal(size=(4, 2, 5, 5))
    offset = np.array([0.0, 0.1, -0.2, 0.3])
    conv = torch.nn.functional.conv2d
    w = torch.from_numpy(filt)
    ref = conv(pos, w[:, :1], padding=2, groups=4) + conv(neg, w[:, 1:], padding=2, groups=4)
    got = extract(filt, offset) - torch.from_numpy(offset).view(1, -1, 1, 1)
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-5


def test_tiles_partly_off_the_camera_are_refused(bank: KernelBank) -> None:
    prog = compile_bank(bank, 28, modulation="complex")
    shifted = PlaneToCamera(
        np.eye(2), np.array([CAMERA[1] - 20.0, CAMERA[0] / 2])
    )  # axis near the right edge
    with pytest.raises(ConfigError, match="outside the"):
        FeatureExtractor.for_program(prog, shifted, CAMERA)
