"""Start the desktop application: `lab4f gui` and `python -m lab4f.gui`."""

from __future__ import annotations

import sys

from PySide6 import QtWidgets

from lab4f.gui.main_window import APPLICATION, ORGANISATION, MainWindow


def run(
    config_path: str | None = None, restore: bool = True, quit_after_ms: int | None = None
) -> int:
    """Open the main window and run the event loop until it closes; returns the exit code."""
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    window = MainWindow(config_path, restore=restore)
    window.show()
    if quit_after_ms is not None:
        from PySide6 import QtCore

        QtCore.QTimer.singleShot(quit_after_ms, window.close)
    return int(app.exec())
