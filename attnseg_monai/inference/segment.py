"""One case through the bundle: its inferer, its postprocessing, then its outputs, as ``monai.bundle run`` does.

:class:`CaseSegmenter` holds the loaded bundle parts and one run's settings. :meth:`~CaseSegmenter.infer` has the
engine's semantics (collate, the bundle's inferer with the bundle's network, decollate, merge, postprocess) and adds
what a run asked for: probabilities and attention maps, inverted like the prediction. :meth:`~CaseSegmenter.write`
writes every output of a case to temporary files: the labels through the bundle's own ``SaveImage`` objects (so
``attnseg infer`` and ``monai.bundle run`` write the same bytes), the extras through :mod:`attnseg_monai.io.writers`.

The bundle's inferer is never changed: a run that needs probabilities from an inferer that returns labels, or a
window progress bar, uses a shallow copy made once per run with that attribute set.
"""

from __future__ import annotations

import copy
import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.transforms import EnsureChannelFirst, Invertd

from ..inferers.ensemble import Augmentation, ProbabilityEnsemble, entropy
from ..inferers.slab import class_labels, class_probabilities
from ..io.writers import write_attention, write_map, write_overlay, write_probabilities
from .bundle_loader import BundleParts
from .errors import InputError, describe_error
from .inputs import CaseInput
from .loading import check_image
from .options import RunSettings, SlideSettings
from .outputs import OutputPlan, OutputSpec
from .slides import open_slide
from .wsi import predict_slide

__all__ = ["UNCERTAINTY_MAPS", "CaseSegmenter", "label_array"]

logger = logging.getLogger(__name__)

#: uncertainty maps a run writes with ``save_uncertainty`` (mutual information needs several samples)
UNCERTAINTY_MAPS = ("entropy", "mutual_information")
#: windows from which a case shows its own progress bar
WINDOW_BAR_FROM = 32


