"""Simulated 4f camera: renders DESIGN section 2 from the simulated input display and Fourier SLM.

Output plane: the Fourier SLM's unpadded far-field grid (Ny, Nx), one cell per SLM pixel, optical axis
at cell (Ny // 2, Nx // 2) (numpy's fftshift centre, as slmsuite). The PSF is |h|^2 with
h = fftshift(fft2(ifftshift(E * pupil))) / sqrt(Ny Nx sum|E|^2), E the SLM's realised field, so a
lossless PSF sums to 1. Incoherent mode: I_out = I_in conv PSF; coherent: |a conv h|^2, a = sqrt(I_in).
Display pixels land on cells as `SimulatedDisplay` documents.

Camera misregistration, slmsuite's convention: camera pixel (x, y) = A u + b for an output-plane offset
u = (x, y) cells from the axis, A = scale * [[cos t, -sin t], [sin t, cos t]]; slmsuite's kxy -> ij
affine is M = A diag(Nx px, Ny py) (px, py = SLM pitch / wavelength) with the same b. Each camera pixel
collects 1/|det A| of a cell's intensity (energy is conserved).

Speed: the camera image is (S conv P_w) / |det A| where S is the input splatted (bilinearly) onto camera
pixels and P_w(r) = PSF(A^-1 (r - b)) is the warped PSF; the FFT of P_w is cached per SLM write, so a
frame costs one pruned real FFT convolution plus the sensor model.

Sensor non-uniformity: a fixed per-pixel response map ``g`` (photo-response non-uniformity, PRNU, of relative RMS
`prnu`, times an optional smooth radial fall-off `vignetting`) multiplies the photoelectrons before shot noise;
the dark offset and read noise are not affected. It is drawn once per camera from `prnu_seed` (default: `seed`,
else 0), so the same sensor has the same map in every session, as a real one does; `gain_map` exposes it.

Illumination: on a bench with a light source and/or a shutter (``attach_light``, done by ``Bench.connect``), the
photon flux scales with the source's power setpoint over `reference_power_mw`, and is zero while emission is off or
the shutter closed — a dark frame is then the sensor alone. A camera with neither sees the reference flux.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import scipy.fft as sfft
from pydantic import BaseModel, ConfigDict, Field
from scipy import sparse
from scipy.ndimage import map_coordinates
from scipy.special import ndtri
from slmsuite.hardware.cameras.camera import Camera

from lab4f.drivers.faults import FaultPlan, check_connected, check_frame_timeout
from lab4f.drivers.sim_display import SimulatedDisplay
from lab4f.drivers.sim_slm import SimulatedFourierSLM
from lab4f.errors import DeviceDisconnected


class SimulatedCameraSettings(BaseModel):
    """Bench parameters of the simulated camera (defaults: a 12-bit CMOS, slightly misaligned)."""

    model_config = ConfigDict(extra="forbid")

    resolution: tuple[int, int] = Field((512, 512), description="(width, height) in pixels, as slmsuite")
    pitch_um: float = Field(5.5, gt=0)
    bitdepth: int = Field(12, ge=1, le=16)
    exposure_s: float = Field(0.002, gt=0, description="starting exposure; calibration sets its own")
    gain: float = Field(0.4, gt=0, description="conversion gain, ADU per photoelectron")
    full_well_e: float = Field(10_000.0, gt=0)
    read_noise_e: float = Field(3.0, ge=0)
    dark_offset_adu: float = Field(100.0, ge=0)
    photons_per_unit: float = Field(
        2e7, gt=0, description="photoelectrons per second of exposure per unit of output intensity (the default "
        "source brightness puts calibrated exposures at a few ms)"
    )
    max_fps: float | None = Field(
        200.0, gt=0, description="readout limit: frames are not delivered faster (None: none). A frame also takes "
        "at least its exposure, so the frame rate is min(max_fps, 1 / exposure)"
    )
    max_exposure_s: float = Field(1.0, gt=0, description="the longest exposure the sensor accepts")
    affine_shift_px: tuple[float, float] = Field((3.2, -2.1), description="(x, y) axis offset from centre")
    affine_rotation_deg: float = 0.8
    affine_scale: float = Field(1.02, gt=0, description="camera pixels per output-plane cell")
    fourier_aperture_radius_px: float | None = Field(
        None, gt=0, description="circular pupil on the SLM, radius in SLM pixels (None: the SLM's extent)"
    )
    mode: Literal["incoherent", "coherent"] = "incoherent"
    noise: bool = True
    exact_poisson: bool = Field(False, description="exact Poisson shot noise (slow) instead of Gaussian")
    seed: int | None = None
    prnu: float = Field(
        0.0, ge=0, lt=0.3,
        description="photo-response non-uniformity: relative RMS of a fixed per-pixel gain map (0: uniform sensor; "
                    "real CMOS sensors: 0.005..0.02)",
    )
    vignetting: float = Field(
        0.0, ge=0, lt=1,
        description="smooth relative response fall-off at the sensor corners (quadratic in the radius; 0: none)",
    )
    prnu_seed: int | None = Field(None, description="seed of the gain map (None: `seed`, or 0 without a seed)")
    reference_power_mw: float = Field(
        1.0, gt=0, description="light-source power at which `photons_per_unit` holds (flux scales with the power)")
    capture_attempts: int = Field(1, ge=1, description="slmsuite retries; 1 surfaces faults at once")
    fft_workers: int = Field(-1, description="scipy.fft workers (-1: all cores)")
    name: str = "sim-4f-camera"


_NORMAL_TABLE: np.ndarray | None = None


def _normal_table() -> np.ndarray:
    """65,536 standard-normal quantiles (float32, unit variance): a uint16 draw indexes one cheaply."""
    global _NORMAL_TABLE
    if _NORMAL_TABLE is None:
        table = ndtri((np.arange(65536) + 0.5) / 65536)
        _NORMAL_TABLE = (table / table.std()).astype(np.float32)
    return _NORMAL_TABLE


@dataclass(frozen=True)
class _Geometry:
    """Where the display's pixels land on the camera, and the FFT grid of the convolution."""

    key: tuple
    splat: sparse.csr_matrix  # (bh * bw, display pixels) bilinear weights
    origin: tuple[int, int]  # (y0, x0): camera offset of splat-box pixel (0, 0)
    box: tuple[int, int]  # (bh, bw)
    fft_shape: tuple[int, int]


