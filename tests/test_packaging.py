"""A wheel and an sdist that work: built from a copy of the source tree, installed into a fresh venv that cannot see
this checkout (nor the editable install of the project venv), and run from an unrelated folder.

No downloads: both are built with the project venv's setuptools (``--no-build-isolation``) and installed with
``--no-deps --no-index``; the fresh venv sees the project's dependencies through a ``.pth`` line naming a folder of
links to the project venv's site-packages, minus lab4f itself (its dist-info and the editable finder) and the
``.pth`` files there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]
PACKAGE_DIR: dict[str, str] = SETUPTOOLS["package-dir"]  # installed name → source folder
NAME, VERSION = PYPROJECT["project"]["name"], PYPROJECT["project"]["version"]
SKIP = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.egg-info", "build")


def _run(cmd: list[str | Path], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {
        k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")
    }
    env.update(
        PYTHONNOUSERSITE="1",
        PIP_NO_INDEX="1",
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        QT_QPA_PLATFORM="offscreen",
    )
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    )
    return proc


def _packages(root: Path) -> dict[str, Path]:
    """Every directory with an __init__.py in the source trees under ``root``, by its installed package name."""
    return {
        ".".join((name, *init.parent.relative_to(root / src).parts)): init.parent
        for name, src in PACKAGE_DIR.items()
        for init in sorted((root / src).rglob("__init__.py"))
    }


def _expected_files(root: Path) -> set[str]:
    """The files of the source trees that an installation must hold, as paths inside site-packages."""
    files = set()
    data = SETUPTOOLS.get("package-data", {})
    for name, folder in _packages(root).items():
        target = name.replace(".", "/")
        files |= {f"{target}/{f.name}" for f in folder.glob("*.py")}
        files |= {
            f"{target}/{f.name}" for pattern in data.get(name, ()) for f in folder.glob(pattern)
        }
    return files


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of what a build reads: the top-level files and the source trees (no build products, no caches)."""
    root = tmp_path_factory.mktemp("src")
    for f in REPO.iterdir():
        if f.is_file():
            shutil.copy2(f, root / f.name)
    for src in PACKAGE_DIR.values():
        shutil.copytree(REPO / src, root / src, ignore=SKIP)
    return root


@pytest.fixture(scope="module")
def dists(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            out,
            ".",
        ],
        tree,
    )
    # what `python -m build --sdist --no-isolation` does: the PEP 517 hook of the venv's setuptools
    _run(
        [
            sys.executable,
            "-c",
            f"from setuptools import build_meta; build_meta.build_sdist({str(out)!r})",
        ],
        tree,
    )
    wheels, sdists = sorted(out.glob("*.whl")), sorted(out.glob("*.tar.gz"))
    assert len(wheels) == 1 and len(sdists) == 1, sorted(out.iterdir())
    return {"wheel": wheels[0], "sdist": sdists[0]}


def _fresh_venv(where: Path) -> Path:
    """A venv without lab4f that sees the project venv's other packages; returns its interpreter."""
    _run([sys.executable, "-m", "venv", "--without-pip", where / "venv"], where)
    python = where / "venv" / "bin" / "python"
    view = where / "deps"
    view.mkdir()
    for site in dict.fromkeys(
        Path(sysconfig.get_path(k)).resolve() for k in ("purelib", "platlib")
    ):
        for entry in site.iterdir():
            hidden = entry.name.startswith((NAME, f"__editable__.{NAME}", f"__editable___{NAME}"))
            if not hidden and entry.suffix != ".pth" and not (view / entry.name).exists():
                (view / entry.name).symlink_to(entry)
    own_site = _run(
        [python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], where
    ).stdout.strip()
    (Path(own_site) / "project-venv-deps.pth").write_text(f"{view}\n")
    return python


def _check_installed(python: Path, cwd: Path) -> None:
    """lab4f and every package of it import from the fresh venv's site-packages, not from this checkout."""
    probe = (
        "import importlib, importlib.metadata as md, json, sys, lab4f; "
        f"names = json.loads(sys.argv[1]); mods = {{n: importlib.import_module(n) for n in names}}; "
        f"print(json.dumps({{'files': {{n: m.__file__ for n, m in mods.items()}}, "
        f"'dist': str(md.distribution({NAME!r}).locate_file('')), 'version': md.version({NAME!r})}}))"
    )
    names = sorted(_packages(REPO))
    seen = json.loads(_run([python, "-c", probe, json.dumps(names)], cwd).stdout)
    venv = python.parent.parent.resolve()
    outside = {n: f for n, f in seen["files"].items() if not Path(f).resolve().is_relative_to(venv)}
    assert not outside, f"imported from outside the fresh venv {venv}: {outside}"
    assert Path(seen["dist"]).resolve().is_relative_to(venv) and seen["version"] == VERSION


