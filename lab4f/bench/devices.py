"""Driver registry and the :class:`Bench`: the devices of one bench, built from a :class:`BenchConfig`.

Simulated drivers (the default) and lab4f's own drivers validate their settings with pydantic models;
vendor SLMs and cameras are slmsuite classes, imported only when chosen (their SDKs are optional) and
given their settings as keyword arguments.
"""

from __future__ import annotations

import importlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel

from lab4f.bench.config import BenchConfig, DeviceConfig, load_bench_config, validate_settings
from lab4f.bench.preflight import Finding, check_settings, raise_for_errors, resolve_class
from lab4f.bench.sync import Sync, SyncedCamera
from lab4f.errors import ConfigError, DeviceError
from lab4f.optics.geometry import FourfGeometry

log = logging.getLogger(__name__)

ROLES = ("slm", "display", "camera", "light_source", "shutter")


@dataclass(frozen=True)
class Driver:
    """How to build one kind of device from its settings and the devices built before it."""

    role: str
    build: Callable[[dict[str, Any], dict[str, Any]], Any]
    doc: str
    settings: tuple[str, str] | None = (
        None  # lab4f drivers: (module in lab4f.drivers, pydantic settings model)
    )
    slmsuite: tuple[str, str] | None = (
        None  # slmsuite drivers: (module in slmsuite.hardware, class)
    )


def _lab4f(
    module: str, cls: str, settings_cls: str | None, needs: tuple[str, ...] = ()
) -> Callable:
    def build(settings: dict[str, Any], built: dict[str, Any]) -> Any:
        mod = importlib.import_module(f"lab4f.drivers.{module}")
        args = [built[n] for n in needs]
        if settings_cls is None:
            return getattr(mod, cls)(*args, **settings)
        model = validate_settings(getattr(mod, settings_cls), settings, cls)
        return getattr(mod, cls)(*args, settings=model)

    return build


def _slmsuite(module: str, cls: str) -> Callable:
    def build(settings: dict[str, Any], built: dict[str, Any]) -> Any:
        try:
            mod = importlib.import_module(f"slmsuite.hardware.{module}")
        except ImportError as exc:
            raise ConfigError(
                f"driver {cls} needs its vendor SDK, which failed to import: {exc}"
            ) from exc
        if not hasattr(mod, cls):
            raise ConfigError(
                f"slmsuite's hardware.{module} has no {cls} class in this slmsuite version"
            )
        try:
            return getattr(mod, cls)(**settings)
        except TypeError as exc:
            raise ConfigError(
                f"{cls} settings {sorted(settings)} do not fit its constructor: {exc}"
            ) from exc
        except Exception as exc:  # vendor SDKs raise anything
            raise DeviceError(_open_failure(cls, exc)) from exc

    return build


def _open_failure(cls: str, exc: Exception) -> str:
    """What an slmsuite vendor class failing in its constructor most likely means."""
    text = f"{type(exc).__name__}: {exc}"
    sdk = isinstance(exc, ImportError | OSError) or any(
        w in text.lower() for w in ("dll", "windll", "sdk", ".so")
    )
    if sdk:
        return (
            f"{cls} could not load its vendor SDK on this machine ({text}): install the vendor's SDK/driver "
            f"(slmsuite's {cls} loads it when the device opens), or run on the bench PC it is installed on; "
            "no other device was left open"
        )
    return f"{cls} failed to open ({text}): check it is connected, powered and not held by another program"


