"""Timing and synchronisation: the simulator fails the way a real bench does, and the sync policies pair every
frame with the input it shows. Behaviour only (orderings, counts, which image a frame shows) — no wall-clock bounds."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from lab4f.bench.config import BenchConfig, DeviceConfig, load_bench_config
from lab4f.bench.devices import Bench
from lab4f.bench.sync import Sync
from lab4f.drivers.sim_camera import Simulated4fCamera, SimulatedCameraSettings
from lab4f.drivers.sim_display import SimulatedDisplay, SimulatedDisplaySettings
from lab4f.drivers.sim_slm import SimulatedFourierSLM
from lab4f.errors import ConfigError

REALISTIC = Path(__file__).resolve().parents[2] / "examples" / "realistic_timing.toml"


def _camera(**settings) -> tuple[Simulated4fCamera, SimulatedDisplay]:
    display = SimulatedDisplay(
        SimulatedDisplaySettings(refresh_hz=60.0, latency_frames=2, response_s=0.008)
    )
    cam = Simulated4fCamera(
        SimulatedFourierSLM(), display, SimulatedCameraSettings(noise=False, **settings)
    )
    return cam, display


def _dominant(frame) -> int:
    return max(frame.truth["display"].items(), key=lambda kv: kv[1])[0]


def test_free_running_camera_queues_old_frames_oldest_first() -> None:
    """After a pause, GenTL's OldestFirst queue hands out the frames exposed at its start; drain() empties it."""
    cam, _ = _camera(acquisition="free_running", buffer_count=3, buffer_handling="OldestFirst")
    first = cam.read_frame()
    time.sleep(0.1)  # 20 frame periods at 200 fps: three queue, the rest are lost
    t_pause_end = time.perf_counter()
    queued = [cam.read_frame() for _ in range(3)]
    assert [f.frame_id for f in queued] == [
        first.frame_id + 1,
        first.frame_id + 2,
        first.frame_id + 3,
    ]
    assert all(f.end_s < t_pause_end - 0.05 for f in queued)  # exposed long before the fetch
    assert cam.frames_lost > 10
    fresh = cam.read_frame()
    assert (
        fresh.frame_id > queued[-1].frame_id + 10
    )  # the gap: frames lost while the queue was full
    time.sleep(0.05)
    t_drain = time.perf_counter()
    drained = cam.drain()
    after = cam.read_frame()
    assert len(drained) == 3 and after.frame_id > drained[-1].frame_id
    # not yet in the queue when the drain began (a frame reaches it readout_s after its exposure ends)
    assert after.end_s + cam.settings.readout_s > t_drain
    assert after.timestamp_s == pytest.approx(after.start_s + cam.settings.clock_offset_s)


def test_newest_only_and_overwrite_keep_the_newest() -> None:
    for handling in ("NewestOnly", "OldestFirstOverwrite"):
        cam, _ = _camera(acquisition="free_running", buffer_handling=handling)
        cam.read_frame()
        time.sleep(0.1)
        t = time.perf_counter()
        frame = cam.read_frame()
        assert frame.end_s > t - 0.02, (
            handling
        )  # one of the last few frames, not one from the pause's start


def test_display_shows_an_image_late_and_gradually() -> None:
    cam, display = _camera(acquisition="free_running")
    display.show(np.ones(display.shape))
    sent = display.last_sent_s
    on = display.last_on_s
    assert 2 / 60 <= on - sent <= 3 / 60 + 1e-9  # the next refresh plus two frames of latency
    version = display.version
    before = dict((v, w) for w, v, _ in display.image_weights(on - 0.004, on - 0.001))
    rising = dict((v, w) for w, v, _ in display.image_weights(on, on + 0.003))
    settled = dict((v, w) for w, v, _ in display.image_weights(on + 0.05, on + 0.053))
    assert version not in before
    assert 0.05 < rising[version] < 0.6  # the liquid crystal is still rising
    assert settled[version] > 0.999