def _strict_json(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_every_directory_of_modules_is_a_package(tree: Path) -> None:
    """A folder of modules without __init__.py would not be installed (setup.py finds packages, not folders)."""
    loose = [
        str(d.relative_to(tree))
        for src in PACKAGE_DIR.values()
        for d in [tree / src, *(tree / src).rglob("*")]
        if d.is_dir()
        and d.name != "__pycache__"
        and any(d.glob("*.py"))
        and not (d / "__init__.py").exists()
    ]
    assert not loose, f"folders of modules without __init__.py: {loose}"


def test_wheel_holds_every_package_module_and_data_file(tree: Path, dists: dict[str, Path]) -> None:
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    packages = _packages(tree)
    assert {
        "lab4f",
        "lab4f.bench",
        "lab4f.commands",
        "lab4f.drivers",
        "lab4f.calibration",
        "lab4f.gui",
        "lab4f.gui.panels",
    } <= set(packages)
    missing_packages = sorted(
        p for p in packages if f"{p.replace('.', '/')}/__init__.py" not in names
    )
    assert not missing_packages, f"packages missing from the wheel: {missing_packages}"
    missing = sorted(_expected_files(tree) - names)
    assert not missing, f"files missing from the wheel: {missing}"
    assert {"lab4f/py.typed", "lab4f/drivers/sim_instruments.yaml"} <= names
    top = {n.split("/")[0] for n in names}
    assert top == {NAME, f"{NAME}-{VERSION}.dist-info"}, (
        f"the wheel installs more than lab4f: {sorted(top)}"
    )
    if shutil.which(
        sysconfig.get_config_var("CC").split()[0]
    ):  # the optional kernel is built where it can be
        assert any(n.startswith("lab4f/_fusedk.") and n.endswith((".so", ".pyd")) for n in names)


def test_sdist_holds_every_source_file(tree: Path, dists: dict[str, Path]) -> None:
    prefix = f"{NAME}-{VERSION}/"
    names = {n.removeprefix(prefix) for n in tarfile.open(dists["sdist"]).getnames()}
    sources = {
        str(f.relative_to(tree))
        for src in PACKAGE_DIR.values()
        for f in (tree / src).rglob("*")
        if f.is_file() and "__pycache__" not in f.parts
    }
    missing = sorted(
        (sources | {"pyproject.toml", "setup.py", "README.md", "lab4f/_fused.c"}) - names
    )
    assert not missing, f"files missing from the sdist: {missing}"


def test_installed_wheel_runs_the_cli(dists: dict[str, Path], tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path)
    _run(
        [python, "-m", "pip", "install", "-q", "--no-deps", "--no-index", dists["wheel"]], tmp_path
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_installed(python, elsewhere)
    lab4f = python.parent / "lab4f"
    assert "usage: lab4f" in _run([lab4f, "--help"], elsewhere).stdout
    assert _run([lab4f, "--version"], elsewhere).stdout.strip() == f"lab4f {VERSION}"
    if any(n.startswith("lab4f/_fusedk.") for n in zipfile.ZipFile(dists["wheel"]).namelist()):
        probe = "from lab4f.bench.fused import kernel_isa, kernel_library; kernel_isa(); print(kernel_library()._name)"
        kernel = _run(
            [python, "-c", probe], elsewhere
        ).stdout.strip()  # loaded with ctypes, as runs load it
        assert Path(kernel).resolve().is_relative_to(python.parent.parent.resolve())
    info = _strict_json(_run([lab4f, "bench", "info", "--json"], elsewhere).stdout)
    assert info["ok"] is True and set(info["devices"]) == {
        "slm",
        "display",
        "camera",
        "light_source",
        "shutter",
    }


def test_installed_sdist_runs_the_cli(dists: dict[str, Path], tmp_path: Path) -> None:
    python = _fresh_venv(tmp_path)
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--no-build-isolation",
            dists["sdist"],
        ],
        tmp_path,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    _check_installed(python, elsewhere)
    assert "usage: lab4f" in _run([python.parent / "lab4f", "--help"], elsewhere).stdout
