"""Kernel banks from outside lab4f: .npy/.npz, PyTorch state dicts, TorchScript; clear refusals; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from lab4f.cli import main
from lab4f.errors import CompileError
from lab4f.optics.bank_io import bank_from_array, load_bank
from lab4f.optics.program import OpticalProgram


def signed_bank(c: int = 64, k: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((c, 1, k, k)).astype(np.float32)


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 6, padding="same"), nn.ReLU(), nn.Conv2d(8, 16, 3)
        )
        self.head = nn.Linear(16, 10)


def test_arrays_of_every_accepted_shape(tmp_path) -> None:
    w = signed_bank(5, 4)
    for arr, shape in (
        (w, (5, 1, 4, 4)),
        (w[:, 0], (5, 1, 4, 4)),
        (w[0, 0], (1, 1, 4, 4)),
        (w[:, :, :1, :1], (5, 1, 1, 1)),
    ):
        np.save(tmp_path / "b.npy", arr)
        loaded = load_bank(tmp_path / "b.npy")
        assert loaded.weights.shape == shape and loaded.weights.dtype == np.float64
        assert loaded.source["format"] == "npy"
    np.savez(tmp_path / "b.npz", bias=np.zeros(5), kernels=w, other=w[:2])
    loaded = load_bank(tmp_path / "b.npz")
    assert loaded.source["layer"] == "kernels" and loaded.weights.shape == (5, 1, 4, 4)
    assert load_bank(tmp_path / "b.npz", layer="other").weights.shape == (2, 1, 4, 4)
    with pytest.raises(CompileError, match="no array 'nope'.*bias"):
        load_bank(tmp_path / "b.npz", layer="nope")


def test_a_state_dicts_first_conv_is_found(tmp_path) -> None:
    torch.manual_seed(0)
    net = Net()
    torch.save(net.state_dict(), tmp_path / "sd.pt")
    loaded = load_bank(tmp_path / "sd.pt")
    assert loaded.source["format"] == "state_dict" and loaded.source["layer"] == "features.0.weight"
    np.testing.assert_allclose(loaded.weights, net.features[0].weight.detach().double().numpy())
    # nested (a training checkpoint), and DataParallel's "module." prefix; --layer by module or parameter name
    torch.save(
        {"epoch": 3, "model_state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}},
        tmp_path / "nested.pt",
    )
    assert (
        load_bank(tmp_path / "nested.pt").source["layer"]
        == "model_state_dict.module.features.0.weight"
    )
    assert load_bank(tmp_path / "nested.pt", layer="features.0").weights.shape == (8, 1, 6, 6)
    with pytest.raises(CompileError, match="8 input channels"):
        load_bank(
            tmp_path / "sd.pt", layer="features.2.weight"
        )  # the second conv has 8 input channels
    with pytest.raises(
        CompileError, match="no layer 'conv9'.*features.0.weight, features.2.weight"
    ):
        load_bank(tmp_path / "sd.pt", layer="conv9")
    torch.save(torch.from_numpy(signed_bank(3, 5)), tmp_path / "t.pt")
    assert load_bank(tmp_path / "t.pt").source["format"] == "tensor"


def test_torchscript_first_conv(tmp_path) -> None:
    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(2, 2), nn.Conv2d(1, 4, 5), nn.Conv2d(4, 4, 3))
    torch.jit.script(net).save(str(tmp_path / "ts.pt"))
    loaded = load_bank(tmp_path / "ts.pt")
    assert loaded.source["format"] == "torchscript" and loaded.source["layer"] == "1.weight"
    np.testing.assert_allclose(loaded.weights, net[1].weight.detach().double().numpy())


def test_unsupported_content_is_named(tmp_path) -> None:
    cases = {
        "vec.npy": (np.zeros(10), "shape 10 \\(1-D\\)"),
        "rect.npy": (np.zeros((4, 1, 3, 5)), "3×5"),
        "rgb.npy": (np.zeros((4, 3, 5, 5)), "3 input channels.*RGB"),
        "hwio.npy": (np.zeros((6, 6, 1, 64)), "TensorFlow/Keras"),
        "cplx.npy": (np.zeros((2, 3, 3), complex), "complex128"),
        "nan.npy": (np.full((2, 3, 3), np.nan), "NaN"),
    }
    for name, (arr, match) in cases.items():
        np.save(tmp_path / name, arr)
        with pytest.raises(CompileError, match=match):
            load_bank(tmp_path / name)
    np.save(tmp_path / "obj.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(CompileError, match="Python objects"):
        load_bank(tmp_path / "obj.npy")
    torch.save(nn.Conv2d(1, 2, 3), tmp_path / "module.pt")  # a pickled module: never unpickled
    with pytest.raises(CompileError, match="state_dict"):
        load_bank(tmp_path / "module.pt")
    torch.save({"head.weight": torch.zeros(10, 4)}, tmp_path / "linear.pt")
    with pytest.raises(CompileError, match="no 4-D conv weight.*head.weight \\(10×4\\)"):
        load_bank(tmp_path / "linear.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CompileError, match="not a file lab4f can read"):
        load_bank(tmp_path / "junk.pt")
    with pytest.raises(CompileError, match="real"):
        bank_from_array(np.array([[True]]), "x")


def test_cli_compiles_a_signed_6x6_bank_of_64_from_npy(tmp_path, capsys) -> None:
    np.save(tmp_path / "k.npy", signed_bank())
    out = tmp_path / "k.program.h5"
    assert (
        main(
            [
                "compile",
                str(tmp_path / "k.npy"),
                "--out",
                str(out),
                "--iterations",
                "10",
                "--kernels-per-frame",
                "16",
                "--json",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    payload = json.loads(
        text, parse_constant=lambda c: pytest.fail(f"non-strict JSON constant {c}")
    )
    assert (
        payload["ok"]
        and payload["channels"] == 64
        and payload["kernel_size"] == 6
        and payload["frames"] == 4
    )
    assert payload["input_size"] == 28 and payload["source"]["input_size_from"] == "display"
    fc = payload["forecast"]  # the fidelity forecast on this bench, per channel
    assert len(fc["snr"]) == 64 and fc["min_snr"] > 0 and 0 < fc["exposure_s"] < 0.05
    assert fc["below_threshold"] == [i for i, v in enumerate(fc["snr"]) if v < fc["threshold_snr"]]
    assert "forecast" in OpticalProgram.load(out).source
    program = OpticalProgram.load(out)
    assert [len(f.layout.channels) for f in program.frames] == [16] * 4
    np.testing.assert_allclose(program.bank, signed_bank().astype(np.float64))
    # no model, explicit size; and a refusal that names what it found (not "corrupt checkpoint")
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "fc.pt")
    assert main(["compile", str(tmp_path / "fc.pt"), "--json"]) == 2
    msg = json.loads(capsys.readouterr().out)["message"]
    assert "fc.weight (3×3)" in msg and "corrupt" not in msg


def test_cli_state_dict_with_input_size_and_layer(tmp_path, capsys) -> None:
    torch.manual_seed(0)
    torch.save(Net().state_dict(), tmp_path / "sd.pt")
    assert (
        main(
            [
                "compile",
                str(tmp_path / "sd.pt"),
                "--layer",
                "features.0",
                "--input-size",
                "20",
                "--iterations",
                "5",
                "--out",
                str(tmp_path / "p.h5"),
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert (
        payload["channels"] == 8
        and payload["input_size"] == 20
        and payload["source"]["layer"] == "features.0.weight"
    )
