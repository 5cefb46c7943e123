"""`lab4f run` and `lab4f finetune`: data through the calibrated bench; hardware-in-the-loop fine-tuning."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab4f.argtypes import CONFIG_HELP, positive_int
from lab4f.commands import SCENE_KINDS, SYNC_CHOICES
from lab4f.errors import EXIT_DEVICE, EXIT_ERROR, ConfigError

if TYPE_CHECKING:
    import torch

    from lab4f.bench.devices import Bench
    from lab4f.bench.hybrid import HybridSetup


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        default=None,
        help="SCLC student checkpoint (omit for a kernel bank with no checkpoint: run takes --program and "
        "--back from `lab4f finetune --captures`, finetune takes --captures)",
    )
    p.add_argument(
        "--calibration", help="calibration record (.h5) or folder (latest record); default: none"
    )
    p.add_argument(
        "--program", help="compiled optical program (.h5); default: compile the checkpoint now"
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="use a calibration record measured on a bench set up differently (a warning, not a refusal)",
    )
    p.add_argument("--config", help=CONFIG_HELP)
    p.add_argument(
        "--sync",
        choices=SYNC_CHOICES,
        default=None,
        help="how frames are paired with inputs: settle, trigger, none (default: the bench config's)",
    )
    p.add_argument("--dataset", default=None, help="dataset name (default: the checkpoint's)")
    p.add_argument("--data-dir", default=None, help="local data directory (or $LAB4F_DATA)")
    p.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="use only the first N images of every split used (for finetune: training too)",
    )
    p.add_argument(
        "--scenes",
        choices=SCENE_KINDS,
        default=None,
        help="segmentation checkpoint: generated scenes (default: the checkpoint's)",
    )
    p.add_argument(
        "--data-seed",
        type=int,
        default=None,
        help="segmentation checkpoint: seed of the generated scenes (default: the checkpoint's)",
    )


def register(sub: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "run", help="run data through the bench and the back end → run file", parents=[common]
    )
    _common(p)
    p.add_argument(
        "--images",
        help="a folder of images instead of a dataset (subfolders = class names); read at "
        "their full bit depth (8/12/16-bit, float in [0, 1]); colour → BT.601 luminance",
    )
    p.add_argument(
        "--strict-images",
        action="store_true",
        help="with --images: an unreadable image is an error (default: skipped, counted and named)",
    )
    p.add_argument("--split", choices=["train", "val", "test"], default="test")
    p.add_argument("--policy", choices=["evaluate", "live"], default="evaluate")
    p.add_argument(
        "--back",
        help="fine-tuned back end (.pt from lab4f finetune) to use instead of the checkpoint's",
    )
    p.add_argument(
        "--out",
        default=None,
        help="run file (HDF5); default: a new runs/run-YYYYmmdd-HHMMSS[-N].h5, never an existing file",
    )
    p.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    p.set_defaults(func=cmd_run, check_args=_check_run_args, command_parser=p)
    f = sub.add_parser(
        "finetune",
        help="retrain the back end on features captured through the optics",
        parents=[common],
    )
    _common(f)
    f.add_argument(
        "--captures",
        nargs="+",
        default=None,
        metavar="FILE",
        help="without --checkpoint: train the paper's back end from these `lab4f capture` files alone "
        "(a kernel bank with no lab4f checkpoint; 20 %% of the inputs held out to keep the best epoch)",
    )
    f.add_argument(
        "--train-images",
        type=positive_int,
        default=1500,
        help="training images captured through the optics",
    )
    f.add_argument("--epochs", type=positive_int, default=15)
    f.add_argument(
        "--out",
        default=None,
        help="fine-tuned back end state dict; default: a new "
        "runs/finetuned_back-YYYYmmdd-HHMMSS[-N].pt, never an existing file",
    )
    f.add_argument(
        "--overwrite", action="store_true", help="replace --out if it exists (default: refuse)"
    )
    f.set_defaults(func=cmd_finetune, check_args=_check_finetune_args, command_parser=f)


def output_path(args: argparse.Namespace, stem: str, suffix: str) -> tuple[Path, bool]:
    """(where to write, whether to take the next free ``-N`` name instead of replacing): ``--out``, refused if it
    exists unless ``--overwrite``; or ``runs/<stem>-YYYYmmdd-HHMMSS<suffix>`` (local time, as the GUI names runs).
    Checked before the run starts; the file is then created exclusively, so a file another process writes under
    the same name meanwhile is not replaced either: the result gets a ``-N`` name and a warning says so."""
    from datetime import datetime

    if args.out is None:
        return Path("runs") / f"{stem}-{datetime.now():%Y%m%d-%H%M%S}{suffix}", True
    out = Path(args.out)
    if out.is_dir():
        raise ConfigError(
            f"--out {out} is a folder; pass a file name (e.g. {out / (stem + suffix)})"
        )
    if out.exists() and not args.overwrite:
        raise ConfigError(
            f"--out {out} exists and is not overwritten: pass another --out, omit it for a new "
            "timestamped name, or pass --overwrite to replace it"
        )
    return out, not args.overwrite


def say_if_renamed(args: argparse.Namespace, wanted: Path, written: Path) -> None:
    """Warn when an explicit --out was taken by another writer during the run (the default name just counts on)."""
    if args.out is not None and written != wanted:
        print(
            f"warning: {wanted} was created by another process during the run; this result is saved as {written}",
            file=sys.stderr,
        )


def _num(value: float | None, spec: str = ".4f") -> str:
    """A figure for the human summary; "n/a" for one there is none of (no inputs, no latencies)."""
    return "n/a" if value is None else format(value, spec)


def stopped_early(m: dict[str, Any], devices: dict[str, Any], items: str) -> None:
    """A run the stream stopped early keeps its partial results (the run file is written), but the command fails:
    exit 3 when a device stopped it (2 for another error), ``ok`` false, the device, its role and the partial file
    named in ``message``. Does nothing for a run that ended normally."""
    if not m.get("error"):
        return
    from lab4f.bench.faults import role_of

    device = m.get("stop_reason") == "device_error"
    role = role_of(devices, m.get("error_device")) if device else None
    m["error_role"] = role
    m["exit_code"] = EXIT_DEVICE if device else EXIT_ERROR
    who = (
        f" by the {role} ({m['error_device']})"
        if role
        else (f" by {m['error_device']}" if device else "")
    )
    m["message"] = (
        f"the run was stopped{who}: {m['error']}; the {m['processed']} {items} processed before are "
        f"saved in {m['run_file']} (a partial run file)"
    )


def _load_record(path: str | None, bench: Bench, force: bool = False) -> Any | None:
    if not path:
        return None
    from lab4f.calibration import CalibrationRecord, latest_record

    p = Path(path)
    if p.is_dir():
        record = latest_record(p, bench=bench, force=force)
        if record is None:
            raise ConfigError(
                f"no readable calibration record in {p}; run `lab4f calibrate all --out {p}`"
            )
        return record
    return CalibrationRecord.load(p, bench=bench, force=force)


def _setup(args: argparse.Namespace, bench: Bench) -> HybridSetup:
    from lab4f.bench.hybrid import prepare

    record = _load_record(args.calibration, bench, force=args.force)
    if record is None:
        import sys

        print(
            "warning: no calibration record (--calibration): tiles are cut at the nominal positions and the "
            "optical predictions will be poor; run `lab4f calibrate all --program PROGRAM` first",
            file=sys.stderr,
        )
    setup = prepare(bench, args.checkpoint, record=record, program=args.program)
    setup.calibration_path = getattr(record, "path", None)
    return setup


def _data(
    setup: HybridSetup, args: argparse.Namespace, split: str, limit: int | None = None
) -> Any:
    """The split the checkpoint's task runs (:meth:`lab4f.task.Task.data`): its data set (or --dataset) for a
    classifier, its scenes (--scenes, --data-seed) or folder data set for segmentation."""
    return setup.task.data(
        setup.model_cfg,
        setup.meta,
        split,
        checkpoint=args.checkpoint,
        dataset=args.dataset,
        data_dir=args.data_dir,
        limit=limit,
        scenes=args.scenes,
        data_seed=args.data_seed,
    )


def _image_folder(
    folder: Path, setup: HybridSetup, strict: bool = False
) -> tuple[Any, Any, dict[str, Any]]:
    """Images of ``folder``, labelled by subfolders named like the checkpoint's classes (``3/`` holds class "3");
    images elsewhere are unlabelled (-1) and scored by agreement only. Unmatched subfolders are reported; so are
    the depths read and the images skipped as unreadable (``strict``: an error)."""
    from lab4f.checkpoint import class_names
    from lab4f.imagefolder import read_image_folder

    names = class_names(setup.meta, setup.model_cfg.num_classes)
    read = read_image_folder(folder, setup.model_cfg.image_size, names, strict=strict)
    unknown = sorted(d.name for d in Path(folder).iterdir() if d.is_dir() and d.name not in names)
    if unknown:
        print(
            f"warning: subfolders {unknown} of {folder} are not classes of this checkpoint ({names}); "
            "their images are run unlabelled (agreement only)",
            file=sys.stderr,
        )
    for s in read.skipped:
        print(f"warning: skipped {s['reason']}", file=sys.stderr)
    for w in read.warnings:
        print(f"warning: {w}", file=sys.stderr)
    return read.images, read.labels, read.summary()


def _load_back(path: Path, back: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The state dict `lab4f finetune --out` saved, checked against this student's back end."""
    import torch

    from lab4f.errors import CheckpointError

    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except FileNotFoundError as exc:
        raise CheckpointError(
            f"--back {path} does not exist; make it with `lab4f finetune --out {path}`"
        ) from exc
    except (
        Exception
    ) as exc:  # truncated file, not a torch file, or a pickle that weights_only refuses
        raise CheckpointError(
            f"--back {path} is not a back-end state dict saved by `lab4f finetune` ({exc}); "
            "fine-tune again"
        ) from exc
    if not isinstance(state, dict) or set(state) != set(back.state_dict()):
        raise CheckpointError(
            f"--back {path} does not hold this student's back end (its keys differ); pass the file "
            "`lab4f finetune` wrote for this checkpoint"
        )
    for k, v in back.state_dict().items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(
                f"--back {path}: {k} is {tuple(state[k].shape)}, this student's back end needs "
                f"{tuple(v.shape)}; pass the file `lab4f finetune` wrote for this checkpoint"
            )
    return state


