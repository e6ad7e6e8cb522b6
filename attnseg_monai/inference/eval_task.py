"""What ``attnseg evaluate`` scores for a bundle, read from its configs as plain JSON (nothing is executed).

:func:`task_from_bundle` reads ``evaluate.json`` (key metric, additional metrics, handlers that list their
``metrics``), the ``SaveImaged`` entries of ``inference.json`` (:func:`saved_outputs`: which output holds instances
or classes) and ``metadata.json`` (``channel_def``).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..metrics import EVALUATE_METRICS
from .bundle_loader import INFERENCE_CONFIG, read_bundle_metadata, resolve_bundle

__all__ = ["EXTRA_METRICS", "EvalTask", "saved_outputs", "task_from_bundle"]


def saved_outputs(root: str | os.PathLike, config: str = INFERENCE_CONFIG) -> list[dict[str, Any]]:
    """The ``SaveImaged`` entries of a config as written in the JSON, wherever they sit (``postprocessing`` or the
    lists it is assembled from); nothing is executed: ``[{"keys": ..., "output_postfix": ..., ...}, ...]`` in file
    order, expressions unevaluated."""
    path = Path(root) / config
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if str(node.get("_target_", "")).split(".")[-1] in ("SaveImaged", "SaveImage"):
                found.append({k: node.get(k) for k in ("keys", "output_postfix", "output_ext", "output_dtype")})
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(content)
    return found


#: Per-case metrics besides :data:`~attnseg_monai.metrics.EVALUATE_METRICS`.
EXTRA_METRICS = ("aji", "pq", "mpa", "miou", "mean_dice", "acc")
_TARGETS = {
    "MeanDice": "dice",
    "DiceMetric": "dice",
    "MeanIoUHandler": "iou",
    "MeanIoU": "iou",
    "HausdorffDistance": "hd95",
    "HausdorffDistanceMetric": "hd95",
    "SurfaceDistance": "asd",
    "SurfaceDistanceMetric": "asd",
    "AggregatedJaccardIndex": "aji",
    "InstancePanopticQualityMetric": "pq",
    "MPAMetric": "mpa",
    "MIoUMetric": "miou",
    "MeanDiceMetric": "mean_dice",
    "PixelAccuracyMetric": "acc",
}


@dataclass
class EvalTask:
    """How to score: ``mode`` ``"classes"`` or ``"instances"``, classes (or ``regions`` made of classes), metrics, and
    which predictions to read."""

    num_classes: int
    mode: str = "classes"
    metrics: tuple[str, ...] = ("dice", "iou", "hd95", "asd")
    extra: tuple[str, ...] = ()
    pred_postfix: str | None = None
    hd_mode: str = "max_of_directed"
    include_background: bool = False
    class_names: dict[int, str] = field(default_factory=dict)
    #: regions scored instead of the classes, each a union of class values (``{"disc": (1, 2), "cup": (2,)}``)
    regions: dict[str, tuple[int, ...]] = field(default_factory=dict)
    #: how label files' values become class values: ``"none"`` (as stored) or ``"btcv"`` (BTCV's 13 organ ids mapped
    #: to the 8 Synapse classes, as DANIE's loader maps them for training)
    label_mapping: str = "none"

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _walk(node: Any, found: list[dict[str, Any]]) -> None:
    if isinstance(node, dict):
        if "_target_" in node:
            found.append(node)
        for v in node.values():
            _walk(v, found)
    elif isinstance(node, list):
        for v in node:
            _walk(v, found)


def task_from_bundle(bundle: str | os.PathLike) -> EvalTask:
    """The evaluation task of a bundle, read from its JSON files without executing them.

    Raises:
        BundleError: if the bundle does not exist.
    """
    root, _, _ = resolve_bundle(bundle)
    meta = read_bundle_metadata(root)
    pred = meta.get("network_data_format", {}).get("outputs", {}).get("pred", {})
    names = {int(k): str(v) for k, v in (pred.get("channel_def") or {}).items()}
    num_classes = len(names) or int(pred.get("num_channels", 2))
    components: list[dict[str, Any]] = []
    eval_path = root / "configs" / "evaluate.json"
    if eval_path.is_file():
        try:
            content = json.loads(eval_path.read_text(encoding="utf-8"))
        except ValueError:
            content = {}
        for key in ("key_metric", "additional_metrics", "handlers"):
            _walk(content.get(key, {}), components)
    wanted: list[str] = []
    hd_mode = "max_of_directed"
    for comp in components:
        target = str(comp.get("_target_", "")).split(".")[-1]
        listed = comp.get("metrics")
        if isinstance(listed, list) and listed and all(str(m) in EVALUATE_METRICS for m in listed):
            wanted.extend(str(m) for m in listed)  # a table handler naming its metrics (Synapse-style)
            hd_mode = str(comp.get("hd_mode", hd_mode))
        if target == "SurfaceDistancePolicyMetric":
            kind = str(comp.get("kind", "hd95"))
            wanted.append(kind)
            hd_mode = str(comp.get("hd_mode", hd_mode))
        elif target in _TARGETS:
            wanted.append(_TARGETS[target])
    metrics = tuple(dict.fromkeys(m for m in wanted if m in EVALUATE_METRICS)) or ("dice", "iou", "hd95", "asd")
    extra = tuple(dict.fromkeys(m for m in wanted if m in EXTRA_METRICS))
    saves = saved_outputs(root)
    instances = any(m in extra for m in ("aji", "pq"))

    def postfix_for(pick) -> str | None:
        for s in saves:
            keys = s.get("keys")
            keys = [keys] if isinstance(keys, str) else list(keys or [])
            if any(pick(str(k)) for k in keys):
                return str(s.get("output_postfix") or "")
        return str(saves[0].get("output_postfix")) if saves and saves[0].get("output_postfix") else None

    if instances:
        return EvalTask(
            num_classes=2,
            mode="instances",
            metrics=metrics,
            extra=extra,
            pred_postfix=postfix_for(lambda k: "inst" in k),
            hd_mode=hd_mode,
            class_names={0: "background", 1: "foreground"},
        )
    return EvalTask(
        num_classes=num_classes,
        mode="classes",
        metrics=metrics,
        extra=extra,
        pred_postfix=postfix_for(lambda k: k == "pred"),
        hd_mode=hd_mode,
        class_names=names,
    )