def test_software_trigger_exposes_on_command_only() -> None:
    cam, _ = _camera(acquisition="triggered", trigger_source="software", trigger_delay_s=0.001)
    with pytest.raises(Exception, match="no trigger"):
        cam.read_frame(0.05)
    t = time.perf_counter()
    cam.trigger()
    frame = cam.read_frame()
    assert frame.start_s >= t + 0.001
    cam2, _ = _camera(acquisition="free_running")
    with pytest.raises(ConfigError, match="software"):
        cam2.trigger()


def test_incomplete_frames_are_flagged() -> None:
    cam, _ = _camera(
        acquisition="free_running", incomplete_every_n=2, buffer_handling="OldestFirstOverwrite"
    )
    frames = [cam.read_frame() for _ in range(6)]
    assert any(not f.complete for f in frames) and cam.frames_incomplete >= 2


def _step_bench(**camera) -> Bench:
    cfg = load_bench_config(REALISTIC)
    if camera:
        cfg = cfg.model_copy(
            update={
                "camera": DeviceConfig(
                    driver="Simulated4fCamera", settings=cfg.camera.settings | camera
                )
            }
        )
    return Bench(cfg)


def test_naive_grab_returns_the_previous_image_and_sync_does_not() -> None:
    """On the realistic bench, show → get the next frame returns one exposed while the OLD image was shown (the
    failure measured on viky.cti); the settle policy returns one showing the new image."""
    with _step_bench() as bench:
        cam = bench.devices["camera"]
        bench.illuminate()
        bench.camera.get_image()  # settled on black
        time.sleep(0.05)
        bench.show(np.ones(bench.display.shape) * 0.5)
        shown = bench.display.version
        naive = cam.read_frame()
        assert _dominant(naive) != shown  # stale: the naive loop pairs it with the new input
        fresh = bench.camera.read_frame()
        assert fresh.truth["display"].get(shown, 0) > 0.99
        assert fresh.start_s >= bench.display.last_sent_s + 2 / 60
        assert bench.sync.counters.skipped >= 1 and bench.sync.counters.stale == 0


def test_the_built_in_bench_has_a_real_benchs_timing(realistic_default_bench) -> None:
    """The default simulated bench — what `Bench()` and every command without --config get — has real timing: the
    naive show -> next frame loop gets the previous image on it, and the settle policy does not."""
    with Bench() as bench:
        disp, cam, slm = bench.display, bench.devices["camera"], bench.devices["slm"]
        assert (
            disp.settings.refresh_hz,
            disp.settings.latency_frames,
            disp.settings.response_s,
        ) == (60, 2, 0.008)
        assert (
            cam.settings.acquisition,
            cam.settings.buffer_count,
            cam.settings.buffer_handling,
        ) == ("free_running", 3, "OldestFirst")
        assert (slm.settings.settle_s, slm.settings.settle_model) == (0.03, "exponential")
        assert bench.config.sync.policy == "settle"
        bench.illuminate()
        bench.camera.get_image()
        time.sleep(0.05)
        bench.show(np.ones(disp.shape) * 0.5)
        shown = disp.version
        assert _dominant(cam.read_frame()) != shown  # the naive loop: a frame of the previous image
        assert bench.camera.read_frame().truth["display"].get(shown, 0) > 0.99


def test_instant_timing_is_an_explicit_setting() -> None:
    """examples/instant_timing.toml (the suite's bench, via LAB4F_BENCH_CONFIG): there even the naive loop pairs
    correctly — which is why it must never be used to judge a sync policy."""
    with Bench(load_bench_config(REALISTIC.with_name("instant_timing.toml"))) as bench:
        cam = bench.devices["camera"]
        assert cam.settings.acquisition == "instant" and bench.display.refresh_period_s is None
        bench.illuminate()
        bench.show(np.ones(bench.display.shape) * 0.5)
        assert _dominant(cam.read_frame()) == bench.display.version


def test_trigger_policy_pairs_with_a_software_triggered_camera() -> None:
    with _step_bench(acquisition="triggered", trigger_source="software") as bench:
        bench.set_sync_policy("trigger")
        bench.illuminate()
        for level in (0.2, 0.6):
            bench.show(np.full(bench.display.shape, level))
            frame = bench.camera.read_frame()
            assert frame.truth["display"].get(bench.display.version, 0) > 0.99
        assert bench.sync.counters.paired == 2 and bench.sync.counters.stale == 0


