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
from collections import deque
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
from lab4f.drivers.frames import Frame
from lab4f.drivers.sim_display import SimulatedDisplay
from lab4f.drivers.sim_slm import SimulatedFourierSLM
from lab4f.drivers.timing import ResponseHistory, now
from lab4f.errors import ConfigError, DeviceDisconnected, DeviceTimeout


class SimulatedCameraSettings(BaseModel):
    """Bench parameters of the simulated camera (defaults: a 12-bit CMOS, slightly misaligned)."""

    model_config = ConfigDict(extra="forbid")

    resolution: tuple[int, int] = Field(
        (512, 512), description="(width, height) in pixels, as slmsuite"
    )
    pitch_um: float = Field(5.5, gt=0)
    bitdepth: int = Field(12, ge=1, le=16)
    exposure_s: float = Field(
        0.002, gt=0, description="starting exposure; calibration sets its own"
    )
    gain: float = Field(0.4, gt=0, description="conversion gain, ADU per photoelectron")
    full_well_e: float = Field(10_000.0, gt=0)
    read_noise_e: float = Field(3.0, ge=0)
    dark_offset_adu: float = Field(100.0, ge=0)
    photons_per_unit: float = Field(
        2e7,
        gt=0,
        description="photoelectrons per second of exposure per unit of output intensity (the default "
        "source brightness puts calibrated exposures at a few ms)",
    )
    max_fps: float | None = Field(
        200.0,
        gt=0,
        description="readout limit: frames are not delivered faster (None: none). A frame also takes "
        "at least its exposure, so the frame rate is min(max_fps, 1 / exposure)",
    )
    max_exposure_s: float = Field(1.0, gt=0, description="the longest exposure the sensor accepts")
    affine_shift_px: tuple[float, float] = Field(
        (3.2, -2.1), description="(x, y) axis offset from centre"
    )
    affine_rotation_deg: float = 0.8
    affine_scale: float = Field(1.02, gt=0, description="camera pixels per output-plane cell")
    fourier_aperture_radius_px: float | None = Field(
        None,
        gt=0,
        description="circular pupil on the SLM, radius in SLM pixels (None: the SLM's extent)",
    )
    mode: Literal["incoherent", "coherent"] = "incoherent"
    noise: bool = True
    exact_poisson: bool = Field(
        False, description="exact Poisson shot noise (slow) instead of Gaussian"
    )
    seed: int | None = None
    prnu: float = Field(
        0.0,
        ge=0,
        lt=0.3,
        description="photo-response non-uniformity: relative RMS of a fixed per-pixel gain map (0: uniform sensor; "
        "real CMOS sensors: 0.005..0.02)",
    )
    vignetting: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="smooth relative response fall-off at the sensor corners (quadratic in the radius; 0: none)",
    )
    prnu_seed: int | None = Field(
        None, description="seed of the gain map (None: `seed`, or 0 without a seed)"
    )
    reference_power_mw: float = Field(
        1.0,
        gt=0,
        description="light-source power at which `photons_per_unit` holds (flux scales with the power)",
    )
    capture_attempts: int = Field(
        1, ge=1, description="slmsuite retries; 1 surfaces faults at once"
    )
    acquisition: Literal["instant", "free_running", "triggered"] = Field(
        "free_running",
        description="instant: a frame is exposed when get_image() is called (an idealisation no real "
        "camera offers); free_running: frames are exposed back to back at the frame rate and queue in buffers; "
        "triggered: a frame is exposed on each trigger (see trigger_source)",
    )
    buffer_count: int = Field(
        3, ge=1, description="GenTL-like buffers between the sensor and the host"
    )
    buffer_handling: Literal["OldestFirst", "OldestFirstOverwrite", "NewestOnly"] = Field(
        "OldestFirst",
        description="GenICam StreamBufferHandlingMode: OldestFirst (the default of most cameras: a "
        "full queue loses NEW frames, fetches return the oldest), OldestFirstOverwrite (a full queue loses its "
        "oldest frame), NewestOnly (one buffer, always the newest frame)",
    )
    readout_s: float = Field(
        0.001, ge=0, description="exposure end to frame in the host's queue (readout + link)"
    )
    trigger_source: Literal["software", "display", "slm"] = Field(
        "software",
        description="triggered cameras: a software trigger, or a hardware line from the input "
        "display's (each new image, at the refresh it starts) or the Fourier SLM's trigger output (each write)",
    )
    trigger_delay_s: float = Field(
        0.0, ge=0, description="delay from a trigger to the exposure start"
    )
    incomplete_every_n: int = Field(
        0, ge=0, description="every n-th frame arrives incomplete (a lossy GigE link; 0: never)"
    )
    clock_offset_s: float = Field(
        1000.0,
        description="the device clock's offset from the host's (timestamps are "
        "the device's; read_frame maps them to the host clock)",
    )
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
        self._warp_cache: dict = {}  # (key) -> warped PSF spectrum, a few recent SLM writes
        self._geom: _Geometry | None = None
        self._ideal_cache: dict = {}
        # timing: frames exposed but not yet fetched, the free-running schedule, pending triggers, the light
        self._queue: deque[tuple[int, float, float, bool]] = (
            deque()
        )  # (frame id, start, exposure, complete)
        self._next_id = 0
        self._next_start: float | None = None
        self._triggers: deque[float] = deque()
        self._light_hist: ResponseHistory | None = None
        self.frames_lost = (
            0  # exposed by the sensor but never delivered: buffers full (OldestFirst) or replaced
        )
        self.frames_incomplete = 0
        self.last_frame: Frame | None = None
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
        self.light_level_of(
            light_source, shutter
        )  # reads their state now: a failure is raised here, not mid-run
        self._light_source, self._shutter = light_source, shutter

    def light_level(self) -> float:
        """Photon flux relative to the reference: power / reference power (0 with emission off or shutter shut)."""
        return self.light_level_of(self._light_source, self._shutter)

    def light_level_of(self, src: Any, sh: Any) -> float:
        level = 1.0
        if src is not None:
            level = (
                float(src.known("power_mw")) / self.settings.reference_power_mw
                if src.known("output_on")
                else 0.0
            )
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
            raise ValueError(
                "Give both M and b, or neither (then the settings' misalignment is used)."
            )
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
        for dy, dx, wgt in (
            (0, 0, (1 - ty) * (1 - tx)),
            (0, 1, (1 - ty) * tx),
            (1, 0, ty * (1 - tx)),
            (1, 1, ty * tx),
        ):
            rows.append((iy + dy) * bw + ix + dx)
            cols4.append(cols)
            data.append(wgt)
        splat = sparse.coo_matrix(
            (
                np.concatenate(data).astype(np.float32),
                (np.concatenate(rows), np.concatenate(cols4)),
            ),
            shape=(bh * bw, ux.size),
        ).tocsr()
        h, w = self.shape
        real = self.settings.mode == "incoherent"
        fft_shape = (
            sfft.next_fast_len(h + bh - 1, real=real),
            sfft.next_fast_len(w + bw - 1, real=real),
        )
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
        for dy, dx, wgt in (
            (0, 0, (1 - ty) * (1 - tx)),
            (0, 1, (1 - ty) * tx),
            (1, 0, ty * (1 - tx)),
            (1, 1, ty * tx),
        ):
            np.add.at(
                placed, ((fy.astype(int) + dy) % ny, (fx.astype(int) + dx) % nx), values * wgt
            )
        w = self.settings.fft_workers
        if coherent:
            kernel = sfft.fft2(sfft.ifftshift(self.amplitude_psf()), workers=w)
            field = sfft.ifft2(sfft.fft2(placed, workers=w) * kernel, workers=w)
            return (field.real**2 + field.imag**2).astype(np.float32)
        kernel = sfft.rfft2(sfft.ifftshift(self.psf()), workers=w)
        return sfft.irfft2(sfft.rfft2(placed, workers=w) * kernel, s=(ny, nx), workers=w).astype(
            np.float32
        )

    def _warped_psf_fft(
        self, geom: _Geometry, write_index: int | None = None
    ) -> tuple[tuple, np.ndarray]:
        """(key, FFT of the PSF warped onto the camera's extended convolution grid); cached for recent writes."""
        index = self.slm.visible_write_index if write_index is None else write_index
        s = self.settings
        key = (index, s.mode, s.fourier_aperture_radius_px, geom.key, tuple(self.b.ravel()))
        if key in self._warp_cache:
            return key, self._warp_cache[key]
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
            return (
                map_coordinates(img, coords, order=1, mode="grid-wrap", output=np.float32)
                * jacobian
            )

        if s.mode == "coherent":
            amp = self.amplitude_psf(index)
            warped = warp(amp.real) + 1j * warp(amp.imag)
            kernel = sfft.fft2(warped.astype(np.complex64), s=geom.fft_shape, workers=s.fft_workers)
        else:
            kernel = sfft.rfft2(warp(self.psf(index)), s=geom.fft_shape, workers=s.fft_workers)
        while len(self._warp_cache) >= 3:  # a settling SLM mixes two writes; keep a few
            self._warp_cache.pop(next(iter(self._warp_cache)))
        self._warp_cache[key] = kernel
        return key, kernel

    def render(
        self,
        image: np.ndarray | None = None,
        image_key: object = None,
        write_index: int | None = None,
    ) -> np.ndarray:
        """Noise-free camera image in output-intensity units (float32, camera shape), before the sensor: of
        ``image`` (default: the display's latest image) through the PSF of SLM write ``write_index`` (default: the
        one the light sees now). ``image_key`` identifies ``image`` for the cache."""
        geom = self._geometry()
        wkey, kernel = self._warped_psf_fft(geom, write_index)
        if image is None:
            image_key = None if self.display is None else self.display.version
        key = (wkey, image_key)
        if image_key is not None or image is None:
            cached = self._ideal_cache.get(key)
            if cached is not None:
                return cached
        inp = self._input(image)
        coherent = self.settings.mode == "coherent"
        values = np.sqrt(inp) if coherent else inp
        (h, w), (bh, bw), (ly, lx) = self.shape, geom.box, geom.fft_shape
        box = (geom.splat @ values.ravel()).reshape(bh, bw).astype(np.float32)
        wk = self.settings.fft_workers
        if coherent:
            spec = sfft.fft(
                sfft.fft(box.astype(np.complex64), n=lx, axis=1, workers=wk),
                n=ly,
                axis=0,
                workers=wk,
            )
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
        if image_key is not None or image is None:
            while len(self._ideal_cache) >= 4:
                self._ideal_cache.pop(next(iter(self._ideal_cache)))
            self._ideal_cache[key] = img
        return img

    def render_exposure(self, start_s: float, exposure_s: float) -> np.ndarray:
        """What an exposure over ``[start_s, start_s + exposure_s]`` (host clock) integrates, before the sensor:
        the display's images and the SLM's writes weighted by the time each was shown (a display or SLM that
        changed during the exposure gives a mixture), in output-intensity units per second of exposure."""
        t1 = start_s + exposure_s
        if self.display is None:
            image, image_key = None, None
        else:
            shown = self.display.image_weights(start_s, t1)
            if len(shown) == 1:
                image, image_key = shown[0][2], shown[0][1]
            else:  # the pixels were changing: their mean intensity over the exposure
                image = sum(np.float32(w) * img for w, _, img in shown)
                image_key = tuple((v, round(w, 6)) for w, v, _ in shown)
        writes = self.slm.write_weights(start_s, t1)
        out = None
        for w, index in writes:
            part = self.render(image, image_key, index)
            out = part * np.float32(w) if out is None else out + part * np.float32(w)
        assert out is not None
        return out

    # --- sensor ---------------------------------------------------------------------------------

    @staticmethod
    def _make_gain_map(
        prnu: float, vignetting: float, seed: int, shape: tuple[int, int]
    ) -> np.ndarray | None:
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
            r2 = ((yy - (h - 1) / 2) ** 2 + (xx - (w - 1) / 2) ** 2) / (
                ((h - 1) / 2) ** 2 + ((w - 1) / 2) ** 2
            )
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

    def _sensor(
        self, ideal: np.ndarray, light: float | None = None, exposure_s: float | None = None
    ) -> np.ndarray:
        """Photoelectrons (times the pixel response map), shot + read noise, full-well saturation, gain, dark offset,
        quantisation. ``light``: the mean relative flux over the exposure (default: now)."""
        s = self.settings
        light = self.light_level() if light is None else light
        exposure_s = self.exposure_s if exposure_s is None else exposure_s
        electrons = ideal * np.float32(s.photons_per_unit * exposure_s * light)
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
        """One frame (slmsuite's hook): the next one :meth:`read_frame` delivers."""
        return self.read_frame(timeout_s).image

    # --- timing: frames, buffers, triggers (lab4f.drivers.frames) ------------------------------------

    @property
    def buffers_frames(self) -> bool:
        """False for the instant camera (it exposes on request and queues nothing)."""
        return self.settings.acquisition != "instant"

    @property
    def trigger_mode(self) -> str:
        """ "off" (free-running or instant), "software" or "hardware" (a line from the display or the SLM)."""
        if self.settings.acquisition != "triggered":
            return "off"
        return "software" if self.settings.trigger_source == "software" else "hardware"

    @property
    def frame_period_s(self) -> float:
        """Time between frame starts when free-running: the longer of the exposure and the readout limit."""
        return max(self.exposure_s, 1.0 / self.settings.max_fps if self.settings.max_fps else 0.0)

    def device_time_s(self) -> float:
        """The camera's clock now (what a GenICam TimestampLatch reads)."""
        return now() + self.settings.clock_offset_s

    def trigger(self) -> None:
        """Expose one frame now (software trigger; after ``trigger_delay_s``)."""
        if self.trigger_mode != "software":
            raise ConfigError(
                f"{self.name} is not software-triggered (acquisition={self.settings.acquisition!r}, "
                f'trigger_source={self.settings.trigger_source!r}); set acquisition = "triggered" '
                'and trigger_source = "software" in the camera settings'
            )
        self._check_alive()
        self._schedule(now() + self.settings.trigger_delay_s)

    def _check_alive(self) -> None:
        if not self._ready:
            raise RuntimeError("camera still initialising")  # slmsuite's dtype probe: use bitdepth
        if self._closed:
            raise DeviceDisconnected(
                f"{self.name} was closed; create a new camera object.", device=self.name
            )
        check_connected(self.faults, self.frames_delivered, self.name)

    def _schedule(self, start_s: float) -> None:
        """A triggered exposure: it starts no earlier than the sensor is free (the previous frame's period)."""
        last = self._triggers[-1] if self._triggers else -np.inf
        self._triggers.append(max(start_s, last + self.frame_period_s))

    def _hardware_triggers(self, until_s: float) -> None:
        """Exposures triggered by the display's or the SLM's trigger output up to ``until_s``."""
        src = self.settings.trigger_source
        device = self.display if src == "display" else self.slm
        on = (
            getattr(device, "last_on_s", None)
            if src == "display"
            else getattr(device, "last_write_s", None)
        )
        if on is None or not np.isfinite(on) or on == getattr(self, "_last_hw_trigger", None):
            return
        self._last_hw_trigger = on
        self._schedule(on + self.settings.trigger_delay_s)

    def _advance(self, t: float) -> None:
        """Move the sensor on to time ``t``: every exposure read out by then goes into the buffer queue."""
        s = self.settings
        ready = s.readout_s
        if s.acquisition == "free_running":
            if self._next_start is None:
                self._next_start = t  # acquisition starts with the first request
            period = self.frame_period_s
            while self._next_start + self.exposure_s + ready <= t:
                start = self._next_start
                full = len(self._queue) >= s.buffer_count and s.buffer_handling == "OldestFirst"
                if full:  # every frame until the next fetch is lost: skip them in one step
                    n = int((t - ready - self.exposure_s - start) // period) + 1
                    self._next_id += n
                    self.frames_lost += n
                    self._next_start = start + n * period
                    continue
                self._enqueue(start)
                self._next_start = start + period
        elif s.acquisition == "triggered":
            if s.trigger_source != "software":
                self._hardware_triggers(t)
            while self._triggers and self._triggers[0] + self.exposure_s + ready <= t:
                self._enqueue(self._triggers.popleft())

    def _enqueue(self, start: float) -> None:
        fid = self._next_id
        self._next_id += 1
        if self.faults.drops(fid):
            self.frames_dropped += 1
            return
        s = self.settings
        complete = not (s.incomplete_every_n and (fid + 1) % s.incomplete_every_n == 0)
        if s.buffer_handling == "NewestOnly" and self._queue:
            self.frames_lost += len(self._queue)
            self._queue.clear()
        elif len(self._queue) >= s.buffer_count:
            if s.buffer_handling == "OldestFirst":
                self.frames_lost += 1
                return
            self._queue.popleft()  # OldestFirstOverwrite
            self.frames_lost += 1
        self._queue.append((fid, start, self.exposure_s, complete))

    def _next_ready_s(self) -> float | None:
        """When the next frame will be in the queue (None: none is coming — an untriggered triggered camera)."""
        s = self.settings
        if s.acquisition == "free_running":
            return (self._next_start or now()) + self.exposure_s + s.readout_s
        if self._triggers:
            return self._triggers[0] + self.exposure_s + s.readout_s
        return None

    def _light_over(self, t0: float, t1: float) -> float:
        """Mean relative flux over ``[t0, t1]``: the source and shutter as they were then."""
        level = self.light_level()
        changed = max(
            [
                getattr(d, "changed_at", {}).get(a, -np.inf)
                for d, a in (
                    (self._light_source, "power_mw"),
                    (self._light_source, "output_on"),
                    (self._shutter, "is_open"),
                )
                if d is not None
            ]
            or [-np.inf]
        )
        if self._light_hist is None:
            self._light_hist = ResponseHistory(level, level)
        elif self._light_hist.latest.value != level:
            self._light_hist.push(min(changed, now()), level, level)
        return float(sum(w * st.value for w, st in self._light_hist.weights(t0, t1)))

    def _expose(self, frame_id: int, start: float, exposure: float, complete: bool) -> Frame:
        image = self._sensor(
            self.render_exposure(start, exposure),
            self._light_over(start, start + exposure),
            exposure,
        )
        if not complete:  # a lossy link: the tail of the buffer never arrived
            self.frames_incomplete += 1
            image[image.shape[0] // 2 :] = 0
        self.last_frame_index = frame_id
        self.frames_delivered += 1
        truth = (
            None
            if self.display is None
            else {
                "display": {v: w for w, v, _ in self.display.image_weights(start, start + exposure)}
            }
        )
        frame = Frame(
            image, frame_id, start, exposure, complete, start + self.settings.clock_offset_s, truth
        )
        self.last_frame = frame
        return frame

    def read_frame(self, timeout_s: float | None = None) -> Frame:
        """The next frame: instant cameras expose it now; free-running and triggered ones deliver the oldest
        queued frame (as GenTL's OldestFirst does), waiting for one up to ``timeout_s``."""
        timeout_s = 1.0 if timeout_s is None else float(timeout_s)
        self._check_alive()
        check_frame_timeout(self.faults, self.frames_delivered, self.name, timeout_s)
        if self.settings.acquisition == "instant":
            return self._instant_frame()
        deadline = now() + timeout_s
        while True:
            self._advance(now())
            if self._queue:
                return self._expose(*self._queue.popleft())
            ready = self._next_ready_s()
            if ready is None or ready > deadline:
                if ready is not None:
                    time.sleep(max(deadline - now(), 0))
                what = (
                    "no trigger came"
                    if ready is None
                    else f"the next frame is due in {ready - now():.3g} s"
                )
                raise DeviceTimeout(
                    f"{self.name} delivered no frame within {timeout_s:.3g} s ({what}); check the "
                    "trigger and the exposure, or raise the timeout",
                    device=self.name,
                )
            time.sleep(max(ready - now(), 0))

    def drain(self) -> list[Frame]:
        """Every frame already in the queue, without waiting for a new one (a flush that empties it)."""
        self._check_alive()
        if self.settings.acquisition == "instant":
            return []
        self._advance(now())
        out = [self._expose(*item) for item in list(self._queue)]
        self._queue.clear()
        return out

    def _instant_frame(self) -> Frame:
        """Today's idealised camera: the frame is exposed when asked (after the frame-rate limit)."""
        wait_s = self._t_last_frame + self.frame_period_s - time.perf_counter()
        if wait_s > 0:
            time.sleep(wait_s)
        self._t_last_frame = time.perf_counter()
        index = self.last_frame_index + 1
        while self.faults.drops(index):
            self.frames_dropped += 1
            index += 1
        self._next_id = index + 1
        t = now()  # exposed now: the time the simulator takes to render is not the sensor's
        frame = self._sensor(self.render())
        self.last_frame_index = index
        self.frames_delivered += 1
        truth = None if self.display is None else {"display": {self.display.version: 1.0}}
        self.last_frame = Frame(
            frame, index, t, self.exposure_s, True, t + self.settings.clock_offset_s, truth
        )
        return self.last_frame

    def _get_exposure_hw(self) -> float:
        return self._exposure_hw_s

    def _set_exposure_hw(self, exposure_s: float) -> None:
        self._exposure_hw_s = float(exposure_s)

    def flush(self, timeout_s: float = 1) -> None:
        """Empty the buffer queue (an instant camera buffers nothing)."""
        self.drain()

    @staticmethod
    def info(verbose: bool = True) -> list[str]:
        """The one simulated camera there is."""
        if verbose:
            print(["Simulated4fCamera"])
        return ["Simulated4fCamera"]

    def close(self) -> None:
        """Disconnect; later frames raise `DeviceDisconnected`."""
        self._closed = True
