"""HD95, HD and ASD in millimetres with an explicit policy for empty masks.

The Synapse evaluation of DANIE (seed 003) reports per-organ Dice, HD95 and ASD. MONAI's
:class:`~monai.metrics.HausdorffDistanceMetric` and :class:`~monai.metrics.SurfaceDistanceMetric` return NaN or inf
when a class is missing from the prediction or the label, and their mean silently drops NaNs, so a network that
misses an organ can look better than one that finds it badly. :class:`SurfaceDistancePolicyMetric` measures the same
distances with MONAI's :func:`~monai.metrics.utils.get_edge_surface_distance` and decides each empty case by a
documented, selectable policy, recording which case every value came from.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from monai.metrics import Cumulative, CumulativeIterationMetric
from monai.metrics.utils import do_metric_reduction, get_edge_surface_distance, prepare_spacing
from monai.utils import MetricReduction

from .utils import check_choice, image_diagonal, spacing_from_meta

__all__ = ["STATUS_NAMES", "SurfaceDistancePolicyMetric"]

#: status codes buffered next to every value, by index
STATUS_NAMES = ("evaluated", "both_empty", "pred_empty", "gt_empty")
_KINDS = ("hd95", "hd", "asd")
_BOTH_EMPTY = ("exclude", "perfect")
_ONE_EMPTY = ("max_distance", "nan", "inf")
_HD_MODES = ("max_of_directed", "pooled")


class SurfaceDistancePolicyMetric(CumulativeIterationMetric):
    """Hausdorff (HD95 or HD) or average surface distance per image and class, with an empty-mask policy.

    Distances use the edges of the binary masks (MONAI's ``get_edge_surface_distance``, Euclidean by default) and the
    voxel spacing, so they are in mm when the spacing is. For each image ``b`` and class ``c``:

    ===================================  ======================================================================
    case                                 value
    ===================================  ======================================================================
    both masks non-empty                 the distance (``"evaluated"``)
    class absent from both               ``both_empty="exclude"``: NaN, left out of means (default);
                                         ``"perfect"``: 0
    absent from exactly one mask         ``one_empty="max_distance"``: the image diagonal
                                         ``sqrt(sum(((n_i - 1) * s_i) ** 2))`` in mm, the largest distance any
                                         two voxels of the image can have, so missing an organ never scores
                                         better than finding it anywhere (default); ``"nan"``: MONAI's
                                         behaviour, excluded from means but counted; ``"inf"``
    ===================================  ======================================================================

    ``kind="hd95"`` (default) is the 95th percentile Hausdorff distance. ``hd_mode="max_of_directed"`` takes the larger
    of the two directed 95th percentiles (MONAI, DeepMind's surface-distance); ``"pooled"`` takes the 95th percentile of
    both directed distance sets together (MedPy's ``hd95``, used by the TransUNet Synapse tables). ``kind="hd"`` is
    the maximum. ``kind="asd"`` is the mean of both directed distance sets together (MONAI's symmetric average surface
    distance; ``symmetric=False`` gives the directed prediction-to-label mean).

    Spacing, by priority: the ``spacing`` keyword of a call (as MONAI's metrics take it), the constructor's
    ``spacing``, the affine of ``y`` (or ``y_pred``) when it is a :class:`~monai.data.MetaTensor` (so an ignite
    handler, which passes no keywords, still measures in mm), otherwise 1.

    Each call buffers the values ``(B, C)`` (float32) and their status codes (indices into :data:`STATUS_NAMES`);
    :meth:`aggregate` reduces the values with MONAI's reduction modes (NaN skipped) and :meth:`case_counts` reports
    how many values came from each case.

    Args:
        kind: ``"hd95"``, ``"hd"`` or ``"asd"``.
        include_background: measure channel 0 as well. Default False.
        both_empty: ``"exclude"`` or ``"perfect"``, as above.
        one_empty: ``"max_distance"``, ``"nan"`` or ``"inf"``, as above.
        hd_mode: ``"max_of_directed"`` or ``"pooled"`` (HD kinds only).
        symmetric: for ``"asd"``, use both directions (default True).
        distance_metric: ``"euclidean"``, ``"chessboard"`` or ``"taxicab"`` (spacing applies to Euclidean only).
        spacing: a default spacing (one number or one per spatial axis).
        reduction: a MONAI reduction (``"mean"``, ``"mean_batch"`` for one value per class, ``"none"``, ...).
        get_not_nans: if True, :meth:`aggregate` returns ``(value, not_nans)``.

    Raises:
        ValueError: for an unknown option; in a call, for inputs of different shapes or not ``(B, C, H, W[, D])``.

    Example::

        # 2D one-hot (B, C, H, W), pixel size 0.5 mm
        hd95 = SurfaceDistancePolicyMetric("hd95", spacing=(0.5, 0.5))
        y = torch.zeros(1, 2, 16, 16); y[:, 1, 4:9, 4:9] = 1; y[:, 0] = 1 - y[:, 1]
        hd95(y_pred=y, y=y)
        value = hd95.aggregate()
        # 3D one-hot (B, C, H, W, D), anisotropic CT spacing given per call, one value per class
        asd = SurfaceDistancePolicyMetric("asd", reduction="mean_batch")
        v = torch.zeros(1, 2, 8, 8, 8); v[:, 1, 2:6, 2:6, 2:6] = 1; v[:, 0] = 1 - v[:, 1]
        asd(y_pred=v, y=v, spacing=(0.8, 0.8, 2.5))
        per_class = asd.aggregate()
    """

    def __init__(
        self,
        kind: str = "hd95",
        *,
        include_background: bool = False,
        both_empty: str = "exclude",
        one_empty: str = "max_distance",
        hd_mode: str = "max_of_directed",
        symmetric: bool = True,
        distance_metric: str = "euclidean",
        spacing: float | Sequence[float] | None = None,
        reduction: MetricReduction | str = MetricReduction.MEAN,
        get_not_nans: bool = False,
    ) -> None:
        super().__init__()
        self.kind = check_choice("kind", kind, _KINDS)
        self.include_background = include_background
        self.both_empty = check_choice("both_empty", both_empty, _BOTH_EMPTY)
        self.one_empty = check_choice("one_empty", one_empty, _ONE_EMPTY)
        self.hd_mode = check_choice("hd_mode", hd_mode, _HD_MODES)
        self.symmetric = symmetric
        self.distance_metric = check_choice("distance_metric", distance_metric, ("euclidean", "chessboard", "taxicab"))
        self.spacing = spacing
        self.reduction = reduction
        self.get_not_nans = get_not_nans
        self._status = Cumulative()  # status codes, synchronised across processes like the values

    def reset(self) -> None:
        """Empty the value and status buffers."""
        super().reset()
        if hasattr(self, "_status"):
            self._status.reset()

    def _distance(self, yp: torch.Tensor, yt: torch.Tensor, spacing: Any) -> float:
        symmetric = self.symmetric or self.kind != "asd"
        _, distances, _ = get_edge_surface_distance(
            yp, yt, distance_metric=self.distance_metric, spacing=spacing, symmetric=symmetric, warn_empty=False
        )
        if self.kind == "asd":
            return float(torch.cat(distances).double().mean())
        q = 0.95 if self.kind == "hd95" else 1.0
        if self.hd_mode == "pooled":
            return float(torch.quantile(torch.cat(distances).double(), q))
        return max(float(torch.quantile(d.double(), q)) for d in distances)

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None, **kwargs: Any) -> torch.Tensor:
        if y is None:
            raise ValueError("SurfaceDistancePolicyMetric needs the label y.")
        if y_pred.shape != y.shape:
            raise ValueError(f"y_pred and y must have the same shape, got {tuple(y_pred.shape)} and {tuple(y.shape)}.")
        if y_pred.ndim not in (4, 5):
            raise ValueError(f"expected one-hot (B, C, H, W[, D]) inputs, got shape {tuple(y_pred.shape)}.")
        batch, spatial = y_pred.shape[0], tuple(y_pred.shape[2:])
        spacing = kwargs.get("spacing")
        if spacing is None:
            spacing = self.spacing
        if spacing is None:
            spacing = spacing_from_meta(y, batch, len(spatial)) or spacing_from_meta(y_pred, batch, len(spatial))
        spacing_list = prepare_spacing(spacing=spacing, batch_size=batch, img_dim=len(spatial))
        start = 0 if self.include_background else 1
        p = y_pred.as_subclass(torch.Tensor)[:, start:] > 0.5
        t = y.as_subclass(torch.Tensor)[:, start:] > 0.5
        flat_dims = tuple(range(2, p.ndim))
        p_any, t_any = p.any(dim=flat_dims), t.any(dim=flat_dims)
        status = torch.zeros(p_any.shape, dtype=torch.int64)
        status[(~p_any & ~t_any).cpu()] = 1
        status[(~p_any & t_any).cpu()] = 2
        status[(p_any & ~t_any).cpu()] = 3
        values = torch.zeros(p_any.shape, dtype=torch.float64)
        both = 0.0 if self.both_empty == "perfect" else float("nan")
        for b in range(batch):
            sp = spacing_list[b]
            penalty = {"max_distance": image_diagonal(spatial, sp), "nan": float("nan"), "inf": float("inf")}
            for c in range(p.shape[1]):
                code = int(status[b, c])
                if code == 0:
                    values[b, c] = self._distance(p[b, c], t[b, c], sp)
                elif code == 1:
                    values[b, c] = both
                else:
                    values[b, c] = penalty[self.one_empty]
        self._status.extend(status)
        return values.to(dtype=torch.float32, device=y_pred.device)

    def status(self) -> torch.Tensor:
        """Status code of every buffered value, shape ``(N, C)``; see :data:`STATUS_NAMES`."""
        data = self._status.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing buffered: call the metric on some data first.")
        return data

    def case_counts(self) -> dict[str, int]:
        """How many (image, class) values came from each case, plus ``"excluded"``: how many are NaN."""
        codes = self.status()
        counts = {name: int((codes == i).sum()) for i, name in enumerate(STATUS_NAMES)}
        values = self.get_buffer()
        counts["excluded"] = int(torch.isnan(values).sum()) if isinstance(values, torch.Tensor) else 0
        return counts

    def aggregate(
        self, reduction: MetricReduction | str | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Reduce the buffered values with a MONAI reduction (NaN values skipped).

        Args:
            reduction: overrides the constructor's ``reduction``.
        """
        data = self.get_buffer()
        if not isinstance(data, torch.Tensor):
            raise ValueError("nothing to aggregate: call the metric on some data first.")
        f, not_nans = do_metric_reduction(data, reduction or self.reduction)
        return (f, not_nans) if self.get_not_nans else f
