"""One error, two front ends: the CLI renders its structured fix as commands and options, the GUI as its
buttons and panels (no command-line syntax)."""

import pytest

from lab4f.errors import Fix, MismatchError, cli_advice
from lab4f.gui.messages import in_gui_terms


def test_the_cli_and_the_gui_give_their_own_advice_for_one_error() -> None:
    exc = MismatchError(
        "the bench has moved since it was calibrated",
        fix=Fix(
            "calibrate",
            {
                "step": ("registration", "tiles", "gains"),
                "program": ("tiles", "gains"),
                "or_all": True,
            },
        ),
    )
    cli = str(exc)
    assert cli == (
        "the bench has moved since it was calibrated; run `lab4f calibrate registration`, then "
        "`lab4f calibrate tiles --program P`, then `lab4f calibrate gains --program P` "
        "(or `lab4f calibrate all`)"
    )
    gui = in_gui_terms(exc)
    assert gui.startswith(
        "the bench has moved since it was calibrated; press Run on the Display → camera "
        "registration, then the Tile registration, then the Per-channel filter rows of the "
        "Calibration panel with a program uploaded (Kernels panel"
    )
    assert "lab4f" not in gui and "--" not in gui


def test_a_fix_names_a_known_action() -> None:
    with pytest.raises(ValueError, match="unknown fix action"):
        Fix("reboot")
    assert cli_advice(Fix("choose_layer")) == "pass --layer NAME to choose one"
    assert "--" not in in_gui_terms(MismatchError("x", fix=Fix("choose_layer")))
