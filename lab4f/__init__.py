"""lab4f: hardware-in-the-loop control of a hybrid optical-electronic CNN on a 4f bench."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("lab4f")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+local"

__all__ = ["__version__"]