DRIVERS: dict[str, Driver] = {
    "SimulatedFourierSLM": Driver(
        "slm",
        _lab4f("sim_slm", "SimulatedFourierSLM", "SimulatedSLMSettings"),
        "simulated phase SLM (nonlinear LUT, crosstalk, settle time)",
        ("sim_slm", "SimulatedSLMSettings"),
    ),
    "SimulatedDisplay": Driver(
        "display",
        _lab4f("sim_display", "SimulatedDisplay", "SimulatedDisplaySettings"),
        "simulated input display (DMD/monitor: refresh, latency, response)",
        ("sim_display", "SimulatedDisplaySettings"),
    ),
    "Simulated4fCamera": Driver(
        "camera",
        _lab4f(
            "sim_camera", "Simulated4fCamera", "SimulatedCameraSettings", needs=("slm", "display")
        ),
        "simulated camera rendering the 4f physics (buffers, triggers, timestamps)",
        ("sim_camera", "SimulatedCameraSettings"),
    ),
    "SLMDisplay": Driver(
        "display",
        _lab4f("slm_display", "SLMDisplay", "SLMDisplaySettings"),
        "any slmsuite SLM (DMD, amplitude SLM, monitor via ScreenMirrored) as the input display",
        ("slm_display", "SLMDisplaySettings"),
    ),
    "HarvestersCamera": Driver(
        "camera",
        _lab4f("harvesters_camera", "HarvestersCamera", "HarvestersCameraSettings"),
        "GenICam camera through a GenTL producer (.cti)",
        ("harvesters_camera", "HarvestersCameraSettings"),
    ),
    "LightSource": Driver(
        "light_source",
        _lab4f("instruments", "LightSource", "LightSourceSettings"),
        "SCPI laser/LED source over VISA",
        ("instruments", "LightSourceSettings"),
    ),
    "Shutter": Driver(
        "shutter",
        _lab4f("instruments", "Shutter", "ShutterSettings"),
        "SCPI shutter over VISA",
        ("instruments", "ShutterSettings"),
    ),
    "SC10Shutter": Driver(
        "shutter",
        _lab4f("thorlabs_sc10", "SC10Shutter", "SC10ShutterSettings"),
        "Thorlabs SC10 shutter controller (serial ens/closed?/interlock? command set)",
        ("thorlabs_sc10", "SC10ShutterSettings"),
    ),
    "PyLabLibCamera": Driver(
        "camera",
        _lab4f("pylablib_camera", "PyLabLibCamera", "PyLabLibCameraSettings"),
        "any pylablib camera (Andor, pco, Hamamatsu, Photometrics, Thorlabs DCx) by module path, "
        "as slmsuite's PyLabLib camera",
        ("pylablib_camera", "PyLabLibCameraSettings"),
    ),
}
# the device classes slmsuite 0.5 ships (its slms/thorlabs.py defines none, so there is no Thorlabs SLM here)
for _name, _mod in [
    ("Meadowlark", "meadowlark"),
    ("Holoeye", "holoeye"),
    ("Santec", "santec"),
    ("Hamamatsu", "hamamatsu"),
    ("PLM", "texasinstruments"),
    ("ScreenMirrored", "screenmirrored"),
]:
    DRIVERS[_name] = Driver(
        "slm",
        _slmsuite(f"slms.{_mod}", _name),
        f"slmsuite {_name} SLM (hardware.slms.{_mod})",
        slmsuite=(f"slms.{_mod}", _name),
    )
for _name, _mod in [
    ("AlliedVision", "alliedvision"),
    ("Basler", "basler"),
    ("FLIR", "flir"),
    ("ThorCam", "thorlabs"),
    ("ImagingSource", "imagingsource"),
    ("Instrumental", "instrumental"),
    ("MindVision", "mindvision"),
    ("Cheetah640", "xenics"),
    ("Webcam", "webcam"),
    ("PyLabLib", "pylablib"),
    ("MMCore", "mmcore"),
]:
    DRIVERS[_name] = Driver(
        "camera",
        _slmsuite(f"cameras.{_mod}", _name),
        f"slmsuite {_name} camera (hardware.cameras.{_mod})",
        slmsuite=(f"cameras.{_mod}", _name),
    )


def drivers_for(role: str) -> list[str]:
    return sorted(n for n, d in DRIVERS.items() if d.role == role)