def test_trigger_policy_refuses_a_free_running_camera() -> None:
    with _step_bench() as bench:
        bench.set_sync_policy("trigger")
        with pytest.raises(ConfigError, match="triggered camera"):
            bench.camera.get_image()


def test_stream_pairs_every_input_with_its_own_image() -> None:
    """The pipelined stream: inputs sent one hold period apart, each frame paired with the input whose settled
    window holds its whole exposure — checked against what the simulated frame really integrated."""
    with _step_bench() as bench:
        bench.illuminate()
        versions: dict[int, int] = {}

        def show(i: int) -> None:
            bench.show(np.full(bench.display.shape, 0.1 + 0.02 * i))
            versions[i] = bench.display.version

        pairs = list(bench.sync.stream(20, show))
        assert sorted(i for i, _ in pairs) == list(range(20))
        for i, frame in pairs:
            assert frame.truth["display"].get(versions[i], 0) > 0.99, (i, frame.truth)
        c = bench.sync.counters
        assert c.paired == 20 and c.stale == 0 and c.unpaired == 0


def test_policy_none_counts_the_stale_frames_it_uses() -> None:
    with _step_bench() as bench:
        bench.set_sync_policy("none")
        bench.illuminate()
        pairs = list(
            bench.sync.stream(10, lambda i: bench.show(np.full(bench.display.shape, 0.1 * i)))
        )
        assert len(pairs) == 10 and bench.sync.counters.stale >= 8


def test_unknown_policies_and_a_marker_run_without_its_reader_are_refused() -> None:
    with Bench(BenchConfig()) as bench, pytest.raises(ConfigError, match="marker reader"):
        list(Sync(bench, "marker").stream(1, lambda i: None))
    with pytest.raises(ConfigError, match="unknown"):
        Sync(Bench(BenchConfig()), "sometimes")


def test_timing_step_measures_the_realistic_bench() -> None:
    """The timing step recovers the simulated delays: latency in the refresh-quantised range 2–3 periods, the LC
    response (8 ms 10–90 % → 16.8 ms to 99 %), the SLM settle (30 ms)."""
    from lab4f.calibration.camera import camera_step
    from lab4f.calibration.timing import timing_step

    with _step_bench() as bench:
        camera_step(bench)
        r = timing_step(bench)
    v = r.values
    assert (
        2 / 60 - 0.003 <= v["display_latency_min_s"] <= v["display_latency_max_s"] <= 3 / 60 + 0.006
    )
    assert 0.011 < v["display_response_s"] < 0.024
    assert 0.022 < v["slm_settle_s"] < 0.04
    assert r.quality["display_fit_rms"] < 0.05


def test_timing_step_refuses_an_unstable_display(monkeypatch) -> None:
    from lab4f.calibration.camera import camera_step
    from lab4f.calibration.timing import timing_step
    from lab4f.errors import CalibrationError

    with _step_bench() as bench:
        camera_step(bench)
        display = bench.devices["display"]
        rng = np.random.default_rng(0)
        on_time = display.on_time
        monkeypatch.setattr(
            display, "on_time", lambda sent: on_time(sent) + rng.uniform(0, 0.08)
        )  # a stuttering PC
        with pytest.raises(CalibrationError, match="not stable"):
            timing_step(bench)


