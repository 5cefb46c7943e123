"""Camera frames → logits with feature extraction fused into the back end's first layers.

Everything from the camera pixels to the back end's pooled features is linear: dark subtraction, flat-field
division, bilinear tile sampling with the calibrated registration, k⁺ − k⁻ with the tile gains, the per-tile
filters, the resize onto the back end's grid, eval-mode BatchNorm and adaptive average pooling. So every pooled
feature is a weighted sum of the camera pixels under its two tiles plus a constant, and the whole extraction is
one sparse operator: 1152 outputs × ~95,000 camera pixels with ~220,000 weights for the default 32-channel
student at 512² — against ~25,000 feature-map values × ~70 weights each if the feature maps were made first.

:class:`FusedHead` builds that operator exactly, once per extractor, by differentiating the real
:class:`~lab4f.bench.extract.FeatureExtractor` (so it cannot drift from it), cuts each output's camera footprint
into 16-pixel row segments, and evaluates it with a small C kernel (``lab4f/_fused.c``, built at install) that
reads the uint16 frames in place. The BatchNorm is applied as a per-output scale and bias at call time, so a
back end retrained by fine-tuning needs no rebuild. The rest of the back end (its Linear layers) runs in torch.

The feature maps themselves are still made by the extractor where they are wanted (run files' samples, fine-tuning,
the GUI's feature view); the fused path is only the frames → logits hot path of a run.
"""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import os
from collections.abc import Sequence
from functools import lru_cache

import numpy as np
import torch
import torch.nn as nn

from lab4f.bench.extract import FeatureExtractor

log = logging.getLogger(__name__)

SEGMENT = 16  # pixels per row segment; the C kernel's vector width
_DISABLE_ENV = "LAB4F_NO_FUSED"
_NOT_FUSABLE = "the back end does not start with an eval-mode BatchNorm → average pooling"


@lru_cache(maxsize=1)
def kernel_library() -> ctypes.CDLL | None:
    """The compiled kernel (``lab4f._fusedk``), or None when the package was installed without a C compiler."""
    spec = importlib.util.find_spec("lab4f._fusedk")
    if spec is None or not spec.origin:
        return None
    lib = ctypes.CDLL(spec.origin)
    if lib.lab4f_fused_segment_width() != SEGMENT:
        raise ImportError(f"{spec.origin} was built for another segment width; reinstall lab4f")
    args = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 6
    lib.lab4f_fused_u16.restype, lib.lab4f_fused_u16.argtypes = None, args
    lib.lab4f_fused_u16_isa.restype, lib.lab4f_fused_u16_isa.argtypes = (
        ctypes.c_int,
        [ctypes.c_int, *args],
    )
    return lib


ISAS = {"avx512": 3, "avx2": 2, "portable": 1}


def kernel_isa() -> str | None:
    """Which kernel this CPU runs: "avx512", "avx2" (with FMA), "portable" (plain C), or None (not built)."""
    lib = kernel_library()
    return None if lib is None else {v: k for k, v in ISAS.items()}[lib.lab4f_fused_isa()]


def kernel_available() -> bool:
    return kernel_library() is not None


def fusable(back: nn.Module) -> bool:
    """Whether ``back`` starts BatchNorm2d (eval mode, running statistics) → AdaptiveAvgPool2d → Flatten."""
    net = getattr(back, "net", None)
    if not isinstance(net, nn.Sequential) or len(net) < 4:
        return False
    bn, pool, flat = net[0], net[1], net[2]
    return (
        isinstance(bn, nn.BatchNorm2d)
        and not bn.training
        and bn.track_running_stats
        and bn.running_mean is not None
        and isinstance(pool, nn.AdaptiveAvgPool2d)
        and isinstance(flat, nn.Flatten)
    )


def _pool_size(back: nn.Module) -> tuple[int, int]:
    size = back.net[1].output_size
    size = (size, size) if isinstance(size, int) else tuple(size)
    if None in size:
        raise ValueError("an AdaptiveAvgPool2d with a None output size cannot be fused")
    return int(size[0]), int(size[1])