def check_config(config: BenchConfig) -> list[Finding]:
    """Every device's settings in ``config`` against this registry's drivers, opening nothing (the preflight)."""
    return check_settings(config, DRIVERS, ROLES)


def installed_drivers() -> list[dict[str, Any]]:
    """Every registered driver and whether it can be used here (its vendor module imports)."""
    import warnings

    out = []
    for name, d in sorted(DRIVERS.items()):
        available, why = True, ""
        if d.slmsuite is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                try:
                    mod = importlib.import_module(f"slmsuite.hardware.{d.slmsuite[0]}")
                    available = hasattr(mod, d.slmsuite[1])
                except Exception as exc:  # a vendor module fails in its own way without its SDK
                    available, why = False, f"{type(exc).__name__}: {exc}"
        out.append(
            {"driver": name, "role": d.role, "doc": d.doc, "importable": available, "why": why}
        )
    return out


def _external(spec: str, role: str, settings: dict[str, Any]) -> Any:
    """A driver a lab adds: ``"package.module:Class"``, built with its settings as keyword arguments."""
    cls = resolve_class(spec)
    try:
        return cls(**settings)
    except TypeError as exc:
        raise ConfigError(
            f"{spec} settings {sorted(settings)} do not fit its constructor: {exc}"
        ) from exc
    except Exception as exc:  # a vendor SDK raises anything
        raise DeviceError(
            f"{spec} ({role}) failed to open: {exc}; check it is connected and its SDK installed",
            device=role,
        ) from exc


def build_device(role: str, cfg: DeviceConfig, built: dict[str, Any]) -> Any:
    if (
        role == "slm"
    ):  # vendor phase-correction / LUT files are loaded after the SLM opens (Bench.connect)
        from lab4f.drivers.vendor_files import split_vendor_files

        cfg = cfg.model_copy(update={"settings": split_vendor_files(cfg.settings)[0]})
    if ":" in cfg.driver:
        device = _external(cfg.driver, role, dict(cfg.settings))
        if role in ("light_source", "shutter") and hasattr(device, "connect"):
            device.connect()
        return device
    driver = DRIVERS.get(cfg.driver)
    if driver is None or driver.role != role:
        raise ConfigError(
            f"unknown {role} driver {cfg.driver!r}; available: {', '.join(drivers_for(role))}"
        )
    device = driver.build(dict(cfg.settings), built)
    if role in ("light_source", "shutter") and hasattr(device, "connect"):
        device.connect()
    return device


def identity_of(device: Any) -> dict[str, Any]:
    """Best-effort identity of any device (lab4f drivers expose ``identity``; slmsuite ones ``name``)."""
    ident = getattr(device, "identity", None)
    if ident is not None and not callable(ident):
        return ident._asdict() if hasattr(ident, "_asdict") else {"identity": str(ident)}
    return {"class": type(device).__name__, "name": getattr(device, "name", None)}


def settings_of(device: Any) -> dict[str, Any]:
    snap = getattr(device, "settings_snapshot", None)
    if callable(snap):
        return snap()
    settings = getattr(device, "settings", None)
    if isinstance(settings, BaseModel):
        return settings.model_dump(mode="json")
    return {}


#: (role, setting) that lets light through: the source's emission and the shutter
_LIGHT = (("light_source", "output_on"), ("shutter", "is_open"))


def set_light(devices: dict[str, Any], state: dict[str, bool], force: bool = False) -> None:
    """Put the source's emission and the shutter (the roles ``state`` names and ``devices`` has) in ``state``; a
    shutter that is to close closes first and one that is to open opens last, so no light passes in between."""
    shutter, source = devices.get("shutter"), devices.get("light_source")

    def differs(
        device: Any, attr: str, want: bool
    ) -> bool:  # a setting already in place is not sent again
        known = getattr(device, "known", None)
        return force or not callable(known) or bool(known(attr)) != want

    if shutter is not None and state.get("shutter") is False and differs(shutter, "is_open", False):
        shutter.is_open = False
    if (
        source is not None
        and "light_source" in state
        and differs(source, "output_on", state["light_source"])
    ):
        source.output_on = state["light_source"]
    if shutter is not None and state.get("shutter") is True and differs(shutter, "is_open", True):
        shutter.is_open = True