@pytest.mark.slow
def test_realistic_timing_end_to_end(trained_checkpoints, mnist_splits, tmp_path) -> None:
    """The issue's test, on examples/realistic_timing.toml: with --sync none the optical path's agreement with the
    digital student collapses (the simulator reproduces the real failure); with settle (free-running camera) and
    trigger (software-triggered camera) optical accuracy is within 1 pp of digital and no frame is used unproven."""
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.hybrid import prepare
    from lab4f.bench.run import run_dataset
    from lab4f.calibration import run_calibration
    from lab4f.optics.program import OpticalProgram

    test_x, test_y = mnist_splits.test.tensors
    test_x, test_y = test_x[:150], test_y[:150]
    results = {}
    with _step_bench() as bench:
        _, program_path, _ = compile_checkpoint(
            trained_checkpoints["student"], bench, tmp_path / "p.h5", progress=False
        )
        record = run_calibration(
            bench,
            "all",
            program=OpticalProgram.load(program_path),
            program_path=program_path,
            out_dir=tmp_path / "cal",
        )
        assert record.timing is not None and record.timing["display_latency_min_s"] > 0.02
        setup = prepare(bench, trained_checkpoints["student"], record=record, program=program_path)
        for policy in ("none", "settle"):
            bench.set_sync_policy(policy)
            results[policy] = run_dataset(setup, test_x, test_y).metrics()
    with _step_bench(acquisition="triggered", trigger_source="software") as bench:
        bench.set_sync_policy("trigger")
        setup = prepare(bench, trained_checkpoints["student"], record=record, program=program_path)
        results["trigger"] = run_dataset(setup, test_x, test_y).metrics()
    for policy, m in results.items():
        print(
            policy,
            {
                k: m[k]
                for k in (
                    "optical_accuracy",
                    "digital_accuracy",
                    "agreement",
                    "frames_per_s",
                    "stale",
                    "unpaired",
                    "skipped",
                )
            },
        )
    none = results["none"]
    assert none["agreement"] < 0.5 and none["stale"] > 0.9 * len(test_y)
    for policy in ("settle", "trigger"):
        m = results[policy]
        assert m["processed"] == len(test_y) and m["stale"] == 0 and m["unpaired"] == 0, (policy, m)
        assert abs(m["optical_accuracy"] - m["digital_accuracy"]) <= 0.01, (policy, m)
        assert m["sync"]["timing_source"] == {"display": "measured", "slm": "measured"}


def test_viky_camera_frame_after_show_is_newer_than_the_show() -> None:
    """Integration on the genicam wheel's viky.cti (free-running 20 fps, 3 OldestFirst buffers, no trigger, no
    timestamps: the driver's frame-ID clock): the naive fetch after a pause returns a frame exposed before the show;
    through the bench's sync, the frame's ID and mapped start prove it was exposed after the show."""
    cfg = BenchConfig(
        camera=DeviceConfig(driver="HarvestersCamera"), light_source=None, shutter=None
    )
    with Bench(cfg) as bench:
        cam = bench.devices["camera"]
        cam.read_frame()
        time.sleep(0.3)  # longer than 3 buffers × 50 ms: the queue holds old frames
        bench.show(np.ones(bench.display.shape))
        t_show = bench.display.last_sent_s
        naive = cam.read_frame()
        assert naive.end_s < t_show  # the failure: exposed before the image was shown
        time.sleep(0.3)
        bench.show(np.zeros(bench.display.shape))
        t_show = bench.display.last_sent_s
        fresh = bench.camera.read_frame()
        assert fresh.start_s - cam.clock_uncertainty_s >= t_show
        assert fresh.frame_id > naive.frame_id + 3 and bench.sync.counters.skipped >= 1


