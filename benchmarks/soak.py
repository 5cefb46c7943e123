"""Soak: a live run of ≥ 30 minutes on the simulated bench at its full rate (no GUI), through the core API `lab4f run`
uses, reporting memory growth, the counters and that every camera frame is accounted for.

Preparation, once and cached in ``--work``: the demo's student checkpoint (``lab4f demo``'s cache; or
``--checkpoint``), compiled for the bench (``compile_checkpoint``) and calibrated (``run_calibration(..., "all")``),
then ``prepare`` as `lab4f run` does. The soak then streams the test split through
``lab4f.bench.run.run_dataset`` (the function `lab4f run` calls) pass after pass, ``--pass-images`` inputs a pass,
cycling the split, until ``--minutes`` have passed (the last pass is finished, not cut).

Accounting — the identities the counters support, checked exactly over the whole soak (deltas from its start):

- camera: ``frames_delivered == paired + stale + unpaired + skipped + incomplete`` — every frame the camera
  delivered went through the sync layer (lab4f.bench.sync) and was used (paired; stale/unpaired only with
  ``--sync none``), passed over as stale (skipped) or arrived incomplete;
- pairing → stream: ``paired + stale + unpaired == acquired`` — every frame used is one item of the stream;
- stream (lab4f.bench.stream): ``acquired == processed + dropped_overflow + unprocessed``, and
  ``dropped_camera == 0`` (run_dataset numbers the pairs, so the stream sees no index gap);
- inputs: ``inputs shown == inputs + retried`` (the display's image version counts the shows);
- sensor (the simulated camera's internal frame counter): ``exposed == delivered + lost + dropped + Δqueued``, where
  ``lost`` are frames exposed while the camera's buffers were full (OldestFirst: the newest is lost) — a free-running
  camera exposes frames nobody fetches, between passes mostly; that is not a frame lab4f lost.

In short: acquired (delivered by the camera) = processed + dropped (overflow) + unprocessed + skipped (stale, never
used) + incomplete, and stale-used (``stale + unpaired``) must be 0 under settle.

Usage: python benchmarks/soak.py [--minutes 30] [--config examples/realistic_timing.toml] [--sync settle]
       [--json] [--out soak.json] [--plot soak_rss.png]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "realistic_timing.toml"
SYNC_KEYS = ("paired", "stale", "unpaired", "skipped", "incomplete", "retried")
CAMERA_KEYS = ("frames_delivered", "frames_lost", "frames_dropped", "frames_incomplete")

log = logging.getLogger("soak")


def rss_mb() -> float:
    """This process's resident set size (VmRSS), MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    raise RuntimeError("no VmRSS in /proc/self/status")


def open_fds() -> int | None:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return None


class Sampler:
    """RSS (and threads, open files, load) at start, every ``every_s`` and at the end, from a background thread."""

    def __init__(self, every_s: float) -> None:
        self.every_s = every_s
        self.samples: list[dict[str, Any]] = []
        self._t0 = time.perf_counter()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name="soak-rss", daemon=True)

    def sample(self, label: str) -> dict[str, Any]:
        s = {
            "t_s": time.perf_counter() - self._t0,
            "rss_mb": rss_mb(),
            "threads": threading.active_count(),
            "open_fds": open_fds(),
            "load1": os.getloadavg()[0],
            "label": label,
        }
        with self._lock:
            self.samples.append(s)
        return s

    def start(self) -> Sampler:
        self._t0 = time.perf_counter()
        self.sample("start")
        self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample("periodic")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sample("end")


# -- preparation (cached) ---------------------------------------------------------------------------------------------
def _sha(path: Path) -> str:
    from lab4f.storage import file_sha256

    return file_sha256(path)


def prepare_work(
    work: Path, config_path: Path, sync: str, checkpoint: Path | None, seed: int, cache: Path
) -> dict[str, Any]:
    """Checkpoint, program and calibration folder for this bench config, made once and reused (keyed by the hashes
    of the checkpoint and the config file)."""
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.calibration import latest_record, run_calibration
    from lab4f.demo import DemoConfig, seeded, train_or_reuse
    from lab4f.optics.program import OpticalProgram

    work.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    if checkpoint is None:  # what `lab4f demo` trains, in its cache
        from lab4f.data import load_dataset

        cfg = DemoConfig(seed=seed, cache=str(cache))
        t0 = time.perf_counter()
        _, checkpoint, _ = train_or_reuse(
            cfg, load_dataset(cfg.dataset, split_seed=seed), progress=False
        )
        timings["checkpoint_s"] = time.perf_counter() - t0
    key = hashlib.sha256(
        f"{_sha(Path(checkpoint))}|{_sha(config_path)}|{sync}|{seed}".encode()
    ).hexdigest()[:12]
    folder = work / f"bench-{key}"
    program_path = folder / "student.program.h5"
    cal_dir = folder / "calibrations"
    bench_config = seeded(load_bench_config(config_path, sync=sync), seed)
    with Bench(bench_config) as bench:
        if not program_path.is_file():
            t0 = time.perf_counter()
            folder.mkdir(parents=True, exist_ok=True)
            compile_checkpoint(checkpoint, bench, program_path, progress=False)
            timings["compile_s"] = time.perf_counter() - t0
        if not cal_dir.is_dir() or latest_record(cal_dir, bench=bench) is None:
            t0 = time.perf_counter()
            run_calibration(
                bench,
                "all",
                program=OpticalProgram.load(program_path),
                program_path=program_path,
                out_dir=cal_dir,
            )
            timings["calibrate_s"] = time.perf_counter() - t0
    return {
        "checkpoint": str(checkpoint),
        "program": str(program_path),
        "calibration": str(cal_dir),
        "prepare_s": timings,
    }


