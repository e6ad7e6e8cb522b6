"""one_class_output: the per-class output_transform of the CT bundles' metric handlers."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.handlers import MeanDice
from monai.networks.utils import one_hot

from attnseg_monai.handlers import one_class_output


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
