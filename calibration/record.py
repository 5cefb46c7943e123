"""The calibration record: what the bench was when it was calibrated, saved as schema-versioned HDF5.

Records live side by side in a folder (``cal-YYYYmmdd-HHMMSS.h5``, never overwritten); :func:`latest_record`
resolves the newest by its timestamp and skips unreadable files, so a corrupt or truncated file never
hides the previous good record. Loading compares device identities with the bench in use.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from lab4f.calibration import steps as registry
from lab4f.calibration.base import Provenance, StepResult
from lab4f.calibration.steps import builds_on
from lab4f.errors import CalibrationError, MismatchError
from lab4f.optics.registration import PlaneToCamera
from lab4f.storage import (
    ExistsError,
    StorageError,
    atomic_write,
    h5_file,
    leftover_temps,
    now_iso,
    numbered,
    open_h5,
    publish,
    read_json_attr,
    write_json_attr,
)

log = logging.getLogger(__name__)

RECORD_KIND = "calibration_record"
RECORD_SCHEMA = 1
RECORD_GLOB = "cal-*.h5"


@dataclass
class CalibrationRecord:
    """Every step's result plus the bench snapshot; accessors give what the live pipeline needs."""

    bench_info: dict[str, Any] = field(default_factory=dict)
    steps: dict[str, StepResult] = field(default_factory=dict)
    created: str = field(default_factory=now_iso)
    program_path: str | None = None
    program_sha256: str | None = None
    path: Path | None = None

    # -- accessors ---------------------------------------------------------------------------------
    def _array(self, step: str, name: str) -> np.ndarray | None:
        """Array ``name`` of ``step``'s result (None without the step or the array); ``name`` must be one the step's
        schema (:class:`lab4f.calibration.steps.StepSchema`) declares."""
        return self._entry(step, "arrays", name)

    def value(self, step: str, name: str) -> Any:
        """Plain value ``name`` of ``step``'s result (None without it), as declared by the step's schema."""
        return self._entry(step, "values", name)

    def _entry(self, step: str, kind: str, name: str) -> Any:
        if step in registry.STEPS and not registry.step(step).schema.declares(kind, name):
            raise KeyError(
                f"calibration step {step!r} declares no {kind[:-1]} {name!r} in its record schema"
            )
        result = self.steps.get(step)
        return None if result is None else getattr(result, kind).get(name)

    @property
    def dark(self) -> np.ndarray | None:
        """Dark frame (ADU, float32, camera shape) to subtract from raw frames — the one taken at the exposure the
        channel fit used (gains step) if that step had to change the exposure, else the camera step's."""
        if "gains" in self.steps and "dark" in self.steps["gains"].arrays:
            return self._array("gains", "dark")
        return self._array("camera", "dark")

    @property
    def flat(self) -> np.ndarray | None:
        """Relative pixel throughput to divide (raw − dark) by."""
        return self._array("camera", "flat")

    @property
    def exposure_s(self) -> float | None:
        """The exposure the channel fit was measured at (gains step), else the camera step's."""
        for step in ("gains", "camera"):
            value = self.value(step, "exposure_s")
            if value is not None:
                return float(value)
        return None

    @property
    def registration(self) -> PlaneToCamera | None:
        """Output-plane cell (x, y) → camera pixel (x, y) affine, from the display fiducials."""
        a = self._array("registration", "registration")
        if a is None:
            return None
        return PlaneToCamera.from_array(
            a, self.steps["registration"].quality.get("rms_residual_px", float("nan"))
        )

    @property
    def fourier(self) -> dict | None:
        """slmsuite's kxy → camera-pixel calibration ({"M", "b", "a"})."""
        return self.value("fourier", "fourier")

    @property
    def phase_response(self) -> tuple[np.ndarray, np.ndarray] | None:
        """(gray levels, phase in units of 2π) as measured; apply with ``slm.set_gamma(gamma, levels)``."""
        lv, g = self._array("phase", "gamma_levels"), self._array("phase", "gamma")
        return None if lv is None or g is None else (lv, g)

    @property
    def display_linearizer(self) -> Any | None:
        """The input display's inverse response (a :class:`~lab4f.calibration.display.DisplayLinearizer`), or None."""
        result = self.steps.get("display")
        if result is None:
            return None
        from lab4f.calibration.display import DisplayLinearizer

        return DisplayLinearizer.from_step(result)

    @property
    def wavefront(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """(phase correction in radians, measured source amplitude) of the SLM, slmsuite's ``source``; or None."""
        phase = self._array("wavefront", "phase_correction")
        return None if phase is None else (phase, self._array("wavefront", "amplitude"))

    def tile_shifts(self, frame: int = 0) -> np.ndarray | None:
        """Per-tile correction (T, 2) in plane cells (x, y) for ``tile_sampling_grid``, for a program frame."""
        return self._array("tiles", f"tile_shifts/{frame}")

    @property
    def channel_filter(self) -> np.ndarray | None:
        """Per-channel FIR filters: (C, 2, k, k), one for the k⁺ and one for the k⁻ tile (default; the tiles sit at
        different field positions, so the camera resamples them differently), or (C, k, k) on k⁺ − k⁻:
        digital ≈ Σ filter ⋆ extractor tiles + channel_offset.

        Pass it as ``FeatureExtractor(channel_filter=...)``; None for records from before the filter (gain only).
        """
        return self._array("gains", "channel_filter")

    @property
    def channel_gain(self) -> np.ndarray | None:
        """Scalar gain per channel (C,): the filter's sum (for readers that cannot apply the filter)."""
        return self._array("gains", "channel_gain")

    @property
    def channel_offset(self) -> np.ndarray | None:
        return self._array("gains", "channel_offset")

    @property
    def channel_r2(self) -> np.ndarray | None:
        """R² per channel on the calibration images held out of the fit."""
        return self._array("gains", "channel_r2")

    def summary(self) -> dict[str, Any]:
        return {
            "path": str(self.path) if self.path else None,
            "created": self.created,
            "bench": self.bench_info.get("name"),
            "program_path": self.program_path,
            "program_sha256": self.program_sha256,
            "steps": {name: r.summary() for name, r in self.steps.items()},
            "stale": self.stale_steps(),
            "provenance_unknown": self.provenance_unknown(),
        }

    # -- staleness, from each step's provenance (when it was measured, through which upstream versions) ---------
    def stale_steps(self) -> dict[str, list[str]]:
        """Steps measured before a step they build on was re-measured: step → those steps, in bench order. Steps of
        unknown provenance (:meth:`provenance_unknown`) are not judged."""
        out: dict[str, list[str]] = {}
        for name in registry.names():
            result = self.steps.get(name)
            if result is None or result.provenance is None:
                continue
            for up in builds_on(name):
                dep = self.steps.get(up)
                if dep is None or dep.provenance is None:
                    continue
                seen = result.provenance.upstream.get(up)
                if seen == "":  # it was there, of unknown time: cannot tell
                    continue
                if (
                    seen != dep.provenance.measured
                ):  # re-measured since (or added after) this step was measured
                    out.setdefault(name, []).append(up)
        return out

    def provenance_unknown(self) -> list[str]:
        """Steps whose freshness cannot be judged: they, or a step they build on that the record has, lack a
        measurement time (records written before per-step times)."""
        out = []
        for name in registry.names():
            result = self.steps.get(name)
            if result is None:
                continue
            ups = [self.steps[u] for u in builds_on(name) if u in self.steps]
            if ups and (
                result.provenance is None
                or any(u.provenance is None for u in ups)
                or any(result.provenance.upstream.get(u.name) == "" for u in ups)
            ):
                out.append(name)
        return out

    def merged_with(self, newer: CalibrationRecord) -> CalibrationRecord:
        """This record's steps overlaid by ``newer``'s (a partial calibration keeps the older steps)."""
        steps = {**self.steps, **newer.steps}
        return CalibrationRecord(
            newer.bench_info,
            steps,
            newer.created,
            newer.program_path or self.program_path,
            newer.program_sha256 or self.program_sha256,
        )

    def apply(self, bench: Any) -> None:
        """Put the calibrated state on the bench: camera exposure, SLM phase LUT, wavefront correction and the
        display linearisation (``bench.display_correction``).

        A record without a wavefront (display) step removes a correction an earlier record put on the SLM (the
        display): the steps were measured without it. A correction lab4f did not set (a vendor file) is left alone.
        """
        from lab4f.calibration.wavefront import apply_correction, clear_correction

        if self.exposure_s is not None:
            bench.camera.set_exposure(self.exposure_s)
        if self.phase_response is not None:
            levels, gamma = self.phase_response
            bench.slm.set_gamma(gamma, levels=levels)
        clear_correction(bench.slm)
        if self.wavefront is not None:
            apply_correction(bench.slm, *self.wavefront)
        if hasattr(bench, "display_correction"):
            bench.display_correction = self.display_linearizer
        if hasattr(bench, "measured_timing"):  # the sync policy pairs frames by the measured delays
            bench.measured_timing = self.timing

    @property
    def timing(self) -> dict[str, float] | None:
        """The bench's measured delays (display latency range and response, SLM settle), or None."""
        result = self.steps.get("timing")
        return None if result is None else {k: float(v) for k, v in result.values.items()}

    # -- storage -----------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temporary file, then an exclusive link to ``path``); refuses to overwrite an existing
        record, even one another process saves under the same name meanwhile."""
        path = Path(path)
        if path.exists():
            raise CalibrationError(
                f"{path} already exists; calibration records are never overwritten"
            )
        try:
            return self._write(path, unique=False)
        except ExistsError as exc:
            raise CalibrationError(
                f"{path} already exists; calibration records are never overwritten"
            ) from exc

    def save_new(self, folder: str | os.PathLike[str], when: datetime | None = None) -> Path:
        """Save as a new record in ``folder`` (``cal-YYYYmmdd-HHMMSS[-N].h5``): the name is taken exclusively
        when the file is complete, so records saved at the same second by other processes are never replaced."""
        return self._write(record_base_name(folder, when), unique=True)

    def _write(self, path: Path, unique: bool) -> Path:
        with (
            atomic_write(path, overwrite=False, unique=unique) as target,
            h5_file(target.tmp, RECORD_KIND, RECORD_SCHEMA) as f,
        ):
            f.attrs["record_created"] = self.created
            write_json_attr(f, "bench_info", self.bench_info)
            write_json_attr(
                f, "program", {"path": self.program_path, "sha256": self.program_sha256}
            )
            for name, result in self.steps.items():
                g = f.create_group(f"steps/{name}")
                write_json_attr(g, "quality", result.quality)
                write_json_attr(g, "values", result.values)
                g.attrs["duration_s"] = result.duration_s
                g.attrs["message"] = result.message
                if name in registry.STEPS:
                    g.attrs["schema_version"] = registry.step(name).schema.version
                if result.provenance is not None:
                    write_json_attr(g, "provenance", result.provenance.to_json())
                for key, arr in result.arrays.items():
                    g.create_dataset(f"arrays/{key}", data=np.asarray(arr), compression="gzip")
            # written last: a file left by a killed write that still lists every step is known to be complete
            write_json_attr(f, "step_names", list(self.steps))
        assert target.path is not None
        self.path = target.path
        return target.path

    @classmethod
    def load(
        cls,
        path: str | os.PathLike[str],
        bench: Any | None = None,
        strict: bool = False,
        force: bool = False,
    ) -> CalibrationRecord:
        """Read and validate a record; with ``bench``, warn (or with ``strict`` refuse) on other devices, and refuse
        (with ``force`` warn) a bench whose optics settings differ from the recorded ones."""
        path = Path(path)
        try:
            with open_h5(path, RECORD_KIND, RECORD_SCHEMA) as f:
                steps: dict[str, StepResult] = {}
                for name, g in f.get("steps", {}).items():
                    known = registry.STEPS[name].schema.version if name in registry.STEPS else None
                    version = int(
                        g.attrs.get("schema_version", 1)
                    )  # records from before per-step versions: 1
                    if known is not None and version > known:
                        raise CalibrationError(
                            f"{path}: its {name} step has schema version {version}, this lab4f "
                            f"reads up to {known} (written by a newer lab4f: upgrade lab4f to "
                            "read it)"
                        )
                    arrays: dict[str, np.ndarray] = {}
                    if "arrays" in g:
                        g["arrays"].visititems(
                            lambda key, obj, arrays=arrays: (
                                arrays.__setitem__(key, obj[()]) if hasattr(obj, "shape") else None
                            )
                        )
                    steps[name] = StepResult(
                        name,
                        read_json_attr(g, "quality", {}),
                        arrays,
                        read_json_attr(g, "values", {}),
                        float(g.attrs.get("duration_s", 0.0)),
                        str(g.attrs.get("message", "")),
                        Provenance.from_json(read_json_attr(g, "provenance")),
                    )
                listed = read_json_attr(f, "step_names")
                if listed is not None and set(listed) - set(steps):
                    raise CalibrationError(
                        f"{path} is an incomplete calibration record (steps "
                        f"{sorted(set(listed) - set(steps))} are missing); use an earlier "
                        "record or calibrate again with `lab4f calibrate all`."
                    )
                program = read_json_attr(f, "program", {})
                record = cls(
                    read_json_attr(f, "bench_info", {}),
                    steps,
                    str(f.attrs["record_created"]),
                    program.get("path"),
                    program.get("sha256"),
                    path,
                )
        except StorageError as exc:
            raise CalibrationError(
                f"{exc}. Use an earlier record (they are kept side by side) or calibrate "
                "again with `lab4f calibrate all`."
            ) from exc
        except (KeyError, OSError, ValueError) as exc:
            raise CalibrationError(
                f"{path} is a damaged calibration record ({exc}); use an earlier record or "
                "calibrate again with `lab4f calibrate all`."
            ) from exc
        unknown = record.provenance_unknown()
        if unknown:
            log.warning(
                "calibration record %s does not say when its steps %s were measured (written before lab4f "
                "recorded per-step times): whether they are stale cannot be checked; calibrate again to know",
                path,
                ", ".join(unknown),
            )
        if bench is not None:
            info = bench.info()
            record.check_identities(info, strict=strict)
            record.check_optics(info, force=force)
        return record

    def check_optics(self, info: dict[str, Any], force: bool = False) -> list[str]:
        """The optics settings that differ from the bench in use (:mod:`lab4f.calibration.identity`): a
        MismatchError naming them, or with ``force`` a warning."""
        from lab4f.calibration.identity import optics_differences

        differ = optics_differences(self.bench_info, info)
        if differ:
            msg = (
                f"calibration record {self.path} was measured on a bench set up differently: "
                + "; ".join(differ)
                + ". Calibrate this bench (`lab4f calibrate all`), or pass --force to use "
                "the record anyway"
            )
            if not force:
                raise MismatchError(msg)
            log.warning(msg)
        return differ

    def check_identities(self, info: dict[str, Any], strict: bool = False) -> list[str]:
        """Roles whose device identity differs from ``info``; a warning, or a MismatchError if ``strict``."""
        mine = self.bench_info.get("devices", {})
        theirs = info.get("devices", {})
        # the devices whose swap changes what was measured: the optics and sensor, and the source (its power and
        # spectrum set the exposure and the PSF scale); a shutter only gates the light
        differ = [
            role
            for role in ("slm", "camera", "display", "light_source")
            if role in mine
            and role in theirs
            and mine[role].get("identity") != theirs[role].get("identity")
        ]
        if differ:
            msg = (
                f"calibration record {self.path} was measured with other devices ({', '.join(differ)}) than the "
                "bench in use; calibrate this bench with `lab4f calibrate all`"
            )
            if strict:
                raise MismatchError(msg)
            log.warning(msg)
        return differ


def record_base_name(folder: str | os.PathLike[str], when: datetime | None = None) -> Path:
    """``folder/cal-YYYYmmdd-HHMMSS.h5`` for ``when`` (default: now, UTC), whether or not it is taken."""
    stamp = (when or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    return Path(folder) / f"cal-{stamp}.h5"


def new_record_path(folder: str | os.PathLike[str], when: datetime | None = None) -> Path:
    """``folder/cal-YYYYmmdd-HHMMSS.h5`` (a ``-N`` suffix if that second is taken) — free now, but another writer
    may take it before a save: :meth:`CalibrationRecord.save_new` takes the name exclusively."""
    for path in numbered(record_base_name(folder, when)):
        if not path.exists():
            return path
    raise AssertionError("unreachable")  # pragma: no cover


def _record_order(path: Path) -> tuple[str, int]:
    """(timestamp, n) of ``cal-YYYYmmdd-HHMMSS[-n].h5``: a record saved later in the same second has a higher n
    (plain name order would put ``…-1.h5`` before ``….h5``)."""
    m = re.fullmatch(r"cal-(\d{8}-\d{6})(?:-(\d+))?", path.stem)
    return (m.group(1), int(m.group(2) or 0)) if m else (path.stem, 0)


def list_records(folder: str | os.PathLike[str]) -> list[Path]:
    """Record files in ``folder``, oldest first (by the timestamp in their names)."""
    return sorted(Path(folder).glob(RECORD_GLOB), key=_record_order)


def latest_record(
    folder: str | os.PathLike[str], bench: Any | None = None, force: bool = False
) -> CalibrationRecord | None:
    """The newest readable record in ``folder`` (damaged files are skipped with a warning), or None."""
    for path in reversed(list_records(folder)):
        try:
            return CalibrationRecord.load(path, bench, force=force)
        except CalibrationError as exc:
            log.warning("skipping %s: %s", path, exc)
    return None


# -- temporary files left by a killed write ------------------------------------------------------------
_STAMP_RE = re.compile(r"cal-(\d{8}-\d{6})(?:-\d+)?\.h5")


def record_leftovers(folder: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Hidden temporary record files in ``folder`` (``.cal-….h5.PID.hex.tmp``): what a process killed while
    saving a record leaves. Each: path, size_bytes, pid, writer_alive (the write may be in progress: leave it),
    complete (it loads, lists its steps — written last — and has every one), duplicate_of (the record it is a
    second name of, when the kill came between publishing it and removing the temporary name: nothing to
    recover), problem (why it is not complete)."""
    folder = Path(folder)
    out = []
    for item in leftover_temps(folder, "cal-*.h5"):
        tmp = Path(item["path"])
        item |= {"complete": False, "duplicate_of": None, "problem": None}
        try:
            if tmp.stat().st_nlink > 1:
                item["duplicate_of"] = next(
                    (str(p) for p in list_records(folder) if os.path.samefile(p, tmp)), None
                )
            CalibrationRecord.load(
                tmp
            )  # refuses a file whose list of steps (written last) names a missing step
            with open_h5(tmp, RECORD_KIND, RECORD_SCHEMA) as f:
                listed = "step_names" in f.attrs
            if listed:
                item["complete"] = True
            else:  # killed before the list was written, or saved by a lab4f from before the list
                item["problem"] = (
                    "it does not list its steps, so it may be incomplete (inspect it with `lab4f "
                    f"calibration show {tmp}`)"
                )
        except CalibrationError as exc:
            item["problem"] = str(exc).split(". Use an earlier")[0].split("; use an earlier")[0]
        except FileNotFoundError:  # published or removed meanwhile
            continue
        out.append(item)
    return out


def recover_leftovers(
    folder: str | os.PathLike[str], remove: bool = False
) -> dict[str, list[dict[str, Any]]]:
    """Give every complete leftover record a proper name (``cal-<its intended time>[-N].h5``, taken exclusively,
    so it sorts where it would have been saved) and, with ``remove``, delete the incomplete ones. Files another
    running process is still writing are left alone; so are incomplete ones without ``remove``.

    Returns ``{"recovered": [{from, to}], "removed": [{path, size_bytes, problem}], "kept": [{path, reason}]}``.
    """
    folder = Path(folder)
    done: dict[str, list[dict[str, Any]]] = {"recovered": [], "removed": [], "kept": []}
    for item in record_leftovers(folder):
        tmp = Path(item["path"])
        if item["writer_alive"]:
            done["kept"].append(
                {"path": str(tmp), "reason": f"process {item['pid']} is still writing it"}
            )
        elif item["duplicate_of"]:
            os.unlink(
                tmp
            )  # the record already has its name: this is a second name of the same file
            done["recovered"].append(
                {"from": str(tmp), "to": item["duplicate_of"], "already_saved": True}
            )
        elif item["complete"]:
            m = _STAMP_RE.fullmatch(item["final_name"])
            when = (
                datetime.strptime(m.group(1), "%Y%m%d-%H%M%S")
                if m
                else datetime.fromtimestamp(tmp.stat().st_mtime, UTC)
            )
            to = publish(tmp, record_base_name(folder, when), overwrite=False, unique=True)
            done["recovered"].append({"from": str(tmp), "to": str(to), "already_saved": False})
        elif remove:
            os.unlink(tmp)
            done["removed"].append(
                {"path": str(tmp), "size_bytes": item["size_bytes"], "problem": item["problem"]}
            )
        else:
            done["kept"].append(
                {
                    "path": str(tmp),
                    "reason": f"incomplete ({item['problem']}); pass --remove to delete it",
                }
            )
    return done
