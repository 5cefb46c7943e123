"""The calibration steps, described once: what each is, what it needs, what it makes stale, and what it stores.

:data:`STEPS` is the one registry the CLI (``lab4f calibrate`` step choices), the runner (bench order, what ``all``
runs, prerequisites, what a re-run invalidates, refits), the record (accessors check the step's schema; each step is
saved with its schema version) and the GUI (panel titles and bars, the stale-calibration check) read. A new step is
one :func:`register` call. Stdlib only at import: building the CLI parser must not load the steps' code, which is
imported when a step runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lab4f.calibration.base import StepResult


@dataclass(frozen=True)
class StepSchema:
    """What a step's result holds in the record, as the readers (accessors, GUI, plots) rely on it.

    ``version`` is saved with every step; a record whose step has a newer version than this lab4f knows is
    refused for that step. ``arrays`` / ``values`` name the entries readers use (name → meaning); a name ending
    in ``/`` is a family (``tile_shifts/`` → ``tile_shifts/0``, ``tile_shifts/1`` …). Steps may store more.
    """

    version: int = 1
    arrays: dict[str, str] = field(default_factory=dict)
    values: dict[str, str] = field(default_factory=dict)

    def declares(self, kind: str, name: str) -> bool:
        names = self.arrays if kind == "arrays" else self.values
        return name in names or any(k.endswith("/") and name.startswith(k) for k in names)


@dataclass
class StepContext:
    """What a step's runner gets: the bench, the record so far (earlier steps of this run on top of the base), the
    program (None without one), progress, cancel and the step's keyword options."""

    bench: Any
    record: Any
    program: Any
    progress: Any
    cancel: Any
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def kw(self) -> dict[str, Any]:
        return {"progress": self.progress, "cancel": self.cancel, **self.options}

    def require(self, step: str, value: Any, for_step: str) -> Any:
        """``value`` (read from ``step``'s result), or a CalibrationError saying to run ``step`` first."""
        if value is None:
            from lab4f.errors import CalibrationError

            raise CalibrationError(
                f"step {for_step!r} needs the {step} from an earlier step; run `lab4f calibrate "
                f"{step}` or `lab4f calibrate all` first"
            )
        return value


@dataclass(frozen=True)
class Step:
    """One calibration step.

    ``run(ctx)`` measures it (imports the step's module on first use). ``needs``: steps whose results it reads and
    cannot do without (the runner refuses, the GUI runs them first when missing). ``invalidates``: steps measured
    through its result — re-running this one alone leaves them stale. ``rerun_invalidated``: a re-run of this step
    re-runs those too (refused without a program if they need one). ``refit_after``: steps run again right after it
    (its correction moves what they measured). ``optional``: ``all`` runs it only when asked. ``needs_program``: it
    measures a compiled optical program's tiles.
    """

    name: str
    title: str
    run: Callable[[StepContext], StepResult]
    needs: tuple[str, ...] = ()
    invalidates: tuple[str, ...] = ()
    rerun_invalidated: bool = False
    refit_after: tuple[str, ...] = ()
    optional: bool = False
    needs_program: bool = False
    schema: StepSchema = field(default_factory=StepSchema)
    help: str = ""


def _fn(module: str, name: str) -> Any:
    return getattr(import_module(f"lab4f.calibration.{module}"), name)


# -- how each step is run: the step functions' own signatures, fed from the record so far ----------------------
def _camera(c: StepContext) -> StepResult:
    return _fn("camera", "camera_step")(c.bench, program=c.program, **c.kw)


def _timing(
    c: StepContext,
) -> StepResult:  # right after the camera: every later step's frames are paired by it
    result = _fn("timing", "timing_step")(c.bench, **c.kw)
    c.bench.measured_timing = dict(result.values)
    return result


def _display(c: StepContext) -> StepResult:
    result = _fn("display", "display_step")(c.bench, dark=c.record.dark, **c.kw)
    # the later steps show their images linearised, as the pipeline will
    c.bench.display_correction = _fn("display", "DisplayLinearizer").from_step(result)
    return result


def _fourier(c: StepContext) -> StepResult:
    return _fn("fourier", "fourier_step")(c.bench, dark=c.record.dark, **c.kw)


def _phase(c: StepContext) -> StepResult:
    fourier = c.require("fourier", c.record.fourier, "phase")
    return _fn("slm", "phase_response_step")(c.bench, fourier, dark=c.record.dark, **c.kw)


