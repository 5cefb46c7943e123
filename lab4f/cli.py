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
from collections.abc import Sequence
from typing import Any

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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab4f", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lab4f {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON summary object on stdout")
    sub = parser.add_subparsers(dest="command", required=True)
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{commands.__name__}.{info.name}")
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING, stream=sys.stderr)
    from lab4f.drivers import quiet_slmsuite

    quiet_slmsuite(logging.DEBUG if args.verbose else logging.WARNING)
    as_json = getattr(args, "json", False)
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
