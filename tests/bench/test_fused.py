"""The fused frames → pooled features kernel against the feature extractor + BatchNorm + pooling it replaces."""

import os

import numpy as np
import pytest
import torch

from lab4f.bench.extract import FeatureExtractor
from lab4f.bench.fused import FusedHead, fused_head_for, kernel_available, kernel_isa, segments
from lab4f.bench.hybrid import HybridSetup
from lab4f.models import BackEnd, ModelConfig
from lab4f.optics import FourfGeometry, compile_bank
from lab4f.optics.registration import PlaneToCamera
from lab4f.spectral import KernelBank

CAMERA = (150, 170)


@pytest.fixture(scope="module")
def bank() -> KernelBank:
    g = torch.Generator().manual_seed(1)
    return KernelBank(torch.randn(4, 1, 5, 5, generator=g))


def back_end(seed: int = 0) -> BackEnd:
    torch.manual_seed(seed)
    back = BackEnd(4, ModelConfig(kind="student", widths=(4,), num_classes=10))
    bn = back.net[0]
    with torch.no_grad():  # BatchNorm statistics far from identity, so a wrong fold shows
        bn.running_mean.uniform_(-2, 2), bn.running_var.uniform_(0.5, 3)
        bn.weight.uniform_(0.5, 2), bn.bias.uniform_(-1, 1)
    return back.eval()


def extractor(
    bank: KernelBank, multiplex: str = "never", filters: bool = True, output_size: int | None = None
) -> FeatureExtractor:
    prog = compile_bank(
        bank, 12, FourfGeometry(slm_shape=(128, 128)), modulation="complex", multiplex=multiplex
    )
    rng = np.random.default_rng(3)
    t = np.deg2rad(1.3)
    reg = PlaneToCamera(
        1.07 * np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]]),
        [CAMERA[1] / 2 + 1.3, CAMERA[0] / 2 - 0.7],
    )
    filt = None
    if filters:
        filt = rng.normal(0, 0.1, (4, 2, 5, 5)).astype(np.float32)
        filt[:, :, 2, 2] += 1
    return FeatureExtractor.for_program(
        prog,
        reg,
        CAMERA,
        dark=100 + rng.normal(0, 2, CAMERA),
        flat=1 + rng.normal(0, 0.05, CAMERA),
        channel_filter=filt,
        channel_offset=rng.normal(0, 0.1, 4),
        output_size=output_size,
    )


def frames(ex: FeatureExtractor, n: int, seed: int = 4) -> np.ndarray:
    shape = (n, ex.frames, *CAMERA) if ex.frames > 1 else (n, *CAMERA)
    return np.random.default_rng(seed).integers(100, 4000, shape, dtype=np.uint16)


def cpu_has(isa: str) -> bool:
    flags = open("/proc/cpuinfo").read().split() if os.path.exists("/proc/cpuinfo") else []
    return {"avx512": "avx512f" in flags, "avx2": "avx2" in flags and "fma" in flags}[isa]


def relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


def test_the_kernel_is_built_by_the_install() -> None:
    assert kernel_available(), (
        "lab4f/_fused.c was not compiled: reinstall lab4f (`pip install -e .`) with gcc present"
    )
    isa = kernel_isa()
    assert isa == ("avx512" if cpu_has("avx512") else "avx2" if cpu_has("avx2") else "portable")
    print(f"fused kernel on this CPU: {isa}")


@pytest.mark.parametrize(
    ("multiplex", "filters", "output_size"),
    [("never", True, None), ("never", False, None), ("always", True, None), ("never", True, 16)],
)
def test_fused_logits_equal_extractor_then_back_end(
    bank: KernelBank, multiplex: str, filters: bool, output_size: int | None
) -> None:
    """Every kernel this CPU runs (AVX-512, AVX2 + FMA, portable C), for stacks of 1..9 frames (the kernel
    takes frames four at a time) and for a list of frames; two-frame programs, scalar gains and a resize included."""
    ex = extractor(bank, multiplex, filters, output_size)
    back = back_end()
    head = fused_head_for(ex, back)
    assert head is not None and head.outputs == 4 * 36
    x = frames(ex, 9)
    with torch.no_grad():
        want_pooled = back.net[2](back.net[1](back.net[0](ex(x))))
        want = back(ex(x))
        scale, bias = head.bn_fold(back.net[0])
        for isa in (None, "avx512", "avx2", "portable"):
            if isa in ("avx512", "avx2") and not cpu_has(isa):
                continue  # only where this CPU has the instructions (it is said in the test's output)
            for n in (1, 3, 4, 9):
                got = head.pooled(x[:n], scale, bias, isa=isa)
                assert relative_error(got, want_pooled[:n]) < 1e-5, (isa, n)
        assert relative_error(head.logits(x, back), want) < 1e-5
        assert relative_error(head.logits(list(x), back), want) < 1e-5
        # without a BatchNorm fold: the extractor's own pooled features
        plain = torch.nn.functional.adaptive_avg_pool2d(ex(x), 6).flatten(1)
        assert relative_error(head.pooled(x), plain) < 1e-5


