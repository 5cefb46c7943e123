"""The task seam (lab4f.task): one rule picks the task from a checkpoint; outputs, loss, metric and tally per task."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from lab4f.checkpoint import checkpoint_task, make_metadata, save_checkpoint
from lab4f.errors import ConfigError
from lab4f.models import ModelConfig, build_model
from lab4f.segmentation.data import IGNORE_INDEX
from lab4f.task import CLASSIFICATION, SEGMENTATION, TASKS, task_of, task_of_checkpoint


def test_the_one_rule_that_tells_the_tasks_apart() -> None:
    assert checkpoint_task({"task": "segmentation"}) == "segmentation"
    assert (
        checkpoint_task({"task": "classification", "model_config": {"widths": [8]}})
        == "classification"
    )
    # written before lab4f recorded the task: a segmentation model's config has a decoder width
    assert checkpoint_task({"model_config": {"decoder_width": 12}}) == "segmentation"
    assert checkpoint_task({"model_config": {"widths": [8]}}) == "classification"
    assert checkpoint_task({}) == "classification"
    assert task_of({"task": "segmentation"}) is SEGMENTATION and task_of({}) is CLASSIFICATION
    assert set(TASKS) == {"classification", "segmentation"}
    with pytest.raises(ConfigError, match="detection"):
        task_of({"task": "detection"})


def test_the_task_is_read_from_the_checkpoint_file(tmp_path) -> None:  # noqa: ANN001
    cfg = ModelConfig(kind="student", widths=(4, 4))
    model = build_model(cfg)
    plain = save_checkpoint(tmp_path / "c.pt", model, make_metadata(cfg))
    tagged = save_checkpoint(
        tmp_path / "s.pt", model, make_metadata(cfg, extra={"task": "segmentation"})
    )
    assert task_of_checkpoint(plain) is CLASSIFICATION
    assert task_of_checkpoint(tagged) is SEGMENTATION


def test_outputs_what_a_run_keeps() -> None:
    torch.manual_seed(0)
    logits = torch.randn(3, 5)
    probs = CLASSIFICATION.outputs(logits)
    assert probs.shape == (3, 5) and np.allclose(probs.sum(1), 1, atol=1e-6)
    assert (probs.argmax(1) == logits.argmax(1).numpy()).all()
    seg_logits = torch.randn(2, 4, 6, 7)
    masks = SEGMENTATION.outputs(seg_logits)
    assert masks.dtype == np.uint8 and masks.shape == (2, 6, 7)
    assert (masks == seg_logits.argmax(1).numpy()).all()


def test_segmentation_loss_skips_unscored_pixels() -> None:
    torch.manual_seed(1)
    logits = torch.randn(1, 3, 2, 2)
    target = torch.full((1, 2, 2), IGNORE_INDEX, dtype=torch.int64)
    target[0, 1, 0] = 2
    only = nn.functional.cross_entropy(logits[:, :, 1, 0], torch.tensor([2]))
    assert SEGMENTATION.loss(logits, target) == pytest.approx(float(only), rel=1e-6)
    labels = torch.tensor([0, 2])
    assert CLASSIFICATION.loss(logits[:, :, 0, 0].repeat(2, 1), labels) == pytest.approx(
        float(nn.functional.cross_entropy(logits[:, :, 0, 0].repeat(2, 1), labels)), rel=1e-6
    )


def test_scores_are_the_task_metric() -> None:
    back = nn.Identity()
    labels = torch.tensor([0, 1, 2, 1])
    features = nn.functional.one_hot(
        torch.tensor([0, 1, 0, 1]), 3
    ).float()  # three right, one wrong
    assert CLASSIFICATION.score(back, features, labels) == pytest.approx(0.75)
    masks = torch.tensor([[[0, 1], [1, 1]]])
    perfect = nn.functional.one_hot(masks, 2).permute(0, 3, 1, 2).float()
    assert SEGMENTATION.score(back, perfect, masks) == pytest.approx(1.0)
    assert SEGMENTATION.score(back, 1 - perfect, masks) == pytest.approx(0.0)


def test_running_tallies() -> None:
    t = CLASSIFICATION.tally(3)
    eye = np.eye(3, dtype=np.float32)
    image = np.zeros((4, 4), np.float32)
    t.add(0, image, eye[1], eye[1], 1)  # both right
    t.add(1, image, eye[0], eye[2], 2)  # digital right, optical wrong, they disagree
    t.add(2, image, eye[2], eye[2], -1)  # unlabelled: agreement only
    m = t.metrics()
    assert (
        m["task"] == "classification"
        and m["optical_accuracy"] == 0.5
        and m["digital_accuracy"] == 1.0
    )
    assert m["agreement"] == pytest.approx(2 / 3) and m["last"]["input"] == 2
    assert math.isnan(CLASSIFICATION.tally(3).metrics()["optical_accuracy"])
    s = SEGMENTATION.tally(2)
    truth = np.array([[0, 1], [1, 1]], np.uint8)
    s.add(0, image, truth.copy(), truth.copy(), truth)
    m = s.metrics()
    assert m["task"] == "segmentation" and m["agreement"] == 1.0
    assert m["optical_mean_iou"] == pytest.approx(1.0) and m["digital_mean_iou"] == pytest.approx(
        1.0
    )
    assert m["last"]["num_classes"] == 2
