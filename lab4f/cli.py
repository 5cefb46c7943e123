"""The `lab4f` command line.

Each subcommand lives in its own module under :mod:`lab4f.commands` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning a JSON-serialisable dict (the ``--json`` summary). Human-readable
output goes to stderr/stdout as the command sees fit, but with ``--json`` stdout carries
exactly one JSON object.

Exit codes: 0 done; 2 a usage or lab4f error (nothing, or nothing new, was saved); 3 a device failed — a
``DeviceError`` raised by the command, or a result dict carrying ``"exit_code": 3`` (a run stopped by a device
fault: its partial results are saved and the JSON says where, with ``"ok": false``, ``stop_reason`` and
``error_device``). 130: interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import math
import pkgutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from lab4f import __version__, commands
from lab4f.data_identity import collect_data_warnings
from lab4f.errors import EXIT_DEVICE, EXIT_ERROR, DeviceError, Lab4fError


def _jsonable(obj: Any) -> Any:
    try:
        import numpy as np

        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
    except ImportError:  # pragma: no cover
        pass
    if hasattr(obj, "__fspath__"):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _finite(obj: Any) -> Any:
    """``obj`` with every NaN/±inf float (also numpy's, also inside arrays) made None: JSON has no NaN, and a
    strict parser refuses Python's ``NaN``/``Infinity`` literals. None means "there is no such figure" (an empty
    class, a run with no latencies)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, str | int | bool) or obj is None:
        return obj
    try:
        converted = _jsonable(obj)
    except TypeError:
        return obj  # json.dumps reports it
    return _finite(converted)


def dumps(payload: dict[str, Any]) -> str:
    """The one JSON line a command prints: strict JSON (non-finite floats become null; never NaN or Infinity)."""
    return json.dumps(_finite(payload), default=_jsonable, allow_nan=False)


JSON_HELP = "print one JSON summary object on stdout"


def build_parser() -> argparse.ArgumentParser:
    """The `lab4f` parser. ``--json`` is accepted at every level (``lab4f --json bench info``, ``lab4f bench --json
    info`` and ``lab4f bench info --json`` are the same): below the top level its default is SUPPRESS, so a
    subcommand's default never overwrites a flag given to its group; the top level's default (False) fills in
    ``args.json`` when no level got the flag."""
    parser = _Parser(prog="lab4f", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab4f {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--json", action="store_true", default=False, help=JSON_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub, common)
    return parser


class UsageError(Exception):
    """The command line does not parse (unknown command or option, bad or missing value)."""

    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(f"{parser.prog}: {message}; see `{parser.prog} --help`")
        self.parser, self.message = parser, message


class _Parser(argparse.ArgumentParser):
    """Raises :class:`UsageError` instead of printing usage and exiting, so that `main` can answer a usage error
    with JSON; subcommand parsers are made of the same class (argparse's ``parser_class``)."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(self, message)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        # a command's own check of option combinations argparse cannot express (before heavy imports)
        check = getattr(args, "check_args", None)
        if check is not None and (problem := check(args)):
            args.command_parser.error(problem)
    except UsageError as exc:
        if "--json" in argv:  # a usage error still prints one JSON object on stdout
            print(dumps({"ok": False, "error": "UsageError", "message": str(exc)}))
            return 2
        exc.parser.print_usage(sys.stderr)  # as argparse does: usage, the error, exit 2
        exc.parser.exit(2, f"{exc.parser.prog}: error: {exc.message}\n")
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    from lab4f.drivers import quiet_slmsuite

    quiet_slmsuite(logging.DEBUG if args.verbose else logging.WARNING)
    from lab4f.bench.safety import install_exit_handlers

    install_exit_handlers()  # SIGTERM/SIGHUP unwind like Ctrl-C: every open bench puts its light in its exit state
    as_json = args.json  # the top level's default fills it in when no level got the flag
    # with --json, stdout carries exactly one JSON object: anything else a command prints goes to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet, collect_data_warnings() as data_warnings:
            result = args.func(args)
    except Lab4fError as exc:
        payload: dict[str, Any] = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
        if isinstance(
            exc, DeviceError
        ):  # scripts can tell a failing device from a wrong command line
            payload |= {
                "stop_reason": "device_error",
                "error_device": exc.device,
                "error_role": getattr(exc, "role", None),
            }
        if as_json:
            print(dumps(payload))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return EXIT_DEVICE if isinstance(exc, DeviceError) else EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    result = dict(result or {})
    if (
        data_warnings
    ):  # the data differ from a checkpoint's (lab4f.data_identity), a loader skipped files, ...
        result.setdefault("data_warnings", data_warnings)
    code = int(result.pop("exit_code", 0))
    if as_json:
        print(dumps({"ok": code == 0, **result}))
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
