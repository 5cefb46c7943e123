"""`lab4f gui [--config BENCH]`: the desktop application at the bench."""

from __future__ import annotations

import argparse
import os
import time
from typing import Any

from lab4f.argtypes import positive_float


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "gui",
        help="open the desktop GUI (devices, calibration, kernels, live inference)",
        parents=[common],
    )
    p.add_argument(
        "--config",
        help="bench config (TOML/YAML); default: the last one used, else the simulated bench",
    )
    p.add_argument(
        "--no-restore", action="store_true", help="ignore the saved window layout and settings"
    )
    p.add_argument(
        "--quit-after-s",
        type=positive_float,
        default=None,
        help="close the window after this many seconds",
    )
    p.set_defaults(func=cmd_gui)


def cmd_gui(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.errors import ConfigError

    if not any(os.environ.get(v) for v in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")):
        raise ConfigError(
            "no display: run the GUI on a desktop, or headless with QT_QPA_PLATFORM=offscreen"
        )
    try:
        from lab4f.gui.app import run
    except ImportError as exc:
        raise ConfigError(
            f"the GUI needs PySide6 and pyqtgraph ({exc}); install lab4f[gui]"
        ) from None
    t0 = time.perf_counter()
    quit_ms = None if args.quit_after_s is None else int(args.quit_after_s * 1000)
    code = run(args.config, restore=not args.no_restore, quit_after_ms=quit_ms)
    return {"exit_code": code, "open_s": round(time.perf_counter() - t0, 3), "status": "closed"}
