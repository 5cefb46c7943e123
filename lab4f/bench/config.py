"""The bench config: which driver runs each device, with which settings (TOML or YAML, pydantic-validated).

The built-in default is the simulated bench, so every command works on a fresh machine::

    [slm]
    driver = "SimulatedFourierSLM"        # or an slmsuite SLM: Meadowlark, Holoeye, Santec, Hamamatsu, ...
    [camera]
    driver = "Simulated4fCamera"          # or HarvestersCamera
    settings = { exposure_s = 0.002 }
    [light_source]
    driver = "LightSource"
    settings = { resource = "ASRL1::INSTR", visa_library = "@lab4f-sim", max_power_mw = 5.0 }
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from lab4f.bench.sync import SyncConfig
from lab4f.errors import ConfigError


class DeviceConfig(BaseModel):
    """One device: the driver's registered name and its settings (validated by the driver's own model)."""

    model_config = ConfigDict(extra="forbid")

    driver: str
    settings: dict[str, Any] = Field(default_factory=dict)
    enabled: bool = True


class GeometryConfig(BaseModel):
    """Lenses of the 4f system (the SLM's pixel count and pitch come from the SLM itself)."""

    model_config = ConfigDict(extra="forbid")

    focal_length_1_mm: float = Field(100.0, gt=0)
    # 36.3 mm: one output cell = λ·f2 / (N·p) = 5.61 µm = 1.02 pixels of the simulated camera's 5.5 µm sensor
    focal_length_2_mm: float = Field(36.3, gt=0)
    aperture_radius: float | None = Field(None, gt=0)


class BenchConfig(BaseModel):
    """Every device of the bench; the defaults are the built-in simulated bench."""

    model_config = ConfigDict(extra="forbid")

    name: str = "simulated bench"
    mode: str = Field("incoherent", pattern="^(incoherent|coherent)$")
    slm: DeviceConfig = DeviceConfig(driver="SimulatedFourierSLM")
    display: DeviceConfig = DeviceConfig(driver="SimulatedDisplay")
    camera: DeviceConfig = DeviceConfig(driver="Simulated4fCamera")
    light_source: DeviceConfig | None = DeviceConfig(
        driver="LightSource", settings={"visa_library": "@lab4f-sim", "max_power_mw": 5.0}
    )
    shutter: DeviceConfig | None = DeviceConfig(
        driver="Shutter", settings={"visa_library": "@lab4f-sim"}
    )
    geometry: GeometryConfig = GeometryConfig()
    sync: SyncConfig = SyncConfig()
    on_exit: str = Field(
        "safe",
        pattern="^(safe|as_found)$",
        description="when lab4f closes the bench — normally, "
        "on an error, Ctrl-C, SIGTERM or SIGHUP: safe closes the shutter and switches the source off; "
        "as_found puts them back as they were before lab4f switched them",
    )
    drift_limit_px: float | None = Field(
        1.0,
        gt=0,
        description="at the start of a run, refuse a bench whose tiles "
        "moved more than this (camera pixels, median) since the registration was "
        "calibrated; None: no check",
    )
    calibration_dir: str = "calibrations"
    #: fault rehearsal: FaultPlan fields per role, armed when the bench connects (lab4f.bench.faults)
    faults: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @field_validator("faults")
    @classmethod
    def _faults_are_fault_plans(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        from lab4f.bench.faults import validate_faults

        try:
            return validate_faults(value)
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc

    def with_settings(self, **roles: dict[str, Any]) -> BenchConfig:
        """This bench with some devices' settings added or replaced, e.g. ``cfg.with_settings(camera={"seed": 3})``
        (validated when the bench connects, by the driver's own settings model)."""
        update: dict[str, Any] = {}
        for role, settings in roles.items():
            device = getattr(self, role, None)
            if not isinstance(device, DeviceConfig):
                raise ConfigError(f"the bench has no {role!r} device to set {sorted(settings)} on")
            update[role] = device.model_copy(update={"settings": {**device.settings, **settings}})
        return self.model_copy(update=update)


def _format_validation(exc: ValidationError, source: str) -> str:
    lines = [f"invalid bench config {source}:"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        lines.append(
            f"  {where}: {err['msg']}" + (f" (got {err['input']!r})" if "input" in err else "")
        )
    return "\n".join(lines)


#: the bench config a command uses when it is given none (a lab points it at its bench's file once, in its shell
#: profile); unset, that is the built-in simulated bench
BENCH_ENV = "LAB4F_BENCH_CONFIG"


def load_bench_config(
    path: str | os.PathLike[str] | None = None, sync: str | None = None
) -> BenchConfig:
    """Read a TOML/YAML bench config; ``None`` gives the file named by ``LAB4F_BENCH_CONFIG`` if it is set, else the
    built-in simulated bench. ``sync`` overrides the config's sync policy (``--sync``); ``LAB4F_FAULTS`` adds faults
    to rehearse (:mod:`lab4f.bench.faults`)."""
    config = _load_bench_config(path)
    if sync is not None:
        config = config.model_copy(update={"sync": config.sync.model_copy(update={"policy": sync})})
    from lab4f.bench.faults import ENV, faults_from_env, merge_faults

    env = faults_from_env(
        os.environ.get(ENV)
    )  # fault rehearsal for one run, on top of the config's [faults]
    if env:
        config = config.model_copy(update={"faults": merge_faults(config.faults, env)})
    return config


def _load_bench_config(path: str | os.PathLike[str] | None) -> BenchConfig:
    origin = ""
    if path is None:
        if not os.environ.get(BENCH_ENV):
            return BenchConfig()
        path, origin = os.environ[BENCH_ENV], f" (from {BENCH_ENV})"
    path = Path(path)
    if not path.exists():
        fix = (
            f"fix {BENCH_ENV} or unset it for the built-in simulated bench"
            if origin
            else "omit --config for the built-in simulated bench"
        )
        raise ConfigError(f"bench config {path}{origin} does not exist ({fix})")
    if path.is_dir():
        found = sorted(
            p.name for p in path.iterdir() if p.suffix.lower() in {".toml", ".yaml", ".yml"}
        )
        hint = f"; it holds {', '.join(found)}" if found else ""
        raise ConfigError(
            f"bench config {path} is a directory, not a file{hint}: pass a .toml or .yaml file "
            "(or omit --config for the built-in simulated bench)"
        )
    if path.suffix.lower() not in {".toml", ".yaml", ".yml"}:
        raise ConfigError(f"bench config {path} must end in .toml, .yaml or .yml")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"bench config {path} cannot be read ({exc}); pass a readable UTF-8 TOML/YAML file"
        ) from exc
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = yaml.safe_load(text) or {}
    except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(
            f"bench config {path} is not valid {path.suffix[1:].upper()}: {exc}"
        ) from exc
    try:
        return BenchConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, str(path))) from exc


def validate_settings(model: type[BaseModel], settings: dict[str, Any], where: str) -> BaseModel:
    """Validate one device's settings with its driver's pydantic model, naming the field on failure."""
    try:
        return model.model_validate(settings)
    except ValidationError as exc:
        raise ConfigError(_format_validation(exc, f"({where}.settings)")) from exc
