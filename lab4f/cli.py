"""The `lab4f` command line.

Each subcommand lives in its own module under :mod:`lab4f.commands` and exposes
``register(subparsers)``; the parser it adds sets ``func`` to a callable taking the parsed
arguments and returning a JSON-serialisable dict (the ``--json`` summary). Human-readable
output goes to stderr/stdout as the command sees fit, but with ``--json`` stdout carries
exactly one JSON object.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import logging
import pkgutil
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from lab4f import __version__, commands
from lab4f.errors import Lab4fError


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


JSON_HELP = "print one JSON summary object on stdout"


def _parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """``parser`` and every (sub)command parser below it."""
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _parsers(child)


def build_parser() -> argparse.ArgumentParser:
    """The `lab4f` parser. ``--json`` is accepted at every level (``lab4f --json bench info``, ``lab4f bench --json
    info`` and ``lab4f bench info --json`` are the same): below the top level its default is SUPPRESS, so a
    subcommand's default never overwrites a flag given to its group; the top level's default (False) fills in
    ``args.json`` when no level got the flag."""
    parser = argparse.ArgumentParser(prog="lab4f", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab4f {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--json", action="store_true", default=False, help=JSON_HELP)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub, common)
    for p in _parsers(parser):
        if "--json" not in p._option_string_actions:  # group parsers registered without `common` (segment, report)
            p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help=JSON_HELP)
    return parser


class UsageError(Exception):
    """The command line does not parse (unknown command or option, bad or missing value)."""


def _usage_errors_as_exceptions(parser: argparse.ArgumentParser) -> None:
    """Make every parser of the tree raise :class:`UsageError` instead of printing usage and exiting."""

    def make_error(p: argparse.ArgumentParser) -> Any:
        def error(message: str) -> NoReturn:
            raise UsageError(f"{p.prog}: {message}; see `{p.prog} --help`")

        return error

    for p in _parsers(parser):
        p.error = make_error(p)  # type: ignore[method-assign]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if "--json" in argv:
        # a usage error must still print one JSON object on stdout (without --json argparse prints usage, exit 2)
        _usage_errors_as_exceptions(parser)
        try:
            args = parser.parse_args(argv)
        except UsageError as exc:
            print(json.dumps({"ok": False, "error": "UsageError", "message": str(exc)}))
            return 2
    else:
        args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    from lab4f.drivers import quiet_slmsuite

    quiet_slmsuite(logging.DEBUG if args.verbose else logging.WARNING)
    as_json = bool(getattr(args, "json", False))
    args.json = as_json
    # with --json, stdout carries exactly one JSON object: anything else a command prints goes to stderr
    quiet = contextlib.redirect_stdout(sys.stderr) if as_json else contextlib.nullcontext()
    try:
        with quiet:
            result = args.func(args)
    except Lab4fError as exc:
        if as_json:
            print(json.dumps({"ok": False, "error": type(exc).__name__, "message": str(exc)}))
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    if as_json:
        print(json.dumps({"ok": True, **(result or {})}, default=_jsonable))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