def pooled_operator(
    extractor: FeatureExtractor, pool: tuple[int, int], chunk: int = 64, chunk_bytes: float = 128e6
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The extractor followed by average pooling, as (row pointer, frame offset, weight, constant).

    Output o (channel-major, C·ph·pw of them) = Σ weight · pixel[frame offset] over its row + constant[o], with
    frame offsets into one input's (F, H, W) camera frames. Built by differentiating the extractor a chunk of
    outputs at a time (the map is linear, so the gradient is the operator row, exactly): at most ``chunk``, fewer
    where their crops would pass ``chunk_bytes`` (a large camera region)."""
    y0, y1, x0, x1 = extractor.crop_box
    h, w = y1 - y0, x1 - x0
    cam_h, cam_w = extractor.camera_shape
    f_n = extractor.frames
    pool_fn = nn.AdaptiveAvgPool2d(pool)
    chunk = max(1, min(chunk, int(chunk_bytes // (4 * f_n * h * w))))

    def pooled(crop: torch.Tensor) -> torch.Tensor:  # (F, m, h, w) → (m, O), differentiable
        return pool_fn(extractor._resize(extractor._features(crop.clone()))).flatten(1)

    with torch.enable_grad():
        constant = pooled(torch.zeros((f_n, 1, h, w)))[0].detach()
        out_n = constant.numel()
        rows, cols, vals = [], [], []
        for start in range(0, out_n, chunk):
            m = min(chunk, out_n - start)
            leaf = torch.zeros((f_n, m, h, w), requires_grad=True)
            out = pooled(leaf)
            cot = torch.zeros_like(out)
            cot[torch.arange(m), torch.arange(start, start + m)] = 1.0
            (grad,) = torch.autograd.grad(out, leaf, cot)
            grad = grad.transpose(0, 1).reshape(m, -1)
            r, c = grad.nonzero(as_tuple=True)
            rows.append(r + start), cols.append(c), vals.append(grad[r, c])
    row = torch.cat(rows).numpy()
    col = torch.cat(cols).numpy()
    # crop index (f, r, c) → offset into one input's contiguous (F, H, W) frames
    f, rc = np.divmod(col, h * w)
    r, c = np.divmod(rc, w)
    offset = f * (cam_h * cam_w) + (y0 + r) * cam_w + (x0 + c)
    order = np.lexsort((offset, row))
    ptr = np.zeros(out_n + 1, np.int64)
    np.cumsum(np.bincount(row, minlength=out_n), out=ptr[1:])
    return (
        ptr,
        offset[order].astype(np.int64),
        torch.cat(vals).numpy()[order].astype(np.float32),
        constant.numpy(),
    )


def segments(
    ptr: np.ndarray, offset: np.ndarray, weight: np.ndarray, frame_len: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each output's weights as 16-pixel segments: (segment pointer per output, start offset, weights (S, 16)).

    Greedy along each output's sorted offsets: a segment starts at the first pixel not yet covered and takes every
    weight in the next 16 pixels (pulled back at the end of the frame so it never reads past it). A tile row of
    ~38 pixels becomes 3 segments; cutting at fixed 16-pixel boundaries instead would need half as many again."""
    if frame_len < SEGMENT:
        raise ValueError(
            f"camera frames of {frame_len} pixels are shorter than one {SEGMENT}-pixel segment"
        )
    out_n = len(ptr) - 1
    seg_ptr = np.zeros(out_n + 1, np.int64)
    starts: list[int] = []
    firsts: list[int] = []  # index of each segment's first weight
    for o in range(out_n):
        lo, hi = int(ptr[o]), int(ptr[o + 1])
        offs = offset[lo:hi]
        i = 0
        while i < len(offs):
            s = min(int(offs[i]), frame_len - SEGMENT)
            j = int(np.searchsorted(offs, s + SEGMENT, side="left"))
            starts.append(s), firsts.append(lo + i)
            i = j
        seg_ptr[o + 1] = len(starts)
    start = np.asarray(starts, np.int64)
    seg_of = np.repeat(np.arange(len(starts)), np.diff(np.append(firsts, len(offset))))
    seg_w = np.zeros((len(starts), SEGMENT), np.float32)
    np.add.at(seg_w, (seg_of, offset - start[seg_of]), weight)
    return seg_ptr, start, seg_w


class FusedHead:
    """Frames → the back end's pooled features (then its remaining layers → logits), in one pass over the pixels.

    Build it once per extractor and pool size (a couple of seconds for the 512² default); it holds no back-end
    weights, so any back end with the same pooling can be evaluated through it.
    """

    def __init__(self, extractor: FeatureExtractor, pool: tuple[int, int]) -> None:
        lib = kernel_library()
        if lib is None:
            raise RuntimeError(
                "lab4f's C kernel is not built (no C compiler at install): reinstall with gcc present"
            )
        self._lib = lib
        self.extractor = extractor
        self.pool = pool
        self.frame_shape = (
            (extractor.frames, *extractor.camera_shape)
            if extractor.frames > 1
            else extractor.camera_shape
        )
        frame_len = int(np.prod(self.frame_shape))
        ptr, offset, weight, self.constant = pooled_operator(extractor, pool)
        self.nnz = len(weight)
        self.seg_ptr, self.seg_start, self.seg_w = segments(ptr, offset, weight, frame_len)
        self.outputs = len(ptr) - 1
        self.per_output = pool[0] * pool[1]
        self._fold: tuple[tuple, tuple[np.ndarray, np.ndarray]] | None = (
            None  # (BatchNorm key, (scale, bias))
        )
        self.refusal: str | None = (
            None  # why the last call that returned None could not use the kernel
        )

    @property
    def segment_count(self) -> int:
        return len(self.seg_start)

    def _pointers(self, frames: np.ndarray | Sequence[np.ndarray]) -> tuple[np.ndarray, list] | str:
        """Frame base addresses (and what keeps them alive), or why the kernel cannot read these frames."""
        want = f"uint16 frames of shape {self.frame_shape}, each C-contiguous"
        if isinstance(frames, torch.Tensor):
            if frames.device.type != "cpu" or frames.dtype != torch.uint16:
                return f"the frames are a {frames.dtype} tensor on {frames.device.type}; the kernel reads {want}"
            frames = frames.numpy()
        if isinstance(frames, np.ndarray):
            if frames.dtype != np.uint16 or frames.shape[1:] != self.frame_shape:
                return f"the frames are {frames.dtype} {frames.shape[1:]}; the kernel reads {want}"
            if len(frames) and (not frames[0].flags.c_contiguous or frames.strides[0] < 0):
                return f"the frames are not laid out as the kernel reads them ({want}, in order)"
            ptrs = frames.ctypes.data + np.arange(len(frames), dtype=np.uintp) * np.uintp(
                frames.strides[0]
            )
            return ptrs.astype(np.uintp), [frames]
        views = [np.asarray(f) for f in frames]
        bad = next(
            (
                v
                for v in views
                if v.dtype != np.uint16 or v.shape != self.frame_shape or not v.flags.c_contiguous
            ),
            None,
        )
        if bad is not None:
            return (
                f"a frame is {bad.dtype} {bad.shape}{'' if bad.flags.c_contiguous else ', not contiguous'}; "
                f"the kernel reads {want}"
            )
        return np.array([v.ctypes.data for v in views], dtype=np.uintp), views

    def pooled(
        self,
        frames: np.ndarray | Sequence[np.ndarray],
        scale: np.ndarray | torch.Tensor | None = None,
        bias: np.ndarray | torch.Tensor | None = None,
        isa: str | None = None,
    ) -> torch.Tensor | None:
        """(B, outputs) = scale · (operator · frame) + bias (defaults: the pooled features themselves), or None when
        the frames are not uint16 arrays of the camera's shape (the caller then takes the extractor's path).
        ``isa`` ("avx512", "avx2", "portable") runs that kernel instead of the best this CPU has (ValueError if the
        CPU cannot run it)."""
        got = self._pointers(frames)
        if isinstance(got, str):
            self.refusal = got
            return None
        ptrs, keep = got
        b = len(ptrs)
        out = torch.empty((b, self.outputs), dtype=torch.float32)
        if b == 0:
            return out
        scale = (
            np.ones(self.outputs, np.float32) if scale is None else np.asarray(scale, np.float32)
        )
        bias = self.constant if bias is None else np.asarray(bias, np.float32)
        scale, bias = np.ascontiguousarray(scale.ravel()), np.ascontiguousarray(bias.ravel())
        if scale.shape != (self.outputs,) or bias.shape != (self.outputs,):
            raise ValueError(
                f"scale and bias need one value per output ({self.outputs}), got {scale.shape} and "
                f"{bias.shape}"
            )
        args = (
            ptrs.ctypes.data,
            b,
            self.outputs,
            self.seg_ptr.ctypes.data,
            self.seg_start.ctypes.data,
            self.seg_w.ctypes.data,
            scale.ctypes.data,
            bias.ctypes.data,
            out.data_ptr(),
        )
        if isa is None:
            self._lib.lab4f_fused_u16(*args)
        elif self._lib.lab4f_fused_u16_isa(ISAS[isa], *args) != 0:
            raise ValueError(f"this CPU cannot run the {isa} kernel")
        del keep
        return out

    def bn_fold(self, bn: nn.BatchNorm2d) -> tuple[np.ndarray, np.ndarray]:
        """Per-output (scale, bias) applying the eval-mode BatchNorm ``bn`` to the pooled extractor outputs."""
        with torch.no_grad():
            inv = torch.rsqrt(bn.running_var + bn.eps)
            s = inv * bn.weight if bn.affine else inv
            shift = (bn.bias if bn.affine else 0) - bn.running_mean * s
            s = s.repeat_interleave(self.per_output).numpy()
            shift = shift.repeat_interleave(self.per_output).numpy()
        return s.astype(np.float32), (s * self.constant + shift).astype(np.float32)

    def logits(
        self, frames: np.ndarray | Sequence[np.ndarray], back: nn.Module
    ) -> torch.Tensor | None:
        """The back end's output for camera frames, or None when this head cannot evaluate them (``refusal`` then
        says why)."""
        if not fusable(back):
            self.refusal = _NOT_FUSABLE
            return None
        if (
            _pool_size(back) != self.pool
            or back.net[0].num_features * self.per_output != self.outputs
        ):
            self.refusal = (
                f"the back end pools {back.net[0].num_features} channels to {_pool_size(back)}; this "
                f"head was built for {self.outputs // self.per_output} channels pooled to {self.pool}"
            )
            return None
        bn = back.net[0]
        # a tensor's identity, storage and version counter: in-place updates, load_state_dict and .data = … all show
        key = tuple(
            (id(t), t.data_ptr(), t._version)
            for t in (bn.weight, bn.bias, bn.running_mean, bn.running_var)
            if t is not None
        ) + (bn.eps,)
        cached = (
            self._fold
        )  # one reference read and written whole: safe if two threads share the head
        if (
            cached is None or cached[0] != key
        ):  # a retrained or reloaded BatchNorm changes a version counter
            cached = self._fold = (key, self.bn_fold(bn))
        pooled = self.pooled(frames, *cached[1])
        return None if pooled is None else back.net[3:](pooled)


def why_not_fused(back: nn.Module) -> str | None:
    """Why frames cannot go through a fused head to ``back`` at all, or None if they can."""
    if os.environ.get(_DISABLE_ENV, "") not in ("", "0"):
        return f"it is switched off ({_DISABLE_ENV})"
    if not kernel_available():
        return "lab4f's C kernel is not built (reinstall with a C compiler present)"
    if not fusable(back):
        return _NOT_FUSABLE
    return None


def fused_head_for(extractor: FeatureExtractor, back: nn.Module) -> FusedHead | None:
    """The extractor's fused head for this back end (built once and kept on the extractor), or None when
    :func:`why_not_fused` gives a reason."""
    if why_not_fused(back) is not None:
        return None
    pool = _pool_size(back)
    cache = extractor.__dict__.setdefault("_fused_heads", {})
    if pool not in cache:
        cache[pool] = FusedHead(extractor, pool)
        head = cache[pool]
        log.info(
            "fused extraction: %d outputs, %d weights in %d segments",
            head.outputs,
            head.nnz,
            head.segment_count,
        )
    return cache[pool]
