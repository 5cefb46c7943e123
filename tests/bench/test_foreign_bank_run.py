"""A kernel bank with no lab4f checkpoint classifies through the optics: .npy → compile → calibrate → capture a
training set → `lab4f finetune --captures` (the paper's back end, from the captures alone) → `lab4f run --program
--back` on held-out test images; a back end trained for another program is refused."""

from __future__ import annotations

import json

import numpy as np

from lab4f.cli import main


def strict_json(text: str) -> dict:
    return json.loads(
        text, parse_constant=lambda c: (_ for _ in ()).throw(ValueError(f"non-strict JSON: {c}"))
    )


def test_a_foreign_16_kernel_bank_classifies_through_the_optics(tmp_path, capsys) -> None:
    np.save(tmp_path / "kernels.npy", np.random.default_rng(0).standard_normal((16, 1, 6, 6)))
    program = tmp_path / "kernels.program.h5"
    assert main(["compile", str(tmp_path / "kernels.npy"), "--out", str(program), "--json"]) == 0
    capsys.readouterr()
    cal = tmp_path / "cal"
    assert main(["calibrate", "all", "--program", str(program), "--out", str(cal), "--json"]) == 0
    capsys.readouterr()
    train = tmp_path / "train.h5"
    assert (
        main(
            [
                "capture",
                "--program",
                str(program),
                "--calibration",
                str(cal),
                "--dataset",
                "mnist5k",
                "--split",
                "train",
                "--limit",
                "600",
                "--out",
                str(train),
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    back = tmp_path / "back.pt"
    assert (
        main(["finetune", "--captures", str(train), "--epochs", "20", "--out", str(back), "--json"])
        == 0
    )
    tuned = strict_json(capsys.readouterr().out)
    assert tuned["num_classes"] == 10 and tuned["digital_model"] is None

    run_file = tmp_path / "run.h5"
    assert (
        main(
            [
                "run",
                "--program",
                str(program),
                "--back",
                str(back),
                "--calibration",
                str(cal),
                "--dataset",
                "mnist5k",
                "--split",
                "test",
                "--limit",
                "300",
                "--out",
                str(run_file),
                "--json",
            ]
        )
        == 0
    )
    m = strict_json(capsys.readouterr().out)
    with capsys.disabled():
        print(
            f"\nforeign 16-kernel bank: {tuned['train_images']} training captures, validation accuracy "
            f"{tuned['val_accuracy_after']:.3f}; optical test accuracy {m['optical_accuracy']:.3f} on "
            f"{m['labelled']} held-out images (chance 0.10)"
        )
    assert m["labelled"] == 300
    assert m["digital_accuracy"] is None and m["agreement"] is None and m["digital_model"] is None
    assert m["optical_accuracy"] > 0.5  # 5× chance

    # a back end trained for another program is refused, with the fix
    np.save(tmp_path / "other.npy", np.random.default_rng(1).standard_normal((16, 1, 6, 6)))
    other = tmp_path / "other.program.h5"
    assert main(["compile", str(tmp_path / "other.npy"), "--out", str(other), "--json"]) == 0
    capsys.readouterr()
    assert (
        main(
            [
                "run",
                "--program",
                str(other),
                "--back",
                str(back),
                "--calibration",
                str(cal),
                "--limit",
                "4",
                "--out",
                str(tmp_path / "refused.h5"),
                "--json",
            ]
        )
        != 0
    )
    err = strict_json(capsys.readouterr().out)
    assert err["ok"] is False and err["error"] == "MismatchError"
    assert "trained for another program" in err["message"]
    assert "lab4f capture --program" in err["message"] and not (tmp_path / "refused.h5").exists()