def _wavefront(c: StepContext) -> StepResult:
    fourier = c.require("fourier", c.record.fourier, "wavefront")
    return _fn("wavefront", "wavefront_step")(c.bench, fourier, dark=c.record.dark, **c.kw)


def _registration(c: StepContext) -> StepResult:
    return _fn("registration", "display_registration_step")(
        c.bench, dark=c.record.dark, fourier=c.record.fourier, **c.kw
    )


def _tiles(c: StepContext) -> StepResult:
    reg = c.require("registration", c.record.registration, "tiles")
    return _fn("registration", "tile_registration_step")(
        c.bench, c.program, reg, dark=c.record.dark, **c.kw
    )


def _gains(c: StepContext) -> StepResult:
    reg = c.require("registration", c.record.registration, "gains")
    shifts = [c.record.tile_shifts(i) for i in range(len(c.program.frames))]
    known = None if any(s is None for s in shifts) else shifts
    return _fn("gains", "channel_gain_step")(
        c.bench, c.program, reg, known, dark=c.record.dark, flat=c.record.flat, **c.kw
    )


#: Every step, in bench order. The display is linearised before anything shows images through it; the Fourier
#: calibration precedes the phase response (slmsuite's pixel calibration needs it); the optional wavefront step
#: follows the phase LUT, and a Fourier refit follows it (its correction moves spot centres).
STEPS: dict[str, Step] = {}


def register(step: Step, after: str | None = None) -> Step:
    """Add ``step`` to the registry (after the step ``after``, default: last); every front end then offers it."""
    if step.name in STEPS or step.name == "all":
        raise ValueError(f"calibration step {step.name!r} is already registered")
    unknown = [
        n for n in (*step.needs, *step.refit_after) if n not in STEPS
    ]  # earlier steps (invalidates: later)
    if unknown:
        raise ValueError(f"step {step.name!r} needs or refits unregistered steps {unknown}")
    items = list(STEPS.items())
    at = len(items) if after is None else [n for n, _ in items].index(after) + 1
    items.insert(at, (step.name, step))
    STEPS.clear()
    STEPS.update(items)
    return step


def unregister(name: str) -> None:
    """Remove a step (tests that register a toy step)."""
    STEPS.pop(name)


for _step in (
    Step(
        "camera",
        "Camera: exposure, dark, flat",
        _camera,
        invalidates=("gains",),  # the filters carry its scale
        help="exposure, dark frame, flat field",
        schema=StepSchema(
            1,
            {"dark": "dark frame (ADU, camera shape)", "flat": "relative pixel throughput"},
            {"exposure_s": "the exposure set", "flat_frames": "frames of the flat (0: unity)"},
        ),
    ),
    Step(
        "timing",
        "Timing: display latency, response, SLM settle",
        _timing,
        help="the bench's measured delays",
        schema=StepSchema(
            1,
            {"display_curve/": "display step responses", "slm_curve/": "SLM step response"},
            {
                "display_latency_min_s": "",
                "display_latency_max_s": "",
                "display_response_s": "",
                "slm_settle_s": "",
            },
        ),
    ),
    # the channel filters were fitted on images shown through the display response: a re-run re-fits them
    Step(
        "display",
        "Input display linearity (gray → light)",
        _display,
        invalidates=("gains",),
        rerun_invalidated=True,
        help="the input display's response and its linearisation",
        schema=StepSchema(
            1, {"drive": "drive values of the inverse response", "response": "light at each drive"}
        ),
    ),
    Step(
        "fourier",
        "Fourier calibration (slmsuite)",
        _fourier,
        help="slmsuite's k-space → camera calibration",
        invalidates=(
            "registration",
            "tiles",
            "gains",
        ),  # the registration's matrix is the Fourier calibration's
        schema=StepSchema(
            1,
            values={
                "fourier": "slmsuite's {M, b, a}",
                "array_shape": "",
                "array_pitch": "",
                "array_center": "",
            },
        ),
    ),
    Step(
        "phase",
        "SLM phase response (LUT)",
        _phase,
        needs=("fourier",),
        help="the SLM's phase LUT",
        invalidates=(
            "tiles",
            "gains",
        ),  # a new LUT changes the PSF the tiles and filters were fitted to
        schema=StepSchema(1, {"gamma_levels": "gray levels", "gamma": "phase/2π at each level"}),
    ),
    Step(
        "wavefront",
        "Wavefront correction (optional, ~20 s)",
        _wavefront,
        needs=("fourier",),
        optional=True,
        invalidates=("registration", "tiles", "gains"),
        refit_after=("fourier",),
        help="slmsuite's aberration correction (optional)",
        schema=StepSchema(
            1, {"phase_correction": "SLM phase correction (rad)", "amplitude": "source amplitude"}
        ),
    ),
    Step(
        "registration",
        "Display → camera registration",
        _registration,
        invalidates=("tiles", "gains"),
        help="display fiducials → plane-to-camera affine",
        schema=StepSchema(
            1,
            {
                "registration": "plane → camera affine",
                "fiducial_plane_xy": "",
                "fiducial_camera_xy": "",
            },
        ),
    ),
    Step(
        "tiles",
        "Tile registration (program)",
        _tiles,
        needs=("registration",),
        needs_program=True,
        invalidates=("gains",),
        help="per-tile shifts for a program",
        schema=StepSchema(
            1, {"tile_shifts/": "per-tile shifts (T, 2) in plane cells, per program frame"}
        ),
    ),
    Step(
        "gains",
        "Per-channel filter and offset (program)",
        _gains,
        needs=("registration",),
        needs_program=True,
        help="per-channel filters and offsets for a program",
        schema=StepSchema(
            1,
            {
                "dark": "dark frame at the fit's exposure",
                "channel_filter": "",
                "channel_gain": "",
                "channel_offset": "",
                "channel_r2": "held-out R² per channel",
                "captured_sample": "",
                "digital_sample": "",
            },
            {"exposure_s": "the exposure of the fit"},
        ),
    ),
):
    register(_step)