@pytest.mark.slow
def test_marker_policy_end_to_end(trained_checkpoints, mnist_splits, tmp_path) -> None:
    """examples/realistic_timing_marker.toml: the display shows each input's index code beside it; compiled and
    calibrated there, every frame is paired by the code it shows (no timestamps used): within 1 pp of digital."""
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.hybrid import prepare
    from lab4f.bench.run import run_dataset
    from lab4f.calibration import run_calibration
    from lab4f.optics.program import OpticalProgram

    test_x, test_y = mnist_splits.test.tensors
    test_x, test_y = test_x[:150], test_y[:150]
    cfg = load_bench_config(REALISTIC.with_name("realistic_timing_marker.toml"))
    with Bench(cfg) as bench:
        program, program_path, _ = compile_checkpoint(
            trained_checkpoints["student"], bench, tmp_path / "p.h5", progress=False
        )
        lay = program.frames[0].layout
        assert (
            lay.pitch - (lay.input_size + lay.kernel_size - 1) > 2
        )  # compiled with the code's gap
        record = run_calibration(
            bench,
            "all",
            program=OpticalProgram.load(program_path),
            program_path=program_path,
            out_dir=tmp_path / "cal",
        )
        setup = prepare(bench, trained_checkpoints["student"], record=record, program=program_path)
        m = run_dataset(setup, test_x, test_y).metrics()
        bench.set_sync_policy("none")
        naive = run_dataset(setup, test_x, test_y).metrics()
    print(
        {
            k: m[k]
            for k in (
                "optical_accuracy",
                "digital_accuracy",
                "agreement",
                "frames_per_s",
                "skipped",
            )
        },
        "none:",
        naive["agreement"],
    )
    assert m["sync"]["policy"] == "marker" and m["processed"] == len(test_y)
    assert m["stale"] == 0 and m["unpaired"] == 0 and m["sync"]["paired"] == len(test_y)
    assert abs(m["optical_accuracy"] - m["digital_accuracy"]) <= 0.01, m
    assert naive["agreement"] < 0.5


def test_marker_code_round_trips_and_needs_room() -> None:
    from lab4f.bench.marker import MarkerCode

    code = MarkerCode(bits=4)
    frame = np.zeros((56, 56))
    code.draw(frame, 11, pitch=46, kernel_size=7)
    bits = [int(frame[56 // 2 + dy, 56 // 2 + dx]) for dy, dx in code.offsets(46, 7)]
    assert bits[:2] == [1, 0] and code.decode(bits[2:]) == 11
    with pytest.raises(ConfigError, match="display of at least"):
        code.draw(np.zeros((28, 28)), 3, pitch=46, kernel_size=7)
    assert code.gap_cells(7, 28) >= code.size + 7 - 1 + 4


def test_hardware_trigger_lines_from_the_display_and_the_slm() -> None:
    """A camera triggered by the display's trigger output exposes once per new image, at the refresh it starts (+
    the configured delay); one triggered by the SLM's output (slmsuite's Meadowlark has one) once per write."""
    cam, display = _camera(acquisition="triggered", trigger_source="display", trigger_delay_s=0.02)
    display.show(np.ones(display.shape))
    frame = cam.read_frame()
    assert frame.start_s == pytest.approx(display.last_on_s + 0.02)
    assert frame.truth["display"].get(display.version, 0) > 0.99  # the delay covers the LC response
    with pytest.raises(Exception, match="no trigger"):
        cam.read_frame(0.05)  # nothing changed: no trigger, no frame
    slm = SimulatedFourierSLM()
    cam2 = Simulated4fCamera(
        slm,
        SimulatedDisplay(),
        SimulatedCameraSettings(noise=False, acquisition="triggered", trigger_source="slm"),
    )
    slm.set_phase(np.zeros(slm.shape), settle=False)
    assert cam2.read_frame().start_s == pytest.approx(slm.last_write_s)


def test_a_stream_left_early_still_accounts_for_every_delivered_frame() -> None:
    """Stopped while yielding from inside one drain of several frames (a stop, an error downstream): the frames
    after it in that drain were delivered, so they are counted (skipped), not lost from the counters."""
    with _step_bench() as bench:
        bench.illuminate()
        cam, sync = bench.devices["camera"], bench.sync
        real_drain, held, returned = cam.drain, [], []

        def drain_in_fours() -> list:  # a slow host: each drain returns several frames at once
            held.extend(real_drain())
            if len(held) < 4:
                return []
            out = held[:]
            held.clear()
            returned.extend(out)
            return out

        cam.drain = drain_in_fours
        shape = bench.display.shape
        before = sync.counters.to_dict()
        gen = sync.stream(20, lambda i: bench.show(np.full(shape, 0.1 + 0.05 * i)))
        for _ in range(3):
            next(gen)
        gen.close()
        after = sync.counters.to_dict()
        counted = sum(
            after[k] - before[k] for k in ("paired", "stale", "unpaired", "skipped", "incomplete")
        )
        assert after["paired"] - before["paired"] == 3 and counted == len(returned)
