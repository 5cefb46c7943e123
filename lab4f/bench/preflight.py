"""Before any device opens: does every setting fit its driver, and which silent defaults will the bench run on?

A real bench fails late and expensively when a setting is wrong: ``Meadowlark(verbose=False)`` is rejected by
slmsuite's ``SLM.__init__`` only after the vendor SDK and LUT have loaded. :func:`check_settings` validates every
device's settings against its driver without opening it — lab4f's drivers by their pydantic models, slmsuite's and
external classes by their constructors' signatures, walking the ``__init__`` chain while each passes ``**kwargs``
on. :func:`default_warnings` names the defaults that make a real bench silently wrong (the SLM's wavelength,
its settle time, a camera without a pixel pitch, 8-bit pixels on a camera that offers more).
"""

from __future__ import annotations

import importlib
import inspect
import warnings
from dataclasses import dataclass
from typing import Any

from lab4f.bench.config import BenchConfig, DeviceConfig
from lab4f.errors import ConfigError

#: where each slmsuite driver lives (the registry in lab4f.bench.devices builds them)
_KW = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Finding:
    """One preflight result: ``level`` "error" (the bench cannot be built) or "warning" (it runs, maybe wrongly)."""

    role: str
    level: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "level": self.level, "message": self.message}


def accepted_keywords(cls: type) -> set[str] | None:
    """The keyword arguments ``cls(...)`` accepts: the named parameters of each ``__init__`` up the MRO for as long
    as each passes ``**kwargs`` on (None: the chain ends in ``**kwargs``, so anything is accepted)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())[1:]
        except (TypeError, ValueError):
            return None
        names |= {p.name for p in params if p.kind in _KW}
        if not any(p.kind == inspect.Parameter.VAR_KEYWORD for p in params):
            return names
    return None


def resolve_class(spec: str) -> type:
    """``"package.module:Class"`` → the class (a driver a lab adds without changing lab4f)."""
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ConfigError(f'driver {spec!r}: write an external driver as "package.module:Class"')
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise ConfigError(
            f"driver {spec!r}: cannot import {module} ({exc}); install the package that provides "
            "it into this environment"
        ) from exc
    cls = getattr(mod, name, None)
    if not isinstance(cls, type):
        raise ConfigError(f"driver {spec!r}: {module} has no class {name}")
    return cls


def _check_kwargs(role: str, what: str, cls: type, settings: dict[str, Any]) -> list[Finding]:
    accepted = accepted_keywords(cls)
    if accepted is None:
        return []
    unknown = sorted(set(settings) - accepted)
    if not unknown:
        return []
    return [
        Finding(
            role,
            "error",
            f"{what}: setting(s) {', '.join(unknown)} do not fit {cls.__name__}'s "
            f"constructor, which takes {', '.join(sorted(accepted)) or 'no keywords'}; "
            f"remove or rename them in the bench config's [{role}] settings",
        )
    ]


def _slmsuite_class(module: str, name: str) -> type | None:
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore"
        )  # "pylablib not installed" and the like: the SDK is checked at open
        try:
            mod = importlib.import_module(f"slmsuite.hardware.{module}")
        except ImportError:
            return None
    return getattr(mod, name, None)


def check_device(role: str, cfg: DeviceConfig, drivers: dict[str, Any]) -> list[Finding]:
    """Settings of one device against its driver (``drivers``: lab4f.bench.devices.DRIVERS), without opening it."""
    from lab4f.bench.config import validate_settings

    def drivers_for(r: str) -> list[str]:
        return sorted(n for n, d in drivers.items() if d.role == r)

    if role == "slm":  # vendor files are loaded after opening, not passed to the constructor
        from lab4f.drivers.vendor_files import split_vendor_files

        cfg = cfg.model_copy(update={"settings": split_vendor_files(cfg.settings)[0]})
    if ":" in cfg.driver:
        try:
            cls = resolve_class(cfg.driver)
        except ConfigError as exc:
            return [Finding(role, "error", str(exc))]
        return _check_kwargs(role, cfg.driver, cls, cfg.settings)
    driver = drivers.get(cfg.driver)
    if driver is None or driver.role != role:
        return [
            Finding(
                role,
                "error",
                f"unknown {role} driver {cfg.driver!r}; available: "
                f'{", ".join(drivers_for(role))}, or "package.module:Class"',
            )
        ]
    if driver.settings is not None:
        module, model = driver.settings
        mod = importlib.import_module(f"lab4f.drivers.{module}")
        try:
            validated = validate_settings(getattr(mod, model), cfg.settings, cfg.driver)
        except ConfigError as exc:
            return [Finding(role, "error", str(exc))]
        inner = getattr(validated, "slm", None) if cfg.driver == "SLMDisplay" else None
        if isinstance(inner, str):  # the display's own slmsuite SLM
            from lab4f.drivers.slm_display import SLM_MODULES

            cls = _slmsuite_class(f"slms.{SLM_MODULES.get(inner, '')}", inner)
            if cls is not None:
                return _check_kwargs(role, f"{cfg.driver} ({inner})", cls, validated.slm_settings)  # type: ignore[attr-defined]
        return []
    if driver.slmsuite is not None:
        cls = _slmsuite_class(*driver.slmsuite)
        if cls is None:
            return []  # the module itself needs the SDK: opening says so
        return _check_kwargs(role, cfg.driver, cls, cfg.settings)
    return []


def check_settings(
    config: BenchConfig, drivers: dict[str, Any], roles: tuple[str, ...]
) -> list[Finding]:
    """Every device's settings against its driver (``drivers``, ``roles``: lab4f.bench.devices' registry; nothing is
    opened). The registry is passed in: lab4f.bench.devices imports this module, not the other way round."""
    out: list[Finding] = []
    for role in roles:
        cfg = getattr(config, role)
        if cfg is not None and cfg.enabled:
            out += check_device(role, cfg, drivers)
    return out


def raise_for_errors(findings: list[Finding]) -> None:
    errors = [f for f in findings if f.level == "error"]
    if errors:
        raise ConfigError(
            "the bench config does not fit its drivers (nothing was opened):\n"
            + "\n".join(f"  [{f.role}] {f.message}" for f in errors)
        )


def default_warnings(config: BenchConfig, bench: Any = None) -> list[Finding]:
    """Silent defaults that make a real bench wrong, with the value in use (``bench``: also what the open devices
    report)."""
    out: list[Finding] = []
    slm = config.slm
    simulated_slm = slm.driver == "SimulatedFourierSLM"
    if not simulated_slm and "wav_um" not in slm.settings:
        out.append(
            Finding(
                "slm",
                "warning",
                "the SLM's wav_um is not set: slmsuite assumes 1 µm, and lab4f's geometry "
                "(output cell size, tile positions) uses it; set [slm] settings.wav_um",
            )
        )
    if (
        not simulated_slm
        and "settle_time_s" not in slm.settings
        and (bench is None or getattr(bench, "measured_timing", None) is None)
    ):
        out.append(
            Finding(
                "slm",
                "warning",
                "the SLM's settle time is slmsuite's default 0.3 s, never measured: run "
                "`lab4f calibrate timing` (its measured value then replaces it)",
            )
        )
    cam = None if bench is None else bench.devices.get("camera")
    if cam is not None and getattr(cam, "pitch_um", None) is None:
        out.append(
            Finding(
                "camera",
                "warning",
                "the camera reports no pixel pitch: 1 camera pixel per output cell is "
                "assumed and the magnification check is skipped; set pitch_um",
            )
        )
    fmt = getattr(cam, "pixel_format", None)
    offered = getattr(cam, "pixel_formats_offered", None)
    if (
        fmt == "Mono8"
        and offered
        and any(f in offered for f in ("Mono10", "Mono12", "Mono16", "Mono12p"))
    ):
        out.append(
            Finding(
                "camera",
                "warning",
                f"the camera runs Mono8 but offers {', '.join(offered)}: 8 bits lose "
                "dynamic range and turn the fused extraction kernel off; set "
                'pixel_format = "Mono12"',
            )
        )
    return out