# -- accounting --------------------------------------------------------------------------------------------------------
def accounting(d: dict[str, int]) -> dict[str, dict[str, Any]]:
    """Each identity as {lhs, rhs, holds} from the soak's deltas ``d`` (see the module docstring)."""
    used = d["paired"] + d["stale"] + d["unpaired"]
    ids: dict[str, tuple[int, int]] = {
        "camera: delivered == paired + stale + unpaired + skipped + incomplete": (
            d["frames_delivered"],
            used + d["skipped"] + d["incomplete"],
        ),
        "pairing: paired + stale + unpaired == stream acquired": (used, d["acquired"]),
        "stream: acquired == processed + dropped_overflow + unprocessed": (
            d["acquired"],
            d["processed"] + d["dropped_overflow"] + d["unprocessed"],
        ),
        "stream: dropped_camera == 0": (d["dropped_camera"], 0),
        "inputs: shown == inputs + retried": (d["shown"], d["inputs"] + d["retried"]),
    }
    if d.get("exposed") is not None:
        ids["sensor: exposed == delivered + lost + dropped + queued_delta"] = (
            d["exposed"],
            d["frames_delivered"] + d["frames_lost"] + d["frames_dropped"] + d["queued_delta"],
        )
    if d.get("frames_incomplete") is not None:
        ids["camera: incomplete delivered == incomplete seen by the sync"] = (
            d["frames_incomplete"],
            d["incomplete"],
        )
    return {
        k: {"lhs": int(a), "rhs": int(b), "holds": int(a) == int(b)} for k, (a, b) in ids.items()
    }


def _device_state(bench: Any) -> dict[str, Any]:
    cam = bench.devices["camera"]
    s: dict[str, Any] = {k: int(getattr(cam, k, 0)) for k in CAMERA_KEYS}
    # the simulated sensor's frame counter and its queue (private: the simulator's own bookkeeping)
    nid, queue = getattr(cam, "_next_id", None), getattr(cam, "_queue", None)
    s["exposed"] = None if nid is None or queue is None else int(nid)
    s["queued"] = None if queue is None else len(queue)
    s["shown"] = int(getattr(bench.devices["display"], "version", 0))
    return s | bench.sync.counters.to_dict()


def git_commit() -> str | None:
    """The commit the soak ran from, "+dirty" when the tree has changes (None outside a git checkout)."""
    import subprocess

    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return sha + ("+dirty" if dirty else "")


