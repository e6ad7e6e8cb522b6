"""Sliding-window inferers: memory-bounded slab-wise and slice-wise inference, and the fast path (fitted windows).

:class:`SlabSlidingWindowInferer` gives MONAI's sliding-window result for 2D and 3D inputs while holding only one
slab of the float stitch; :class:`SliceWiseInferer` runs a 2D network over the slices of a 3D volume the same way.
Both return uint8 labels by default (see ``docs/ct_inference.md``). :class:`FastSlidingWindowInferer` is MONAI's
sliding-window inferer on the device's fastest precision with an optional fitted window grid, and
:func:`with_fast_path` puts any inferer on that path (see ``docs/benchmarks.md``). :class:`ProbabilityEnsemble` runs
test-time augmentations (:func:`tta_transforms`) and several models as one network for any of them.
"""

from __future__ import annotations

from .ensemble import Augmentation, ProbabilityEnsemble, entropy, tta_transforms
from .fast import FastPathMixin, FastSlidingWindowInferer, fit_window_grid, with_fast_path
from .slab import OUTPUT_KINDS, SlabSlidingWindowInferer, SliceWiseInferer, label_dtype

__all__ = [
    "OUTPUT_KINDS",
    "Augmentation",
    "ProbabilityEnsemble",
    "entropy",
    "tta_transforms",
    "FastPathMixin",
    "FastSlidingWindowInferer",
    "SlabSlidingWindowInferer",
    "SliceWiseInferer",
    "fit_window_grid",
    "label_dtype",
    "with_fast_path",
]
