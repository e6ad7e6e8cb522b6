"""Sliding-window inferers: memory-bounded slab-wise and slice-wise inference, and the fast path (fitted windows).

:class:`SlabSlidingWindowInferer` gives MONAI's sliding-window result for 2D and 3D inputs while holding only one
slab of the float stitch; :class:`SliceWiseInferer` runs a 2D network over the slices of a 3D volume the same way.
Both return uint8 labels by default (see ``docs/ct_inference.md``). :class:`FastSlidingWindowInferer` is MONAI's
sliding-window inferer on the device's fastest precision with an optional fitted window grid, and
:func:`with_fast_path` puts any inferer on that path (see ``docs/benchmarks.md``).
"""

from __future__ import annotations

from .fast import FastPathMixin, FastSlidingWindowInferer, fit_window_grid, with_fast_path
from .slab import OUTPUT_KINDS, SlabSlidingWindowInferer, SliceWiseInferer, label_dtype

__all__ = [
    "OUTPUT_KINDS",
    "FastPathMixin",
    "FastSlidingWindowInferer",
    "SlabSlidingWindowInferer",
    "SliceWiseInferer",
    "fit_window_grid",
    "label_dtype",
    "with_fast_path",
]
