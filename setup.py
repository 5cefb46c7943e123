"""Builds lab4f's one compiled piece, the fused extraction kernel (lab4f/_fused.c); everything else is in
pyproject.toml. The kernel is optional: without a C compiler lab4f installs and runs extraction in torch."""

import sys

from setuptools import Extension, setup

flags = [] if sys.platform == "win32" else ["-O3", "-std=c11", "-Wno-psabi"]
setup(ext_modules=[Extension("lab4f._fusedk", ["lab4f/_fused.c"], extra_compile_args=flags, optional=True)])