def test_segments_rebuild_the_operator_up_to_the_last_pixel_of_the_frame() -> None:
    rng = np.random.default_rng(0)
    frame_len = 700
    rows = [
        np.unique(np.concatenate([rng.integers(0, frame_len, 40), [frame_len - 1, frame_len - 3]]))
        for _ in range(5)
    ]
    ptr = np.concatenate([[0], np.cumsum([len(r) for r in rows])])
    offset = np.concatenate(rows)
    weight = rng.normal(size=len(offset)).astype(np.float32)
    seg_ptr, start, seg_w = segments(ptr, offset, weight, frame_len)
    assert start.max() + 16 <= frame_len and start.min() >= 0
    dense = np.zeros((5, frame_len), np.float32)
    for o in range(5):
        for s in range(seg_ptr[o], seg_ptr[o + 1]):
            dense[o, start[s] : start[s] + 16] += seg_w[s]
    want = np.zeros((5, frame_len), np.float32)
    want[np.repeat(np.arange(5), np.diff(ptr)), offset] = weight
    np.testing.assert_array_equal(dense, want)
    assert len(start) < len(offset)  # segments gather neighbouring weights


def test_a_retrained_batchnorm_is_followed_without_a_rebuild(bank: KernelBank) -> None:
    ex, back = extractor(bank), back_end()
    head = fused_head_for(ex, back)
    x = frames(ex, 4)
    with torch.no_grad():
        head.logits(x, back)
        back.net[0].running_mean.add_(0.7)  # in place, as an optimiser step or load_state_dict does
        back.net[0].weight.mul_(1.5)
        assert relative_error(head.logits(x, back), back(ex(x))) < 1e-5
        back.net[0].running_var.data = (
            back.net[0].running_var * 3
        )  # a new tensor behind the same attribute
        assert relative_error(head.logits(x, back), back(ex(x))) < 1e-5
        other = back_end(seed=5)  # a different back end with the same pooling shares the head
        assert fused_head_for(ex, other) is head
        assert relative_error(head.logits(x, other), other(ex(x))) < 1e-5


def test_frames_the_kernel_cannot_read_take_the_extractor_path(
    bank: KernelBank, monkeypatch
) -> None:
    ex, back = extractor(bank), back_end()
    head = fused_head_for(ex, back)
    x = frames(ex, 4)
    assert head.pooled(x.astype(np.float32)) is None and "float32" in head.refusal
    assert head.pooled(x[:, :, ::2]) is None  # wrong shape
    assert head.pooled(np.asfortranarray(x[0])[None]) is None  # a frame that is not C-contiguous
    assert head.pooled(x[::-1]) is None and "in order" in head.refusal  # a negative frame stride
    assert head.pooled(list(x[:, ::-1])) is None and "not contiguous" in head.refusal
    with pytest.raises(ValueError, match="one value per output"):
        head.pooled(
            x, np.ones(4), np.zeros(4)
        )  # a per-channel scale would make the kernel read past it
    student = torch.nn.Module()
    student.back = back
    setup = HybridSetup(
        None,
        student,
        None,
        {},
        compile_bank(bank, 12, FourfGeometry(slm_shape=(128, 128)), modulation="complex"),
        ex,
    )
    with torch.no_grad():
        want = back(ex(x))
        assert relative_error(setup.logits(x[:, None]), want) < 1e-5
        assert relative_error(setup.logits(x[:, None].astype(np.float32)), want) < 1e-5
    assert setup.batches == {"fused": 1, "extractor": 1} and "float32" in setup.fallback_reason
    monkeypatch.setenv("LAB4F_NO_FUSED", "1")
    assert setup.fused_head() is None
    with torch.no_grad():
        assert relative_error(setup.logits(x[:, None]), want) < 1e-5
    assert setup.batches["extractor"] == 2


def test_back_ends_that_are_not_linear_up_to_pooling_are_not_fused(
    bank: KernelBank, monkeypatch
) -> None:
    import lab4f.bench.fused as fused

    ex = extractor(bank)
    assert (
        fused_head_for(ex, back_end().train()) is None
    )  # BatchNorm on batch statistics is not a fixed map
    assert fused_head_for(ex, torch.nn.Sequential(torch.nn.Conv2d(4, 2, 1))) is None
    monkeypatch.setattr(fused, "kernel_library", lambda: None)  # installed without a C compiler
    assert fused_head_for(extractor(bank), back_end()) is None
    with pytest.raises(RuntimeError, match="not built"):
        FusedHead(ex, (6, 6))


def test_the_operator_is_the_same_built_in_small_chunks(bank: KernelBank) -> None:
    """A large camera region is differentiated a few outputs at a time: the operator must not depend on it."""
    from lab4f.bench.fused import pooled_operator

    ex = extractor(bank)
    big = pooled_operator(ex, (6, 6))
    y0, y1, x0, x1 = ex.crop_box
    small = pooled_operator(
        ex, (6, 6), chunk_bytes=4 * 5 * (y1 - y0) * (x1 - x0)
    )  # five outputs per chunk
    for a, b in zip(big, small, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)
