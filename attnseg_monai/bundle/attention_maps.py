"""Attention-gate coefficient maps of an Attention U-Net, computed over a whole volume and written as NIfTI.

Oktay et al., "Attention U-Net: Learning Where to Look for the Pancreas" (MIDL 2018) show the coefficients
``alpha`` of the grid attention gates as evidence of where the network looks. The ``attention_unet`` bundle can
save them beside each prediction (``configs/save_attention.json`` or ``--save_attention_maps true``):

1. :func:`sliding_window_attention_maps` runs the network's ``attention_maps(x, at_input_size=True)`` window by
   window, on the same window grid as the segmentation (:class:`~attnseg_monai.inferers.SlabSlidingWindowInferer`,
   same ``roi_size``, ``overlap`` and blending), so every gate sees the context it sees when segmenting; the
   coefficient maps, resampled to the window size inside the network, are blended like logits (a weighted
   average of values in [0, 1] stays in [0, 1]). A whole-volume pass on a downsampled volume would be cheaper but
   would show gates working on a context and a resolution the network was not trained on.
2. :class:`AttentionMapsd` (a MONAI dictionary transform for a bundle's ``postprocessing``) takes the
   preprocessed image of a case, computes its maps, undoes the preprocessing (``Orientationd``, ``Spacingd``...)
   with MONAI's ``Invertd`` (linear interpolation: the maps are continuous) and writes one NIfTI file per gated
   level, ``<case>_<postfix>_<level>.nii.gz``, through
   :class:`~attnseg_monai.io.nifti.SourceGeometryNibabelWriter`: the input's shape, affine,
   qform/sform codes and orientation, like the prediction itself.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from monai.config import DtypeLike, KeysCollection
from monai.data import MetaTensor
from monai.transforms import Invertd, MapTransform, SaveImage
from monai.transforms.inverse import InvertibleTransform

from ..inferers.slab import SlabSlidingWindowInferer
from ..io.nifti import SourceGeometryNibabelWriter

__all__ = ["AttentionMapsd", "attention_level_names", "sliding_window_attention_maps"]

_MAPS_KEY = "_attention_maps"


def _unwrap(network: Any) -> Any:
    """The module behind a ``DistributedDataParallel``/``DataParallel`` wrapper."""
    return getattr(network, "module", network)


def _attention_method(network: Any) -> Any:
    method = getattr(_unwrap(network), "attention_maps", None)
    if not callable(method):
        raise ValueError(
            f"{type(network).__name__} has no attention_maps(x, at_input_size=...) method: attention maps need the "
            "Python network (attnseg_monai.networks.nets.GridAttentionUNet), not a TorchScript or ONNX export."
        )
    return method


def attention_level_names(maps: Mapping[str, torch.Tensor]) -> list[str]:
    """Channel names of the stacked maps: ``level<i>`` per gate, ``level<i>_head<h>`` when a level has several heads.

    Args:
        maps: the output of ``attention_maps`` (``{"level1": (B, heads, *spatial), ...}``).
    """
    names: list[str] = []
    for level, alpha in maps.items():
        heads = int(alpha.shape[1])
        names += [level] if heads == 1 else [f"{level}_head{h}" for h in range(heads)]
    return names


def sliding_window_attention_maps(
    image: torch.Tensor,
    network: Any,
    roi_size: Sequence[int] | int,
    *,
    sw_batch_size: int = 1,
    overlap: Sequence[float] | float = 0.25,
    mode: str = "gaussian",
    sw_device: torch.device | str | None = None,
    device: torch.device | str | None = None,
) -> tuple[torch.Tensor, list[str]]:
    """Attention coefficients of every gate over a whole image, stitched from sliding windows.

    Args:
        image: ``(B, C_in, *spatial)`` network input (a MetaTensor keeps its metadata on the result).
        network: a network with ``attention_maps(x, at_input_size=True)`` (e.g. ``GridAttentionUNet``), possibly
            wrapped in ``DistributedDataParallel``.
        roi_size: window size (multiples of the network's ``size_divisible_by``).
        sw_batch_size: windows per network call.
        overlap: window overlap in ``[0, 1)``.
        mode: ``"gaussian"`` or ``"constant"`` blending.
        sw_device: device running the network (default: the image's).
        device: device of the result (default: the image's).

    Returns:
        ``(maps, names)``: ``maps`` of shape ``(B, L, *spatial)``, float32 in [0, 1], one channel per gate (and
        head), ``names`` the channel names (:func:`attention_level_names`).

    Raises:
        ValueError: if the network has no ``attention_maps`` method or no gate, or for invalid window settings.

    Examples:
        3D CT volume::

            maps, names = sliding_window_attention_maps(ct, net, roi_size=(96, 96, 64))  # names: level1..level3

        2D image::

            maps, names = sliding_window_attention_maps(img, net2d, roi_size=(256, 256), overlap=0.5)
    """
    method = _attention_method(network)
    names: list[str] = []

    def predictor(x: torch.Tensor) -> torch.Tensor:
        maps = method(x, at_input_size=True)
        if not maps:
            raise ValueError("the network has no attention gate (attention_levels is empty): there is nothing to save.")
        names[:] = attention_level_names(maps)
        return torch.cat([m.float() for m in maps.values()], dim=1)

    inferer = SlabSlidingWindowInferer(
        roi_size, sw_batch_size, overlap, mode, output="logits", sw_device=sw_device, device=device
    )
    maps = inferer(image, predictor)
    return maps.clamp_(0.0, 1.0), list(names)


class AttentionMapsd(MapTransform):
    """Write the attention-gate coefficient maps of a case as NIfTI files in the geometry of its input.

    Meant for the ``postprocessing`` of a bundle's evaluator, where each item holds the preprocessed image (with
    its applied operations) under ``keys``. For every key, the maps of all gates are computed with
    :func:`sliding_window_attention_maps`, brought back to the input grid by inverting ``transform`` (the
    preprocessing; linear interpolation), and written as ``<output_dir>/<case>_<output_postfix>_<level>.nii.gz``
    with the input's affine and NIfTI header geometry (:class:`SourceGeometryNibabelWriter`). The item is returned
    unchanged unless ``output_key`` is set, which stores the maps (``(L, *input_spatial)``) under that key.

    Args:
        keys: the image key(s), usually ``"image"``.
        network: the segmentation network (``GridAttentionUNet``; DDP wrappers are unwrapped).
        roi_size: sliding-window size, as for the segmentation.
        output_dir: where the files go.
        transform: the preprocessing to invert (an invertible MONAI transform, e.g. the bundle's ``Compose``);
            ``None`` writes the maps on the network's grid.
        sw_batch_size: windows per network call.
        overlap: window overlap in ``[0, 1)``.
        mode: ``"gaussian"`` or ``"constant"`` blending.
        output_postfix: inserted between the case name and the level name.
        output_ext: ``".nii.gz"`` or ``".nii"``.
        output_dtype: dtype written (float32 by default; the values are in [0, 1]).
        separate_folder: write each case into its own sub-folder (as ``SaveImaged``).
        output_key: also keep the maps in the item under this key (``None``: do not keep them).
        sw_device: device running the network (default: the image's).
        allow_missing_keys: skip keys that are absent.

    Raises:
        ValueError: for an ``output_ext`` other than NIfTI, a ``transform`` that is not invertible, or (when called)
            a network without attention gates.

    Examples:
        3D, in a bundle config (``postprocessing`` of ``inference.json``)::

            {"_target_": "attnseg_monai.bundle.attention_maps.AttentionMapsd", "keys": "image",
             "network": "@network", "roi_size": "@roi_size", "transform": "@preprocessing",
             "output_dir": "@output_dir"}

        2D, in Python (maps of a 2D GridAttentionUNet written as single-slice NIfTI files)::

            AttentionMapsd("image", network=net2d, roi_size=(256, 256), output_dir="out")({"image": img})
    """

    def __init__(
        self,
        keys: KeysCollection,
        network: Any,
        roi_size: Sequence[int] | int,
        output_dir: str,
        *,
        transform: InvertibleTransform | None = None,
        sw_batch_size: int = 1,
        overlap: Sequence[float] | float = 0.25,
        mode: str = "gaussian",
        output_postfix: str = "attention",
        output_ext: str = ".nii.gz",
        output_dtype: DtypeLike = np.float32,
        separate_folder: bool = False,
        output_key: str | None = None,
        sw_device: torch.device | str | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        if output_ext not in (".nii.gz", ".nii"):
            raise ValueError(f"output_ext must be '.nii.gz' or '.nii' (attention maps are NIfTI), got {output_ext!r}.")
        if transform is not None and not isinstance(transform, InvertibleTransform):
            raise ValueError(
                f"transform must be an invertible MONAI transform (the preprocessing Compose), got "
                f"{type(transform).__name__}; pass None to write the maps on the network's grid."
            )
        self.network = network
        self.roi_size = roi_size
        self.output_dir = output_dir
        self.transform = transform
        self.sw_batch_size = sw_batch_size
        self.overlap = overlap
        self.mode = mode
        self.output_postfix = output_postfix
        self.output_ext = output_ext
        self.output_dtype = output_dtype
        self.separate_folder = separate_folder
        self.output_key = output_key
        self.sw_device = sw_device
        self._savers: dict[str, SaveImage] = {}

    def _saver(self, name: str) -> SaveImage:
        if name not in self._savers:
            self._savers[name] = SaveImage(
                output_dir=self.output_dir,
                output_postfix=f"{self.output_postfix}_{name}" if self.output_postfix else name,
                output_ext=self.output_ext,
                output_dtype=self.output_dtype,
                resample=False,
                separate_folder=self.separate_folder,
                writer=SourceGeometryNibabelWriter,
                print_log=False,
            )
        return self._savers[name]

    def _maps_on_input_grid(self, image: torch.Tensor, key: Hashable) -> tuple[torch.Tensor, list[str]]:
        maps, names = sliding_window_attention_maps(
            image[None],
            self.network,
            self.roi_size,
            sw_batch_size=self.sw_batch_size,
            overlap=self.overlap,
            mode=self.mode,
            sw_device=self.sw_device,
            device="cpu",
        )
        maps = maps[0].as_tensor() if isinstance(maps, MetaTensor) else maps[0]
        if isinstance(image, MetaTensor):
            maps = MetaTensor(maps).copy_meta_from(image)
            maps.applied_operations = [dict(op) for op in image.applied_operations]
        if self.transform is not None:
            inverter = Invertd(keys=_MAPS_KEY, transform=self.transform, orig_keys=str(key), nearest_interp=False)
            maps = inverter({str(key): image, _MAPS_KEY: maps})[_MAPS_KEY]
        return maps, names

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d[key]
            maps, names = self._maps_on_input_grid(image, key)
            for channel, name in enumerate(names):
                self._saver(name)(maps[channel : channel + 1])
            if self.output_key is not None:
                d[self.output_key] = maps
        return d
