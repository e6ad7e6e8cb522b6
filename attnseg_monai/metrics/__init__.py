"""Metrics for the attnseg-monai bundles, built on MONAI's cumulative metrics.

- instance maps (nuclei, seed 000's task; the seed names no metric): :class:`AggregatedJaccardIndex` (AJI, AJI+),
  :class:`InstancePanopticQualityMetric`;
- class-averaged confusion counts (seeds 001, 002): :class:`MPAMetric`, :class:`MIoUMetric`, :class:`MeanDiceMetric`,
  :class:`PixelAccuracyMetric`;
- surface distances with an empty-mask policy (seed 003): :class:`SurfaceDistancePolicyMetric` (HD95, HD, ASD);
- per-case tables: :func:`evaluate_case`.
- Synapse multi-organ tables (seed 003): :func:`synapse_case_scores`, :func:`synapse_summary`,
  :func:`synapse_csv_tables`, :func:`synapse_table_markdown`.

See ``docs/metrics.md`` for the equations and the policies.
"""

from __future__ import annotations

from .case import EVALUATE_METRICS, evaluate_case
from .confusion import (
    ClassMeanConfusionMetric,
    MeanDiceMetric,
    MIoUMetric,
    MPAMetric,
    PixelAccuracyMetric,
    class_scores,
)
from .instance import AggregatedJaccardIndex, InstancePanopticQualityMetric, aji_counts, pq_counts
from .surface_distance import STATUS_NAMES, SurfaceDistancePolicyMetric
from .synapse import (
    EMPTY_POLICIES,
    EMPTY_STATUSES,
    SYNAPSE_METRICS,
    synapse_case_scores,
    synapse_csv_tables,
    synapse_summary,
    synapse_table_markdown,
)

__all__ = [
    "EMPTY_POLICIES",
    "EMPTY_STATUSES",
    "EVALUATE_METRICS",
    "STATUS_NAMES",
    "SYNAPSE_METRICS",
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
    "synapse_case_scores",
    "synapse_csv_tables",
    "synapse_summary",
    "synapse_table_markdown",
]
