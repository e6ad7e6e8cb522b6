"""Inferers of attnseg-monai: memory-bounded sliding-window and slice-wise inference with per-slab argmax.

:class:`SlabSlidingWindowInferer` gives MONAI's sliding-window result for 2D and 3D inputs while holding only one
slab of the float stitch; :class:`SliceWiseInferer` runs a 2D network over the slices of a 3D volume the same way.
Both return uint8 labels by default (see ``docs/ct_inference.md``).
"""

from __future__ import annotations

from .slab import OUTPUT_KINDS, SlabSlidingWindowInferer, SliceWiseInferer, label_dtype

__all__ = ["OUTPUT_KINDS", "SlabSlidingWindowInferer", "SliceWiseInferer", "label_dtype"]
