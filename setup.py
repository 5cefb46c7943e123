"""What pyproject.toml cannot say declaratively:

* the packages: every package under the four source trees of pyproject.toml's ``[tool.setuptools] package-dir``
  (lab4f/, and drivers/, calibration/, gui/ installed as lab4f.drivers, lab4f.calibration, lab4f.gui), found here
  so that a new subpackage is installed without being listed (setuptools' own discovery cannot add the prefix);
* lab4f's one compiled piece, the fused extraction kernel (lab4f/_fused.c). The kernel is optional: without a C
  compiler lab4f installs and runs extraction in torch.
"""

import sys
import tomllib
from pathlib import Path

from setuptools import Extension, find_packages, setup

here = Path(__file__).resolve().parent
package_dir = tomllib.loads((here / "pyproject.toml").read_text())["tool"]["setuptools"][
    "package-dir"
]
packages = [
    pkg
    for name, src in package_dir.items()
    for pkg in (name, *(f"{name}.{sub}" for sub in find_packages(here / src)))
]

flags = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-Wno-psabi"]
setup(
    packages=packages,
    ext_modules=[
        Extension("lab4f._fusedk", ["lab4f/_fused.c"], extra_compile_args=flags, optional=True)
    ],
)
