"""Type-check lab4f with mypy: ``python tools/typecheck.py`` (``make lint`` runs it; tests/test_typing.py too).

lab4f installs four source trees as one package (pyproject.toml's ``package-dir``: drivers/ as lab4f.drivers, and
so on), which mypy cannot map by itself, and the editable install's import hook is invisible to it. So this links
the trees into one ``lab4f`` package under build/typecheck/, runs mypy there with pyproject.toml's ``[tool.mypy]``,
and reports each error at its real path (``drivers/sim_display.py``, not ``lab4f/drivers/sim_display.py``).
"""

from __future__ import annotations

import os
import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TREE = ROOT / "build" / "typecheck"
#: the number of mypy errors main may have: a ratchet on the way to zero. A change that adds errors fails
#: (``make lint``, tests/test_typing.py); one that removes some lowers this number in the same commit.
BASELINE = ROOT / "tools" / "mypy_baseline.txt"


def link_tree() -> dict[str, str]:
    """Build ``TREE/lab4f`` of symlinks; return {linked path prefix: real path prefix} for the report."""
    dirs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    pkg = TREE / "lab4f"
    pkg.mkdir(parents=True, exist_ok=True)
    wanted = {
        p.name: p
        for p in (ROOT / "lab4f").iterdir()
        if p.suffix in (".py", ".pyi", ".typed") or p.is_dir()
    }
    wanted.update(
        {name.split(".", 1)[1]: ROOT / src for name, src in dirs.items() if name != "lab4f"}
    )
    for entry in pkg.iterdir():
        if (
            entry.name not in wanted
            or not entry.is_symlink()
            or entry.resolve() != wanted[entry.name].resolve()
        ):
            entry.unlink()
    for name, target in wanted.items():
        if not (pkg / name).is_symlink():
            (pkg / name).symlink_to(target)
    return {
        f"lab4f/{name.split('.', 1)[1]}/": f"{src}/"
        for name, src in dirs.items()
        if name != "lab4f"
    }


def main(argv: list[str] | None = None) -> int:
    """Run mypy; with ``--ratchet``, succeed when there are no more errors than tools/mypy_baseline.txt allows."""
    argv = list(argv or [])
    ratchet = "--ratchet" in argv
    if ratchet:
        argv.remove("--ratchet")
    from mypy import api

    prefixes = link_tree()
    cwd = os.getcwd()
    os.chdir(TREE)  # mypy finds lab4f here, before the editable install's hook
    try:
        out, err, status = api.run(
            [
                "--config-file",
                str(ROOT / "pyproject.toml"),
                "--cache-dir",
                str(TREE / ".mypy_cache"),
                *(argv or []),
                "-p",
                "lab4f",
            ]
        )
    finally:
        os.chdir(cwd)
    for line in out.splitlines():
        for linked, real in prefixes.items():
            if line.startswith(linked):
                line = real + line[len(linked) :]
                break
        print(line)
    print(err, end="", file=sys.stderr)
    if not ratchet or status not in (0, 1):  # 2: mypy itself failed
        return status
    found = re.search(r"Found (\d+) errors? in", out)
    errors = int(found.group(1)) if found else 0
    allowed = int(BASELINE.read_text().split()[0])
    if errors > allowed:
        print(
            f"mypy: {errors} errors, more than the {allowed} of {BASELINE.name}: type the new code",
            file=sys.stderr,
        )
        return 1
    if errors < allowed:
        print(
            f"mypy: {errors} errors, fewer than the {allowed} of {BASELINE.name}: lower it to {errors}",
            file=sys.stderr,
        )
        return 1
    print(f"mypy: {errors} errors, as {BASELINE.name} allows (the goal is 0)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
