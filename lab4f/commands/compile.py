"""`lab4f compile CHECKPOINT`: the student's kernel bank → optical program (HDF5) + compile report (PNG)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab4f.commands.train import positive_int
from lab4f.errors import CompileError

if TYPE_CHECKING:
    from lab4f.bench.devices import Bench


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser("compile", help="compile a student checkpoint into an optical program", parents=[common])
    p.add_argument("checkpoint", help="SCLC student (or linear) checkpoint")
    p.add_argument("--config", help="bench config (TOML/YAML); default: the built-in simulated bench")
    p.add_argument("--out", help="program path (.h5); default: next to the checkpoint")
    p.add_argument("--modulation", choices=["phase", "complex"], default="phase",
                   help="phase: phase-only SLM via slmsuite WGS (default); complex: ideal modulator")
    p.add_argument("--iterations", type=positive_int, default=50, help="phase-retrieval iterations")
    p.add_argument("--multiplex", choices=["auto", "never", "always"], default="auto")
    p.set_defaults(func=cmd_compile)


def compile_checkpoint(checkpoint: str | Path, bench: Bench, out: str | Path | None = None,
                       modulation: str = "phase", iterations: int = 50, multiplex: str = "auto",
                       progress: bool = True, on_iteration: Callable[[int, int], None] | None = None,
                       ) -> tuple[Any, Path, Path]:
    """Compile a checkpoint for a connected bench; returns (program, program path, report path)."""
    from tqdm import tqdm

    from lab4f.bench.hybrid import load_bench_checkpoint
    from lab4f.optics.compile import compile_bank
    from lab4f.optics.report import save_report_png

    model, cfg, meta = load_bench_checkpoint(checkpoint)
    if not hasattr(model, "kernel_bank"):
        raise CompileError(f"{checkpoint} is a {cfg.kind} checkpoint with a nonlinear front end; compile a "
                           "'student' or 'linear' (SCLC) checkpoint")
    from lab4f.bench.hybrid import check_detection

    check_detection(cfg, bench.config.mode, "compile")
    bar = tqdm(total=1, desc="compile", disable=not progress, leave=False)

    def step(i: int, n: int, msg: str) -> None:
        bar.total = n
        bar.n = i
        bar.set_postfix_str(msg)
        bar.refresh()

    from lab4f.bench.marker import compile_gap

    program = compile_bank(
        model.kernel_bank(), cfg.image_size, bench.geometry, mode=bench.config.mode, modulation=modulation,
        iterations=iterations, multiplex=multiplex,
        gap=compile_gap(bench.config.sync, model.kernel_bank().kernel_size, cfg.image_size),
        camera_cells=bench.camera_cells(), progress=step, on_iteration=on_iteration,
        source={"checkpoint": str(checkpoint), "kind": cfg.kind, "task": meta.get("task", "classification"),
                "dataset": meta.get("dataset"),
                "created": meta.get("created")},
    )
    bar.close()
    out = Path(out) if out else Path(checkpoint).with_suffix(".program.h5")
    program.save(out)
    report = save_report_png(program, out.with_suffix(".png"))
    return program, out, report


def cmd_compile(args: argparse.Namespace) -> dict[str, Any]:
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench

    with Bench(load_bench_config(args.config)) as bench:
        program, out, report = compile_checkpoint(args.checkpoint, bench, args.out, args.modulation,
                                                  args.iterations, args.multiplex, progress=not args.json)
    summary = program.summary() | {"program": str(out), "report": str(report)}
    if not args.json:
        print(f"compiled {summary['channels']} kernels {summary['kernel_size']}×{summary['kernel_size']} into "
              f"{summary['frames']} frame(s): min tile correlation {summary['min_tile_correlation']:.4f}, "
              f"{100 * summary['energy_in_tiles']:.1f} % of light in tiles → {out}, {report}")
    return summary
