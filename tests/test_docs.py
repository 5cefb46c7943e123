"""The documentation: its Python examples run, its CLI reference matches the parsers, the site builds strictly, and
the README stays short.

An example runs when its fenced ```python block is preceded by a line ``<!-- run -->`` (in README.md and every page
under docs/). Every Python block of the API pages (docs/api/) is marked either ``<!-- run -->`` or
``<!-- no-run: why -->``. The blocks of one page run in order in one namespace, in a temporary folder, headless.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
README_LIMIT = 6000
GENERATED = {
    DOCS / "results",
    DOCS / "screenshots",
}  # made by commands and tests, not pages with examples

FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
MARK = re.compile(r"<!--\s*(run|no-run)\b[^>]*-->\s*$")


def _pages() -> list[Path]:
    pages = [ROOT / "README.md"]
    pages += sorted(p for p in DOCS.rglob("*.md") if not any(g in p.parents for g in GENERATED))
    return pages


def _blocks(page: Path) -> list[tuple[int, str, str | None]]:
    """(first line of the code, the code, its mark: "run", "no-run" or None) for each python block."""
    text = page.read_text(encoding="utf-8")
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        line = text.count("\n", 0, m.start(1)) + 1
        out.append((line, m.group(1), mark.group(1) if mark else None))
    return out


def _rel(page: Path) -> str:
    return str(page.relative_to(ROOT))


RUNNABLE = [p for p in _pages() if any(mark == "run" for _, _, mark in _blocks(p))]


def test_examples_are_marked() -> None:
    """There are examples to run, and no API example is silently left out."""
    assert len(RUNNABLE) >= 8, [_rel(p) for p in RUNNABLE]
    unmarked = [
        f"{_rel(p)}:{line}"
        for p in sorted((DOCS / "api").glob("*.md"))
        for line, _, mark in _blocks(p)
        if mark is None
    ]
    assert not unmarked, (
        f"python blocks on API pages need <!-- run --> or <!-- no-run: why -->: {unmarked}"
    )


@pytest.mark.parametrize("page", RUNNABLE, ids=_rel)
def test_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every ``<!-- run -->`` block of the page, in order, in one namespace; tracebacks name the page's lines."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    namespace: dict[str, object] = {"__name__": "__docs_example__"}
    t0 = time.perf_counter()
    for line, code, mark in _blocks(page):
        if mark != "run":
            continue
        exec(compile("\n" * (line - 1) + code, str(page), "exec"), namespace)  # noqa: S102 - the docs' own code
    print(f"{_rel(page)}: examples ran in {time.perf_counter() - t0:.1f} s")


def _gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", DOCS / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_cli_reference_is_up_to_date() -> None:
    """docs/cli.md is what docs/gen_cli.py makes from the parsers today."""
    expected = _gen_cli().render()
    committed = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert committed == expected, (
        "docs/cli.md is out of date with the CLI's parsers: run `make docs`"
    )


def test_cli_reference_lists_every_command() -> None:
    from lab4f.cli import build_parser

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in build_parser()._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in sub.choices:
        assert f"## `lab4f {name}`" in text


def test_readme_is_short_and_its_links_resolve() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text) <= README_LIMIT, (
        f"README.md has {len(text)} characters (at most {README_LIMIT})"
    )
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert targets
    missing = [t for t in targets if "://" not in t and not (ROOT / t).exists()]
    assert not missing, f"README links to missing files: {missing}"


def test_site_builds_strictly(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every nav page, link, anchor and mkdocstrings reference resolves."""
    pytest.importorskip(
        "mkdocs", reason="mkdocs is not installed (it is in the dev extra: pip install -e '.[dev]')"
    )
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "api" / "bench" / "index.html").read_text(encoding="utf-8").count(
        "doc-heading"
    ) > 5
