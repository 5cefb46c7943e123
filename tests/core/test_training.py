"""KD loss math, seeded determinism, NaN early stop, exact resume, evaluation — on tiny digits8 runs."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lab4f.checkpoint import read_checkpoint
from lab4f.data import load_dataset
from lab4f.errors import ConfigError
from lab4f.training import TrainConfig, evaluate, kd_loss, model_config_for, train_model

SMALL = {"widths": (4, 8), "hidden": (32,)}


@pytest.fixture(scope="module")
def splits():
    return load_dataset("digits8", limit=600)  # 600 train / 179 val / 359 test


def _cfg(**kw) -> TrainConfig:
    base = {"epochs": 2, "batch_size": 32, "lr": 0.05, "seed": 3, "num_threads": 1}
    return TrainConfig(**(base | kw))


def _same_state(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# --- KD loss ---------------------------------------------------------------------------------------------


def test_kd_loss_is_cross_entropy_at_alpha_zero() -> None:
    g = torch.Generator().manual_seed(0)
    zs, zt = torch.randn(16, 10, generator=g), torch.randn(16, 10, generator=g)
    y = torch.randint(0, 10, (16,), generator=g)
    assert torch.allclose(kd_loss(zs, zt, y, T=10.0, alpha=0.0), F.cross_entropy(zs, y), atol=1e-7)


def test_kd_term_vanishes_when_student_equals_teacher() -> None:
    z = torch.randn(8, 10, generator=torch.Generator().manual_seed(1)) * 5
    y = torch.zeros(8, dtype=torch.long)
    assert abs(float(kd_loss(z, z.clone(), y, T=10.0, alpha=1.0))) < 1e-6


@pytest.mark.parametrize("T", [1.0, 4.0, 10.0])
def test_kd_term_is_T_squared_times_batch_mean_kl(T: float) -> None:
    g = torch.Generator().manual_seed(2)
    zs = torch.randn(5, 7, generator=g, dtype=torch.float64)
    zt = torch.randn(5, 7, generator=g, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)
    p_t, p_s = torch.softmax(zt / T, 1), torch.softmax(zs / T, 1)
    kl = float((p_t * (p_t.log() - p_s.log())).sum(1).mean())  # KL(p_t ‖ p_s), by hand
    assert float(kd_loss(zs, zt, y, T=T, alpha=1.0)) == pytest.approx(T * T * kl, rel=1e-10)
    mixed = float(kd_loss(zs, zt, y, T=T, alpha=0.3))
    assert mixed == pytest.approx(0.3 * T * T * kl + 0.7 * float(F.cross_entropy(zs, y)), rel=1e-10)


def test_kd_loss_gives_no_gradient_to_teacher() -> None:
    zs = torch.randn(4, 10, requires_grad=True)
    zt = torch.randn(4, 10, requires_grad=True)
    kd_loss(zs, zt, torch.zeros(4, dtype=torch.long)).backward()
    assert zt.grad is None and zs.grad is not None and float(zs.grad.abs().sum()) > 0


# --- the training loop -----------------------------------------------------------------------------------


def test_same_seed_gives_identical_weights_and_training_learns(splits) -> None:
    mcfg = model_config_for(splits, "teacher", **SMALL)
    a = train_model(mcfg, splits, _cfg(), progress=False)
    b = train_model(mcfg, splits, _cfg(), progress=False)
    c = train_model(mcfg, splits, _cfg(seed=4), progress=False)
    assert _same_state(a.model, b.model)
    assert a.history == b.history
    assert not _same_state(a.model, c.model)
    assert a.stopped_reason == "completed" and a.epochs_completed == 2
    assert a.history[-1]["train_loss"] < a.history[0]["train_loss"]
    assert a.last_val_accuracy > 0.6  # 10 classes: chance is 0.1; measured 0.87


def test_student_trains_by_kd_and_needs_teacher(splits) -> None:
    teacher = train_model(
        model_config_for(splits, "teacher", **SMALL), splits, _cfg(), progress=False
    ).model
    scfg = model_config_for(splits, "student", detection="incoherent", **SMALL)
    with pytest.raises(ConfigError, match="teacher"):
        train_model(scfg, splits, _cfg(), progress=False)
    before = [p.detach().clone() for p in teacher.parameters()]
    res = train_model(scfg, splits, _cfg(), teacher=teacher, progress=False)
    assert res.stopped_reason == "completed" and math.isfinite(res.history[-1]["train_loss"])
    assert all(
        torch.equal(p0, p1) for p0, p1 in zip(before, teacher.parameters(), strict=True)
    )  # frozen


def test_dataset_model_mismatch_is_a_config_error(splits) -> None:
    mcfg = model_config_for(splits, "teacher", **SMALL)
    mcfg.image_size = 28
    with pytest.raises(ConfigError, match="model_config_for"):
        train_model(mcfg, splits, _cfg(), progress=False)


def test_nonfinite_loss_stops_and_keeps_last_finite_checkpoint(splits, tmp_path: Path) -> None:
    """Weights blown up to inf after epoch 1 (as a divergence would) → stop in epoch 2, keep epoch 1."""
    ckpt = tmp_path / "t.pt"
    saved: dict[str, torch.Tensor] = {}

    def diverge(record, model):
        if record["epoch"] == 1:
            saved.update({k: v.clone() for k, v in model.state_dict().items()})
            with torch.no_grad():
                next(model.parameters()).fill_(float("inf"))

    res = train_model(
        model_config_for(splits, "teacher", **SMALL),
        splits,
        _cfg(epochs=3),
        checkpoint_path=ckpt,
        progress=False,
        on_epoch_end=diverge,
    )
    assert res.stopped_reason == "nonfinite_loss"
    assert "epoch 2, step 1" in res.stop_detail
    assert res.epochs_completed == 1 and len(res.history) == 1
    state = read_checkpoint(ckpt)
    assert state["train_state"]["epoch"] == 1
    assert all(torch.equal(state["state_dict"][k], saved[k]) for k in saved)
    assert all(torch.isfinite(v.float()).all() for v in state["state_dict"].values())
    assert all(torch.equal(v, saved[k]) for k, v in res.model.state_dict().items())  # in memory too


def test_absurd_lr_stops_in_first_epoch_without_checkpoint(splits, tmp_path: Path) -> None:
    ckpt = tmp_path / "t.pt"
    res = train_model(
        model_config_for(splits, "linear", **SMALL),
        splits,
        _cfg(lr=1e12),
        checkpoint_path=ckpt,
        progress=False,
    )
    assert res.stopped_reason == "nonfinite_loss" and "epoch 1" in res.stop_detail
    assert res.epochs_completed == 0 and not ckpt.exists()
    assert all(torch.isfinite(p).all() for p in res.model.parameters())


def test_resumed_run_equals_uninterrupted_run(splits, tmp_path: Path) -> None:
    mcfg = model_config_for(splits, "linear", detection="coherent", **SMALL)
    full = train_model(
        mcfg, splits, _cfg(epochs=3), checkpoint_path=tmp_path / "full.pt", progress=False
    )

    def interrupt(record, model):
        if record["epoch"] == 1:
            raise KeyboardInterrupt

    part = tmp_path / "part.pt"
    with pytest.raises(KeyboardInterrupt):
        train_model(
            mcfg,
            splits,
            _cfg(epochs=3),
            checkpoint_path=part,
            progress=False,
            on_epoch_end=interrupt,
        )
    assert read_checkpoint(part)["train_state"]["epoch"] == 1
    resumed = train_model(
        mcfg, splits, _cfg(epochs=3), checkpoint_path=part, resume=True, progress=False
    )
    assert resumed.epochs_completed == 3
    assert _same_state(full.model, resumed.model)
    assert resumed.history == full.history
    assert resumed.test["accuracy"] == full.test["accuracy"]


def test_evaluate_reports_consistent_per_class_accuracy(splits) -> None:
    res = train_model(
        model_config_for(splits, "teacher", **SMALL), splits, _cfg(epochs=1), progress=False
    )
    m = evaluate(res.model, splits.test, batch_size=50)
    y = splits.test.tensors[1]
    counts = torch.bincount(y, minlength=10).double()
    assert m["n"] == len(y) == 359
    weighted = sum(
        a * float(c) for a, c in zip(m["per_class_accuracy"], counts, strict=True)
    ) / len(y)
    assert m["accuracy"] == pytest.approx(weighted, abs=1e-6)
    with torch.no_grad():
        logits = res.model.eval()(splits.test.tensors[0])
    assert m["accuracy"] == pytest.approx(float((logits.argmax(1) == y).double().mean()), abs=1e-9)
    assert m["loss"] == pytest.approx(float(F.cross_entropy(logits, y)), rel=1e-5)


# --- the one loop: plateau, frozen front, device, AMP, threads ------------------------------------------------


def test_patience_stops_at_the_plateau_and_keeps_the_best_val_epoch(splits) -> None:
    cfg = model_config_for(splits, "linear", **SMALL)
    # a constant, tiny lr plateaus almost at once; the cap of 30 epochs is never reached
    res = train_model(
        cfg, splits, _cfg(epochs=30, lr=1e-6, schedule="constant", patience=2), progress=False
    )
    assert res.stopped_reason == "plateau" and res.epochs_completed < 30
    assert res.epochs_completed - res.best_epoch == 2
    best = max(h["val_accuracy"] for h in res.history)
    assert res.best_val_accuracy == best
    assert evaluate(res.model, splits.val)["accuracy"] == pytest.approx(
        best
    )  # the best epoch's weights


def test_frozen_front_trains_only_the_back_end_from_the_given_weights(splits) -> None:
    cfg = model_config_for(splits, "linear", **SMALL)
    pre = train_model(cfg, splits, _cfg(epochs=1), progress=False)
    init = {k: v.clone() for k, v in pre.model.state_dict().items()}
    res = train_model(
        cfg, splits, _cfg(epochs=1, seed=9), progress=False, init_state=init, frozen_front=True
    )
    after = res.model.state_dict()
    assert all(torch.equal(after[k], init[k]) for k in init if k.startswith("layers."))
    assert not all(
        torch.equal(after[k], init[k]) for k in init if k.startswith("back.") and "weight" in k
    )


def test_segmentation_and_classification_share_the_loop() -> None:
    from lab4f.segmentation import train as seg_train

    assert seg_train.fit is __import__("lab4f.training", fromlist=["fit"]).fit


@pytest.mark.parametrize("kind", ["teacher", "student"])
def test_amp_on_cpu_trains_in_bfloat16_and_stays_finite(splits, kind) -> None:
    teacher = None
    if kind == "student":
        tcfg = model_config_for(splits, "teacher", **SMALL)
        teacher = train_model(tcfg, splits, _cfg(epochs=1), progress=False).model
    res = train_model(
        model_config_for(splits, kind, **SMALL),
        splits,
        _cfg(epochs=1, amp=True),
        teacher=teacher,
        progress=False,
    )
    assert res.stopped_reason == "completed" and math.isfinite(res.history[-1]["train_loss"])
    assert all(
        p.dtype == torch.float32 for p in res.model.parameters()
    )  # autocast, not a half model


def test_device_names_resolve_and_a_missing_gpu_is_a_config_error() -> None:
    from lab4f.device import ddp_backend, resolve_device

    assert resolve_device("auto") in ("cpu", "cuda", "mps")
    assert ddp_backend("cuda:1") == "nccl" and ddp_backend("cpu") == "gloo"
    with pytest.raises(ConfigError, match="unknown"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            resolve_device("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("amp", [False, True])
def test_training_on_cuda_with_and_without_amp(splits, amp) -> None:
    res = train_model(
        model_config_for(splits, "linear", **SMALL),
        splits,
        _cfg(epochs=1, device="cuda", amp=amp),
        progress=False,
    )
    assert res.stopped_reason == "completed" and next(res.model.parameters()).is_cuda
    assert res.test["accuracy"] > 0.1


def test_default_threads_use_the_free_cores(monkeypatch) -> None:
    import os

    from lab4f import device

    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.setattr(os, "getloadavg", lambda: (6.2, 0.0, 0.0))
    assert device.default_threads() == 2
    monkeypatch.setattr(os, "getloadavg", lambda: (11.0, 0.0, 0.0))
    assert device.default_threads() == 1  # overloaded: never fewer than one
    monkeypatch.setattr(os, "getloadavg", lambda: (0.0, 0.0, 0.0))
    assert device.default_threads() == 8 and device.default_threads(ranks_per_machine=2) == 4
    before = torch.get_num_threads()
    with device.torch_threads(1) as n:
        assert n == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_one_log_line_per_epoch_without_a_terminal(splits, capsys) -> None:
    train_model(model_config_for(splits, "linear", **SMALL), splits, _cfg(epochs=2), progress=True)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "epoch" in line and "val accuracy" in line]
    assert len(lines) == 2 and lines[0].startswith("train linear epoch 1/2")


def test_cli_train_takes_device_amp_and_patience(tmp_path: Path, capsys) -> None:
    import json

    from lab4f.cli import main

    args = [
        "train",
        "--kind",
        "linear",
        "--dataset",
        "digits8",
        "--limit",
        "200",
        "--widths",
        "4",
        "--epochs",
        "3",
        "--device",
        "auto",
        "--amp",
        "--patience",
        "1",
        "--threads",
        "1",
        "--out",
        str(tmp_path / "l.pt"),
        "--no-progress",
        "--json",
    ]
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    cfg = read_checkpoint(tmp_path / "l.pt")["metadata"]["train_config"]
    assert cfg["amp"] is True and cfg["patience"] == 1 and cfg["device"] in ("cpu", "cuda", "mps")
    assert out["stopped_reason"] in ("completed", "plateau")
    if not torch.cuda.is_available():
        assert main([*args[:-1], "--device", "cuda", "--json"]) != 0
        err = json.loads(capsys.readouterr().out)
        assert not err["ok"] and "no CUDA GPU" in json.dumps(err)
