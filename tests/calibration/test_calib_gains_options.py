"""`lab4f calibrate`'s gains-step options: passed to the step as its own parameters, refused for steps that do not
run it and for values the step cannot use."""

from __future__ import annotations

import json
from typing import Any

import pytest

from lab4f.cli import main


def test_gains_options_reach_the_gains_step(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path
) -> None:  # noqa: ANN001
    import lab4f.calibration.runner as runner
    from lab4f.calibration import CalibrationRecord

    seen: dict[str, Any] = {}

    def fake_run(bench, steps, **kw):  # noqa: ANN001, ANN003, ANN202
        seen.update(steps=steps, options=kw["step_options"])
        rec = CalibrationRecord()
        rec.path = tmp_path / "cal.h5"
        return rec

    monkeypatch.setattr(runner, "run_calibration", fake_run)
    assert (
        main(
            [
                "calibrate",
                "all",
                "--gains-frames",
                "16",
                "--gains-filter-size",
                "7",
                "--gains-images",
                "64",
                "--json",
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert seen == {
        "steps": "all",
        "options": {"gains": {"frames": 16, "filter_size": 7, "count": 64}},
    }
    # display re-fits the gains of the record it builds on: the options apply to that refit
    assert main(["calibrate", "display", "--gains-frames", "8", "--json"]) == 0
    capsys.readouterr()
    assert seen["options"] == {"gains": {"frames": 8}}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["calibrate", "camera", "--gains-frames", "8"], "belong to the gains step"),
        (["calibrate", "gains", "--gains-filter-size", "4"], "odd number ≥ 1"),
        (["calibrate", "gains", "--gains-frames", "0"], "--gains-frames must be ≥ 1"),
        (["calibrate", "gains", "--gains-images", "1"], "--gains-images must be ≥ 2"),
    ],
)
def test_gains_options_are_refused_where_they_do_not_apply(
    argv: list[str], message: str, capsys
) -> None:  # noqa: ANN001
    assert main([*argv, "--json"]) == 2
    assert message in json.loads(capsys.readouterr().out)["message"]
