"""Vendor phase-correction and LUT files named in the SLM's settings, loaded through slmsuite and recorded.

- ``phase_correction_path``: the vendor's flatness (wavefront) correction, through the SLM's own
  ``load_vendor_phase_correction`` (slmsuite's base class reads an image into ``source["phase"]``; Santec reads its
  .csv; Holoeye hands the file to its SDK);
- ``lut_path``: an SLM whose slmsuite class loads LUT files (Meadowlark's ``load_lut``, a .lut file) gets it that way;
  any other gets it as a measured phase response through slmsuite's ``set_gamma``: a text/CSV table of either one
  phase per grey level or ``level, phase`` rows, phases in units of 2π (what ``pixel_calibrate`` measures), or a .npy.

Each file's absolute path, SHA-256 and how it was loaded go into the SLM's ``settings_snapshot()``, so calibration
and run files say which corrections the optics ran with. Neither key is a constructor argument of slmsuite's SLMs
(Meadowlark's ``lut_path`` is, and is then loaded twice, harmlessly): :func:`split_vendor_files` takes them out of
the settings before the SLM is built.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lab4f.errors import ConfigError, DeviceError

VENDOR_FILE_KEYS = ("phase_correction_path", "lut_path")


def split_vendor_files(
    settings: Mapping[str, Any], accepted: Iterable[str] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(settings for the SLM's constructor, vendor files for :func:`apply_vendor_files`): the vendor-file keys move
    out of the settings unless the constructor names them itself (``accepted``: its keywords; None: it names none)."""
    keep = set(accepted or ())
    files = {k: settings[k] for k in VENDOR_FILE_KEYS if k in settings and settings[k] is not None}
    rest = {k: v for k, v in settings.items() if k not in VENDOR_FILE_KEYS or k in keep}
    return rest, files


def apply_vendor_files(
    slm: Any, phase_correction_path: str | None = None, lut_path: str | None = None
) -> dict[str, Any]:
    """Load the files into ``slm`` (any slmsuite SLM) and record them in its settings snapshot; returns the record.
    A missing or unfitting file is a ConfigError naming it; a vendor SDK refusing one is a DeviceError."""
    record: dict[str, Any] = dict(getattr(slm, "vendor_files", {}) or {})
    if phase_correction_path is not None:
        path = _existing(phase_correction_path, "phase_correction_path")
        try:
            loaded = slm.load_vendor_phase_correction(str(path))
        except (ValueError, OSError) as exc:
            raise ConfigError(
                f"phase_correction_path {path} does not fit the SLM ({_shape(slm)}): {exc}; use the "
                "correction file made for this SLM (and this wavelength)"
            ) from exc
        except Exception as exc:  # vendor SDKs raise anything
            raise DeviceError(
                f"the SLM's SDK refused phase_correction_path {path}: {type(exc).__name__}: {exc}",
                device="slm",
            ) from exc
        record.update(
            phase_correction_path=str(path),
            phase_correction_sha256=_sha256(path),
            phase_correction_loaded="sdk" if loaded is None else "source_phase",
        )
    if lut_path is not None:
        path = _existing(lut_path, "lut_path")
        if callable(getattr(slm, "load_lut", None)):
            try:
                used = slm.load_lut(str(path))
            except Exception as exc:
                raise DeviceError(
                    f"the SLM's SDK refused lut_path {path}: {type(exc).__name__}: {exc}",
                    device="slm",
                ) from exc
            record.update(lut_path=str(used or path), lut_loaded="load_lut")
        else:
            levels, gamma = read_phase_response(path)
            try:
                slm.set_gamma(gamma, levels)
            except ValueError as exc:
                raise ConfigError(
                    f"lut_path {path}: {exc} (the SLM has {getattr(slm, 'bitresolution', '?')} grey "
                    "levels; phases in units of 2π)"
                ) from exc
            record.update(lut_path=str(path), lut_loaded="set_gamma", lut_levels=int(len(gamma)))
        record["lut_sha256"] = _sha256(path)
    _record(slm, record)
    return record


def read_phase_response(path: str | Path) -> tuple[np.ndarray | None, np.ndarray]:
    """(levels or None, phase in units of 2π) from a .npy or a text/CSV table (``#`` comments; one column: every
    level in order; two: level, phase)."""
    path = Path(path)
    try:
        table = (
            np.load(path)
            if path.suffix == ".npy"
            else np.loadtxt(
                [line.replace(",", " ") for line in path.read_text(encoding="utf-8").splitlines()],
                comments="#",
            )
        )
    except ValueError as exc:
        raise ConfigError(
            f"lut_path {path}: not a table of numbers ({exc}); write one phase per grey level, or "
            "'level, phase' rows, phases in units of 2π"
        ) from exc
    table = np.asarray(table, dtype=float)
    if table.ndim == 1:
        return None, table
    if table.ndim == 2 and table.shape[1] == 2:
        return table[:, 0], table[:, 1]
    raise ConfigError(
        f"lut_path {path}: a table of shape {table.shape}; expected one column (phase per level) or "
        "two (level, phase)"
    )


def _record(slm: Any, record: dict[str, Any]) -> None:
    """Keep ``record`` on the SLM and add it to its settings snapshot (wrapping the one it has, if any)."""
    slm.vendor_files = record
    if getattr(slm, "_vendor_snapshot", False):
        return
    inner = getattr(slm, "settings_snapshot", None)

    def settings_snapshot() -> dict[str, Any]:
        if callable(inner):
            snap = dict(inner())
        else:
            settings = getattr(slm, "settings", None)
            snap = settings.model_dump(mode="json") if hasattr(settings, "model_dump") else {}
        snap.update(slm.vendor_files)
        return snap

    slm.settings_snapshot = settings_snapshot
    slm._vendor_snapshot = True


def _existing(path: str, key: str) -> Path:
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise ConfigError(
            f"{key} {p} does not exist: fix [slm] settings.{key} in the bench config (the vendor ships "
            "this file with the SLM, usually on its driver CD or download page)"
        )
    return p


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _shape(slm: Any) -> str:
    shape = getattr(slm, "shape", None)
    return f"{tuple(int(s) for s in shape)} pixels" if shape is not None else "shape unknown"