def _check_run_args(args: argparse.Namespace) -> str | None:
    """A usage error, found before anything heavy is imported: what a run needs to know what to run."""
    if args.checkpoint is None and not (args.program and args.back):
        return (
            "pass --checkpoint CKPT, or --program P with --back B (a kernel bank with no checkpoint: "
            "B from `lab4f finetune --captures`)"
        )
    return None


def _check_finetune_args(args: argparse.Namespace) -> str | None:
    if args.checkpoint is None and not args.captures:
        return (
            "pass --checkpoint CKPT, or --captures FILE... (from `lab4f capture --program P "
            "--calibration R --split train`) to train a back end for a kernel bank"
        )
    return None


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    if args.checkpoint is None:
        return _run_foreign(args)
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.bench.faults import device_fault_context
    from lab4f.task import TaskData

    out, unique = output_path(args, "run", ".h5")
    with (
        Bench(load_bench_config(args.config, sync=args.sync)) as bench,
        device_fault_context(bench.devices, "the run could not start; nothing was saved"),
    ):
        setup = _setup(args, bench)
        task = setup.task
        back = None
        if args.back:
            import copy

            back = copy.deepcopy(setup.student.back)
            back.load_state_dict(_load_back(args.back, back))
        if args.strict_images and not args.images:
            raise ConfigError("--strict-images is for --images FOLDER")
        images_read = None
        if args.images:
            if not task.reads_image_folders:
                raise ConfigError(
                    f"a {task.name} checkpoint runs {task.data_description}, not --images"
                )
            x, y, images_read = _image_folder(args.images, setup, strict=args.strict_images)
            data = TaskData(x, y, (), str(args.images)).head(args.limit)
        else:
            data = _data(setup, args, args.split, args.limit)
        result = task.run(setup, data, policy=args.policy, back=back)
        path, files = task.save(
            out, result, setup, args.checkpoint, overwrite=not unique, unique=unique
        )
        m = result.metrics() | {"run_file": str(path)} | files
        if images_read is not None:
            m["images"] = images_read
        stopped_early(m, bench.devices, task.items)
    say_if_renamed(args, out, path)
    if not args.json:
        print(task.describe(m))
        if images_read is not None:
            depths = ", ".join(f"{n} {d}" for d, n in images_read["depths"].items())
            skipped = "; ".join(s["file"] for s in images_read["skipped_files"])
            print(
                f"images read: {depths}"
                + (
                    f"; {images_read['skipped']} skipped as unreadable: {skipped}"
                    if images_read["skipped"]
                    else ""
                )
            )
        if m.get("message"):
            print(f"error: {m['message']}", file=sys.stderr)
        if m.get("batches_extractor"):
            print(
                f"{m['batches_extractor']} of {m['batches_extractor'] + m.get('batches_fused', 0)} batches took "
                f"the (slower) extractor path, not the fused kernel: {setup.fallback_reason}"
            )
    return m