def label_array(value: Any, dims: int) -> np.ndarray:
    """A postprocessed output as a ``(*spatial)`` array (channel dropped; argmax when it holds several channels)."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    if arr.ndim == dims + 1:
        arr = np.argmax(arr, axis=0) if arr.shape[0] > 1 else arr[0]
    return arr


def _spatial_shape(value: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in value.shape[1:])


def _trim(shape: Any) -> tuple[int, ...]:
    return tuple(int(s) for s in shape if int(s) != 1)


class CaseSegmenter:
    """The bundle's inference for one run (see the module docstring).

    Args:
        parts: the loaded bundle.
        device: where inputs go.
        run: the run's settings.
    """

    def __init__(
        self,
        parts: BundleParts,
        device: torch.device,
        run: RunSettings,
        members: Sequence[torch.nn.Module] | None = None,
        augmentations: Sequence[Augmentation] | None = None,
    ) -> None:
        self.parts = parts
        self.device = device
        self.run = run
        self.dims = parts.input_dims or parts.spatial_dims
        self.members = list(members or [parts.network])
        self.augmentations = list(augmentations or [])
        self.samples = len(self.members) * max(1, len(self.augmentations))
        self.mutual = run.save_uncertainty and self.samples > 1  # the samples' mean entropy rides as channel C
        self._ensemble: ProbabilityEnsemble | None = None
        self._last: Any = parts.network  # the network the last single-model case ran (its engine goes to the manifest)
        inferer = parts.inferer
        self.kind = getattr(inferer, "output", None)  # attnseg's slab inferers return labels/probabilities/logits
        self.want_probs = run.save_probabilities or run.save_uncertainty
        self.override = None
        if self.mutual and self.kind in ("labels", "probabilities"):
            self.override = "logits"  # stitched linearly, split into the prediction and the mean entropy
        elif self.want_probs and self.kind == "labels":
            self.override = "probabilities"
        if self.override is not None:
            inferer = copy.copy(inferer)
            inferer.output = self.override
        self.quiet = inferer
        self.loud = inferer
        if run.progress and hasattr(inferer, "progress"):
            self.loud = copy.copy(inferer)
            self.loud.progress = True

    # ------------------------------------------------------------------ network
    def _windows(self, x: torch.Tensor) -> int:
        roi = getattr(self.parts.inferer, "roi_size", None)
        if roi is None or self.loud is self.quiet or any(r is None for r in np.atleast_1d(roi)):
            return 1
        overlap = float(np.max(np.atleast_1d(getattr(self.parts.inferer, "overlap", 0.25))))
        windows = 1
        for size, r in zip(x.shape[2:], np.atleast_1d(roi)):
            step = max(1.0, int(r) * (1 - overlap))
            windows *= max(1, math.ceil(max(int(size) - int(r), 0) / step) + 1)
        return windows

    def _network_for(self, x: torch.Tensor) -> Any:
        """The callable the bundle's inferer runs: the network (which the inferer puts on its fast path), or the
        ensemble of the members' prepared copies and the test-time augmentations."""
        if self.samples == 1 and not self.mutual:
            fast = getattr(self.parts.inferer, "fast_network", None)
            self._last = fast(x, self.parts.network) if fast is not None else self.parts.network
            return self._last
        if self._ensemble is None:
            inferer = self.parts.inferer
            policy = inferer.policy_for(x.device)
            members = [inferer.prepare(m, policy) if inferer.uses_prepared(policy) else m for m in self.members]
            self._ensemble = ProbabilityEnsemble(members, self.augmentations or None, expected_entropy=self.mutual)
        return self._ensemble

    def engine_used(self) -> str:
        """The engine that ran the network on the last case, for the manifest: ``"openvino"`` or ``"torch"`` (also
        after OpenVINO fell back), ``"openvino+torch"`` when ensemble members ran on different engines."""
        nets = self._ensemble.members if self._ensemble is not None else [self._last]
        return "+".join(sorted({str(getattr(n, "engine", "torch")) for n in nets}))

    def _pred_and_probs(self, raw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(what the bundle's inferer returns, probabilities or None, the samples' mean entropy or None)``."""
        mean_entropy = None
        if self.mutual:
            raw, mean_entropy = raw[:, :-1], raw[:, -1:].float()
        if self.override == "logits":  # averaged logits (log mean probabilities for an ensemble)
            probs = class_probabilities(raw.float())
            pred = class_labels(raw) if self.kind == "labels" else probs.half()
            return pred, probs, mean_entropy
        if self.override == "probabilities":  # the labels-only inferer's copy: labels are their argmax
            probs = raw.float()
            logits = probs - 0.5 if probs.shape[1] == 1 else probs  # p > 0.5 for one channel, argmax otherwise
            return class_labels(logits), probs, mean_entropy
        probs = None
        if self.want_probs:
            if self.kind in ("labels", "probabilities"):
                probs = raw.float()
            elif self.parts.activation == "softmax":
                probs = torch.softmax(raw.float(), 1)
            else:
                probs = torch.sigmoid(raw.float())
        return raw, probs, mean_entropy

    def _attention(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        net = self._network_for(x)
        if isinstance(net, ProbabilityEnsemble):  # an ensemble shows the first member's attention
            net = net.members[0]
        maps = net.attention_maps(x)
        out = {}
        mode = "bilinear" if x.ndim == 4 else "trilinear"
        for name, m in maps.items():
            m = m.float()
            if all(int(s) == 1 for s in m.shape[2:]):
                continue  # channel attention: no spatial extent to show
            if m.shape[1] > 1:
                m = m.mean(1, keepdim=True)
            if tuple(m.shape[2:]) != tuple(x.shape[2:]):
                m = F.interpolate(m, size=tuple(x.shape[2:]), mode=mode, align_corners=False)
            out[str(name)] = m
        return out

    def _attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention maps stitched like the prediction (MONAI's sliding window with the bundle's window settings
        when the bundle's inferer cannot return a dict of maps)."""
        from monai.inferers import SimpleInferer, SlidingWindowInferer

        inferer = self.quiet
        if not isinstance(inferer, (SimpleInferer, SlidingWindowInferer)):
            roi = getattr(inferer, "roi_size", None)
            if roi is None:
                inferer = SimpleInferer()
            else:
                mode = getattr(inferer, "mode", "constant")
                inferer = SlidingWindowInferer(
                    roi_size=roi,
                    sw_batch_size=int(getattr(inferer, "sw_batch_size", 1)),
                    overlap=getattr(inferer, "overlap", 0.25),
                    mode=str(getattr(mode, "value", mode)),
                )
        maps = inferer(x, self._attention)
        if not isinstance(maps, Mapping):
            raise RuntimeError("the inferer did not return a dict of attention maps")
        return dict(maps)

    def infer(self, data: dict[str, Any], *, extras: bool = True) -> dict[str, Any]:
        """Network + postprocessing for one preprocessed case, plus probabilities/attention maps when asked."""
        parts = self.parts
        key = parts.image_key
        batch = list_data_collate([data])
        x = batch[key].to(self.device)
        inferer = self.loud if self._windows(x) >= WINDOW_BAR_FROM else self.quiet
        with torch.inference_mode():
            pred, probs, mean_entropy = self._pred_and_probs(inferer(x, self._network_for(x)))
            if not extras:
                probs = mean_entropy = None
            attention: dict[str, torch.Tensor] = {}
            if extras and self.run.save_attention:
                if not hasattr(parts.network, "attention_maps"):
                    logger.warning("%s has no attention_maps(); no attention maps written.", type(parts.network))
                else:
                    try:
                        attention = self._attention_maps(x)
                    except Exception as exc:  # noqa: BLE001 - attention maps are optional extras
                        logger.warning("attention maps not written: %s", describe_error(exc))
        outputs = {key: batch[key], "pred": pred}
        if probs is not None and self.run.save_probabilities:
            outputs["_probabilities"] = probs
        if probs is not None and self.run.save_uncertainty:
            outputs["_entropy"] = entropy(probs)
            if mean_entropy is not None:  # mutual information: what the samples disagree on
                outputs["_mutual_information"] = (outputs["_entropy"] - mean_entropy).clamp_min(0)
        for name, m in attention.items():
            outputs[f"_attention_{name}"] = m
        item = dict(decollate_batch(batch)[0])
        item.update(decollate_batch(outputs)[0])
        extra_keys = [k for k in outputs if k.startswith("_")]
        with torch.inference_mode():
            item = parts.postprocessing(item)
            for inv in parts.inverters if extra_keys else []:
                item = Invertd(
                    keys=extra_keys, transform=inv.transform, orig_keys=inv.orig_keys[0], nearest_interp=False
                )(item)
        return item

    def predict_array(self, image: Any, meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Segment one channel-first image held in memory (see :meth:`BundlePredictor.predict_array`)."""
        parts = self.parts
        arr = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.array(image, copy=True))
        img = MetaTensor(arr.float(), meta=dict(meta or {}))
        img.meta["original_channel_dim"] = 0
        img.meta.setdefault("spatial_shape", tuple(arr.shape[1:]))
        img.meta.setdefault("filename_or_obj", "array")
        data = parts.preprocessing({parts.image_key: img})
        check_image(data[parts.image_key], parts, "array")
        item = self.infer(data)
        out = {}
        for spec in parts.outputs:
            if spec.key not in item:
                raise RuntimeError(f"postprocessing produced no '{spec.key}' (the bundle's SaveImaged key)")
            out[spec.postfix] = label_array(item[spec.key], self.dims)
        for key, value in item.items():
            if isinstance(key, str) and key.startswith("_") and isinstance(value, torch.Tensor):
                out[key[1:]] = value.detach().cpu().float().numpy()
        return out

    # ------------------------------------------------------------------ outputs
    def _labels(self, item: Mapping[str, Any], spec: OutputSpec, shape: tuple[int, ...]) -> Any:
        if spec.key not in item:
            raise RuntimeError(f"postprocessing produced no '{spec.key}' (the bundle's SaveImaged key)")
        value = item[spec.key]
        spatial = _spatial_shape(value) if value.ndim == len(shape) + 1 else tuple(int(s) for s in value.shape)
        if spatial != shape and _trim(spatial) != _trim(shape):
            raise RuntimeError(
                f"output '{spec.postfix}' has shape {spatial} but the input {shape}: the bundle's postprocessing "
                "must invert its spatial preprocessing (Invertd)"
            )
        return value

    def write(
        self, case_id: str, item: Mapping[str, Any], source: Mapping[str, Any], plan: OutputPlan
    ) -> dict[str, tuple[Path, Path]]:
        """Write every output of one case to temporary files; returns ``{name: (final, temporary)}``."""
        produced: dict[str, tuple[Path, Path]] = {}

        def new(name: str, final: Path) -> Path:
            tmp = plan.temporary(final)
            produced[name] = (final, tmp)
            return tmp

        try:
            shape = tuple(int(s) for s in source["spatial_shape"])
            first = None
            finals = plan.label_files(case_id)
            for spec in plan.outputs:
                value = self._labels(item, spec, shape)
                tmp = new(spec.postfix, finals[spec.postfix])
                name = str(tmp)
                saver = copy.copy(spec.saver)  # SaveImage keeps a channel_dim=None it once chose: start afresh
                saver.data_kwargs = dict(spec.saver.data_kwargs)
                saver(value, meta_data=getattr(value, "meta", None), filename=name[: -len(spec.ext)])
                first = label_array(value, self.dims) if first is None else first
            meta = dict(getattr(item.get("pred"), "meta", None) or source)
            if self.run.save_probabilities:
                probs = item["_probabilities"]
                if tuple(probs.shape[1:]) != shape and _trim(probs.shape[1:]) == _trim(shape):
                    probs = probs.reshape(probs.shape[0], *shape)
                final = plan.path(case_id, "probabilities", plan.extra_ending("probabilities"))
                write_probabilities(new("probabilities", final), probs, meta)
            for name in UNCERTAINTY_MAPS:
                if f"_{name}" in item:
                    write_map(new(name, plan.path(case_id, name, plan.extra_ending(name))), item[f"_{name}"], meta)
            for key, value in item.items():
                if isinstance(key, str) and key.startswith("_attention_"):
                    name = f"attention_{key[len('_attention_') :]}"
                    write_attention(new(name, plan.path(case_id, name, plan.extra_ending(name))), value, meta)
            if self.run.save_overlays and first is not None:
                raw = source.get("raw")
                if raw is None:
                    logger.warning("no overlay for %s: a format only the bundle's own loader reads", case_id)
                else:
                    write_overlay(new("overlay", plan.path(case_id, "overlay", ".png")), raw, first)
        except BaseException:
            for _, tmp in produced.values():
                tmp.unlink(missing_ok=True)
            raise
        return produced

    @staticmethod
    def uncertainty_scores(item: Mapping[str, Any]) -> dict[str, float]:
        """Per-case scores for the manifest and ``attnseg rank``: the mean of each uncertainty map (input grid)."""
        return {name: float(item[f"_{name}"].float().mean()) for name in UNCERTAINTY_MAPS if f"_{name}" in item}

    # ------------------------------------------------------------------ slides
    def predict_slide(self, case: CaseInput, plan: OutputPlan, slides: SlideSettings, record: dict) -> None:
        """Segment a whole-slide image tile by tile into tiled TIFFs and a preview, then commit them."""
        parts = self.parts
        raise_for_slide(parts, case.path)
        finals = plan.expected(case.case_id, "wsi")
        produced = {name: (final, plan.temporary(final)) for name, final in finals.items()}
        outputs = {}
        for spec in plan.outputs:
            dtype = spec.dtype if spec.dtype is not None else np.dtype(np.uint8)
            outputs[spec.key] = (produced[spec.postfix][1], dtype, "inst" in spec.key or dtype.itemsize >= 2)
        try:
            plan.check_conflicts(finals.values())
            margin = slides.wsi_margin
            if margin is None:
                roi = getattr(parts.inferer, "roi_size", None)
                margin = max(32, int(np.max(np.atleast_1d(roi))) // 2) if roi is not None else 64
            preview_key = next((s.key for s in plan.outputs if not outputs[s.key][2]), plan.outputs[0].key)
            with open_slide(case.path, slides.wsi_backend) as source:
                result = predict_slide(
                    source,
                    self.tile_function(case.path),
                    outputs,
                    preview_path=produced["preview"][1],
                    preview_key=preview_key,
                    level=slides.wsi_level,
                    tile_size=slides.wsi_tile_size,
                    margin=margin,
                    tissue=slides.wsi_tissue,
                    progress=self.run.progress,
                    desc=case.case_id,
                )
            plan.commit(case.case_id, {**record, "slide": result.as_dict(), "engine": self.engine_used()}, produced)
        finally:
            for _, tmp in produced.values():
                tmp.unlink(missing_ok=True)

    def tile_function(self, path: Path):
        """``region (H, W, C) uint8 -> {key: labels (H, W)}`` for :func:`~attnseg_monai.inference.wsi.predict_slide`."""
        parts = self.parts

        def predict_tile(region: np.ndarray) -> dict[str, np.ndarray]:
            rgb = region if parts.in_channels == 3 else region.mean(-1, keepdims=True)
            arr = torch.as_tensor(np.ascontiguousarray(rgb.transpose(1, 0, 2)).astype(np.float32))
            img = MetaTensor(arr, meta={"original_channel_dim": -1, "spatial_shape": tuple(arr.shape[:2])})
            img.meta["filename_or_obj"] = str(path)
            if parts.ensure_channel_first:  # as the bundle's loader would deliver a (x, y, C) image
                img = EnsureChannelFirst()(img)
            data = parts.preprocessing({parts.image_key: img})
            check_image(data[parts.image_key], parts, path)
            item = self.infer(data, extras=False)
            out = {}
            for spec in parts.outputs:
                labels = label_array(item[spec.key], 2)
                if spec.scale:
                    labels = np.clip(labels.astype(np.float32), 0, 1) * float(spec.scale)
                out[spec.key] = labels.T
            return out

        return predict_tile


def raise_for_slide(parts: BundleParts, path: Path) -> None:
    """Whole-slide images need a 2D bundle with 1 or 3 input channels."""
    if (parts.input_dims or parts.spatial_dims) != 2 or parts.in_channels not in (1, 3):
        raise InputError(path, "whole-slide images need a 2D bundle with 1 or 3 input channels")
