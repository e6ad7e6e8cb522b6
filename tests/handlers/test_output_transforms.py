"""one_class_output and region_output: the per-class and per-region output_transforms of the bundles' metric
handlers."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MeanDice
from monai.networks.utils import one_hot

from attnseg_monai.handlers import one_class_output, region_output


def _item() -> dict:
    label = torch.zeros(1, 1, 8, 8)
    pred = torch.zeros_like(label)
    label[..., 0:4, 0:4] = 1
    pred[..., 0:4, 0:2] = 1  # class 1: half found -> Dice 2/3
    label[..., 5:7, 5:7] = 2
    pred[..., 5:7, 5:7] = 2  # class 2: exact -> Dice 1
    return {"pred": one_hot(pred, 3)[0], "label": one_hot(label, 3)[0]}


def test_each_class_is_scored_alone():
    batch = [_item(), _item()]
    preds, labels = one_class_output(2)(batch)
    assert len(preds) == len(labels) == 2 and preds[0].shape == (2, 8, 8)
    torch.testing.assert_close(preds[0], batch[0]["pred"][[0, 2]])
    torch.testing.assert_close(labels[1], batch[1]["label"][[0, 2]])
    engine = Engine(lambda eng, b: b)
    for index in (1, 2):
        MeanDice(include_background=False, output_transform=one_class_output(index)).attach(engine, f"dice_{index}")
    metrics = engine.run([batch], max_epochs=1).metrics
    assert metrics["dice_1"] == pytest.approx(2 / 3) and metrics["dice_2"] == pytest.approx(1.0)
    preds, _ = one_class_output(1, keys=("label", "pred"))(batch[0])  # one item, other keys
    torch.testing.assert_close(preds[0], batch[0]["label"][[0, 1]])


@pytest.mark.parametrize("index", [0, -1, 1.0, True])
def test_the_background_and_non_integers_are_refused(index):
    with pytest.raises(ValueError, match="index"):
        one_class_output(index)


def test_regions_are_unions_of_classes_scored_together_or_alone():
    # nested structures as the 2D Drishti-GS configuration labels them: 1 rim, 2 cup; the disc is both
    label = torch.zeros(1, 1, 8, 8)
    label[..., 0:6, 0:6] = 1
    label[..., 2:4, 2:4] = 2
    pred = torch.zeros_like(label)
    pred[..., 0:6, 0:6] = 2  # the whole disc called cup: disc exact, cup Dice 2*4/(36+4), rim Dice 0
    item = {"pred": one_hot(pred, 3)[0], "label": one_hot(label, 3)[0]}
    preds, labels = region_output([[1, 2], [2]])([item])
    assert preds[0].shape == (3, 8, 8) and labels[0][1].sum() == 36 and labels[0][2].sum() == 4
    torch.testing.assert_close(preds[0][0], item["pred"][0])
    engine = Engine(lambda eng, b: b)
    MeanDice(include_background=False, output_transform=region_output([[1, 2]])).attach(engine, "disc")
    MeanDice(include_background=False, output_transform=region_output([[2]])).attach(engine, "cup")
    MeanDice(include_background=False, output_transform=region_output([[1, 2], [2]])).attach(engine, "mean")
    MeanDice(include_background=False, output_transform=one_class_output(1)).attach(engine, "rim")
    metrics = engine.run([[item]], max_epochs=1).metrics
    assert metrics["disc"] == pytest.approx(1.0) and metrics["cup"] == pytest.approx(0.2)
    assert metrics["mean"] == pytest.approx(0.6) and metrics["rim"] == pytest.approx(0.0)


@pytest.mark.parametrize("regions", [[], [[]], [[0, 1]], [[1.0]], [[True]], "12"])
def test_bad_regions_are_refused(regions):
    with pytest.raises(ValueError, match="regions"):
        region_output(regions)