def _finetune_data(
    args: argparse.Namespace, setup: HybridSetup
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(inputs, targets) per split of the checkpoint's task (class labels, or masks of its scenes).
    ``--limit`` caps every split, ``--train-images`` the training split as well."""
    from lab4f.bench.inputs import check_display_fits

    caps = [c for c in (args.limit, args.train_images) if c is not None]
    limits = {"train": min(caps) if caps else None, "val": args.limit, "test": args.limit}
    out = {}
    for split, limit in limits.items():
        data = _data(setup, args, split, limit)
        check_display_fits(setup, data.images)
        if len(data) == 0:
            raise ConfigError(f"no {split} images to fine-tune with (--limit / --train-images)")
        out[split] = (data.images, data.targets)
    return out


def cmd_finetune(args: argparse.Namespace) -> dict[str, Any]:
    if args.checkpoint is None:
        return _finetune_foreign(args)
    if args.captures:
        raise ConfigError(
            "--captures trains a back end for a kernel bank with no checkpoint; drop --checkpoint, or "
            "drop --captures to capture through the bench for the checkpoint"
        )
    import torch

    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.bench.finetune import finetune_backend
    from lab4f.bench.hybrid import capture_features
    from lab4f.storage import atomic_write

    wanted, unique = output_path(args, "finetuned_back", ".pt")
    from lab4f.bench.faults import device_fault_context

    with (
        Bench(load_bench_config(args.config, sync=args.sync)) as bench,
        device_fault_context(
            bench.devices,
            "fine-tuning stopped before or while capturing features through the "
            "optics; nothing was saved",
        ),
    ):
        setup = _setup(args, bench)
        data = _finetune_data(args, setup)
        features = {
            split: capture_features(setup, x, progress=not args.json)
            for split, (x, _) in data.items()
        }
    (tr_f, va_f, te_f), (tr_y, va_y, te_y) = (
        [features[s] for s in data],
        [data[s][1] for s in data],
    )
    task = setup.task
    result = finetune_backend(
        setup.student.back,
        tr_f,
        tr_y,
        va_f,
        va_y,
        epochs=args.epochs,
        progress=not args.json,
        task=task,
    )
    # a temporary name of this process only, then published atomically: a crash never leaves a half-written back
    # end, and two fine-tunings never write the same temporary file
    with atomic_write(wanted, overwrite=not unique, unique=unique) as target:
        torch.save(result.back.state_dict(), target.tmp)
    assert target.path is not None
    out = target.path
    say_if_renamed(args, wanted, out)
    metric = result.metric
    summary = {
        "metric": metric,
        f"test_{metric}_before": task.score(setup.student.back, te_f, te_y),
        f"test_{metric}_after": task.score(result.back, te_f, te_y),
        f"val_{metric}_before": result.score_before,
        f"val_{metric}_after": result.score_after,
        "train_images": len(tr_f),
        "epochs": args.epochs,
        "back_end": str(out),
        "history": result.history,
    }
    if not args.json:
        print(
            f"optical test {metric.replace('_', ' ')} {summary[f'test_{metric}_before']:.4f} → "
            f"{summary[f'test_{metric}_after']:.4f} after fine-tuning the back end on {len(tr_f)} captured images "
            f"→ {out} (use it with lab4f run --back {out})"
        )
    return summary


# -- a kernel bank with no lab4f checkpoint: back end from capture files, run with --program and --back ----------
def _finetune_foreign(args: argparse.Namespace) -> dict[str, Any]:
    """Train the paper's back end (lab4f.models.BackEnd) from `lab4f capture` files alone; no bench needed."""
    import torch

    from lab4f.bench.finetune import (
        finetune_backend,
        foreign_back,
        read_captures,
        save_foreign_back,
    )
    from lab4f.storage import atomic_write
    from lab4f.task import CLASSIFICATION

    cap = read_captures(args.captures)
    x, y = cap["features"], cap["labels"]
    if args.limit:
        x, y = x[: args.limit], y[: args.limit]
    inputs = cap["inputs"]
    names = inputs.get("class_names")
    if not names and inputs.get("dataset"):
        from lab4f.data import load_dataset

        names = list(
            load_dataset(
                inputs["dataset"], data_dir=args.data_dir, split_seed=0, image_size=int(x.shape[-1])
            ).class_names
        )
    num_classes = len(names) if names else int(y.max()) + 1
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_val = max(2, len(x) // 5)
    va, tr = order[:n_val], order[n_val:]
    wanted, unique = output_path(args, "back", ".pt")
    back = foreign_back(int(x.shape[1]), num_classes)
    result = finetune_backend(
        back,
        x[tr],
        y[tr],
        x[va],
        y[va],
        epochs=args.epochs,
        progress=not args.json,
        task=CLASSIFICATION,
    )
    meta = {
        "program_sha256": cap["program_sha256"],
        "bank_hash": cap["bank_hash"],
        "channels": int(x.shape[1]),
        "num_classes": num_classes,
        "input_size": int(x.shape[-1]),
        "class_names": list(names or []),
        "dataset": inputs.get("dataset"),
        "captures": [str(Path(p).resolve()) for p in args.captures],
    }
    with atomic_write(wanted, overwrite=not unique, unique=unique) as target:
        save_foreign_back(target.tmp, result.back, meta)
    assert target.path is not None
    out = target.path
    say_if_renamed(args, wanted, out)
    summary = {
        "metric": "accuracy",
        "train_images": len(tr),
        "val_images": len(va),
        "val_accuracy_before": result.score_before,
        "val_accuracy_after": result.score_after,
        "epochs": args.epochs,
        "back_end": str(out),
        "program_sha256": cap["program_sha256"],
        "bank_hash": cap["bank_hash"],
        "num_classes": num_classes,
        "history": result.history,
        "digital_model": None,
        "note": "a kernel bank with no lab4f checkpoint: the back end is trained on the optical features alone",
    }
    if not args.json:
        print(
            f"back end trained on {len(tr)} captured inputs: held-out (validation) accuracy "
            f"{result.score_after:.4f} → {out} (use it with lab4f run --program P --back {out})"
        )
    return summary


def _run_foreign(args: argparse.Namespace) -> dict[str, Any]:
    """`lab4f run --program P --back B`: a kernel bank's program through the optics and a back end from
    `lab4f finetune --captures`; refused if the back end was trained for another program."""
    from lab4f.bench.config import load_bench_config
    from lab4f.bench.devices import Bench
    from lab4f.bench.faults import device_fault_context
    from lab4f.bench.finetune import load_foreign_back
    from lab4f.bench.hybrid import bank_hash, prepare
    from lab4f.errors import MismatchError
    from lab4f.storage import file_sha256
    from lab4f.task import TaskData

    back, meta = load_foreign_back(args.back)
    from lab4f.optics.program import OpticalProgram

    program = OpticalProgram.load(args.program)
    if bank_hash(program.bank) != meta["bank_hash"]:
        raise MismatchError(
            f"--back {args.back} was trained for another program (bank {meta['bank_hash']}, program "
            f"SHA-256 {str(meta['program_sha256'])[:16]}…), not {args.program} (bank "
            f"{bank_hash(program.bank)}): pass the program its captures were made with, or capture "
            f"with this program (`lab4f capture --program {args.program} --calibration R "
            "--split train`)"
            " and train a back end for it (`lab4f finetune --captures ...`)"
        )
    if meta.get("program_sha256") and file_sha256(args.program) != meta["program_sha256"]:
        print(
            f"warning: {args.program} is not the file the back end's captures were made with, but compiles the "
            "same kernel bank",
            file=sys.stderr,
        )
    out, unique = output_path(args, "run", ".h5")
    with (
        Bench(load_bench_config(args.config, sync=args.sync)) as bench,
        device_fault_context(bench.devices, "the run could not start; nothing was saved"),
    ):
        record = _load_record(args.calibration, bench, force=args.force)
        if record is None:
            print(
                "warning: no calibration record (--calibration): tiles are cut at the nominal positions",
                file=sys.stderr,
            )
        setup = prepare(bench, None, record=record, program=program)
        setup.program_path = Path(args.program)
        setup.calibration_path = getattr(record, "path", None)
        task = setup.task
        n = program.input_size
        names = meta.get("class_names") or None
        if args.images:
            from lab4f.imagefolder import read_image_folder

            read = read_image_folder(args.images, n, names, strict=args.strict_images)
            data = TaskData(read.images, read.labels, (), str(args.images)).head(args.limit)
        else:
            from lab4f.data import load_dataset

            name = args.dataset or meta.get("dataset") or "mnist5k"
            splits = load_dataset(name, data_dir=args.data_dir, split_seed=0, image_size=n)
            xs, ys = getattr(splits, args.split).tensors
            data = TaskData(xs, ys, tuple(splits.class_names), f"{name} ({args.split})").head(
                args.limit
            )
        result = task.run(setup, data, policy=args.policy, back=back)
        result.extra["digital_model"] = None
        result.extra["note"] = (
            "a kernel bank with no lab4f checkpoint has no digital model: optical accuracy only "
            "(digital_accuracy and agreement are null)"
        )
        result.extra["back_end"] = str(Path(args.back).resolve())
        path, files = task.save(out, result, setup, None, overwrite=not unique, unique=unique)
        m = result.metrics() | {"run_file": str(path)} | files
        stopped_early(m, bench.devices, task.items)
    say_if_renamed(args, out, path)
    if not args.json:
        print(task.describe(m) + " (no digital model for this kernel bank: optical accuracy only)")
        if m.get("message"):
            print(f"error: {m['message']}", file=sys.stderr)
    return m
