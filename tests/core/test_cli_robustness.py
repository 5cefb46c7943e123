"""Command-line robustness: --json in any position, JSON usage errors, typed errors instead of tracebacks,
refusals instead of silently ignored flags, and messages that say what is wrong. Fast: no training."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from lab4f.cli import build_parser, main
from lab4f.errors import DataError


def _json(capsys) -> dict:
    """The single JSON object on stdout (fails if stdout holds anything else)."""
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, out
    return json.loads(lines[0])


def _error(capsys, argv: list[str], error: str) -> str:
    assert main(argv) == 2
    payload = _json(capsys)
    assert payload["ok"] is False and payload["error"] == error, payload
    return payload["message"]


@pytest.fixture()
def classifier(tmp_path: Path) -> Path:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.models import ModelConfig, build_model

    cfg = ModelConfig(kind="student", widths=(4, 8), detection="incoherent")
    return save_checkpoint(
        tmp_path / "student.pt",
        build_model(cfg),
        make_metadata(cfg, dataset={"name": "mnist5k", "split_seed": 0}),
    )


@pytest.fixture()
def seg_checkpoint(tmp_path: Path) -> Path:
    from lab4f.checkpoint import make_metadata, save_checkpoint
    from lab4f.segmentation.models import SegConfig, build_seg_model

    cfg = SegConfig(kind="teacher", widths=(4,), decoder_width=4)
    meta = make_metadata(cfg, metrics={"test_mean_iou": 0.5}, extra={"task": "segmentation"})  # type: ignore[arg-type]
    return save_checkpoint(tmp_path / "seg.pt", build_seg_model(cfg), meta)


# 1. --json before or after the subcommand, for every command group


def test_json_given_to_a_group_is_not_overwritten_by_the_subcommand(capsys) -> None:
    for argv in (
        ["bench", "--json", "info"],
        ["--json", "bench", "info"],
        ["bench", "info", "--json"],
    ):
        assert main(argv) == 0
        payload = _json(capsys)
        assert payload["ok"] is True and "devices" in payload


def test_json_given_to_every_group_gives_json_errors(capsys, tmp_path: Path) -> None:
    assert "missing.h5" in _error(
        capsys, ["calibration", "--json", "show", str(tmp_path / "missing.h5")], "CalibrationError"
    )
    assert "16,32,32" in _error(
        capsys, ["report", "--json", "efficiency", "--widths", "abc"], "ConfigError"
    )
    msg = _error(
        capsys,
        ["segment", "--json", "reproduce", "--widths", "abc", "--out", str(tmp_path / "s")],
        "ConfigError",
    )
    assert "abc" in msg


def _parsers(parser):  # noqa: ANN001, ANN202 — the parser and every (sub)command parser below it
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in dict.fromkeys(action.choices.values()):  # aliases map to the same parser
                yield from _parsers(child)


def test_every_parser_accepts_json_and_it_defaults_to_false() -> None:
    parser = build_parser()
    assert all("--json" in p._option_string_actions for p in _parsers(parser))
    assert parser.parse_args(["bench", "info"]).json is False
    assert parser.parse_args(["bench", "--json", "info"]).json is True
    assert parser.parse_args(["report", "--json", "efficiency"]).json is True


# 2. usage errors with --json: one JSON object, exit 2; without --json: argparse as usual


@pytest.mark.parametrize(
    "argv",
    [
        ["calibrate", "--json", "bogus"],
        ["evaluate", "--json", "CK.pt", "--split", "bogus"],
        ["finetune", "--json"],
        ["--json"],
        ["bench", "info", "--json", "--no-such-option"],
    ],
)
def test_usage_errors_with_json_print_one_json_object(capsys, argv: list[str]) -> None:
    msg = _error(capsys, argv, "UsageError")
    assert "--help" in msg


def test_usage_errors_without_json_keep_argparse_behaviour(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["calibrate", "bogus"])
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert captured.out == "" and "usage:" in captured.err and "invalid choice" in captured.err


# 3. tracebacks → typed errors


def test_bench_config_that_is_a_directory_is_a_config_error(capsys, tmp_path: Path) -> None:
    (tmp_path / "bench.toml").write_text("")
    msg = _error(capsys, ["bench", "info", "--json", "--config", str(tmp_path)], "ConfigError")
    assert "is a directory" in msg and "bench.toml" in msg


@pytest.mark.parametrize(
    "argv",
    [
        ["evaluate", "--json", "CK.pt", "--batch-size", "0"],
        ["train", "--json", "--batch-size", "-1"],
        ["train", "--json", "--epochs", "0"],
        ["reproduce", "--json", "--batch-size", "0"],
        ["reproduce", "--json", "--epochs", "0"],
        ["report", "--json", "efficiency", "--epochs", "0"],
        ["compile", "--json", "CK.pt", "--iterations", "0"],
        ["train", "--json", "--lr", "-0.1"],
    ],
)
def test_counts_and_sizes_must_be_positive(capsys, argv: list[str]) -> None:
    assert "must be a positive" in _error(capsys, argv, "UsageError")


def test_display_shapes_must_be_at_least_one_pixel(capsys, tmp_path: Path) -> None:
    from pydantic import ValidationError

    from lab4f.drivers.sim_display import SimulatedDisplaySettings
    from lab4f.drivers.slm_display import SLMDisplaySettings

    for model in (SimulatedDisplaySettings, SLMDisplaySettings):
        for shape in ((0, 0), (28, 0), (-1, 28)):
            with pytest.raises(ValidationError):
                model(shape=shape)
        assert model(shape=(1, 1)).shape == (1, 1)
    config = tmp_path / "bench.toml"
    config.write_text('[display]\ndriver = "SimulatedDisplay"\nsettings = { shape = [0, 0] }\n')
    msg = _error(
        capsys,
        ["bench", "snap", "--json", "--config", str(config), "--out", str(tmp_path / "s")],
        "ConfigError",
    )
    assert "shape" in msg


# 4. a segmentation checkpoint given to the classifier tools


def test_evaluate_a_segmentation_checkpoint_says_what_to_use(capsys, seg_checkpoint: Path) -> None:
    msg = _error(capsys, ["evaluate", str(seg_checkpoint), "--json"], "CheckpointError")
    assert "segmentation checkpoint" in msg and "lab4f run" in msg and "lab4f segment" in msg
    assert "unknown fields" not in msg


# 5. train: a non-teacher as teacher, --teacher without a student, --resume without a checkpoint


def test_train_refuses_a_student_as_teacher(capsys, classifier: Path, tmp_path: Path) -> None:
    msg = _error(
        capsys,
        [
            "train",
            "--json",
            "--kind",
            "student",
            "--teacher",
            str(classifier),
            "--out",
            str(tmp_path / "s.pt"),
        ],
        "ConfigError",
    )
    assert "not a teacher" in msg and "--kind teacher" in msg
    assert not (tmp_path / "s.pt").exists()


def test_train_refuses_a_teacher_for_a_kind_that_does_not_use_one(
    capsys, classifier: Path, tmp_path: Path
) -> None:
    msg = _error(
        capsys,
        [
            "train",
            "--json",
            "--kind",
            "linear",
            "--teacher",
            str(classifier),
            "--out",
            str(tmp_path / "l.pt"),
        ],
        "ConfigError",
    )
    assert "--kind student" in msg


def test_train_resume_without_a_checkpoint_is_refused(capsys, tmp_path: Path) -> None:
    out = tmp_path / "nothere.pt"
    msg = _error(capsys, ["train", "--json", "--resume", "--out", str(out)], "ConfigError")
    assert str(out) in msg and "--resume" in msg
    assert not out.exists()


# 6. a single seed has no spread


def _report(tmp_path: Path, seeds: list[int]) -> tuple[Path, dict]:
    from lab4f.reproduce import write_report

    rows = []
    for seed in seeds:
        rows.append(
            {
                "model": "teacher",
                "detection": "-",
                "seed": seed,
                "test_accuracy": 0.95 + 0.01 * seed,
            }
        )
        rows.append(
            {
                "model": "linear",
                "detection": "ideal",
                "seed": seed,
                "test_accuracy": 0.80 + 0.01 * seed,
            }
        )
        rows.append(
            {
                "model": "student",
                "detection": "ideal",
                "seed": seed,
                "test_accuracy": 0.90 + 0.01 * seed,
            }
        )
    config = {
        "dataset": "digits8",
        "split_seed": 0,
        "seeds": seeds,
        "detections": ["ideal"],
        "epochs": 1,
        "limit": None,
        "sizes": {"train": 10, "val": 10, "test": 10},
        "train_config": {"lr": 0.02, "T": 10.0, "alpha": 0.5},
    }
    result = write_report(tmp_path, rows, config, 1.0)
    return tmp_path / "table.md", result.ordering["ideal"]


def test_reproduce_with_one_seed_says_there_is_no_spread(tmp_path: Path) -> None:
    table, verdict = _report(tmp_path, [0])
    text = table.read_text()
    assert "± 0.0000" not in text and "seed spread 0.0000" not in text
    assert "n = 1" in text and "no spread" in verdict["statement"]
    assert verdict["student_linear_spread"] is None


def test_reproduce_with_several_seeds_still_compares_to_the_spread(tmp_path: Path) -> None:
    table, verdict = _report(tmp_path, [0, 1, 2])
    assert "±" in table.read_text() and "the seed spread" in verdict["statement"]
    assert verdict["student_linear_spread"] > 0


# 7. reproduce --task segmentation: refuse classification-only flags, respect an explicit --out


@pytest.mark.parametrize(
    "flags",
    [
        ["--dataset", "mnist5k"],
        ["--limit", "10"],
        ["--detections", "ideal"],
        ["--widths", "4,8"],
        ["--lr", "0.1"],
        ["--batch-size", "8"],
        ["--threads", "1"],
        ["--split-seed", "0"],
        ["--data-dir", "."],
    ],
)
def test_reproduce_segmentation_refuses_classification_flags(capsys, flags: list[str]) -> None:
    msg = _error(capsys, ["reproduce", "--task", "segmentation", "--json", *flags], "ConfigError")
    assert flags[0] in msg and "lab4f segment reproduce" in msg


def test_reproduce_segmentation_forwards_seeds_epochs_and_an_explicit_out(
    capsys, monkeypatch
) -> None:
    import lab4f.commands.segment as segment

    seen: list[argparse.Namespace] = []

    def fake(args: argparse.Namespace) -> dict:
        seen.append(args)
        return {"fake": True}

    monkeypatch.setattr(segment, "_reproduce", fake)
    assert (
        main(
            [
                "reproduce",
                "--task",
                "segmentation",
                "--seeds",
                "3",
                "--epochs",
                "2",
                "--out",
                "results/reproduce",
                "--json",
            ]
        )
        == 0
    )
    assert _json(capsys)["fake"] is True
    assert (
        seen[-1].out == Path("results/reproduce") and seen[-1].seeds == "3" and seen[-1].epochs == 2
    )
    assert main(["reproduce", "--task", "segmentation", "--seeds", "3"]) == 0
    assert seen[-1].out == Path("results/segmentation") and seen[-1].json is False


def test_reproduce_classification_defaults_are_unchanged(monkeypatch) -> None:
    import lab4f.commands.reproduce as rep

    seen: list[argparse.Namespace] = []
    monkeypatch.setattr(rep, "_cmd", lambda args: seen.append(args) or {})
    parser = build_parser()  # func wraps the patched _cmd only if patched before building
    args = parser.parse_args(["reproduce"])
    args.func(args)
    from lab4f.detection import DETECTION_MODELS
    from lab4f.training import TrainConfig

    a = seen[-1]
    assert (a.dataset, a.split_seed, a.limit, a.epochs, a.lr, a.batch_size, a.out) == (
        "mnist5k",
        0,
        None,
        10,
        TrainConfig().lr,
        TrainConfig().batch_size,
        Path("results/reproduce"),
    )
    assert a.detections == ",".join(DETECTION_MODELS) and a.given == set()


# 8. messages that say what is wrong


def test_images_that_is_a_file_says_so(tmp_path: Path) -> None:
    from lab4f.imagefolder import load_image_folder

    image = tmp_path / "digit.png"
    image.write_bytes(b"not really a png")
    with pytest.raises(DataError, match="is a file, not a folder"):
        load_image_folder(image, 28)
    with pytest.raises(DataError, match="does not exist"):
        load_image_folder(tmp_path / "missing", 28)


def test_evaluate_a_directory_lists_its_checkpoints(
    capsys, classifier: Path, tmp_path: Path
) -> None:
    msg = _error(capsys, ["evaluate", "--json", str(tmp_path)], "CheckpointError")
    assert "is a directory" in msg and str(classifier) in msg
    empty = tmp_path / "empty"
    empty.mkdir()
    msg = _error(capsys, ["evaluate", "--json", str(empty)], "CheckpointError")
    assert "is a directory" in msg and "no .pt files" in msg


# 9. --limit must be a positive integer everywhere


@pytest.mark.parametrize(
    "command", [["train"], ["evaluate", "CK.pt"], ["reproduce"], ["report", "efficiency"]]
)
@pytest.mark.parametrize("limit", ["0", "-997"])
def test_limit_must_be_positive(capsys, command: list[str], limit: str) -> None:
    msg = _error(capsys, [*command, "--json", "--limit", limit], "UsageError")
    assert "--limit" in msg and "positive" in msg


def test_positive_int_type() -> None:
    from lab4f.argtypes import positive_float, positive_int

    assert positive_int("3") == 3
    for bad in ("0", "-1", "x", "1.5"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_int(bad)
    assert positive_float("0.5") == 0.5
    for bad in ("0", "-1", "nan", "inf", "x"):
        with pytest.raises(argparse.ArgumentTypeError):
            positive_float(bad)
