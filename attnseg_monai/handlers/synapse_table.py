"""Ignite handler writing the per-organ Synapse table (Dice / HD95 / IoU / ASD) of an evaluation (DANIE, seed 003)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.data import MetaTensor

from ..io.atomic import atomic_write_bytes, atomic_write_json
from ..metrics.synapse import (
    EMPTY_POLICIES,
    SYNAPSE_METRICS,
    synapse_case_scores,
    synapse_csv_tables,
    synapse_summary,
    synapse_table_markdown,
)

__all__ = ["SynapseTableHandler"]

logger = logging.getLogger(__name__)


def _as_label_map(x: Any) -> Any:
    """One-hot ``(C, ...)`` with C > 1 -> ``(1, ...)`` class indices; label maps pass through."""
    if isinstance(x, torch.Tensor) and x.ndim == 4 and x.shape[0] > 1:
        return x.argmax(dim=0, keepdim=True)
    return x


class SynapseTableHandler:
    """Ignite handler: per-case, per-organ Dice / HD95 / IoU / ASD of an evaluator, written as CSV + summary.

    At every iteration the decollated outputs' ``pred_key`` and ``label_key`` (class-index maps ``(1, H, W, D)``,
    or one-hot, at the label's resolution, i.e. after ``Invertd``) are scored with
    :func:`~attnseg_monai.metrics.synapse.synapse_case_scores`, distances in mm from the label's affine (voxels for
    TransUNet ``.h5`` files, which carry no spacing). At the end of the run it writes to ``output_dir``, each file
    atomically (a temporary file renamed into place):

    - ``per_case.csv`` (one row per volume) and ``summary.csv`` (one row per organ, and the means over organs), see
      :func:`~attnseg_monai.metrics.synapse.synapse_csv_tables`;
    - ``summary.json`` (the same numbers, the policy, the units: :func:`~attnseg_monai.metrics.synapse.synapse_summary`)
      and ``synapse_table.md`` (:func:`~attnseg_monai.metrics.synapse.synapse_table_markdown`).

    With several processes (DDP) the rows are gathered and rank 0 writes.

    Args:
        output_dir: folder of the files (created).
        pred_key: key of the prediction in each output item.
        label_key: key of the label.
        metrics: any of ``"dice"``, ``"hd95"``, ``"iou"``, ``"asd"``.
        empty_policy: ``"exclude"`` (default) or ``"transunet"``, see
            :func:`~attnseg_monai.metrics.synapse.synapse_case_scores`.
        hd_mode: ``"pooled"`` (MedPy/TransUNet, default) or ``"max_of_directed"`` (MONAI).
        spacing: fixed voxel size instead of the label's affine.
        title: method name in the markdown table.

    Raises:
        ValueError: for an unknown policy or metric.

    Example (evaluate.json)::

        {"_target_": "attnseg_monai.handlers.SynapseTableHandler", "output_dir": "@output_dir"}
    """

    def __init__(
        self,
        output_dir: str | os.PathLike,
        pred_key: str = "pred",
        label_key: str = "label",
        metrics: Sequence[str] = SYNAPSE_METRICS,
        empty_policy: str = "exclude",
        hd_mode: str = "pooled",
        spacing: float | Sequence[float] | None = None,
        title: str = "DANIE",
    ) -> None:
        if empty_policy not in EMPTY_POLICIES:
            raise ValueError(f"empty_policy must be one of {EMPTY_POLICIES}, got {empty_policy!r}.")
        if not metrics or any(m not in SYNAPSE_METRICS for m in metrics):
            raise ValueError(f"metrics must name some of {SYNAPSE_METRICS}, got {tuple(metrics)}.")
        if hd_mode not in ("pooled", "max_of_directed"):
            raise ValueError(f"hd_mode must be 'pooled' or 'max_of_directed', got {hd_mode!r}.")
        self.output_dir = Path(output_dir)
        self.pred_key = pred_key
        self.label_key = label_key
        self.metrics = tuple(metrics)
        self.empty_policy = empty_policy
        self.hd_mode = hd_mode
        self.spacing = spacing
        self.title = title
        self.rows: list[dict[str, Any]] = []

    def attach(self, engine: Engine) -> None:
        """Score every iteration of ``engine`` and write the tables when its run completes."""
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.iteration_completed)
        engine.add_event_handler(Events.COMPLETED, self.completed)

    def reset(self, engine: Engine | None = None) -> None:
        """Forget the rows of an earlier run."""
        self.rows = []

    def iteration_completed(self, engine: Engine) -> None:
        """Score the items of the engine's current output."""
        output = engine.state.output
        items = output if isinstance(output, (list, tuple)) else [output]
        for item in items:
            if not isinstance(item, Mapping):
                continue
            self.rows.append(self.score(item[self.pred_key], item[self.label_key]))

    def score(self, pred: Any, label: Any) -> dict[str, Any]:
        """The table row of one case (see the class docstring)."""
        pred, label = _as_label_map(pred), _as_label_map(label)
        label_meta = label.meta if isinstance(label, MetaTensor) else {}
        pred_meta = pred.meta if isinstance(pred, MetaTensor) else {}
        # the prediction carries the image's metadata (Invertd), so the case is named after the image file
        source = str(pred_meta.get("filename_or_obj") or label_meta.get("filename_or_obj") or f"case{len(self.rows)}")
        geometry = label_meta or pred_meta
        units = "voxels" if geometry.get("format") in ("npz", "hdf5") and self.spacing is None else "mm"
        scores = synapse_case_scores(
            pred,
            label,
            spacing=self.spacing,
            metrics=self.metrics,
            empty_policy=self.empty_policy,
            hd_mode=self.hd_mode,
        )
        name = Path(source).name
        for ending in (".nii.gz", ".npy.h5", ".nii", ".h5", ".nrrd", ".mha"):
            if name.lower().endswith(ending):
                name = name[: -len(ending)]
                break
        row: dict[str, Any] = {"case": name, "source": source, "distance_units": units}
        for m in self.metrics:
            for organ, value in zip(scores["organs"], scores[m]):
                row[f"{m}_{organ}"] = value
            row[f"{m}_mean"] = scores["mean"][m]
        for organ, status in zip(scores["organs"], scores["status"]):
            row[f"status_{organ}"] = status
        row["_organs"] = scores["organs"]
        return row

    def _gathered(self) -> list[dict[str, Any]] | None:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            world = torch.distributed.get_world_size()
            if world > 1:
                parts: list[Any] = [None] * world
                torch.distributed.all_gather_object(parts, self.rows)
                if torch.distributed.get_rank() != 0:
                    return None
                return [row for part in parts for row in part]
        return list(self.rows)

    def summary(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """Per-organ means, standard deviations and status counts over ``rows``, and the means over organs
        (:func:`~attnseg_monai.metrics.synapse.synapse_summary`)."""
        return synapse_summary(rows, metrics=self.metrics, empty_policy=self.empty_policy, hd_mode=self.hd_mode)

    def completed(self, engine: Engine | None = None) -> None:
        """Write ``per_case.csv``, ``summary.csv``, ``summary.json`` and ``synapse_table.md`` (rank 0)."""
        rows = self._gathered()
        if rows is None or not rows:
            return
        summary = self.summary(rows)
        for name, text in synapse_csv_tables(rows, summary).items():
            atomic_write_bytes(self.output_dir / name, text.encode("utf-8"))
        atomic_write_json(self.output_dir / "summary.json", summary)
        markdown = synapse_table_markdown(summary, self.title)
        atomic_write_bytes(self.output_dir / "synapse_table.md", markdown.encode())
        logger.info(
            "Synapse per-organ table (%d cases, distances in %s, empty organs: %s):\n%s",
            len(rows),
            summary["distance_units"],
            self.empty_policy,
            markdown,
        )
