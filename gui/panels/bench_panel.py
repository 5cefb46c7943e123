"""Bench panel: open a bench config, connect/disconnect each device, identities, camera exposure/gain,
light-source power (the configured safety maximum is enforced by the driver; a refusal is shown), shutter."""

from __future__ import annotations

from typing import Any

from PySide6 import QtCore, QtWidgets

from lab4f.bench.devices import ROLES
from lab4f.commands import SYNC_CHOICES
from lab4f.gui.messages import in_gui_terms
from lab4f.gui.views import status_label
from lab4f.gui.workers import BenchWorker, start_folder

EXPOSURE_TIP = (
    "Camera exposure time in milliseconds (applied when you press Enter or leave the field)"
)
GAIN_TIP = "Camera gain in ADU per photo-electron (– when the camera driver has no gain setting)"


def show_value(spin: QtWidgets.QDoubleSpinBox, value: float | None, minimum: float) -> None:
    """``value`` in the spin box, or "–" (the special value text, one step below ``minimum``) for None."""
    if value is None:
        spin.setMinimum(minimum - 1.0)
        spin.setSpecialValueText("–")
        spin.setValue(spin.minimum())
    else:
        spin.setSpecialValueText("")
        spin.setMinimum(minimum)
        spin.setValue(value)


class BenchPanel(QtWidgets.QWidget):
    """Every control sends a request to the device thread; the table redraws from its `state` signal."""

    def __init__(self, worker: BenchWorker, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.worker = worker
        self.last_state: dict[str, Any] = {}
        self.busy = (
            False  # a calibration runs: device settings wait (it sets exposure, power … itself)
        )
        self.message_where: str | None = None  # the kind of request whose error the message shows
        layout = QtWidgets.QVBoxLayout(self)

        row = QtWidgets.QHBoxLayout()
        self.config_label = status_label("(built-in simulated bench)")
        open_btn = QtWidgets.QPushButton("Open config…")
        open_btn.setToolTip(
            "Open a bench config file (TOML or YAML) naming each device's driver and settings; "
            "the devices of the current bench are disconnected first (File ▸ Open bench config)"
        )
        open_btn.clicked.connect(self._choose_config)
        default_btn = QtWidgets.QPushButton("Simulated bench")
        default_btn.setToolTip("Go back to the built-in simulated bench (every device simulated)")
        default_btn.clicked.connect(lambda: self.open_config(None))
        row.addWidget(QtWidgets.QLabel("Config:"))
        row.addWidget(self.config_label, 1)
        row.addWidget(open_btn)
        row.addWidget(default_btn)
        layout.addLayout(row)

        sync_row = QtWidgets.QHBoxLayout()
        self.sync = QtWidgets.QComboBox()
        self.sync.addItems(list(SYNC_CHOICES))
        self.sync.setToolTip(
            "How a camera frame is paired with the input it shows.\n"
            "settle: wait the measured latency + settle, use only frames exposed after it (free-running camera)\n"
            "trigger: trigger the camera after the input has settled (a triggered camera)\n"
            "marker: read a code of the input's index from every frame (needs a larger display; compile with it)\n"
            "none: take the next frame, whatever it shows — only to see the failure"
        )
        self.sync.textActivated.connect(
            lambda p: self.worker.submit(lambda: self.worker.set_sync(p), where="bench")
        )
        self.sync_counters = status_label("")
        self.sync_counters.setToolTip(
            "frames used (proven fresh) · stale frames skipped · frames used unproven"
        )
        sync_row.addWidget(QtWidgets.QLabel("Sync:"))
        sync_row.addWidget(self.sync)
        sync_row.addWidget(self.sync_counters, 1)
        layout.addLayout(sync_row)

        self.table = QtWidgets.QTableWidget(len(ROLES), 4)
        self.table.setHorizontalHeaderLabels(["device", "driver", "status / identity", ""])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setSectionResizeMode(
            2, QtWidgets.QHeaderView.ResizeMode.Stretch
        )
        self.toggle: dict[str, QtWidgets.QPushButton] = {}
        for i, role in enumerate(ROLES):
            self.table.setItem(i, 0, QtWidgets.QTableWidgetItem(role))
            btn = QtWidgets.QPushButton("Connect")
            btn.setToolTip(
                f"Connect (or disconnect) the {role.replace('_', ' ')} named in the bench config"
            )
            btn.clicked.connect(lambda _=False, r=role: self._toggle(r))
            self.toggle[role] = btn
            self.table.setCellWidget(i, 3, btn)
        layout.addWidget(self.table)
        both = QtWidgets.QHBoxLayout()
        self.connect_all_btn = QtWidgets.QPushButton("Connect all")
        self.connect_all_btn.setToolTip(
            "Connect every device of the bench config (a calibration record in use is "
            "applied once the camera and SLM are connected)"
        )
        self.connect_all_btn.clicked.connect(self.connect_all)
        self.disconnect_all_btn = QtWidgets.QPushButton("Disconnect all")
        self.disconnect_all_btn.setToolTip("Stop any stream and close every device")
        self.disconnect_all_btn.clicked.connect(
            lambda: self.worker.submit(lambda: self.worker.disconnect_device(), where="bench")
        )
        both.addWidget(self.connect_all_btn)
        both.addWidget(self.disconnect_all_btn)
        layout.addLayout(both)

        form = QtWidgets.QFormLayout()
        self.exposure_ms = QtWidgets.QDoubleSpinBox(
            decimals=3, minimum=0.001, maximum=10_000.0, suffix=" ms"
        )
        self.exposure_ms.setToolTip(EXPOSURE_TIP)
        self.exposure_ms.editingFinished.connect(self._set_exposure)
        self.gain = QtWidgets.QDoubleSpinBox(
            decimals=3, minimum=0.001, maximum=100.0, suffix=" ADU/e⁻"
        )
        self.gain.setToolTip(GAIN_TIP)
        self.gain.editingFinished.connect(self._set_gain)
        self.power_mw = QtWidgets.QDoubleSpinBox(
            decimals=3, minimum=0.0, maximum=1000.0, suffix=" mW"
        )
        self.power_mw.setKeyboardTracking(False)
        self.power_mw.setToolTip(
            "Light-source power setpoint; the bench config's safety maximum is enforced"
        )
        self.power_btn = QtWidgets.QPushButton("Set power")
        self.power_btn.setToolTip(
            "Send the power setpoint to the light source (a value above the safety maximum "
            "is refused and nothing is sent)"
        )
        self.power_btn.clicked.connect(lambda: self.set_power(self.power_mw.value()))
        self.light_on = QtWidgets.QCheckBox("emission on")
        self.light_on.setToolTip("Switch the light source's emission on or off")
        self.light_on.clicked.connect(
            lambda on: self.worker.submit(lambda: self.worker.set_light(on), where="light_source")
        )
        self.shutter_open = QtWidgets.QCheckBox("shutter open")
        self.shutter_open.setToolTip("Open or close the shutter")
        self.shutter_open.clicked.connect(
            lambda o: self.worker.submit(lambda: self.worker.set_shutter(o), where="shutter")
        )
        power_row = QtWidgets.QHBoxLayout()
        for w in (self.power_mw, self.power_btn, self.light_on):
            power_row.addWidget(w)
        self.max_label = QtWidgets.QLabel("safety max: –")
        form.addRow("Camera exposure", self.exposure_ms)
        form.addRow("Camera gain", self.gain)
        form.addRow("Light source", power_row)
        form.addRow("", self.max_label)
        form.addRow("Shutter", self.shutter_open)
        layout.addLayout(form)
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        self.message.setStyleSheet("color: #a40000")
        layout.addWidget(self.message)
        layout.addStretch(1)
        worker.state.connect(self.on_state)
        worker.failed.connect(self.on_failed)
        worker.succeeded.connect(self.on_succeeded)
        self._on_enabled()

    # -- requests ----------------------------------------------------------------------------------
    def open_config(self, path: str | None) -> None:
        self.worker.submit(lambda: self.worker.open_config(path), where="bench")

    def connect_all(self) -> None:
        self.worker.submit(lambda: self.worker.connect_device(), where="bench")

    def set_power(self, power_mw: float) -> None:
        self.worker.submit(lambda: self.worker.set_power(power_mw), where="light_source")

    def _choose_config(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self,
            "Bench config",
            start_folder("config", self.worker),
            "Bench config (*.toml *.yaml *.yml)",
        )
        if path:
            self.open_config(path)

    def _toggle(self, role: str) -> None:
        connected = self.last_state.get("devices", {}).get(role, {}).get("connected", False)
        fn = self.worker.disconnect_device if connected else self.worker.connect_device
        self.worker.submit(lambda: fn(role), where=role)

    def _set_exposure(self) -> None:
        s = self.exposure_ms.value() / 1e3
        self.worker.submit(lambda: self.worker.set_exposure(s), where="camera")

    def _set_gain(self) -> None:
        g = self.gain.value()
        self.worker.submit(lambda: self.worker.set_gain(g), where="camera")

    @QtCore.Slot(bool)
    def set_busy(self, on: bool) -> None:
        """While a calibration runs, the device controls are disabled (a queued exposure or power change would
        otherwise run after it and silently replace the calibrated setting)."""
        self.busy = on
        self._on_enabled()

    def _on_enabled(self) -> None:
        state = self.last_state
        cam, ls, sh = state.get("camera"), state.get("light_source"), state.get("shutter")
        for w, ok in (
            (self.exposure_ms, cam),
            (self.gain, cam and cam["gain"] is not None),
            (self.power_mw, ls),
            (self.power_btn, ls),
            (self.light_on, ls),
            (self.shutter_open, sh),
        ):
            w.setEnabled(bool(ok) and not self.busy)
        devices = state.get("devices", {})
        for role, btn in self.toggle.items():
            btn.setEnabled(bool(devices.get(role, {}).get("configured")) and not self.busy)
        for b in (self.connect_all_btn, self.disconnect_all_btn):
            b.setEnabled(not self.busy)

    # -- results -----------------------------------------------------------------------------------
    @QtCore.Slot(dict)
    def on_state(self, state: dict[str, Any]) -> None:
        self.last_state = state
        self.config_label.setText(f"{state['name']} — {state['config']}")
        if "sync" in state:
            block = QtCore.QSignalBlocker(self.sync)
            self.sync.setCurrentText(state["sync"])
            del block
            c = state.get("sync_counters", {})
            self.sync_counters.setText(
                f"paired {c.get('paired', 0)} · skipped {c.get('skipped', 0)} · "
                f"unproven {c.get('stale', 0) + c.get('unpaired', 0)}"
            )
        for i, role in enumerate(ROLES):
            dev = state["devices"][role]
            self.table.setItem(i, 1, QtWidgets.QTableWidgetItem(dev["driver"] or "(none)"))
            text = (
                dev.get("identity", "connected")
                if dev["connected"]
                else ("disconnected" if dev["configured"] else "not in config")
            )
            self.table.setItem(i, 2, QtWidgets.QTableWidgetItem(text))
            self.toggle[role].setText("Disconnect" if dev["connected"] else "Connect")
        self._on_enabled()
        cam, ls, sh = state.get("camera"), state.get("light_source"), state.get("shutter")
        blockers = [
            QtCore.QSignalBlocker(w)
            for w in (self.exposure_ms, self.gain, self.power_mw, self.light_on, self.shutter_open)
        ]
        # a disconnected device's fields show "–", not a made-up value
        show_value(self.exposure_ms, cam["exposure_s"] * 1e3 if cam else None, 0.001)
        show_value(self.gain, cam["gain"] if cam else None, 0.001)
        show_value(self.power_mw, ls["power_mw"] if ls else None, 0.0)
        self.light_on.setChecked(bool(ls and ls["on"]))
        self.max_label.setText(
            f"safety max: {ls['max_power_mw']:g} mW (from the bench config)"
            if ls
            else "safety max: –"
        )
        self.shutter_open.setChecked(bool(sh and sh["open"]))
        del blockers

    @QtCore.Slot(str, str)
    def on_failed(self, where: str, message: str) -> None:
        prefix = "Refused" if "SafetyLimitError" in message else "Error"
        self.message_where = where
        self.message.setText(f"{prefix} ({where}): {in_gui_terms(message)}")

    @QtCore.Slot(str)
    def on_succeeded(self, where: str) -> None:
        """The next success of the same kind of request (that device, the bench) clears the error text."""
        if where == self.message_where or (where == "bench" and self.message_where in ROLES):
            self.message_where = None
            self.message.setText("")
