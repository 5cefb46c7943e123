"""Throughput of teacher and SCLC student, and FFT convolution vs F.conv2d, measured side by side.

    .venv/bin/python benchmarks/bench_models.py [--json] [--quick] [--threads N]
    .venv/bin/python benchmarks/bench_models.py --paper-only --threads 1 [--device cuda]   # paper preset

The paper preset (widths 32,128,256, 3x3, hidden 512,256, SGD momentum 0.9) is timed as training images/s for
teacher, linear (CE) and student (KD) on the CPU and, where present, on the GPU; on the CPU both per wall second
and per CPU second of this process (the latter is what a loaded, shared machine can still compare), with the
implied seconds per epoch of the 3,500 training images of mnist5k and of 60,000 full MNIST images.

Training images/s is one SGD step (forward, loss, backward, update); the student's step includes the
frozen teacher's forward for the KD loss. Inference images/s is eval-mode forward without grad. For the
convolutions, ``ratio = time(fft_conv2d) / time(F.conv2d)``: above 1 the FFT path is slower.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from lab4f.models import ModelConfig, build_model
from lab4f.spectral import fft_conv2d
from lab4f.training import kd_loss

KERNEL_SIZES = (3, 7, 11, 15, 21, 31)


def time_per_call_s(fn: Callable[[], object], min_time_s: float, repeats: int = 5) -> float:
    """Median over ``repeats`` of the mean time per call, each repeat running for >= ``min_time_s``."""
    fn()  # warm-up (allocations, one-time dispatch)
    t0, n = time.perf_counter(), 0
    while time.perf_counter() - t0 < min_time_s / 4 or n < 1:
        fn()
        n += 1
    per_call = (time.perf_counter() - t0) / n
    calls = max(1, int(min_time_s / max(per_call, 1e-9)))
    samples = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t0) / calls)
    return statistics.median(samples)


def bench_models(image_size: int, batch: int, min_time_s: float) -> dict[str, Any]:
    """Train-step and inference images/s of the teacher and the SCLC student per detection model."""
    torch.manual_seed(0)
    x = torch.rand(batch, 1, image_size, image_size)
    y = torch.randint(0, 10, (batch,))
    teacher = build_model(ModelConfig(kind="teacher", image_size=image_size))
    results: dict[str, Any] = {}
    for name, kind, det in (
        ("teacher", "teacher", "ideal"),
        ("student_ideal", "student", "ideal"),
        ("student_incoherent", "student", "incoherent"),
        ("student_coherent", "student", "coherent"),
    ):
        model = (
            teacher
            if kind == "teacher"
            else build_model(ModelConfig(kind=kind, image_size=image_size, detection=det))
        )
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model=model, opt=opt, kind=kind) -> None:
            model.train()
            logits = model(x)
            if kind == "teacher":
                loss = F.cross_entropy(logits, y)
            else:
                teacher.eval()
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = kd_loss(logits, t_logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        def infer(model=model) -> None:
            model.eval()
            with torch.no_grad():
                model(x)

        results[name] = {
            "train_images_per_s": batch / time_per_call_s(step, min_time_s),
            "inference_images_per_s": batch / time_per_call_s(infer, min_time_s),
        }
    return results


PAPER = {"widths": (32, 128, 256), "kernel_size": 3, "hidden": (512, 256)}


def bench_paper_training(device: str, image_size: int, batch: int, steps: int) -> dict[str, Any]:
    """Training images/s of the paper preset's teacher, linear and student (one SGD step each) on ``device``."""
    torch.manual_seed(0)
    x = torch.rand(batch, 1, image_size, image_size, device=device)
    y = torch.randint(0, 10, (batch,), device=device)
    teacher = build_model(ModelConfig(kind="teacher", image_size=image_size, **PAPER)).to(device)
    out: dict[str, Any] = {}
    for kind in ("teacher", "linear", "student"):
        model = (
            teacher
            if kind == "teacher"
            else build_model(ModelConfig(kind=kind, image_size=image_size, **PAPER)).to(device)
        )
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

        def step(model=model, opt=opt, kind=kind) -> None:
            model.train()
            logits = model(x)
            if kind == "student":
                teacher.eval()
                with torch.no_grad():
                    t_logits = teacher(x)
                loss = kd_loss(logits, t_logits, y)
            else:
                loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        step()  # warm-up
        sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
        sync()
        w0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            step()
        sync()
        wall, cpu = time.perf_counter() - w0, time.process_time() - c0
        ips_wall = steps * batch / wall
        row = {
            "train_images_per_s": ips_wall,
            "s_per_epoch_3500": 3500 / ips_wall,
            "s_per_epoch_60000": 60000 / ips_wall,
        }
        if not device.startswith("cuda"):
            ips_cpu = steps * batch / cpu
            row |= {
                "train_images_per_cpu_s": ips_cpu,
                "cpu_s_per_epoch_3500": 3500 / ips_cpu,
                "cpu_s_per_epoch_60000": 60000 / ips_cpu,
            }
        out[kind] = row
    return out


