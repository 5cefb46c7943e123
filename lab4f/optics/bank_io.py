"""Kernel banks from outside lab4f: NumPy arrays, PyTorch state dicts and TorchScript modules.

A bank is a real array (C_out, 1, K, K) or (C, K, K) (or one (K, K) kernel), any K ≥ 1, odd or even, used with the
convention of :mod:`lab4f.spectral`: ``F.conv2d(x, w, padding="same")`` — cross-correlation, PyTorch's placement.

* ``.npy``: the array itself (loaded without pickle).
* ``.npz``: the array named by ``layer``, else the first array of a kernel shape (in the file's order).
* a PyTorch file (``torch.save`` of a state dict, possibly nested — ``{"state_dict": …}``, ``{"model": …}`` —
  or of one tensor; loaded with ``weights_only=True``): the tensor named by ``layer`` (``conv1`` or
  ``conv1.weight``), else the first 4-D ``…weight`` — the first convolution in the order the model registered
  its layers.
* a TorchScript module (``torch.jit.save``): the ``Conv2d`` named by ``layer``, else its first ``Conv2d``.

lab4f checkpoints are recognised by their format tag (:func:`is_lab4f_checkpoint`) and loaded by
:mod:`lab4f.checkpoint`. Everything else is refused with :class:`~lab4f.errors.CompileError` naming what the file
holds and what would be accepted.
"""

from __future__ import annotations

import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lab4f.errors import CompileError, Fix

ACCEPTED = (
    "a NumPy array (.npy, or .npz) of shape C_out×1×K×K or C×K×K, a PyTorch state dict or TorchScript "
    "module (its first conv, or --layer NAME), or a lab4f checkpoint"
)


@dataclass
class LoadedBank:
    """A bank read from a file: the signed kernels (C_out, 1, K, K) float64 and where they came from."""

    weights: np.ndarray
    source: dict[str, Any] = field(
        default_factory=dict
    )  # file, format, layer, shape as found, other candidates

    @property
    def kernel_bank(self) -> Any:
        from lab4f.spectral import KernelBank

        return KernelBank.from_numpy(self.weights)


def _shape(a: Any) -> str:
    return "×".join(str(int(s)) for s in np.shape(a)) or "scalar"


def bank_from_array(array: Any, what: str) -> np.ndarray:
    """(C_out, 1, K, K) float64 from an array (C_out, 1, K, K), (C, K, K) or (K, K); refuses anything else saying
    what it is and how to make it fit."""
    a = np.asarray(array)
    if a.dtype == object or not (
        np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    ):
        raise CompileError(
            f"{what} holds a {a.dtype} array of shape {_shape(a)}; a kernel bank is a real "
            "(float or integer) array"
        )
    if a.ndim == 2:
        a = a[None, None]
    elif a.ndim == 3:
        a = a[:, None]
    elif a.ndim != 4:
        raise CompileError(
            f"{what} holds an array of shape {_shape(a)} ({a.ndim}-D); a kernel bank is "
            "C_out×1×K×K (PyTorch's conv weight layout) or C×K×K"
        )
    c_out, c_in, kh, kw = a.shape
    if kh != kw:
        hint = ""
        if (
            a.shape[0] == a.shape[1] and a.shape[0] > 0
        ):  # (K, K, C_in, C_out): TensorFlow / Keras layout
            hint = (
                f"; it looks like TensorFlow/Keras' K×K×C_in×C_out layout: pass "
                f"np.transpose(w, (3, 2, 0, 1)) ({a.shape[3]}×{a.shape[2]}×{a.shape[0]}×{a.shape[1]})"
            )
        raise CompileError(
            f"{what} holds kernels of {kh}×{kw} (array {_shape(a)}); the bench compiles square "
            f"K×K kernels in the layout C_out×C_in×K×K{hint}"
        )
    if kh < 1 or c_out < 1:
        raise CompileError(f"{what} holds an empty bank (array {_shape(a)})")
    if c_in != 1:
        raise CompileError(
            f"{what} holds {c_out} kernels of {c_in} input channels ({_shape(a)}"
            f"{', an RGB first layer?' if c_in == 3 else ''}); the 4f bench shows one intensity image, so a bank has "
            "one input channel: for grayscale inputs sum the kernels over their input channels "
            "(w.sum(axis=1, keepdims=True)), or compile each input channel's slice w[:, [c]] as its own bank"
        )
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise CompileError(
            f"{what} holds {int(np.count_nonzero(~np.isfinite(a)))} NaN/inf values; fix the bank"
        )
    return np.ascontiguousarray(a)


