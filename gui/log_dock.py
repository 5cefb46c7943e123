"""The Log panel: warnings and errors from the core (Python logging) and from the GUI's jobs, newest last.

A `logging.Handler` may be called from any thread (the device thread, the pipeline's threads); it only emits a
signal, which reaches the panel through a queued connection in the GUI thread — no widget is touched elsewhere.
"""

from __future__ import annotations

import logging
from datetime import datetime

from PySide6 import QtCore, QtGui, QtWidgets

from lab4f.gui.messages import in_gui_terms

MAX_ENTRIES = 2000  # the oldest go first: a run left for hours does not grow the list without bound
COLOURS = {"WARNING": "#8a5300", "ERROR": "#a40000", "CRITICAL": "#a40000"}
CORE_LOGGER = "lab4f"  # lab4f.bench.*, lab4f.calibration.*, lab4f.drivers.*, lab4f.gui.*


class LogBridge(QtCore.QObject):
    """Lives in the GUI thread; its signal carries a log record's fields across threads."""

    entry = QtCore.Signal(
        str, str, str, float
    )  # level name, logger name, message, time (s since the epoch)


class QtLogHandler(logging.Handler):
    """Hands every record to `bridge.entry` (queued to the GUI thread); safe to call from any thread."""

    def __init__(self, level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.bridge = LogBridge()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                message += f" ({type(record.exc_info[1]).__name__}: {record.exc_info[1]})"
            self.bridge.entry.emit(record.levelname, record.name, message, record.created)
        except Exception:  # a handler must never raise into the code that logged
            self.handleError(record)


class LogPanel(QtWidgets.QWidget):
    """A list of entries (time, level, where, message in the GUI's terms; the original as tooltip), a level filter,
    Copy and Clear."""

    counts_changed = QtCore.Signal(int, int)  # warnings, errors shown so far

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(4, 2, 4, 2)
        row = QtWidgets.QHBoxLayout()
        self.errors_only = QtWidgets.QCheckBox("errors only")
        self.errors_only.setToolTip("Show only errors (things that stopped), not warnings")
        self.errors_only.toggled.connect(self._filter)
        copy_btn = QtWidgets.QPushButton("Copy")
        copy_btn.setToolTip(
            "Copy the shown entries to the clipboard (for a bug report or the lab notebook)"
        )
        copy_btn.clicked.connect(self.copy)
        clear_btn = QtWidgets.QPushButton("Clear")
        clear_btn.setToolTip("Remove every entry from the list")
        clear_btn.clicked.connect(self.clear)
        self.summary = QtWidgets.QLabel("no warnings")
        row.addWidget(self.summary, 1)
        for w in (self.errors_only, copy_btn, clear_btn):
            row.addWidget(w)
        layout.addLayout(row)
        self.list = QtWidgets.QListWidget()
        self.list.setWordWrap(True)
        self.list.setToolTip(
            "Warnings and errors of the core and the GUI, newest last (hover an entry for its "
            "original text)"
        )
        layout.addWidget(self.list, 1)
        self.warnings = self.errors = 0
        self.handler = QtLogHandler()
        self.handler.bridge.entry.connect(self.add, QtCore.Qt.ConnectionType.QueuedConnection)

    def attach(self, logger_name: str = CORE_LOGGER) -> None:
        logging.getLogger(logger_name).addHandler(self.handler)

    def detach(self, logger_name: str = CORE_LOGGER) -> None:
        logging.getLogger(logger_name).removeHandler(self.handler)

    @QtCore.Slot(str, str, str, float)
    def add(self, level: str, source: str, message: str, created: float | None = None) -> None:
        """One entry (GUI thread): ``source`` is a logger name or a GUI job ("calibration", "camera" …)."""
        when = datetime.fromtimestamp(created) if created else datetime.now()
        where = source.removeprefix("lab4f.").split(".")[-1]
        shown = in_gui_terms(message)
        item = QtWidgets.QListWidgetItem(f"{when:%H:%M:%S}  {level.lower()}  {where}: {shown}")
        item.setData(QtCore.Qt.ItemDataRole.UserRole, level)
        item.setToolTip(f"{source}: {message}")
        if level in COLOURS:
            item.setForeground(QtGui.QBrush(QtGui.QColor(COLOURS[level])))
        self.list.addItem(item)
        item.setHidden(self.errors_only.isChecked() and level == "WARNING")
        while self.list.count() > MAX_ENTRIES:
            self.list.takeItem(0)
        self.list.scrollToBottom()
        self.warnings += level == "WARNING"
        self.errors += level in ("ERROR", "CRITICAL")
        self._count()

    def entries(self) -> list[str]:
        return [self.list.item(i).text() for i in range(self.list.count())]

    def clear(self) -> None:
        self.list.clear()
        self.warnings = self.errors = 0
        self._count()

    def copy(self) -> None:
        shown = [
            self.list.item(i).text()
            for i in range(self.list.count())
            if not self.list.item(i).isHidden()
        ]
        QtWidgets.QApplication.clipboard().setText("\n".join(shown))

    def _filter(self, errors_only: bool) -> None:
        for i in range(self.list.count()):
            item = self.list.item(i)
            item.setHidden(errors_only and item.data(QtCore.Qt.ItemDataRole.UserRole) == "WARNING")

    def _count(self) -> None:
        w, e = self.warnings, self.errors
        self.summary.setText(
            f"{w} warning{'s' * (w != 1)}, {e} error{'s' * (e != 1)}" if w or e else "no warnings"
        )
        self.counts_changed.emit(w, e)