def bench_conv(
    kernel_sizes: tuple[int, ...], batch: int, c_in: int, c_out: int, size: int, min_time_s: float
) -> list[dict[str, Any]]:
    """Forward and forward+backward time of fft_conv2d vs F.conv2d ('same' output) per kernel size."""
    rows = []
    for k in kernel_sizes:
        g = torch.Generator().manual_seed(k)
        x = torch.rand(batch, c_in, size, size, generator=g, requires_grad=True)
        w = torch.randn(c_out, c_in, k, k, generator=g, requires_grad=True)
        conv = {"conv2d": lambda x, w, k=k: F.conv2d(x, w, padding=k // 2), "fft": fft_conv2d}
        t: dict[str, float] = {}
        for name, fn in conv.items():

            def fwd(fn=fn, x=x, w=w) -> None:
                with torch.no_grad():
                    fn(x, w)

            def fwd_bwd(fn=fn, x=x, w=w) -> None:
                fn(x, w).sum().backward()
                x.grad = w.grad = None

            t[f"{name}_forward_s"] = time_per_call_s(fwd, min_time_s)
            t[f"{name}_forward_backward_s"] = time_per_call_s(fwd_bwd, min_time_s)
        rows.append(
            {
                "kernel_size": k,
                **t,
                "ratio_forward": t["fft_forward_s"] / t["conv2d_forward_s"],
                "ratio_forward_backward": t["fft_forward_backward_s"]
                / t["conv2d_forward_backward_s"],
            }
        )
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--quick", action="store_true", help="short timings (smoke test)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--image-size", type=int, default=28)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument(
        "--conv-shape", default="16,1,32,28", help="batch,c_in,c_out,size for the conv comparison"
    )
    p.add_argument(
        "--paper-only", action="store_true", help="only the paper preset's training images/s"
    )
    p.add_argument(
        "--paper-steps",
        type=int,
        default=None,
        help="SGD steps timed per model (default 20; 3 quick)",
    )
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    min_time_s = 0.05 if args.quick else 0.3
    steps = args.paper_steps or (3 if args.quick else 20)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    paper = {d: bench_paper_training(d, args.image_size, args.batch, steps) for d in devices}
    if args.paper_only:
        out = {
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "image_size": args.image_size,
            "batch": args.batch,
            "steps": steps,
            "paper_preset": paper,
        }
        if args.json:
            print(json.dumps(out))
        else:
            _print_paper(out)
        return 0
    b, c_in, c_out, size = (int(v) for v in args.conv_shape.split(","))
    t0 = time.perf_counter()
    out = {
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "models": bench_models(args.image_size, args.batch, min_time_s),
        "conv": {
            "shape": {"batch": b, "c_in": c_in, "c_out": c_out, "size": size},
            "rows": bench_conv(KERNEL_SIZES, b, c_in, c_out, size, min_time_s),
        },
    }
    out["paper_preset"] = paper
    out["wall_time_s"] = time.perf_counter() - t0
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"torch {out['torch']}, {out['threads']} threads, {args.image_size}x{args.image_size}, "
        f"batch {args.batch}"
    )
    print(f"{'model':<20}{'train img/s':>14}{'infer img/s':>14}")
    for name, m in out["models"].items():
        print(f"{name:<20}{m['train_images_per_s']:>14.0f}{m['inference_images_per_s']:>14.0f}")
    print(
        f"\nfft_conv2d / F.conv2d time ratio, x ({b}, {c_in}, {size}, {size}), w ({c_out}, {c_in}, k, k)"
    )
    print(
        f"{'k':>4}{'conv fwd ms':>13}{'fft fwd ms':>12}{'ratio':>8}"
        f"{'conv f+b ms':>13}{'fft f+b ms':>12}{'ratio':>8}"
    )
    for r in out["conv"]["rows"]:
        print(
            f"{r['kernel_size']:>4}{r['conv2d_forward_s'] * 1e3:>13.2f}{r['fft_forward_s'] * 1e3:>12.2f}"
            f"{r['ratio_forward']:>8.2f}{r['conv2d_forward_backward_s'] * 1e3:>13.2f}"
            f"{r['fft_forward_backward_s'] * 1e3:>12.2f}{r['ratio_forward_backward']:>8.2f}"
        )
    _print_paper(out)
    return 0


def _print_paper(out: dict[str, Any]) -> None:
    print("\npaper preset (widths 32,128,256), training")
    for dev, rows in out["paper_preset"].items():
        for kind, r in rows.items():
            cpu = (
                f", {r['train_images_per_cpu_s']:.0f} img/CPU-s = {r['cpu_s_per_epoch_60000']:.0f} CPU-s per "
                "60k epoch"
                if "train_images_per_cpu_s" in r
                else ""
            )
            print(
                f"  {dev:<5}{kind:<9}{r['train_images_per_s']:>9.0f} img/s = {r['s_per_epoch_60000']:.0f} s per "
                f"60k epoch{cpu}"
            )


if __name__ == "__main__":
    sys.exit(main())
