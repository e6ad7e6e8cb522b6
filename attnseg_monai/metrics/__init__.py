"""Metrics for the attnseg-monai bundles, built on MONAI's cumulative metrics.

- instance maps (nuclei, seed 000): :class:`AggregatedJaccardIndex` (AJI, AJI+), :class:`InstancePanopticQualityMetric`;
- class-averaged confusion counts (seeds 001, 002): :class:`MPAMetric`, :class:`MIoUMetric`, :class:`MeanDiceMetric`,
  :class:`PixelAccuracyMetric`;
- surface distances with an empty-mask policy (seed 003): :class:`SurfaceDistancePolicyMetric` (HD95, HD, ASD);
- per-case tables: :func:`evaluate_case`.

See ``docs/metrics.md`` for the equations and the policies.
"""

from __future__ import annotations

from .confusion import (
    ClassMeanConfusionMetric,
    MeanDiceMetric,
    MIoUMetric,
    MPAMetric,
    PixelAccuracyMetric,
    class_scores,
)
from .evaluate import EVALUATE_METRICS, evaluate_case
from .instance import AggregatedJaccardIndex, InstancePanopticQualityMetric, aji_counts, pq_counts
from .surface_distance import STATUS_NAMES, SurfaceDistancePolicyMetric

__all__ = [
    "EVALUATE_METRICS",
    "STATUS_NAMES",
    "AggregatedJaccardIndex",
    "ClassMeanConfusionMetric",
    "InstancePanopticQualityMetric",
    "MIoUMetric",
    "MPAMetric",
    "MeanDiceMetric",
    "PixelAccuracyMetric",
    "SurfaceDistancePolicyMetric",
    "aji_counts",
    "class_scores",
    "evaluate_case",
    "pq_counts",
]
