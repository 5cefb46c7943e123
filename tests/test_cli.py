"""Every CLI command takes --json and then prints exactly one JSON object on stdout."""

import argparse
import json

from lab4f.cli import build_parser, main


def _leaves(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(path, parser)]
    out = []
    for name, child in subs[0].choices.items():
        out += _leaves(child, (*path, name))
    return out


def test_every_command_accepts_json() -> None:
    leaves = _leaves(build_parser())
    assert len(leaves) >= 5
    missing = [" ".join(p) for p, parser in leaves if "--json" not in parser._option_string_actions]
    assert not missing, f"commands without --json: {missing}"


def test_json_output_is_one_object_even_on_error(capsys, tmp_path) -> None:
    code = main(["bench", "info", "--config", str(tmp_path / "missing.toml"), "--json"])
    out = capsys.readouterr().out
    assert code == 2
    payload = json.loads(out)
    assert (
        payload["ok"] is False
        and payload["error"] == "ConfigError"
        and "missing.toml" in payload["message"]
    )


def test_bench_info_json_on_the_default_simulated_bench(capsys) -> None:
    assert main(["bench", "info", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert set(payload["devices"]) == {"slm", "display", "camera", "light_source", "shutter"}
    assert payload["devices"]["light_source"]["identity"]["vendor"] == "LAB4F-SIM"
    assert payload["geometry"]["output_pitch_um"] > 0
    assert (
        abs(payload["geometry"]["camera_pixels_per_cell"] - 1.02) < 0.005
    )  # the default lenses and 5.5 µm pixels
    assert payload["geometry"]["camera_cells"] == [501, 501]


def test_bench_snap_writes_png_and_hdf5(capsys, tmp_path) -> None:
    import h5py

    assert main(["bench", "snap", "--out", str(tmp_path / "s"), "--image", "point", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert (tmp_path / "s.png").stat().st_size > 1000
    with h5py.File(tmp_path / "s.h5") as f:
        frame = f["frame"][()]
        assert f.attrs["kind"] == "snapshot" and f.attrs["schema_version"] == 1
    assert list(frame.shape) == payload["shape"] and frame.max() > frame.mean()


def test_compile_checkpoint_writes_program_and_report(capsys, tmp_path) -> None:
    import torch

    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model
    from lab4f.optics.program import OpticalProgram

    torch.manual_seed(0)
    cfg = ModelConfig(kind="student", widths=(4, 8, 8), detection="incoherent")
    ckpt = save_checkpoint(tmp_path / "s.pt", build_model(cfg), make_metadata(cfg))
    out = tmp_path / "s.program.h5"
    assert main(["compile", str(ckpt), "--out", str(out), "--iterations", "20", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["channels"] == 8 and payload["tiles"] == 16 and payload["frames"] == 1
    assert payload["min_tile_correlation"] > 0.99
    program = OpticalProgram.load(out)
    assert (
        program.frames[0].phase is not None and (tmp_path / "s.program.png").stat().st_size > 10_000
    )
    teacher_cfg = ModelConfig(kind="teacher", widths=(4, 8, 8))
    teacher = save_checkpoint(
        tmp_path / "t.pt", build_model(teacher_cfg), make_metadata(teacher_cfg)
    )
    assert main(["compile", str(teacher), "--json"]) == 2
    assert "nonlinear front end" in json.loads(capsys.readouterr().out)["message"]


def test_reproduce_task_segmentation_is_the_segment_reproduce_command(capsys, tmp_path) -> None:
    out = tmp_path / "seg"
    assert (
        main(
            [
                "reproduce",
                "--task",
                "segmentation",
                "--seeds",
                "0",
                "--epochs",
                "1",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    payload = json.loads(capsys.readouterr().out)
    assert {r["model"] for r in payload["rows"]} == {"teacher", "student", "linear"}
    assert (out / "table.md").read_text().count("mean IoU") >= 1 and (out / "mean_iou.png").exists()
