"""mkdocs hook and griffe extension for the API pages.

lab4f installs four source trees as one package (pyproject's package-dir: drivers/ → lab4f.drivers, calibration/ →
lab4f.calibration, gui/ → lab4f.gui). griffe, which reads the sources for mkdocstrings, finds `lab4f/` and not
the other three, so the hook lays out build/api-src/lab4f/ with symbolic links to the real files before the build,
and mkdocs.yml points mkdocstrings at build/api-src. The docstrings are written with Sphinx roles
(``:class:`~lab4f.x.Y```), which :class:`RstRoles` shows as code.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import griffe
from mkdocs.plugins import event_priority

MAPPED = {"drivers": "drivers", "calibration": "calibration", "gui": "gui"}  # lab4f.<name> → folder
_ROLE = re.compile(r":(?:py:)?(?:class|mod|func|meth|attr|data|obj|exc|const):`(~?)([^`]+)`")


@event_priority(100)  # before mkdocstrings
def on_config(config):  # noqa: ANN001, ANN201
    root = Path(config.config_file_path).resolve().parent
    tree = root / "build" / "api-src" / "lab4f"
    tree.mkdir(parents=True, exist_ok=True)
    links = {item.name: item for item in (root / "lab4f").iterdir() if item.name != "__pycache__"}
    links |= {name: root / folder for name, folder in MAPPED.items()}
    for (
        entry
    ) in tree.iterdir():  # kept when still right, so two builds at once do not pull the tree away
        if (
            entry.name not in links
            or not entry.is_symlink()
            or entry.readlink() != links[entry.name]
        ):
            shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    for name, target in links.items():
        if not (tree / name).is_symlink():
            (tree / name).symlink_to(target, target_is_directory=target.is_dir())
    return config


def _role_as_code(match: re.Match[str]) -> str:
    target = match.group(2).strip()
    return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"


class RstRoles(griffe.Extension):
    """``:class:`~lab4f.x.Y``` in a docstring becomes ``Y`` as code (``:mod:`lab4f.x``` becomes ``lab4f.x``)."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: object) -> None:
        if obj.docstring is not None:
            obj.docstring.value = _ROLE.sub(_role_as_code, obj.docstring.value)