# -- what the front ends read -------------------------------------------------------------------------------
def names() -> tuple[str, ...]:
    """Every step, in bench order."""
    return tuple(STEPS)


def step(name: str) -> Step:
    """The step called ``name`` (a CalibrationError naming the choices for an unknown one)."""
    if name not in STEPS:
        from lab4f.errors import CalibrationError

        raise CalibrationError(
            f"unknown calibration step {name!r}; choose one of {', '.join(STEPS)} or 'all'"
        )
    return STEPS[name]


def title(name: str) -> str:
    return STEPS[name].title


def in_order(steps: Iterable[str]) -> list[str]:
    """``steps`` in bench order (unknown names dropped)."""
    wanted = set(steps)
    return [n for n in STEPS if n in wanted]


def all_steps(optional: bool = False, program: bool = True) -> list[str]:
    """What ``all`` runs: every step but the optional ones (unless ``optional``) and, without a program, those
    that need one."""
    return [
        n
        for n, s in STEPS.items()
        if (optional or not s.optional) and (program or not s.needs_program)
    ]


def needs_program() -> tuple[str, ...]:
    return tuple(n for n, s in STEPS.items() if s.needs_program)


def optional_steps() -> tuple[str, ...]:
    return tuple(n for n, s in STEPS.items() if s.optional)


def depends_on_it() -> dict[str, tuple[str, ...]]:
    """step → the steps measured through it (what a re-run of it alone leaves stale)."""
    return {n: s.invalidates for n, s in STEPS.items() if s.invalidates}


def builds_on(name: str) -> tuple[str, ...]:
    """The steps ``name`` is measured through (re-running one of them makes ``name`` stale), in bench order."""
    return tuple(n for n, s in STEPS.items() if name in s.invalidates)


def prerequisites(name: str) -> tuple[str, ...]:
    """The steps ``name`` cannot run without (their results must be in the record)."""
    return STEPS[name].needs


def with_refits(steps: Iterable[str]) -> list[str]:
    """The run order: each step followed by the steps it makes the runner refit (wavefront → fourier)."""
    out: list[str] = []
    for n in steps:
        out.append(n)
        out += list(STEPS[n].refit_after)
    return out


def runs(requested: str, name: str) -> bool:
    """Whether ``lab4f calibrate REQUESTED`` ('all' or one step) measures step ``name`` (also as a refit)."""
    if requested == "all":
        return name in all_steps(optional=True)
    if requested not in STEPS:
        return False
    req = STEPS[requested]
    return name in with_refits([requested]) or (req.rerun_invalidated and name in req.invalidates)


def __getattr__(attr: str) -> Any:
    """The registry's views under their former constant names (computed now: a registered step is in them)."""
    views = {
        "BENCH_ORDER": names,
        "STEP_ORDER": all_steps,
        "OPTIONAL_STEPS": optional_steps,
        "NEEDS_PROGRAM": needs_program,
        "DEPENDS_ON_IT": depends_on_it,
    }
    if attr in views:
        return views[attr]()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
