"""Displayed frames/s of the Live panel (512² frames, offscreen) and the event loop's responsiveness (p99 of the gaps
between 10 ms timer ticks), measured side by side while live inference runs on the streaming Pipeline, with the
alignment tools on (histogram, saturation overlay, a region with statistics; `--average N` averages frames too).
Targets: ≥ 30 displayed frames/s and a p99 gap < 50 ms. `--json` prints one JSON object. These are wall-clock
figures: they depend on the machine's load (printed with them), which is why they are measured here and not
asserted in the tests. Trains a tiny SCLC unless --checkpoint is given. Calibrates camera, registration, tiles and
gains (the SLM phase-response step, ~12 s, does not change what is measured here) into a temporary folder."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from PySide6 import QtCore, QtWidgets  # noqa: E402


def tiny_checkpoint(folder: str) -> str:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.data import load_dataset
    from lab4f.models import ModelConfig
    from lab4f.training import TrainConfig, train_model

    cfg = ModelConfig(kind="linear", widths=(4,), kernel_size=5, hidden=(64,), dropout=0.0)
    res = train_model(
        cfg, load_dataset("mnist5k", limit=1000), TrainConfig(epochs=2), progress=False
    )
    meta = make_metadata(cfg, dataset={"name": "mnist5k"})
    return str(save_checkpoint(os.path.join(folder, "tiny.pt"), res.model, meta))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument(
        "--inputs-per-s",
        type=int,
        default=60,
        help="input rate of the live run (0: the camera's rate)",
    )
    ap.add_argument(
        "--average", type=int, default=1, help="frames averaged by the live view (1: none)"
    )
    ap.add_argument(
        "--no-region", action="store_true", help="measure without the region statistics"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(sys.argv[:1])
    QtCore.QSettings.setPath(
        QtCore.QSettings.Format.NativeFormat, QtCore.QSettings.Scope.UserScope, tempfile.mkdtemp()
    )
    from lab4f.gui.main_window import MainWindow

    tmp = tempfile.mkdtemp()
    ckpt = args.checkpoint or tiny_checkpoint(tmp)
    win = MainWindow(restore=False)
    win.show()

    def wait(cond, timeout_s: float = 120.0) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        while not cond():
            if time.perf_counter() - t0 > timeout_s:
                raise TimeoutError(win.status_line.text())
            app.processEvents()
            time.sleep(0.002)

    win.bench_panel.connect_all()
    wait(
        lambda: (
            "camera" in win.bench_panel.last_state.get("devices", {})
            and win.bench_panel.last_state["devices"]["camera"]["connected"]
        )
    )
    win.kernels_panel.auto_confirm = True
    win.kernels_panel.load_checkpoint(ckpt)
    wait(lambda: win.state.checkpoint is not None)
    win.kernels_panel.compile()
    wait(lambda: win.state.program is not None)
    win.calibration_panel.folder = os.path.join(tmp, "calibrations")
    win.calibration_panel.run(["camera", "registration", "tiles", "gains"])
    wait(lambda: not win.calibration_panel.running)
    if win.state.calibration is None:
        raise RuntimeError(win.calibration_panel.summary.toPlainText())
    win.inference_panel.rate_hz.setValue(args.inputs_per_s)
    win.inference_panel.start()
    wait(lambda: win.inference_panel.latest.get("processed", 0) > 20)
    win.live_panel.roi_on.setChecked(not args.no_region)
    win.live_panel.average.setValue(args.average)
    gaps, last = [], [time.perf_counter()]
    ping = QtCore.QTimer()
    ping.setInterval(10)
    ping.timeout.connect(
        lambda: (
            gaps.append(time.perf_counter() - last[0]),
            last.__setitem__(0, time.perf_counter()),
        )
    )
    ping.start()
    # frames really converted and painted (pyqtgraph renders an ImageItem in its paint after setImage)
    item, rendered = win.live_panel.image, [0]
    render = item.render
    item.render = lambda *a, **k: (rendered.__setitem__(0, rendered[0] + 1), render(*a, **k))[1]
    load0 = os.getloadavg()[0]
    drawn0, frames0, t0 = win.live_panel.drawn, win.bench_worker.latest.count, time.perf_counter()
    loop = (
        QtCore.QEventLoop()
    )  # the measured seconds run in a real event loop, as in the application
    QtCore.QTimer.singleShot(int(1000 * args.seconds), loop.quit)
    loop.exec()
    elapsed_s = time.perf_counter() - t0
    displayed_fps = (win.live_panel.drawn - drawn0) / elapsed_s
    painted_fps = rendered[0] / elapsed_s
    camera_fps = (win.bench_worker.latest.count - frames0) / elapsed_s
    ping.stop()
    u = win.inference_panel.latest
    win.inference_panel.stop()
    wait(lambda: win.inference_panel.start_btn.isEnabled())
    win.close()
    result = {
        "displayed_fps": round(displayed_fps, 1),
        "painted_fps": round(painted_fps, 1),
        "target_displayed_fps": 30,
        "camera_fps": round(camera_fps, 1),
        "display_downsampling": 1,
        "inputs_per_s": args.inputs_per_s or "camera rate",
        "frame_shape": list(win.state.camera_shape or ()),
        "inference_fps": round(u["fps"], 1),
        "processed": u["processed"],
        "dropped": u["dropped"],
        "latency_p50_ms": round(u["latency_p50_ms"], 1),
        "optical_accuracy": u["optical_accuracy"],
        "digital_accuracy": u["digital_accuracy"],
        "ping_gap_p99_ms": round(1e3 * float(np.percentile(gaps, 99)), 1),
        "target_ping_gap_p99_ms": 50,
        "ping_gap_max_ms": round(1e3 * max(gaps), 1),
        "cpus": os.cpu_count(),
        "load_average_1min_before": round(load0, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
    }
    result["meets_targets"] = displayed_fps >= 30 and result["ping_gap_p99_ms"] < 50
    result["live_view"] = {
        "histogram": True,
        "saturation_overlay": True,
        "region": not args.no_region,
        "average_frames": args.average,
    }
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k:22s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