class Simulated4fCamera(Camera):
    """A slmsuite Camera imaging the 4f output plane: PSF from the SLM, input from the display, a sensor."""

    def __init__(
        self,
        slm: SimulatedFourierSLM,
        display: SimulatedDisplay | None = None,
        settings: SimulatedCameraSettings | None = None,
        faults: FaultPlan | None = None,
    ) -> None:
        self.settings = s = settings or SimulatedCameraSettings()
        self.slm, self.display = slm, display
        self.faults = faults or FaultPlan()
        self.last_frame_index, self.frames_dropped, self.frames_delivered = -1, 0, 0
        self._ready, self._closed = False, False
        self._exposure_hw_s = s.exposure_s
        self._rng = np.random.default_rng(s.seed)
        self._t_last_frame = -np.inf
        self._psf_cache: dict = {}
        self._warp_cache: tuple | None = None
        self._geom: _Geometry | None = None
        self._ideal_cache: tuple | None = None
        super().__init__(
            s.resolution,
            bitdepth=s.bitdepth,
            pitch_um=s.pitch_um,
            name=s.name,
            exposure_bounds_s=(1e-6, s.max_exposure_s),
            capture_attempts=s.capture_attempts,
        )
        self.set_affine()
        # the sensor's fixed relative response per pixel (None: uniform), drawn once: a sensor does not change
        seed = s.prnu_seed if s.prnu_seed is not None else (s.seed if s.seed is not None else 0)
        self._gain_map = self._make_gain_map(s.prnu, s.vignetting, seed, self.shape)
        self._light_source: Any = None
        self._shutter: Any = None
        self._ready = True

    # --- illumination ----------------------------------------------------------------------------
    def attach_light(self, light_source: Any = None, shutter: Any = None) -> None:
        """Couple the frames to the bench's source and shutter: anything with ``known(name)`` giving the last
        accepted ``power_mw``/``output_on`` and ``is_open`` (lab4f's SCPI instruments). None: not on the bench."""
        self.light_level_of(light_source, shutter)  # reads their state now: a failure is raised here, not mid-run
        self._light_source, self._shutter = light_source, shutter

    def light_level(self) -> float:
        """Photon flux relative to the reference: power / reference power (0 with emission off or shutter shut)."""
        return self.light_level_of(self._light_source, self._shutter)

    def light_level_of(self, src: Any, sh: Any) -> float:
        level = 1.0
        if src is not None:
            level = float(src.known("power_mw")) / self.settings.reference_power_mw if src.known("output_on") else 0.0
        if sh is not None and not sh.known("is_open"):
            level = 0.0
        return level

    # --- geometry -------------------------------------------------------------------------------

    def set_affine(self, M: np.ndarray | None = None, b: np.ndarray | None = None) -> None:
        """Set the true kxy -> camera-pixel affine (slmsuite's M, b); None for both: from the settings."""
        ny, nx = self.slm.shape
        cells_per_k = np.diag([nx * self.slm.pitch[0], ny * self.slm.pitch[1]])
        if M is None and b is None:
            s = self.settings
            t = np.deg2rad(s.affine_rotation_deg)
            A = s.affine_scale * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
            b_xy = np.array([self.shape[1] / 2, self.shape[0] / 2]) + np.asarray(s.affine_shift_px)
            M = A @ cells_per_k
        elif M is None or b is None:
            raise ValueError("Give both M and b, or neither (then the settings' misalignment is used).")
        else:
            b_xy = np.ravel(np.asarray(b, dtype=np.float64))
        self.M = np.asarray(M, dtype=np.float64).reshape(2, 2)
        self.b = b_xy.reshape(2, 1)
        self.A = self.M @ np.linalg.inv(cells_per_k)  # output-plane cells -> camera pixels

    @property
    def optical_axis_cell(self) -> tuple[int, int]:
        """(row, col) of the optical axis on the output-plane (far-field) grid."""
        return self.slm.shape[0] // 2, self.slm.shape[1] // 2

    def _display_offsets(self) -> tuple[np.ndarray, np.ndarray, tuple]:
        if self.display is None:  # a point source on the axis: slmsuite's far-field camera
            return np.zeros((1, 1)), np.zeros((1, 1)), ((1, 1), (0.0, 0.0))
        ux, uy = self.display.cell_offsets()
        return ux, uy, (self.display.shape, self.display.position_px)

    def _geometry(self) -> _Geometry:
        ux, uy, dkey = self._display_offsets()
        key = (tuple(self.A.ravel()), dkey, self.shape)
        if self._geom is not None and self._geom.key == key:
            return self._geom
        A = self.A
        wx, wy = A[0, 0] * ux + A[0, 1] * uy, A[1, 0] * ux + A[1, 1] * uy
        x0, y0 = int(np.floor(wx.min())), int(np.floor(wy.min()))
        bw, bh = int(np.floor(wx.max())) - x0 + 2, int(np.floor(wy.max())) - y0 + 2
        fx, fy = np.floor(wx), np.floor(wy)
        tx, ty = (wx - fx).ravel(), (wy - fy).ravel()
        ix, iy = (fx - x0).astype(np.int64).ravel(), (fy - y0).astype(np.int64).ravel()
        cols = np.arange(ux.size)
        rows, cols4, data = [], [], []
        for dy, dx, wgt in ((0, 0, (1 - ty) * (1 - tx)), (0, 1, (1 - ty) * tx), (1, 0, ty * (1 - tx)),
                            (1, 1, ty * tx)):
            rows.append((iy + dy) * bw + ix + dx)
            cols4.append(cols)
            data.append(wgt)
        splat = sparse.coo_matrix(
            (np.concatenate(data).astype(np.float32), (np.concatenate(rows), np.concatenate(cols4))),
            shape=(bh * bw, ux.size),
        ).tocsr()
        h, w = self.shape
        real = self.settings.mode == "incoherent"
        fft_shape = (sfft.next_fast_len(h + bh - 1, real=real), sfft.next_fast_len(w + bw - 1, real=real))
        self._geom = _Geometry(key, splat, (y0, x0), (bh, bw), fft_shape)
        return self._geom

    # --- optics ---------------------------------------------------------------------------------

    def amplitude_psf(self, write_index: int | None = None) -> np.ndarray:
        """Complex amplitude PSF h on the output-plane grid (axis at `optical_axis_cell`), complex64."""
        index = self.slm.visible_write_index if write_index is None else write_index
        radius = self.settings.fourier_aperture_radius_px
        key = (index, radius)
        if key not in self._psf_cache:
            field = self.slm.field_of_write(index)
            norm = np.sqrt(field.size * np.sum(np.abs(field) ** 2, dtype=np.float64))
            if radius is not None:
                ny, nx = field.shape
                yy, xx = np.ogrid[:ny, :nx]
                field = field * (((yy - ny // 2) ** 2 + (xx - nx // 2) ** 2) <= radius**2)
            h = sfft.fftshift(sfft.fft2(sfft.fftshift(field), workers=self.settings.fft_workers))
            self._psf_cache = {key: (h / norm).astype(np.complex64)}
        return self._psf_cache[key]

    def psf(self, write_index: int | None = None) -> np.ndarray:
        """Intensity PSF |h|^2 on the output-plane grid (float32); sums to the pupil's transmission."""
        h = self.amplitude_psf(write_index)
        return (h.real**2 + h.imag**2).astype(np.float32)

    def _input(self, image: np.ndarray | None = None) -> np.ndarray:
        """Displayed intensity: `image`, else the display's, else a unit point on the axis."""
        if image is not None:
            return np.asarray(image, dtype=np.float32)
        if self.display is None:
            return np.ones((1, 1), dtype=np.float32)
        return self.display.image

    def render_ideal(self, image: np.ndarray | None = None) -> np.ndarray:
        """Noise-free output-plane intensity (Ny, Nx) before camera misregistration; circular (periodic PSF)."""
        inp = self._input(image)
        ny, nx = self.slm.shape
        cy, cx = self.optical_axis_cell
        ux, uy, _ = self._display_offsets()
        if ux.shape != inp.shape:
            raise ValueError(f"image shape {inp.shape} does not match the display shape {ux.shape}")
        placed = np.zeros((ny, nx), dtype=np.float32)
        gx, gy = ux + cx, uy + cy
        fx, fy = np.floor(gx), np.floor(gy)
        tx, ty = gx - fx, gy - fy
        coherent = self.settings.mode == "coherent"
        values = np.sqrt(inp) if coherent else inp
        for dy, dx, wgt in ((0, 0, (1 - ty) * (1 - tx)), (0, 1, (1 - ty) * tx), (1, 0, ty * (1 - tx)),
                            (1, 1, ty * tx)):
            np.add.at(placed, ((fy.astype(int) + dy) % ny, (fx.astype(int) + dx) % nx), values * wgt)
        w = self.settings.fft_workers
        if coherent:
            kernel = sfft.fft2(sfft.ifftshift(self.amplitude_psf()), workers=w)
            field = sfft.ifft2(sfft.fft2(placed, workers=w) * kernel, workers=w)
            return (field.real**2 + field.imag**2).astype(np.float32)
        kernel = sfft.rfft2(sfft.ifftshift(self.psf()), workers=w)
        return sfft.irfft2(sfft.rfft2(placed, workers=w) * kernel, s=(ny, nx), workers=w).astype(np.float32)

    def _warped_psf_fft(self, geom: _Geometry) -> np.ndarray:
        """FFT of the PSF warped onto the camera's extended convolution grid; cached per SLM write."""
        index = self.slm.visible_write_index
        s = self.settings
        key = (index, s.mode, s.fourier_aperture_radius_px, geom.key, tuple(self.b.ravel()))
        if self._warp_cache is not None and self._warp_cache[0] == key:
            return self._warp_cache[1]
        (h, w), (bh, bw), (y0, x0) = self.shape, geom.box, geom.origin
        ry = np.arange(h + bh - 1, dtype=np.float64) - (y0 + bh - 1) - self.b[1, 0]
        rx = np.arange(w + bw - 1, dtype=np.float64) - (x0 + bw - 1) - self.b[0, 0]
        inv = np.linalg.inv(self.A)
        cy, cx = self.optical_axis_cell
        col = inv[0, 0] * rx[None, :] + inv[0, 1] * ry[:, None] + cx
        row = inv[1, 0] * rx[None, :] + inv[1, 1] * ry[:, None] + cy
        coords = np.stack([row, col])
        jacobian = np.float32(1.0 / abs(np.linalg.det(self.A)))

        def warp(img: np.ndarray) -> np.ndarray:
            return map_coordinates(img, coords, order=1, mode="grid-wrap", output=np.float32) * jacobian

        if s.mode == "coherent":
            amp = self.amplitude_psf(index)
            warped = warp(amp.real) + 1j * warp(amp.imag)
            kernel = sfft.fft2(warped.astype(np.complex64), s=geom.fft_shape, workers=s.fft_workers)
        else:
            kernel = sfft.rfft2(warp(self.psf(index)), s=geom.fft_shape, workers=s.fft_workers)
        self._warp_cache = (key, kernel)
        return kernel

    def render(self) -> np.ndarray:
        """Noise-free camera image in output-intensity units (float32, camera shape), before the sensor."""
        geom = self._geometry()
        kernel = self._warped_psf_fft(geom)
        version = None if self.display is None else self.display.version
        key = (self._warp_cache[0], version)
        if self._ideal_cache is not None and self._ideal_cache[0] == key:
            return self._ideal_cache[1]
        inp = self._input()
        coherent = self.settings.mode == "coherent"
        values = np.sqrt(inp) if coherent else inp
        (h, w), (bh, bw), (ly, lx) = self.shape, geom.box, geom.fft_shape
        box = (geom.splat @ values.ravel()).reshape(bh, bw).astype(np.float32)
        wk = self.settings.fft_workers
        if coherent:
            spec = sfft.fft(sfft.fft(box.astype(np.complex64), n=lx, axis=1, workers=wk), n=ly, axis=0, workers=wk)
            spec *= kernel
            rows = sfft.ifft(spec, axis=0, workers=wk)[bh - 1 : bh - 1 + h]
            field = sfft.ifft(rows, axis=1, workers=wk)[:, bw - 1 : bw - 1 + w]
            img = (field.real**2 + field.imag**2) * np.float32(abs(np.linalg.det(self.A)))
        else:
            spec = sfft.fft(sfft.rfft(box, n=lx, axis=1, workers=wk), n=ly, axis=0, workers=wk)
            spec *= kernel
            rows = sfft.ifft(spec, axis=0, workers=wk)[bh - 1 : bh - 1 + h]
            img = sfft.irfft(rows, n=lx, axis=1, workers=wk)[:, bw - 1 : bw - 1 + w]
        img = np.ascontiguousarray(img, dtype=np.float32)
        self._ideal_cache = (key, img)
        return img

    # --- sensor ---------------------------------------------------------------------------------

    @staticmethod
    def _make_gain_map(prnu: float, vignetting: float, seed: int, shape: tuple[int, int]) -> np.ndarray | None:
        """PRNU about 1 times the vignetting (1 at the centre), float32; None for a uniform sensor."""
        if prnu == 0 and vignetting == 0:
            return None
        h, w = shape
        # its own stream: the map does not depend on, or shift, the noise sequence of `seed`
        rng = np.random.default_rng([int(seed), 0x5052_4E55])
        g = np.ones((h, w), dtype=np.float64)
        if prnu > 0:
            g += prnu * rng.standard_normal((h, w))
        if vignetting > 0:
            yy, xx = np.ogrid[:h, :w]
            r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2)
            g *= 1.0 - vignetting * r2
        return np.maximum(g, 0.05).astype(np.float32)

    @property
    def gain_map(self) -> np.ndarray:
        """The sensor's true relative response per pixel (PRNU × vignetting; all ones for a uniform sensor).

        The truth a flat-field calibration recovers; a read-only view of the map the sensor model uses."""
        g = self._gain_map
        if g is None:
            return np.ones(self.shape, dtype=np.float32)
        view = g.view()
        view.flags.writeable = False
        return view

    def _sensor(self, ideal: np.ndarray) -> np.ndarray:
        """Photoelectrons (times the pixel response map), shot + read noise, full-well saturation, gain, dark offset,
        quantisation."""
        s = self.settings
        electrons = ideal * np.float32(s.photons_per_unit * self.exposure_s * self.light_level())
        gain_map = self._gain_map
        if gain_map is not None:
            electrons *= gain_map  # PRNU: each pixel's quantum efficiency, before shot noise
        if s.noise and s.exact_poisson:
            electrons = self._rng.poisson(np.maximum(electrons, 0)).astype(np.float32)
            electrons += np.float32(s.read_noise_e) * self._normal(electrons.shape)
        elif s.noise:
            # Gaussian shot noise (variance = mean) and read noise in one draw: sigma^2 = e + read^2.
            sigma = np.maximum(electrons, 0) + np.float32(s.read_noise_e**2)
            np.sqrt(sigma, out=sigma)
            sigma *= self._normal(electrons.shape)
            electrons = electrons + sigma
        np.minimum(electrons, np.float32(s.full_well_e), out=electrons)
        adu = electrons * np.float32(s.gain)
        adu += np.float32(s.dark_offset_adu)
        np.rint(adu, out=adu)
        np.clip(adu, 0, 2**s.bitdepth - 1, out=adu)
        return adu.astype(self.dtype)

    def _normal(self, shape: tuple[int, ...]) -> np.ndarray:
        """Standard normal float32 samples from the quantile table (4x faster than Generator.normal)."""
        return np.take(_normal_table(), self._rng.integers(0, 65536, size=shape, dtype=np.uint16))

    # --- slmsuite Camera hooks ------------------------------------------------------------------

    def _get_image_hw(self, timeout_s: float = 1.0) -> np.ndarray:
        """One frame: faults, frame-rate limit, dropped-frame bookkeeping, render, sensor."""
        if not self._ready:
            raise RuntimeError("camera still initialising")  # slmsuite's dtype probe: use bitdepth
        if self._closed:
            raise DeviceDisconnected(f"{self.name} was closed; create a new camera object.", device=self.name)
        check_connected(self.faults, self.frames_delivered, self.name)
        check_frame_timeout(self.faults, self.frames_delivered, self.name, timeout_s)
        # a frame integrates for its exposure and reads out at most max_fps times a second: the frame period is the
        # longer of the two (frames are delivered in real time, like a free-running sensor)
        period_s = max(self.exposure_s, 1.0 / self.settings.max_fps if self.settings.max_fps else 0.0)
        wait_s = self._t_last_frame + period_s - time.perf_counter()
        if wait_s > 0:
            time.sleep(wait_s)
        self._t_last_frame = time.perf_counter()
        index = self.last_frame_index + 1
        while self.faults.drops(index):
            self.frames_dropped += 1
            index += 1
        frame = self._sensor(self.render())
        self.last_frame_index = index
        self.frames_delivered += 1
        return frame

    def _get_exposure_hw(self) -> float:
        return self._exposure_hw_s

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._exposure_hw_s = float(exposure_s)

    def flush(self, timeout_s: float = 1) -> None:
        """No frames are buffered in the simulation."""

    @staticmethod
    def info(verbose: bool = True) -> list[str]:
        """The one simulated camera there is."""
        if verbose:
            print(["Simulated4fCamera"])
        return ["Simulated4fCamera"]

    def close(self) -> None:
        """Disconnect; later frames raise `DeviceDisconnected`."""
        self._closed = True
