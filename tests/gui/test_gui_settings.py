"""Saved settings that are stale or unknown are ignored with a note; the light source's safety maximum
is enforced and the refusal shown; layout survives a restart."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6 import QtCore

from lab4f.gui.main_window import APPLICATION, ORGANISATION, MainWindow


def test_stale_and_unknown_settings_are_ignored_with_a_note(qtbot, tmp_path: Path) -> None:  # noqa: ANN001
    s = QtCore.QSettings(ORGANISATION, APPLICATION)
    s.setValue("version", 1)
    s.setValue("geometry", QtCore.QByteArray(b"not a geometry"))
    s.setValue("bench/config", str(tmp_path / "gone.toml"))
    s.setValue("calibration/record", str(tmp_path / "gone.h5"))
    s.setValue("from_the_future/thing", 3)
    s.sync()
    win = MainWindow()
    qtbot.addWidget(win)
    notes = " | ".join(win.notes)
    assert "unknown saved settings: from_the_future/thing" in notes
    assert "geometry could not be restored" in notes
    assert "gone.toml no longer exists" in notes and "gone.h5 no longer exists" in notes
    assert win.config_path is None  # fell back to the simulated bench
    win.close()
    assert all(t.isFinished() for t in win.threads)
    # what the window saved on close restores without a note, with the docks where they were
    win2 = MainWindow()
    qtbot.addWidget(win2)
    assert win2.notes == []
    win2.close()


def test_settings_of_another_version_are_ignored(qtbot) -> None:  # noqa: ANN001
    s = QtCore.QSettings(ORGANISATION, APPLICATION)
    s.setValue("version", 99)
    s.sync()
    win = MainWindow()
    qtbot.addWidget(win)
    assert any("version 99" in n for n in win.notes)
    win.close()


def test_power_above_the_safety_maximum_is_refused_and_shown(qtbot) -> None:  # noqa: ANN001
    win = MainWindow(restore=False)
    qtbot.addWidget(win)
    panel = win.bench_panel
    panel.connect_all()
    qtbot.waitUntil(lambda: "light_source" in panel.last_state, timeout=20_000)
    panel.set_power(2.0)
    qtbot.waitUntil(
        lambda: abs(panel.last_state["light_source"]["power_mw"] - 2.0) < 1e-6, timeout=5_000
    )
    panel.set_power(7.5)  # the default simulated bench allows at most 5 mW
    qtbot.waitUntil(lambda: panel.message.text().startswith("Refused"), timeout=5_000)
    assert "max_power_mw=5" in panel.message.text() and "nothing was sent" in panel.message.text()
    qtbot.wait(200)
    assert abs(panel.last_state["light_source"]["power_mw"] - 2.0) < 1e-6  # the device kept 2 mW
    win.close()


def test_lab4f_gui_command_opens_and_closes_with_a_json_summary(qtbot, capsys) -> None:  # noqa: ANN001
    from lab4f.cli import main

    assert main(["gui", "--no-restore", "--quit-after-s", "0.5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    # the exit code is the process's (0 above); the JSON says how it ended
    assert out["status"] == "closed" and 0.5 <= out["open_s"] < 30
