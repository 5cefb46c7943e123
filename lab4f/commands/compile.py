"""`lab4f compile BANK`: a kernel bank → optical program (HDF5) + compile report (PNG).

BANK is a lab4f student checkpoint, or a bank trained elsewhere: a NumPy array (.npy/.npz, C_out×1×K×K or C×K×K,
any K ≥ 1), a PyTorch state dict (its first conv weight, or ``--layer NAME``) or a TorchScript module
(:mod:`lab4f.optics.bank_io`). Kernels are used as ``F.conv2d(x, w, padding="same")`` computes them
(:mod:`lab4f.spectral`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from lab4f.argtypes import CONFIG_HELP, positive_int


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "compile",
        help="compile a kernel bank (student checkpoint, .npy/.npz, state dict, "
        "TorchScript) into an optical program",
        parents=[common],
    )
    p.add_argument(
        "checkpoint",
        metavar="BANK",
        help="SCLC student (or linear) checkpoint, or a kernel bank: .npy/.npz (C_out×1×K×K or C×K×K), "
        "a PyTorch state dict or a TorchScript module (.pt)",
    )
    p.add_argument(
        "--layer",
        default=None,
        metavar="NAME",
        help="the conv layer (state dict / TorchScript: 'conv1' or 'conv1.weight') or array (.npz) to "
        "compile; default: the first conv weight",
    )
    p.add_argument(
        "--input-size",
        type=positive_int,
        default=None,
        metavar="N",
        help="input images are N×N (a bank without a lab4f model; default: the bench display's size)",
    )
    p.add_argument(
        "--kernels-per-frame",
        type=positive_int,
        default=None,
        metavar="N",
        help="at most N kernels per SLM frame, the rest time-multiplexed (fewer tiles share the light: "
        "brighter tiles, more frames per input); default: as many as fit",
    )
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument("--out", help="program path (.h5); default: next to the bank")
    p.add_argument(
        "--modulation",
        choices=["phase", "complex"],
        default="phase",
        help="phase: phase-only SLM via slmsuite WGS (default); complex: ideal modulator",
    )
    p.add_argument("--iterations", type=positive_int, default=50, help="phase-retrieval iterations")
    p.add_argument("--multiplex", choices=["auto", "never", "always"], default="auto")
    p.set_defaults(func=cmd_compile)


def cmd_compile(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench

    with Bench(load_bench_config(args.config)) as bench:
        program, out, report = compile_checkpoint(
            args.checkpoint,
            bench,
            args.out,
            args.modulation,
            args.iterations,
            args.multiplex,
            progress=not args.json,
            kernels_per_frame=args.kernels_per_frame,
            input_size=args.input_size,
            layer=args.layer,
        )
    src = program.source
    summary = program.summary() | {
        "program": str(out),
        "report": str(report),
        "source": {k: v for k, v in src.items() if k != "forecast"},
    }
    fc = src.get("forecast")
    if fc is not None:
        summary["forecast"] = fc
        summary["warnings"] = list(fc.get("warnings", [])) + [
            f"suggestion: {x}" for x in fc.get("suggestions", [])
        ]
    if not args.json:
        what = (
            f"layer {src['layer']} of {args.checkpoint}"
            if src.get("layer")
            else str(args.checkpoint)
        )
        print(
            f"compiled {summary['channels']} kernels {summary['kernel_size']}×{summary['kernel_size']} ({what}, "
            f"{summary['input_size']}×{summary['input_size']} inputs from the {src.get('input_size_from')}) into "
            f"{summary['frames']} frame(s): min tile correlation {summary['min_tile_correlation']:.4f}, "
            f"{100 * summary['energy_in_tiles']:.1f} % of light in tiles → {out}, {report}"
        )
        if fc is not None:
            from lab4f.optics.forecast import describe_forecast

            for line in describe_forecast(fc):
                print(
                    line,
                    file=sys.stderr if line.startswith(("warning", "suggestion")) else sys.stdout,
                )
    return summary
