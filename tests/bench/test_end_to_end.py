"""The main job end to end on the default simulated bench (realistic noise): compile → calibrate → stream the
test split → hardware-in-the-loop fine-tuning; optical accuracy within 1 percentage point of the digital student."""

from __future__ import annotations

import pytest

from lab4f.bench.devices import Bench
from lab4f.bench.finetune import finetune_backend
from lab4f.bench.hybrid import capture_features, prepare
from lab4f.bench.run import run_dataset
from lab4f.optics.program import OpticalProgram


@pytest.mark.slow
def test_calibrated_bench_matches_the_digital_student(
    trained_checkpoints, mnist_splits, tmp_path
) -> None:
    from lab4f.bench.compile import compile_checkpoint
    from lab4f.calibration import run_calibration

    test_x, test_y = mnist_splits.test.tensors
    test_x, test_y = test_x[:400], test_y[:400]
    with Bench() as bench:
        _, program_path, _ = compile_checkpoint(
            trained_checkpoints["student"], bench, tmp_path / "p.h5", progress=False
        )
        record = run_calibration(
            bench,
            "all",
            program=OpticalProgram.load(program_path),
            program_path=program_path,
            out_dir=tmp_path / "cal",
        )
        setup = prepare(bench, trained_checkpoints["student"], record=record, program=program_path)
        before = run_dataset(setup, test_x, test_y, policy="evaluate")
        m = before.metrics()
        assert m["dropped"] == 0 and m["processed"] == len(test_y)
        digital = m["digital_accuracy"]
        gap_before = digital - m["optical_accuracy"]
        tr_x, tr_y = mnist_splits.train.tensors
        va_x, va_y = mnist_splits.val.tensors
        tr_f = capture_features(setup, tr_x[:1000], progress=False)
        va_f = capture_features(setup, va_x[:300], progress=False)
        tuned = finetune_backend(
            setup.student.back, tr_f, tr_y[:1000], va_f, va_y[:300], epochs=15, progress=False
        )
        after = run_dataset(setup, test_x, test_y, policy="evaluate", back=tuned.back)
        gap_after = digital - after.optical_accuracy
    print(
        f"digital {digital:.4f}, optical {m['optical_accuracy']:.4f} (gap {gap_before:+.4f}), "
        f"after fine-tuning {after.optical_accuracy:.4f} (gap {gap_after:+.4f})"
    )
    assert after.metrics()["dropped"] == 0
    # the issue: within 1 pp of the digital student, after fine-tuning if needed; fine-tuning must not cost accuracy
    assert min(gap_before, gap_after) <= 0.01, (gap_before, gap_after)
    assert after.optical_accuracy >= m["optical_accuracy"] - 0.01, (
        m["optical_accuracy"],
        after.optical_accuracy,
    )