def _is_kernel_shaped(a: Any) -> bool:
    s = np.shape(a)
    return len(s) in (3, 4) and s[-1] == s[-2] and s[-1] >= 1


def is_torchscript(path: Path) -> bool:
    """A ``torch.jit.save`` archive: a zip with ``…/constants.pkl`` and ``…/code/``."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
    return any(n.endswith("/constants.pkl") for n in names) and any("/code/" in n for n in names)


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, tensor) of a (nested) dict of tensors, in the dict's order."""
    import torch

    out: list[tuple[str, Any]] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _flatten(v, f"{prefix}{k}." if isinstance(v, dict) else f"{prefix}{k}")
    elif isinstance(obj, torch.Tensor):
        out.append((prefix.rstrip("."), obj))
    return out


def _pick(
    tensors: list[tuple[str, Any]], layer: str | None, what: str
) -> tuple[str, Any, list[str]]:
    """The named tensor (``layer`` or ``layer.weight``, or the one key ending so), else the first 4-D ``weight``."""
    convs = [(k, v) for k, v in tensors if np.ndim(v) == 4 and (k.endswith("weight") or k == "")]
    names = [k for k, _ in convs]
    if layer is not None:
        for wanted in (layer, f"{layer}.weight"):
            hit = [(k, v) for k, v in tensors if k == wanted]
            if hit:
                return hit[0][0], hit[0][1], names
        ending = [(k, v) for k, v in tensors if k.endswith((f".{layer}.weight", f".{layer}"))]
        if len(ending) == 1:
            return ending[0][0], ending[0][1], names
        listed = ", ".join(names[:12]) + (" …" if len(names) > 12 else "")
        if len(ending) > 1:
            raise CompileError(
                f"{what}: --layer {layer!r} matches "
                + ", ".join(k for k, _ in ending)
                + "; pass the full name"
            )
        raise CompileError(
            f"{what} has no layer {layer!r}"
            + (
                f"; its conv weights are: {listed}"
                if names
                else f"; it holds {len(tensors)} tensors and no 4-D conv weight"
            )
        )
    if not convs:
        shapes = ", ".join(f"{k} ({_shape(v)})" for k, v in tensors[:8]) + (
            " …" if len(tensors) > 8 else ""
        )
        raise CompileError(
            f"{what} holds no 4-D conv weight (C_out×C_in×K×K)"
            + (f": {shapes}" if tensors else ": no tensors at all")
            + f"; pass {ACCEPTED}"
        )
    return convs[0][0], convs[0][1], names


def _from_torchscript(path: Path, layer: str | None) -> tuple[np.ndarray, dict[str, Any]]:
    import torch

    try:
        module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:  # a damaged archive, or one of a newer torch
        raise CompileError(
            f"{path} looks like a TorchScript module but does not load ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:200]})"
        ) from None
    convs = [
        (name, m)
        for name, m in module.named_modules()
        if getattr(m, "original_name", "") == "Conv2d"
    ]
    if layer is not None:
        tensors = [(k, v) for k, v in module.state_dict().items()]
        key, value, _ = _pick(tensors, layer, f"TorchScript module {path}")
        return value.detach().cpu().numpy(), {"layer": key, "conv_layers": [n for n, _ in convs]}
    if not convs:
        key, value, names = _pick(
            list(module.state_dict().items()), None, f"TorchScript module {path}"
        )
        return value.detach().cpu().numpy(), {"layer": key, "conv_layers": names}
    name, conv = convs[0]
    return conv.weight.detach().cpu().numpy(), {
        "layer": f"{name}.weight",
        "conv_layers": [n for n, _ in convs],
    }


def read_torch(path: Path) -> Any:
    """``torch.load(weights_only=True)``, its refusals turned into advice."""
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        text = str(exc)
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
        if found:
            raise CompileError(
                f"{path} holds pickled Python objects ({found.group(1)}; a whole model saved with "
                "torch.save(model)?), which lab4f does not unpickle (that could run code): save model.state_dict(), "
                "or a TorchScript module (torch.jit.script(model).save(...)), or the kernels as a .npy"
            ) from None
        why = (
            "an unknown pickle"
            if "Weights only load failed" in text
            else f"{type(exc).__name__}: {text.splitlines()[0][:160] if text else ''}"
        )
        raise CompileError(
            f"{path} is not a file lab4f can read ({why}); pass {ACCEPTED}"
        ) from None


