"""The metrics run inside ignite through MONAI's IgniteMetricHandler, as the bundles use them."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine
from monai.bundle import ConfigParser
from monai.handlers import IgniteMetricHandler

from attnseg_monai.metrics import AggregatedJaccardIndex, MPAMetric, SurfaceDistancePolicyMetric

from .test_confusion_metrics import LABEL, PRED, _onehot
from .test_instance_metrics import MERGE_GT, MERGE_PRED, MISS_GT, MISS_PRED, SPLIT_GT, SPLIT_PRED
from .test_surface_distance import GT2, HD95_DIRECTED, PRED2, SP2, _two_class


def test_handlers_over_two_iterations():
    inst = lambda x: torch.as_tensor(x)[None, None]  # noqa: E731
    batches = [
        # iteration 1: batch-first tensors
        {
            "inst": (inst(SPLIT_PRED), inst(SPLIT_GT)),
            "onehot": (_onehot(PRED), _onehot(LABEL)),
            "dist": (_two_class(PRED2), _two_class(GT2)),
        },
        # iteration 2: decollated lists of channel-first tensors, as MONAI's evaluators pass them
        {
            "inst": ([inst(MERGE_PRED)[0]], [inst(MERGE_GT)[0]]),
            "onehot": ([_onehot(LABEL)[0]], [_onehot(LABEL)[0]]),
            "dist": ([_two_class(torch.zeros_like(GT2))[0]], [_two_class(torch.zeros_like(GT2))[0]]),
        },
    ]
    engine = Engine(lambda eng, batch: batch)
    IgniteMetricHandler(metric_fn=AggregatedJaccardIndex(), output_transform=lambda o: o["inst"]).attach(engine, "aji")
    IgniteMetricHandler(metric_fn=MPAMetric(), output_transform=lambda o: o["onehot"]).attach(engine, "mpa")
    hd95 = SurfaceDistancePolicyMetric("hd95", spacing=SP2)
    IgniteMetricHandler(metric_fn=hd95, output_transform=lambda o: o["dist"]).attach(engine, "hd95")
    state = engine.run(batches, max_epochs=1)
    assert state.iteration == 2
    # AJI per image 8/17 and 10/24 (see test_instance_metrics)
    assert state.metrics["aji"] == pytest.approx((8 / 17 + 10 / 24) / 2)
    # MPA dataset-level: image 1 counts (c0 TP 10 FP 1, c1 TP 3 FP 2) + image 2 perfect (c0 TP 12, c1 TP 4)
    # -> (22/23 + 7/9) / 2
    assert state.metrics["mpa"] == pytest.approx((22 / 23 + 7 / 9) / 2)
    # HD95: image 1 as in test_surface_distance; image 2 empty in both -> excluded (and counted)
    assert state.metrics["hd95"] == pytest.approx(HD95_DIRECTED, rel=1e-5)
    assert hd95.case_counts()["both_empty"] == 1
    details = state.metric_details["hd95"]
    assert details.shape == (2, 1) and math.isnan(details[1, 0])


def test_bundle_style_config_with_decollated_output():
    # the form a bundle's evaluate.json uses: the handler resolved by MONAI's ConfigParser, fed decollated dicts
    parser = ConfigParser(
        {
            "aji": {
                "_target_": "IgniteMetricHandler",
                "metric_fn": {"_target_": "attnseg_monai.metrics.AggregatedJaccardIndex"},
                "output_transform": "$monai.handlers.from_engine(['pred', 'label'])",
            },
            "dice": {
                "_target_": "IgniteMetricHandler",
                "metric_fn": {"_target_": "attnseg_monai.metrics.MeanDiceMetric", "reduction": "dataset"},
                "output_transform": "$monai.handlers.from_engine(['pred_onehot', 'label_onehot'])",
            },
        }
    )
    engine = Engine(lambda eng, batch: batch)
    parser.get_parsed_content("aji").attach(engine, "aji")
    parser.get_parsed_content("dice").attach(engine, "dice")
    item = {
        "pred": torch.as_tensor(MISS_PRED)[None],
        "label": torch.as_tensor(MISS_GT)[None],
        "pred_onehot": _onehot(PRED)[0],
        "label_onehot": _onehot(LABEL)[0],
    }
    state = engine.run([[item], [item]], max_epochs=1)
    assert state.metrics["aji"] == pytest.approx(3 / 8)  # see test_instance_metrics
    assert state.metrics["dice"] == pytest.approx(53 / 69)  # the same counts twice: ratios unchanged