def light_state(devices: dict[str, Any]) -> dict[str, bool]:
    """The source's emission and the shutter, where the bench has them: ``{"light_source": on, "shutter": open}``."""
    return {role: bool(getattr(devices[role], attr)) for role, attr in _LIGHT if role in devices}


def stamp_writes(slm: Any) -> None:
    """Make an slmsuite SLM record when it was last written (``last_write_s``, host clock), as lab4f's simulated
    SLM does, so the sync policy knows when its pattern changed: slmsuite's ``set_phase`` calls the instance's
    ``_set_phase_hw``, which is wrapped here."""
    if (
        slm is None
        or hasattr(slm, "last_write_s")
        or not callable(getattr(slm, "_set_phase_hw", None))
    ):
        return
    inner = slm._set_phase_hw
    slm.last_write_s = -np.inf

    def stamped(*args: Any, **kwargs: Any) -> Any:
        out = inner(*args, **kwargs)
        slm.last_write_s = time.perf_counter()
        return out

    slm._set_phase_hw = stamped


class Bench:
    """All devices of one bench. Synchronous and Qt-free; use as a context manager so devices close."""

    def __init__(self, config: BenchConfig | None = None) -> None:
        self.config = (
            config or load_bench_config()
        )  # None: LAB4F_BENCH_CONFIG's bench, else the built-in one
        self.devices: dict[str, Any] = {}
        #: image → display drive values, set from a calibration record's display step (``record.apply``);
        #: None shows images as they are
        self.display_correction: Callable[[np.ndarray], np.ndarray] | None = None
        #: source emission and shutter before ``illuminate()`` switched them; ``close()`` restores them
        self._light_before: dict[str, bool] | None = None
        #: delays measured by the calibration's ``timing`` step (``record.apply``); None: nominal/config values
        self.measured_timing: dict[str, Any] | None = None
        self._sync: Sync | None = None
        #: the marker sync policy's decoder for the uploaded program (``prepare`` builds it); None otherwise
        self.marker_reader: Any = None
        self._synced: SyncedCamera | None = None

    # -- lifecycle ----------------------------------------------------------------------------------
    def connect(self) -> Bench:
        raise_for_errors(
            check_config(self.config)
        )  # a setting that does not fit fails before anything opens
        from lab4f.bench.safety import remember

        remember(self)  # closed on SIGTERM/SIGHUP/exit even outside a `with`
        try:
            for role in ROLES:
                cfg: DeviceConfig | None = getattr(self.config, role)
                if cfg is not None and cfg.enabled:
                    self.devices[role] = build_device(role, cfg, self.devices)
            self.couple_light()
            stamp_writes(self.devices.get("slm"))
            if self.config.slm is not None and "slm" in self.devices:
                from lab4f.drivers.vendor_files import apply_vendor_files, split_vendor_files

                files = split_vendor_files(self.config.slm.settings)[1]
                if files:
                    apply_vendor_files(self.devices["slm"], **files)
            from lab4f.bench.faults import apply_faults

            apply_faults(
                self.devices, self.config.faults
            )  # fault rehearsal ([faults.ROLE], LAB4F_FAULTS)
        except BaseException:
            self.close()
            raise
        return self

    def couple_light(self) -> None:
        """Point a simulated camera at this bench's light source and shutter; call it again after connecting one of
        them anew (a disconnected one keeps lighting the camera as it last did, as a real source would)."""
        attach = getattr(self.devices.get("camera"), "attach_light", None)
        if callable(attach):
            attach(self.devices.get("light_source"), self.devices.get("shutter"))

    def illuminate(self) -> None:
        """Switch the light source on and open the shutter, where the bench has them (before a run; the source's
        safety limits apply). ``close()`` puts them back as they were before the first call, so a command or the
        GUI leaves no source emitting that was off. Calibration steps switch the light for their own measurements."""
        before = light_state(self.devices)
        if self._light_before is None:
            self._light_before = before
        set_light(self.devices, dict.fromkeys(before, True))

    def _restore_light(self) -> None:
        before, self._light_before = self._light_before, None
        if self.config.on_exit == "safe":  # shutter closed, source off, whatever they were
            # (the roles the bench has, not queried: a device that stopped answering must not stop the closing)
            before = {role: False for role, _ in _LIGHT if role in self.devices} or None
        if before:
            try:  # the safe state is sent whatever lab4f believes the devices hold
                set_light(self.devices, before, force=self.config.on_exit == "safe")
            except Exception as exc:  # closing must go on; say what state the light was left in
                log.warning("could not put the light back as it was (%s): %s", before, exc)

    def close(self) -> None:
        """Put the light in the config's exit state (``on_exit``), then close every device (safe to call twice)."""
        from lab4f.bench.safety import forget

        forget(self)
        self._restore_light()
        for role in reversed(ROLES):
            device = self.devices.pop(role, None)
            close = getattr(device, "close", None)
            if callable(close):
                try:
                    close()
                except Exception as exc:  # closing must go on for the other devices
                    log.warning("closing %s failed: %s", role, exc)

    def __enter__(self) -> Bench:
        return self.connect() if not self.devices else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- devices ------------------------------------------------------------------------------------
    def _get(self, role: str) -> Any:
        if role not in self.devices:
            raise DeviceError(
                f"the bench has no connected {role}: connect the bench first, or enable the {role} in "
                "the bench config",
                device=role,
            )
        return self.devices[role]

    @property
    def slm(self) -> Any:
        return self._get("slm")

    @property
    def camera(self) -> Any:
        """The camera as lab4f uses it: every frame fresh by the bench's sync policy (:mod:`lab4f.bench.sync`);
        ``devices["camera"]`` is the device itself."""
        device = self._get("camera")
        if self._synced is None or self._synced.device is not device:
            self._synced = SyncedCamera(self.sync)
        return self._synced

    @property
    def sync(self) -> Sync:
        """How frames are paired with what was shown (``[sync]`` in the config; :meth:`set_sync_policy`)."""
        if self._sync is None:
            self._sync = Sync(self)
        return self._sync

    def set_sync_policy(self, policy: str | None) -> None:
        """Override the config's sync policy (``--sync``); None keeps the config's."""
        if policy is not None:
            self._sync = Sync(self, policy)
            self._synced = None

    @property
    def display(self) -> Any:
        return self._get("display")

    @property
    def light_source(self) -> Any:
        return self._get("light_source")

    @property
    def shutter(self) -> Any:
        return self._get("shutter")

    @property
    def geometry(self) -> FourfGeometry:
        """The 4f geometry: the lenses from the config, pixel count and pitch from the SLM itself."""
        slm = self.slm
        g = self.config.geometry
        pitch = float(np.atleast_1d(slm.pitch_um)[0])
        wav_nm = float(slm.wav_um) * 1e3
        ny, nx = (int(s) for s in slm.shape)
        return FourfGeometry(
            slm_shape=(ny, nx),
            slm_pitch_um=pitch,
            wavelength_nm=wav_nm,
            focal_length_1_mm=g.focal_length_1_mm,
            focal_length_2_mm=g.focal_length_2_mm,
            aperture_radius=g.aperture_radius,
        )

    def _pixels_per_cell_xy(self) -> tuple[float, float] | None:
        """Camera pixels per output cell along x and y that the lenses and pitches predict: c / p per axis, with
        output cells c = λ·f2 / (N·p_SLM) (a non-square SLM has unequal cells) and the camera's pitch p per axis
        (binning makes it unequal). None when the camera does not report its pitch."""
        pitch = getattr(self.camera, "pitch_um", None)
        if pitch is None:
            return None
        pcx, pcy = (np.ravel(np.asarray(pitch, dtype=float)).tolist() * 2)[:2]
        g = self.geometry
        ny, nx = g.slm_shape
        cell = (
            g.wavelength_nm * 1e-3 * g.focal_length_2_mm * 1e3 / g.slm_pitch_um
        )  # × 1/N per axis, in µm
        return cell / nx / pcx, cell / ny / pcy

    def pixels_per_cell(self) -> float | None:
        """Camera pixels per output cell the config's lenses predict, as the geometric mean of the two axes — what
        a registration's scale √|det A| measures. None when the camera does not report its pitch."""
        xy = self._pixels_per_cell_xy()
        return None if xy is None else float(np.sqrt(xy[0] * xy[1]))

    def camera_cells(self) -> tuple[int, int]:
        """How many output-plane cells the camera sees (rows, cols): its pixels over the predicted pixels per cell
        along each axis (1 when the camera does not report its pitch). Compilation fits the tile field to it."""
        xy = self._pixels_per_cell_xy() or (1.0, 1.0)
        rows, cols = (int(s) for s in self.camera.shape)
        return int(np.floor(rows / xy[1])), int(np.floor(cols / xy[0]))

    def info(self) -> dict[str, Any]:
        """Devices, identities and settings: what `lab4f bench info` prints and every record snapshots."""
        geometry = None
        if "slm" in self.devices:
            g = self.geometry
            geometry = {
                "slm_shape": list(g.slm_shape),
                "slm_pitch_um": g.slm_pitch_um,
                "wavelength_nm": g.wavelength_nm,
                "focal_length_1_mm": g.focal_length_1_mm,
                "focal_length_2_mm": g.focal_length_2_mm,
                "aperture_radius": g.aperture_radius,
            }
        return {
            "name": self.config.name,
            "mode": self.config.mode,
            "geometry": geometry,
            "devices": {
                role: {
                    "driver": getattr(self.config, role).driver,
                    "identity": identity_of(dev),
                    "settings": settings_of(dev),
                }
                for role, dev in self.devices.items()
            },
        }

    def show(
        self,
        image: np.ndarray,
        marker: int | None = None,
        pitch: int | None = None,
        kernel_size: int | None = None,
    ) -> None:
        """Show an intensity image (values in [0, 1]) on the input display, linearised when calibrated. An image
        smaller than the display is shown centred on black; ``marker`` draws that index's code beside it (the
        ``marker`` sync policy, for tiles at ``pitch`` of kernels ``kernel_size`` wide; :mod:`lab4f.bench.marker`)."""
        image = np.asarray(image, dtype=np.float32)
        shape = tuple(self.display.shape)
        if (
            image.shape != shape
            and image.ndim == 2
            and image.shape[0] <= shape[0]
            and image.shape[1] <= shape[1]
        ):
            frame = np.zeros(shape, dtype=np.float32)
            top, left = shape[0] // 2 - image.shape[0] // 2, shape[1] // 2 - image.shape[1] // 2
            frame[top : top + image.shape[0], left : left + image.shape[1]] = image
            image = frame
        if marker is not None:
            from lab4f.bench.marker import marker_code

            image = image.copy() if image.base is None else np.array(image)
            marker_code(self.config.sync).draw(
                image, marker, int(pitch or 0), int(kernel_size or 1)
            )
        if self.display_correction is not None:
            from lab4f.drivers.display import check_intensities

            check_intensities(
                image, "the display"
            )  # before the correction, which may map any value into range
            image = self.display_correction(image)
        self.display.show(image)

    def upload_phase(self, phase: np.ndarray) -> None:
        """Write a Fourier-plane phase (radians) to the SLM; slmsuite applies the phase LUT and waits to settle."""
        self.slm.set_phase(phase, settle=True)

    def snap(self) -> np.ndarray:
        return np.asarray(self.camera.get_image())
