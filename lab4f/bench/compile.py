"""Compile a kernel bank for a connected bench: a lab4f student checkpoint or a bank trained elsewhere (a NumPy
array, a PyTorch state dict, a TorchScript module; :mod:`lab4f.optics.bank_io`) → optical program (HDF5) and its
compile report (PNG). What `lab4f compile`, the demo and the GUI call."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab4f.errors import CompileError

if TYPE_CHECKING:
    from lab4f.bench.devices import Bench


def load_kernels(
    path: str | Path, layer: str | None = None
) -> tuple[Any, int | None, dict[str, Any]]:
    """(KernelBank, the input size its model was trained for or None, source metadata) of any accepted file."""
    from lab4f.optics.bank_io import is_lab4f_checkpoint, is_torchscript, load_bank, read_torch

    path = Path(path)
    payload = None
    if path.is_file() and path.suffix.lower() not in (".npy", ".npz") and not is_torchscript(path):
        payload = read_torch(path)
        if is_lab4f_checkpoint(payload):
            if layer is not None:
                raise CompileError(
                    f"{path} is a lab4f checkpoint: its bank is the collapsed front end; --layer "
                    "is for banks from elsewhere (state dicts, TorchScript, .npz)"
                )
            from lab4f.checkpoint import checkpoint_task
            from lab4f.task import load_bench_checkpoint

            model, cfg, meta = load_bench_checkpoint(path)
            if not hasattr(model, "kernel_bank"):
                raise CompileError(
                    f"{path} is a {cfg.kind} checkpoint with a nonlinear front end; compile a "
                    "'student' or 'linear' (SCLC) checkpoint"
                )
            return (
                model.kernel_bank(),
                int(cfg.image_size),
                {
                    "checkpoint": str(path),
                    "kind": cfg.kind,
                    "task": checkpoint_task(meta),
                    "dataset": meta.get("dataset"),
                    "created": meta.get("created"),
                    "detection": getattr(cfg, "detection", None),
                },
            )
    loaded = load_bank(path, layer, payload)
    return loaded.kernel_bank, None, loaded.source


def input_size_for(
    bench: Bench, model_size: int | None, requested: int | None, what: str
) -> tuple[int, str]:
    """(N, where it came from): the model's, ``--input-size`` (which must agree with a model's), or the display's."""
    if model_size is not None:
        if requested is not None and requested != model_size:
            raise CompileError(
                f"{what} was trained on {model_size}×{model_size} inputs; --input-size {requested} "
                "does not fit it (omit --input-size)"
            )
        return model_size, "checkpoint"
    if requested is not None:
        return int(requested), "--input-size"
    shape = tuple(int(s) for s in getattr(bench.display, "shape", ()))
    if bench.config.sync.policy == "marker" or len(shape) != 2 or shape[0] != shape[1]:
        why = (
            "under the marker sync policy the display is larger than the images (the code is shown beside them)"
            if bench.config.sync.policy == "marker"
            else f"the bench display is {shape}, not square"
        )
        raise CompileError(
            f"{what} has no model to say how large its inputs are and {why}: pass --input-size N"
        )
    return shape[0], "display"


def compile_checkpoint(
    checkpoint: str | Path,
    bench: Bench,
    out: str | Path | None = None,
    modulation: str = "phase",
    iterations: int = 50,
    multiplex: str = "auto",
    progress: bool = True,
    on_iteration: Callable[[int, int], None] | None = None,
    kernels_per_frame: int | None = None,
    input_size: int | None = None,
    layer: str | None = None,
    forecast: bool = True,
) -> tuple[Any, Path, Path]:
    """Compile a checkpoint or any accepted kernel bank file for a connected bench; returns (program, program path,
    report path). ``forecast``: the fidelity forecast on this bench (:mod:`lab4f.optics.forecast`) goes into the
    program's ``source["forecast"]`` (and so into the compile summary)."""
    from tqdm import tqdm

    from lab4f.bench.marker import compile_gap
    from lab4f.optics.compile import compile_bank
    from lab4f.optics.report import save_report_png

    bank, model_size, source = load_kernels(checkpoint, layer)
    if source.get("detection") is not None:  # a lab4f student: trained for this bench's detection?
        from types import SimpleNamespace

        from lab4f.bench.hybrid import check_detection

        check_detection(
            SimpleNamespace(detection=source["detection"]), bench.config.mode, "compile"
        )
    n, n_from = input_size_for(bench, model_size, input_size, str(checkpoint))
    bar = tqdm(total=1, desc="compile", disable=not progress, leave=False)

    def step(i: int, total: int, msg: str) -> None:
        bar.total = total
        bar.n = i
        bar.set_postfix_str(msg)
        bar.refresh()

    source = source | {"input_size_from": n_from}
    if kernels_per_frame is not None:
        source["kernels_per_frame"] = int(kernels_per_frame)
    program = compile_bank(
        bank,
        n,
        bench.geometry,
        mode=bench.config.mode,
        modulation=modulation,
        iterations=iterations,
        multiplex=multiplex,
        gap=compile_gap(bench.config.sync, bank.kernel_size, n),
        camera_cells=bench.camera_cells(),
        progress=step,
        on_iteration=on_iteration,
        source=source,
        kernels_per_frame=kernels_per_frame,
    )
    bar.close()
    if forecast:
        from lab4f.optics.forecast import forecast_program

        program.source["forecast"] = forecast_program(program, bench).to_dict()
    out = Path(out) if out else Path(checkpoint).with_suffix(".program.h5")
    program.save(out)
    report = save_report_png(program, out.with_suffix(".png"))
    return program, out, report
