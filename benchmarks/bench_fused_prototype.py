"""Prototype, not used by the pipeline: feature extraction fused with the back end's BatchNorm and pooling.

Everything from the camera frame to the back end's pooled features is linear (dark/flat, bilinear tile sampling,
k⁺ − k⁻, per-tile filters, eval-mode BatchNorm, adaptive average pooling), so it is ONE sparse matrix W
(C·pool² × camera pixels under the tiles) plus a bias. This script builds W exactly (autograd through the real
FeatureExtractor and BackEnd, checked against them), then times, side by side in one run, what a fused pipeline
would cost per frame against what the pipeline does now:

- now: extraction (``FeatureExtractor``) + BatchNorm + pool, and the whole back end (features → logits);
- fused: the sparse product on pixel-major frames (MKL via ``torch.sparse``), and the transposes that get
  frames (B, H, W) into the pixel-major layout it needs;
- fused without a transpose (only when numba is installed; it is not a lab4f dependency): a JIT kernel that
  reads the uint16 frames directly, one 16-pixel row segment of each output's camera footprint at a time.

It answers whether fusion could bring extraction within 20 % of the back end (issue 5's target). It measures
the same 64-tile, 512² set-up as ``bench_pipeline.py``.

Run: .venv/bin/python benchmarks/bench_fused_prototype.py [--json] [--no-filters]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_pipeline import BATCH, _interleaved_min, setup  # noqa: E402


def fused_operator(extractor, back_net, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """(W sparse CSR (O, P) over the extractor's crop, bias (O,)) with pooled = W · crop_pixels + bias.

    Built a chunk of rows at a time (a dense W would take O·P·4 bytes, ~440 MB here)."""
    y0, y1, x0, x1 = extractor.crop_box
    h, w = y1 - y0, x1 - x0
    bn_pool = torch.nn.Sequential(back_net[0], back_net[1], back_net[2])  # BatchNorm, pool, flatten (eval mode)

    def pooled(crops: torch.Tensor) -> torch.Tensor:  # (m, h, w) raw crop pixels → (m, O), differentiable
        return bn_pool(_features_autograd(extractor, crops[None]))

    bias = pooled(torch.zeros((1, h, w)))[0].detach()
    out_dim = bias.numel()
    index, values = [], []
    for start in range(0, out_dim, chunk):
        m = min(chunk, out_dim - start)
        leaf = torch.zeros((m, h, w), requires_grad=True)
        out = pooled(leaf)
        cot = torch.zeros_like(out)
        cot[torch.arange(m), torch.arange(start, start + m)] = 1.0
        (grad,) = torch.autograd.grad(out, leaf, cot)
        grad = grad.reshape(m, h * w)
        nz = grad.nonzero()
        values.append(grad[nz[:, 0], nz[:, 1]])
        index.append(nz.T + torch.tensor([[start], [0]]))
    coo = torch.sparse_coo_tensor(torch.cat(index, 1), torch.cat(values), (out_dim, h * w),
                                  check_invariants=True).coalesce()
    return coo.to_sparse_csr(), bias


def window_segments(W_csr: torch.Tensor, crop_width: int, width: int = 16) -> tuple[np.ndarray, ...]:
    """W's rows as row segments of ``width`` camera pixels: (segment pointer per output, crop row, crop column,
    weights (S, width)). A row's non-zeros split where they jump (the k⁺ and k⁻ tiles share camera rows)."""
    crow, col, val = (W_csr.crow_indices().numpy(), W_csr.col_indices().numpy(), W_csr.values().numpy())
    ptr, rows, cols, weights = [0], [], [], []
    for o in range(W_csr.shape[0]):
        c, v = col[crow[o] : crow[o + 1]], val[crow[o] : crow[o + 1]]
        order = np.lexsort((c % crop_width, c // crop_width))
        r, x, v = c[order] // crop_width, c[order] % crop_width, v[order]
        cuts = np.flatnonzero((np.diff(r) != 0) | (np.diff(x) > 4)) + 1
        for rr, xx, vv in zip(np.split(r, cuts), np.split(x, cuts), np.split(v, cuts), strict=True):
            while len(xx):  # a run longer than ``width`` becomes several segments
                m = xx < xx[0] + width
                seg = np.zeros(width, np.float32)
                seg[xx[m] - xx[0]] = vv[m]
                rows.append(rr[0]), cols.append(xx[0]), weights.append(seg)
                rr, xx, vv = rr[~m], xx[~m], vv[~m]
        ptr.append(len(rows))
    return (np.asarray(ptr, np.int64), np.asarray(rows, np.int64), np.asarray(cols, np.int64),
            np.stack(weights))


def numba_window_kernel():  # noqa: ANN201
    """The segment kernel, JIT-compiled, or None without numba."""
    try:
        import numba
    except ImportError:
        return None
    u = np.uint64

    @numba.njit(fastmath=True, boundscheck=False)
    def kernel(frames, frame_px, ptr, base, weights, bias, out):  # noqa: ANN001, ANN202
        width = weights.shape[1]
        acc = np.zeros(width, np.float32)
        for o in range(out.shape[1]):
            for b in range(out.shape[0]):
                fb = u(b) * u(frame_px)
                acc[:] = 0.0
                for s in range(ptr[o], ptr[o + 1]):
                    at = fb + u(base[s])
                    for k in range(u(width)):
                        acc[k] += weights[s, k] * np.float32(frames[at + k])
                out[b, o] = acc.sum() + bias[o]

    return kernel


def _features_autograd(ex, crop: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    """The extractor's _features without its in-place and out= ops (single-frame programs)."""
    import torch.nn.functional as F

    if ex._inv_flat is not None:
        crop = crop * ex._inv_flat
    b, n, c = crop.shape[1], ex.input_size, ex.channels
    tiles = F.grid_sample(crop, ex._grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if ex._dw is None:
        tiles = tiles.view(b, 2, c, n, n)
        return ex._const + tiles[:, 0] * ex._w_pos + tiles[:, 1] * ex._w_neg
    tiles = tiles.view(b, n, n, 2 * c).permute(0, 3, 1, 2)
    filtered = F.conv2d(tiles, ex._dw, padding=ex._dw.shape[-1] // 2, groups=2 * c)
    return filtered[:, :c] + filtered[:, c:] + ex._const


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-filters", action="store_true", help="scalar channel gains instead of 5×5 filters")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    student, extractor, frames = setup(per_tile_filters=not args.no_filters)
    back = student.back.net
    batch = frames[:BATCH]
    t0 = time.perf_counter()
    with torch.no_grad():
        reference = torch.nn.Sequential(back[0], back[1], back[2])(extractor(batch))
    W_csr, bias = fused_operator(extractor, back)
    build_s = time.perf_counter() - t0
    y0, y1, x0, x1 = extractor.crop_box
    crop = torch.from_numpy(batch[:, y0:y1, x0:x1].astype(np.float32)).reshape(BATCH, -1)
    pix_major = crop.T.contiguous()
    fused = torch.addmm(bias[:, None], W_csr, pix_major).T
    rel_err = float((fused - reference).abs().max() / reference.abs().max())
    float_crop = torch.empty((BATCH, y1 - y0, x1 - x0))
    frames_t = torch.from_numpy(batch)

    def convert() -> None:
        float_crop.copy_(frames_t[:, y0:y1, x0:x1])

    fns = {}
    kernel = numba_window_kernel()
    if kernel is not None:
        ptr, rows, cols, seg_w = window_segments(W_csr, x1 - x0)
        width = seg_w.shape[1]
        # a compact uint16 copy of the crop (rows padded so a segment never runs off a row)
        crop_u16 = np.zeros((BATCH, y1 - y0, x1 - x0 + width), np.uint16)
        base = (rows * crop_u16.shape[2] + cols).astype(np.uint64)
        window_out = np.zeros((BATCH, W_csr.shape[0]), np.float32)
        bias_np = bias.numpy().astype(np.float32)

        def copy_crop_u16() -> None:
            crop_u16[:, :, : x1 - x0] = batch[:, y0:y1, x0:x1]

        def window() -> None:
            kernel(crop_u16.reshape(-1), crop_u16[0].size, ptr, base, seg_w, bias_np, window_out)

        copy_crop_u16()
        window()  # compiles
        window_err = float(np.abs(window_out - reference.numpy()).max() / reference.abs().max())
        fns.update(copy_crop_u16=copy_crop_u16, fused_window_numba=window)
    with torch.inference_mode():
        features = extractor(batch)
        t = _interleaved_min(fns | {
            "back_end": lambda: back(features),
            "bn_pool": lambda: back[2](back[1](back[0](features))),
            "extract": lambda: extractor(batch),
            "fused_spmm": lambda: torch.addmm(bias[:, None], W_csr, pix_major),
            "convert_crop": convert,
            "transpose_channels_last": lambda: float_crop[None].contiguous(memory_format=torch.channels_last),
            "transpose_plain": lambda: float_crop.view(BATCH, -1).T.contiguous(),
        }, args.repeats, rounds=5)
    us = {k: v[0] / BATCH * 1e6 for k, v in t.items()}
    fused_total = us["convert_crop"] + us["transpose_channels_last"] + us["fused_spmm"]
    mlp = us["back_end"] - us["bn_pool"]
    window_total = us["copy_crop_u16"] + us["fused_window_numba"] if kernel is not None else None
    result = {
        "filters": not args.no_filters, "nnz": int(W_csr.values().numel()), "outputs": int(W_csr.shape[0]),
        "crop_pixels": int(W_csr.shape[1]), "build_s": build_s, "max_rel_error": rel_err, "us_per_frame": us,
        "now_overhead": (us["extract"] + us["back_end"]) / us["back_end"] - 1,
        "fused_overhead": (fused_total + mlp) / us["back_end"] - 1,
        "numba_window_overhead": None if window_total is None else (window_total + mlp) / us["back_end"] - 1,
        "numba_window_max_rel_error": None if kernel is None else window_err,
    }
    if args.json:
        print(json.dumps(result))
        return
    print(f"fused operator: {result['outputs']} pooled outputs × {result['crop_pixels']} crop pixels, "
          f"{result['nnz']} non-zeros ({'5×5 per-tile filters' if result['filters'] else 'scalar gains'}), "
          f"built in {build_s:.1f} s, max relative error vs extractor + BatchNorm + pool {rel_err:.1e}")
    for k, v in us.items():
        print(f"  {k:26s} {v:8.1f} µs/frame")
    print(f"  now:   extraction + back end = {us['extract'] + us['back_end']:.1f} µs/frame, "
          f"{100 * result['now_overhead']:.0f} % over the back end alone")
    print(f"  fused: convert + transpose + sparse product + MLP = {fused_total + mlp:.1f} µs/frame, "
          f"{100 * result['fused_overhead']:.0f} % over the back end alone (target ≤ 20 %)")
    if kernel is None:
        print("  fused without a transpose: skipped (numba is not installed; `pip install numba` to measure it)")
    else:
        print(f"  fused without a transpose (numba, {len(base)} 16-pixel segments, max relative error "
              f"{window_err:.1e}): copy + kernel + MLP = {window_total + mlp:.1f} µs/frame, "
              f"{100 * result['numba_window_overhead']:.0f} % over the back end alone (target ≤ 20 %)")


if __name__ == "__main__":
    main()