def is_lab4f_checkpoint(payload: Any) -> bool:
    from lab4f.checkpoint import FORMAT

    return isinstance(payload, dict) and payload.get("format") == FORMAT


def load_bank(
    path: str | os.PathLike[str], layer: str | None = None, payload: Any = None
) -> LoadedBank:
    """The kernel bank in a foreign file (see the module docstring); ``payload``: the file's ``torch.load``
    result when the caller already read it."""
    path = Path(path)
    if path.is_dir():
        raise CompileError(f"{path} is a folder; pass a kernel bank file: {ACCEPTED}")
    if not path.is_file():
        raise CompileError(f"kernel bank {path} does not exist")
    suffix = path.suffix.lower()
    source: dict[str, Any] = {"bank": str(path), "kind": "bank"}
    if suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            if "allow_pickle" in str(exc):
                raise CompileError(
                    f"{path} holds Python objects (a pickled object array), not numbers; save the "
                    "kernels as a numeric array (np.save(path, w.astype(np.float32)))"
                ) from None
            raise CompileError(f"{path} is not a readable .npy file ({exc})") from None
        except OSError as exc:
            raise CompileError(f"{path} is not a readable .npy file ({exc})") from None
        return LoadedBank(
            bank_from_array(array, str(path)),
            source | {"format": "npy", "shape": list(array.shape)},
        )
    if suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = [(k, z[k]) for k in z.files]
        except (ValueError, OSError, zipfile.BadZipFile) as exc:
            raise CompileError(
                f"{path} is not a readable .npz file of numeric arrays ({exc})"
            ) from None
        if layer is not None:
            found = [(k, a) for k, a in arrays if k == layer]
            if not found:
                raise CompileError(
                    f"{path} has no array {layer!r}; it holds "
                    + ", ".join(f"{k} ({_shape(a)})" for k, a in arrays)
                )
            key, array = found[0]
        else:
            shaped = [(k, a) for k, a in arrays if _is_kernel_shaped(a)] or [
                (k, a) for k, a in arrays if np.ndim(a) == 2 and np.shape(a)[0] == np.shape(a)[1]
            ]
            if not shaped:
                listed = ", ".join(f"{k} ({_shape(a)})" for k, a in arrays) or "no arrays"
                raise CompileError(
                    f"{path} holds no array of a kernel bank's shape (C_out×1×K×K or C×K×K): "
                    f"{listed}",
                    fix=Fix("choose_layer"),
                )
            key, array = shaped[0]
        return LoadedBank(
            bank_from_array(array, f"{path}[{key}]"),
            source
            | {
                "format": "npz",
                "layer": key,
                "shape": list(np.shape(array)),
                "arrays": [k for k, _ in arrays],
            },
        )
    if is_torchscript(path):
        array, info = _from_torchscript(path, layer)
        return LoadedBank(
            bank_from_array(array, f"{path} ({info['layer']})"),
            source | {"format": "torchscript", "shape": list(array.shape), **info},
        )
    if payload is None:
        payload = read_torch(path)
    import torch

    if is_lab4f_checkpoint(payload):
        raise CompileError(f"{path} is a lab4f checkpoint; compile it with lab4f.bench.compile")
    if isinstance(payload, torch.Tensor):
        if layer is not None:
            raise CompileError(
                f"{path} holds one tensor ({_shape(payload)}), not named layers; omit --layer"
            )
        array = payload.detach().cpu().numpy()
        return LoadedBank(
            bank_from_array(array, str(path)),
            source | {"format": "tensor", "shape": list(array.shape)},
        )
    if not isinstance(payload, dict):
        raise CompileError(
            f"{path} holds a {type(payload).__name__}, not a state dict or tensor; pass {ACCEPTED}"
        )
    tensors = _flatten(payload)
    key, value, names = _pick(tensors, layer, str(path))
    array = value.detach().cpu().numpy()
    return LoadedBank(
        bank_from_array(array, f"{path} ({key})"),
        source
        | {"format": "state_dict", "layer": key, "shape": list(array.shape), "conv_layers": names},
    )
