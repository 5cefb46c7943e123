"""The desktop GUI (PySide6 + pyqtgraph): the only part of lab4f that imports Qt.

Panels (one module each in :mod:`lab4f.gui.panels`) call the same Qt-free core as the CLI; devices and
jobs run in worker threads (:mod:`lab4f.gui.workers`); :mod:`lab4f.gui.main_window` holds them together.
"""