def soak(args: argparse.Namespace) -> dict[str, Any]:
    import torch

    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import prepare
    from lab4f.bench.run import run_dataset
    from lab4f.calibration import latest_record
    from lab4f.data import load_dataset
    from lab4f.demo import seeded

    commit = git_commit()  # the code this process loads now
    config_path = Path(args.config).resolve()
    work = prepare_work(
        Path(args.work),
        config_path,
        args.sync,
        Path(args.checkpoint) if args.checkpoint else None,
        args.seed,
        Path(args.cache),
    )
    with Bench(seeded(load_bench_config(config_path, sync=args.sync), args.seed)) as bench:
        record = latest_record(work["calibration"], bench=bench)
        setup = prepare(
            bench, work["checkpoint"], record=record, program=work["program"]
        )  # as `lab4f run` does
        setup.calibration_path = getattr(record, "path", None)
        meta = setup.meta.get("dataset", {})
        splits = load_dataset(
            meta.get("name", "mnist5k"),
            split_seed=meta.get("split_seed", 0),
            image_size=setup.model_cfg.image_size,
        )
        test_x, test_y = splits.test.tensors
        n_test = len(test_x)
        per_pass = min(args.pass_images, n_test) if args.pass_images else n_test
        before = _device_state(bench)
        totals = {
            "inputs": 0,
            "acquired": 0,
            "processed": 0,
            "dropped_overflow": 0,
            "dropped_camera": 0,
            "unprocessed": 0,
            "labelled": 0,
            "optical_correct": 0,
            "digital_correct": 0,
            "agree": 0,
        }
        passes: list[dict[str, Any]] = []
        stream_s = 0.0
        sampler = Sampler(args.sample_s)
        deadline_s = args.minutes * 60.0
        offset = 0
        stop_reason = "duration"
        sync_info: dict[str, Any] = {}
        sampler.start()
        t0 = time.perf_counter()
        try:
            while time.perf_counter() - t0 < deadline_s:
                idx = (torch.arange(per_pass) + offset) % n_test  # cycling the test split
                offset = (offset + per_pass) % n_test
                x, y = test_x[idx], test_y[idx]
                res = run_dataset(setup, x, y, policy="evaluate")
                s = res.summary.stats
                m = res.metrics()
                totals["inputs"] += per_pass
                for k in (
                    "acquired",
                    "processed",
                    "dropped_overflow",
                    "dropped_camera",
                    "unprocessed",
                ):
                    totals[k] += int(getattr(s, k))
                lab = res.labels >= 0
                opt, dig = res.optical_probs.argmax(1), res.digital_probs.argmax(1)
                totals["labelled"] += int(lab.sum())
                totals["optical_correct"] += int((opt[lab] == res.labels[lab]).sum())
                totals["digital_correct"] += int((dig[lab] == res.labels[lab]).sum())
                totals["agree"] += int((opt == dig).sum())
                stream_s += s.elapsed_s
                sync_info = {k: m["sync"][k] for k in ("policy", "timing_source", "hold_s")}
                passes.append(
                    {
                        "t_end_s": time.perf_counter() - t0,
                        "processed": s.processed,
                        "inputs_per_s": s.mean_fps,
                        "optical_accuracy": m["optical_accuracy"],
                        "latency_p50_ms": m["latency_p50_ms"],
                        "latency_p99_ms": m["latency_p99_ms"],
                        "retried": m["sync"]["retried"],
                        "skipped": m["sync"]["skipped"],
                        "rss_mb": rss_mb(),
                    }
                )
                if not args.json:
                    p = passes[-1]
                    print(
                        f"[{p['t_end_s'] / 60:5.1f} min] pass {len(passes)}: {s.processed} inputs at "
                        f"{s.mean_fps:.1f}/s, optical accuracy {p['optical_accuracy']:.3f}, "
                        f"RSS {p['rss_mb']:.1f} MB",
                        file=sys.stderr,
                        flush=True,
                    )
                if s.error:
                    stop_reason = f"error: {s.error}"
                    break
        finally:
            wall_s = time.perf_counter() - t0
            sampler.stop()
        after = _device_state(bench)
        timing = bench.sync.timing
        hold_s = bench.sync.hold_s(timing) if bench.sync.policy == "settle" else None

    delta = {
        k: (None if before[k] is None or after[k] is None else after[k] - before[k]) for k in before
    }
    d = {
        **{k: v for k, v in delta.items() if k not in ("queued",)},
        **totals,
        "queued_delta": delta["queued"],
    }
    ident = accounting(d)
    samples = sampler.samples
    rss = [s_["rss_mb"] for s_ in samples]
    # growth after warm-up: a least-squares slope over the second half of the samples (MB per hour)
    half = [s_ for s_ in samples if s_["t_s"] >= samples[-1]["t_s"] / 2]
    slope = None
    if len(half) >= 3:
        import numpy as np

        slope = float(
            np.polyfit([s_["t_s"] for s_ in half], [s_["rss_mb"] for s_ in half], 1)[0] * 3600.0
        )
    processed = totals["processed"]
    warm = passes[0]["rss_mb"] if len(passes) > 1 else None
    out = {
        "config": str(
            config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
        ),
        "commit": commit,
        "sync": args.sync,
        "minutes_requested": args.minutes,
        "wall_s": wall_s,
        "stream_s": stream_s,
        "passes": len(passes),
        "inputs_per_pass": per_pass,
        "test_images": n_test,
        "stop_reason": stop_reason,
        "throughput": {
            "inputs_per_s": processed / wall_s if wall_s > 0 else None,
            "inputs_per_s_streaming": processed / stream_s if stream_s > 0 else None,
            "timing_limit_per_s": (1.0 / hold_s) if hold_s else None,
            "hold_s": hold_s,
        },
        # "warm": after the first pass (the fused head and the allocator's pools are built in it)
        "rss_mb": {
            "start": rss[0],
            "warm": warm,
            "end": rss[-1],
            "min": min(rss),
            "max": max(rss),
            "growth": rss[-1] - rss[0],
            "growth_since_warm": None if warm is None else rss[-1] - warm,
            "growth_per_hour_second_half": slope,
        },
        "sync_timing": sync_info,
        "counters": {
            "stream": {
                k: totals[k]
                for k in (
                    "inputs",
                    "acquired",
                    "processed",
                    "dropped_overflow",
                    "dropped_camera",
                    "unprocessed",
                )
            },
            "sync": {k: delta[k] for k in SYNC_KEYS},
            "camera": {k: delta[k] for k in CAMERA_KEYS}
            | {"exposed": delta["exposed"], "queued_delta": delta["queued"]},
            "inputs_shown": delta["shown"],
        },
        "accuracy": {
            "optical": totals["optical_correct"] / totals["labelled"]
            if totals["labelled"]
            else None,
            "digital": totals["digital_correct"] / totals["labelled"]
            if totals["labelled"]
            else None,
            "agreement": totals["agree"] / processed if processed else None,
        },
        "accounting": ident,
        "all_accounted": all(v["holds"] for v in ident.values()),
        "stale_used": (delta["stale"] or 0) + (delta["unpaired"] or 0),
        "threads": {"start": samples[0]["threads"], "end": samples[-1]["threads"]},
        "open_fds": {"start": samples[0]["open_fds"], "end": samples[-1]["open_fds"]},
        "load1": {
            "start": samples[0]["load1"],
            "max": max(s_["load1"] for s_ in samples),
            "end": samples[-1]["load1"],
        },
        "cpu_count": os.cpu_count(),
        "samples": samples,
        "pass_log": passes,
        "prepared": work,
    }
    return out


