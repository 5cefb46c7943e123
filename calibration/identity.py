"""Does a calibration record belong to this bench? The settings that change what the optics and sensor do.

Device identities (class, name, serial) are equal for every simulated bench and say nothing about how a real one
was aligned; a record from one bench used on another with a different camera rotation ran without a word and
scored 0.073 against the digital 0.940. :func:`optics_differences` compares the recorded settings that shape the
measurement — the 4f geometry and mode, the camera's registration-relevant settings (affine misalignment, ROI,
binning, pixel format, pitch), the SLM's wavelength, pitch, resolution and LUT, the display's shape and position —
and lists every one that differs, so the record is refused naming them (``force`` turns the refusal into a warning).
"""

from __future__ import annotations

import math
from typing import Any

#: settings per role that change the optics or the sensor's registration (any driver; absent keys are skipped)
OPTICS_SETTINGS: dict[str, tuple[str, ...]] = {
    "slm": (
        "resolution",
        "pitch_um",
        "wav_um",
        "lut_path",
        "phase_max_2pi",
        "phase_response_gamma",
    ),
    "camera": (
        "resolution",
        "pitch_um",
        "affine_shift_px",
        "affine_rotation_deg",
        "affine_scale",
        "mode",
        "fourier_aperture_radius_px",
        "roi",
        "binning",
        "pixel_format",
        "actual_pixel_format",
        "actual_width",
        "actual_height",
        "bitdepth",
    ),
    "display": ("shape", "position_px", "bitdepth", "slm", "slm_settings"),
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def optics_differences(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"role.setting: recorded R, now N"`` for every optics setting that differs between two ``Bench.info()``s."""
    out = []
    for key in ("mode", "geometry"):
        a, b = recorded.get(key), current.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [
                f"geometry.{k}: recorded {a[k]!r}, now {b.get(k)!r}"
                for k in sorted(a)
                if k in b and not _same(a[k], b[k])
            ]
        elif a is not None and b is not None and not _same(a, b):
            out.append(f"{key}: recorded {a!r}, now {b!r}")
    mine, theirs = recorded.get("devices", {}), current.get("devices", {})
    for role, keys in OPTICS_SETTINGS.items():
        if role not in mine or role not in theirs:
            continue
        if mine[role].get("driver") != theirs[role].get("driver"):
            out.append(
                f"{role}.driver: recorded {mine[role].get('driver')!r}, now {theirs[role].get('driver')!r}"
            )
            continue
        a, b = mine[role].get("settings", {}) or {}, theirs[role].get("settings", {}) or {}
        out += [
            f"{role}.{k}: recorded {a[k]!r}, now {b[k]!r}"
            for k in keys
            if k in a and k in b and not _same(a[k], b[k])
        ]
    return out