def save_plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [s["t_s"] / 60 for s in result["samples"]]
    r = [s["rss_mb"] for s in result["samples"]]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=110)
    ax.plot(t, r, "o-", ms=3, label="sampled")
    p = result["pass_log"]
    if p:
        ax.plot(
            [q["t_end_s"] / 60 for q in p],
            [q["rss_mb"] for q in p],
            ".",
            ms=2,
            alpha=0.5,
            label="end of each pass",
        )
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    c = result["counters"]["stream"]
    ax.set_title(
        f"soak: {result['config']}, sync {result['sync']}: {c['processed']} inputs, "
        f"RSS {result['rss_mb']['start']:.0f} → {result['rss_mb']['end']:.0f} MB",
        fontsize=9,
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _strict(obj: Any) -> Any:
    """NaN/inf → None: the JSON printed is strict."""
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--minutes", type=float, default=30.0, help="streaming time (the last pass is finished)"
    )
    ap.add_argument(
        "--config",
        default=str(CONFIG),
        help="bench config (default: examples/realistic_timing.toml)",
    )
    ap.add_argument("--sync", default="settle", choices=("settle", "trigger", "marker", "none"))
    ap.add_argument(
        "--checkpoint", default=None, help="student checkpoint (default: the demo's, trained once)"
    )
    ap.add_argument(
        "--work",
        default=str(ROOT / ".lab4f_cache" / "soak"),
        help="folder of the cached preparation",
    )
    ap.add_argument(
        "--cache", default=str(ROOT / ".lab4f_cache"), help="`lab4f demo`'s checkpoint cache"
    )
    ap.add_argument(
        "--pass-images",
        type=int,
        default=1000,
        help="inputs per run_dataset pass (0: the test split)",
    )
    ap.add_argument("--sample-s", type=float, default=60.0, help="seconds between RSS samples")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print one strict-JSON object")
    ap.add_argument("--out", default=None, help="also write the JSON to this file")
    ap.add_argument("--plot", default=None, help="PNG of RSS over time")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    result = _strict(soak(args))
    text = json.dumps(result, allow_nan=False)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, allow_nan=False, indent=1) + "\n")
    if args.plot:
        save_plot(result, Path(args.plot))
    if args.json:
        print(text)
    else:
        c, r, th = result["counters"], result["rss_mb"], result["throughput"]
        print(
            f"{result['wall_s'] / 60:.1f} min, {result['passes']} passes, {c['stream']['processed']} inputs: "
            f"{th['inputs_per_s']:.2f} inputs/s overall ({th['inputs_per_s_streaming']:.2f}/s streaming)"
        )
        print(
            f"RSS {r['start']:.1f} → {r['end']:.1f} MB (growth {r['growth']:+.1f} MB, max {r['max']:.1f})"
        )
        print(f"counters: stream {c['stream']}, sync {c['sync']}, camera {c['camera']}")
        for k, v in result["accounting"].items():
            print(f"  {'ok ' if v['holds'] else 'BAD'} {k}: {v['lhs']} vs {v['rhs']}")
    trusted = result["stale_used"] == 0 or args.sync == "none"
    return 0 if result["all_accounted"] and trusted else 1


if __name__ == "__main__":
    sys.exit(main())
