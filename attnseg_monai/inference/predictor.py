"""Batch prediction with a bundle: construct with settings, load a bundle, predict files or arrays.

nnU-Net v2's predictor shape, on MONAI bundles::

    from attnseg_monai.inference import BundlePredictor

    predictor = BundlePredictor(device="auto", save_overlays=True).from_bundle("hannet")
    summary = predictor.predict_files("slides/", "predictions/")   # folder, glob, datalist JSON or list of paths
    if not summary.ok:
        for failure in summary.failed:
            print(failure["input"], failure["error"])

The bundle's own pieces do the segmentation (see :mod:`~attnseg_monai.inference.bundle_loader`); the predictor owns
the loop around them:

- inputs are read by :mod:`~attnseg_monai.inference.readers` in DataLoader workers, so loading overlaps compute;
  a broken file fails its case with the reason and the batch goes on (a reader that crashes its worker process is
  isolated and blamed on its file);
- every output goes to a temporary file, is hashed, recorded, then renamed (:mod:`~.manifest`), so a rerun skips
  finished cases, redoes partial ones, and never overwrites a file it did not write unless ``overwrite=True``;
- under ``torchrun`` or with ``RANK``/``WORLD_SIZE`` each process takes its shard of the sorted inputs
  (:mod:`~.sharding`);
- whole-slide images go tile by tile through :mod:`~.wsi`.
"""

from __future__ import annotations

import logging
import math
import os
import time
import traceback
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.data import MetaTensor, decollate_batch, list_data_collate
from monai.transforms import EnsureChannelFirst, Invertd

from ..data.fileio import sha256_file
from ..precision import PRECISIONS, PrecisionPolicy, prepare_for_inference, resolve_policy
from .bundle_loader import BundleParts, OutputSpec, load_bundle
from .errors import InputError, OutputConflictError
from .inputs import CaseInput, collect_inputs
from .loading import BUNDLE_LOADER_SUFFIXES, check_image, iterate_cases
from .manifest import Manifest
from .readers import describe_error, is_whole_slide, reader_for
from .sharding import barrier, maybe_init_process_group, resolve_rank, shard
from .writers import (
    LABEL_EXTENSIONS,
    cleanup_temporary,
    output_path,
    temporary_path,
    write_attention,
    write_label,
    write_overlay,
    write_probabilities,
)
from .wsi import WSI_BACKENDS, open_slide, predict_slide

__all__ = ["BundlePredictor", "PredictionSummary"]

logger = logging.getLogger(__name__)

_WSI_MODES = ("auto", "always", "never")


@dataclass
class PredictionSummary:
    """What :meth:`BundlePredictor.predict_files` did in this process.

    ``written``: case ids segmented now; ``skipped``: finished earlier, outputs verified; ``failed``: dicts with
    ``case``, ``input`` and ``error``; ``ignored``: files of the input folder that are not images (``path``,
    ``reason``); ``stale``: skipped cases made with another checkpoint or bundle version (rerun with ``overwrite``);
    ``manifest_counts``: records by status in the merged manifest (all processes, once merged).
    """

    output_dir: str
    manifest: str
    rank: int = 0
    world_size: int = 1
    total: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No case of this process failed."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ok"] = self.ok
        return out


def _reason(exc: BaseException) -> str:
    if isinstance(exc, (InputError, OutputConflictError)):
        return str(exc.reason) if isinstance(exc, InputError) else str(exc)
    return describe_error(exc, limit=500)


def _trim(shape: Any) -> tuple[int, ...]:
    """A shape without its singleton axes."""
    return tuple(int(s) for s in shape if int(s) != 1)


class BundlePredictor:
    """Segment files or arrays with a MONAI bundle: robust, resumable, shardable.

    Args:
        device: ``"auto"`` (CUDA when available, the local rank's GPU under ``torchrun``), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        overwrite: replace outputs this folder's manifest did not write (and recompute finished cases).
        save_probabilities: also write class probabilities (2D: float32 TIFF; 3D: 4D NIfTI).
        save_overlays: also write an RGB PNG with the label contours over the image.
        save_attention: also write the network's spatial attention maps (``net.attention_maps``), one file each.
        num_workers: DataLoader worker processes reading and preprocessing ahead (0: in this process).
        progress: progress bars over cases, windows of large images, and slide tiles.
        precision: ``"auto"`` (the bundle's ``precision`` key, else chosen per device: bfloat16 + channels-last
            with batch norm folded on CPUs with AMX/AVX-512 BF16, bf16/fp16 on CUDA, float32 elsewhere), ``"fp32"``
            (the untouched float32 network), ``"bf16"`` or ``"fp16"``; see :mod:`attnseg_monai.precision` and
            ``docs/benchmarks.md`` (reduced precision may move class borders by a pixel).
        output_ext: ending of the label outputs (default: the bundle's, e.g. ``.png`` or ``.nii.gz``).
        wsi: ``"auto"`` (slides by ending, pyramidal/huge TIFFs), ``"always"`` or ``"never"``.
        wsi_tile_size: slide tile edge in pixels (a multiple of 256).
        wsi_level: pyramid level segmented.
        wsi_backend: ``"auto"``, ``"openslide"``, ``"cucim"`` or ``"tifffile"``.
        wsi_tissue: ``"otsu"`` (only tiles with tissue) or ``"all"``.
        wsi_margin: context around each slide tile (default: half the inferer's window, at least 32).
        rank: this process's shard (default: ``torch.distributed`` or ``RANK``).
        world_size: number of shards (default: ``torch.distributed`` or ``WORLD_SIZE``).
        datalist_key: which list of a datalist JSON to read.

    Raises:
        ValueError: for an unknown option value.

    Example::

        >>> # 2D: nuclei in H&E tiles, with overlays
        >>> BundlePredictor(save_overlays=True).from_bundle("hannet").predict_files("tiles/", "out/")
        >>> # 3D: CT volumes on the GPU, probabilities kept
        >>> p = BundlePredictor(device="cuda", save_probabilities=True).from_bundle("attention_unet")
        >>> p.predict_files("ct/*.nii.gz", "out_ct/")
    """

    def __init__(
        self,
        device: str = "auto",
        overwrite: bool = False,
        save_probabilities: bool = False,
        save_overlays: bool = False,
        save_attention: bool = False,
        num_workers: int = 2,
        progress: bool = True,
        *,
        precision: str = "auto",
        output_ext: str | None = None,
        wsi: str = "auto",
        wsi_tile_size: int = 1024,
        wsi_level: int = 0,
        wsi_backend: str = "auto",
        wsi_tissue: str = "otsu",
        wsi_margin: int | None = None,
        rank: int | None = None,
        world_size: int | None = None,
        datalist_key: str | None = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}.")
        if wsi not in _WSI_MODES:
            raise ValueError(f"wsi must be one of {_WSI_MODES}, got {wsi!r}.")
        if wsi_backend not in WSI_BACKENDS:
            raise ValueError(f"wsi_backend must be one of {WSI_BACKENDS}, got {wsi_backend!r}.")
        if wsi_tissue not in ("otsu", "all"):
            raise ValueError(f"wsi_tissue must be 'otsu' or 'all', got {wsi_tissue!r}.")
        if not isinstance(wsi_tile_size, int) or wsi_tile_size < 256 or wsi_tile_size % 256:
            raise ValueError(f"wsi_tile_size must be a positive multiple of 256, got {wsi_tile_size!r}.")
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}.")
        if output_ext is not None:
            output_ext = output_ext if output_ext.startswith(".") else f".{output_ext}"
            if output_ext.lower() not in LABEL_EXTENSIONS:
                raise ValueError(f"output_ext must be one of {', '.join(LABEL_EXTENSIONS)}, got {output_ext!r}.")
            output_ext = output_ext.lower()
        self.rank, self.world_size = resolve_rank(rank, world_size)
        self.device = self._resolve_device(device)
        self.overwrite = bool(overwrite)
        self.save_probabilities = bool(save_probabilities)
        self.save_overlays = bool(save_overlays)
        self.save_attention = bool(save_attention)
        self.num_workers = num_workers
        self.progress = bool(progress)
        self.precision = precision
        self.output_ext = output_ext
        self.wsi = wsi
        self.wsi_tile_size = wsi_tile_size
        self.wsi_level = int(wsi_level)
        self.wsi_backend = wsi_backend
        self.wsi_tissue = wsi_tissue
        self.wsi_margin = wsi_margin
        self.datalist_key = datalist_key
        self._parts: BundleParts | None = None
        self.policy: PrecisionPolicy | None = None  # resolved by from_bundle

    # ------------------------------------------------------------------ set-up
    @staticmethod
    def _resolve_device(device: str | torch.device) -> torch.device:
        text = str(device).lower()
        local = int(os.environ.get("LOCAL_RANK", "0") or 0)
        if text == "auto":
            return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
        if text.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ValueError("device 'cuda' requested but CUDA is not available here; use device='cpu' or 'auto'.")
            return torch.device(f"cuda:{local}") if text == "cuda" else torch.device(text)
        if text == "cpu":
            return torch.device("cpu")
        raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")

    def from_bundle(
        self,
        bundle: str | os.PathLike,
        checkpoint: str | os.PathLike | None = None,
        trust_bundle: bool = False,
        overrides: Mapping[str, Any] | None = None,
    ) -> BundlePredictor:
        """Load a bundle's network (with weights), preprocessing, inferer and postprocessing; returns ``self``.

        Args:
            bundle: a bundle name of this collection (``"hannet"``) or a bundle folder.
            checkpoint: weights file (default ``<bundle>/models/model.pt``), loaded with ``weights_only=True``.
            trust_bundle: required for a bundle folder from outside this collection (its configs run code).
            overrides: config overrides by id (``{"roi_size": [64, 64], "inferer#sw_batch_size": 8}``).

        Raises:
            BundleError, UntrustedBundleError, CheckpointError: see :func:`load_bundle`.
        """
        parts = load_bundle(
            bundle, checkpoint=checkpoint, trust_bundle=trust_bundle, device=self.device, overrides=overrides
        )
        requested = self.precision
        if requested == "auto":  # the bundle's own "precision" key decides when it has one
            requested = str(parts.parser.get_parsed_content("precision", default="auto"))
            if requested not in PRECISIONS:
                raise ValueError(f"the bundle's 'precision' must be one of {PRECISIONS}, got {requested!r}.")
        self.policy = resolve_policy(requested, self.device)
        parts.network = prepare_for_inference(parts.network, self.policy, copy_network=False)
        self._parts = parts
        return self

    @property
    def parts(self) -> BundleParts:
        """The loaded bundle parts.

        Raises:
            RuntimeError: before :meth:`from_bundle`.
        """
        if self._parts is None:
            raise RuntimeError("no bundle loaded: call from_bundle(...) first.")
        return self._parts

    # ------------------------------------------------------------------ network
    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.parts.network(x)  # a FastNetwork: casts to the policy's dtype/layout, returns float32

    def _attention(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        maps = self.parts.network.attention_maps(x)  # FastNetwork casts the input and returns float32 maps
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

    def _set_window_progress(self, x: torch.Tensor) -> None:
        inferer = self.parts.inferer
        if not hasattr(inferer, "progress"):
            return
        roi = getattr(inferer, "roi_size", None)
        windows = 1
        if roi is not None:
            overlap = float(np.max(np.atleast_1d(getattr(inferer, "overlap", 0.25))))
            for size, r in zip(x.shape[2:], np.atleast_1d(roi)):
                step = max(1.0, int(r) * (1 - overlap))
                windows *= max(1, math.ceil(max(int(size) - int(r), 0) / step) + 1)
        inferer.progress = bool(self.progress and windows >= 32)

    def _attention_maps(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Attention maps stitched like the prediction (MONAI's sliding window with the bundle's window settings when
        the bundle's own inferer cannot return a dict of maps)."""
        from monai.inferers import SimpleInferer, SlidingWindowInferer

        inferer = self.parts.inferer
        if not isinstance(inferer, (SimpleInferer, SlidingWindowInferer)):
            roi = getattr(inferer, "roi_size", None)
            if roi is None:
                inferer = SimpleInferer()
            else:
                inferer = SlidingWindowInferer(
                    roi_size=roi,
                    sw_batch_size=int(getattr(inferer, "sw_batch_size", 1)),
                    overlap=getattr(inferer, "overlap", 0.25),
                    mode=str(
                        getattr(getattr(inferer, "mode", "constant"), "value", getattr(inferer, "mode", "constant"))
                    ),
                )
        progress = getattr(inferer, "progress", None)
        if progress is not None:
            inferer.progress = False
        try:
            maps = inferer(x, self._attention)
        finally:
            if progress is not None:
                inferer.progress = progress
        if not isinstance(maps, Mapping):
            raise RuntimeError("the inferer did not return a dict of attention maps")
        return dict(maps)

    def _infer(self, data: dict[str, Any], *, extras: bool = True) -> dict[str, Any]:
        """Network + postprocessing for one preprocessed case (the engine's semantics: collate, infer, decollate,
        merge, postprocess), plus probabilities/attention maps inverted like the prediction."""
        parts = self.parts
        key = parts.image_key
        batch = list_data_collate([data])
        x = batch[key].to(self.device)
        self._set_window_progress(x)
        inferer = parts.inferer
        output_kind = getattr(inferer, "output", None)  # attnseg's slab inferers return labels or probabilities
        want_probs = extras and self.save_probabilities
        switched = want_probs and output_kind == "labels"
        with torch.inference_mode():
            if switched:
                inferer.output = "probabilities"
            try:
                pred = inferer(x, self._forward)
            finally:
                if switched:
                    inferer.output = output_kind
            probs = None
            if want_probs:
                if output_kind in ("labels", "probabilities"):
                    probs = pred.float()
                elif parts.activation == "softmax":
                    probs = torch.softmax(pred.float(), 1)
                else:
                    probs = torch.sigmoid(pred.float())
                if switched:
                    dtype = torch.uint8 if pred.shape[1] <= 256 else torch.int16
                    pred = torch.argmax(pred, dim=1, keepdim=True).to(dtype)
            attention: dict[str, torch.Tensor] = {}
            if extras and self.save_attention:
                if not hasattr(parts.network, "attention_maps"):
                    logger.warning("%s has no attention_maps(); no attention maps written.", type(parts.network))
                else:
                    try:
                        attention = self._attention_maps(x)
                    except Exception as exc:  # noqa: BLE001 - attention maps are optional extras
                        logger.warning("attention maps not written: %s", describe_error(exc))
        outputs = {key: batch[key], "pred": pred}
        if probs is not None:
            outputs["_probabilities"] = probs
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

    def _label_array(self, item: Mapping[str, Any], spec: OutputSpec) -> np.ndarray:
        if spec.key not in item:
            raise RuntimeError(f"postprocessing produced no '{spec.key}' (the bundle's SaveImaged key)")
        value = item[spec.key]
        arr = value.detach().cpu().float().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
        dims = self.parts.input_dims or self.parts.spatial_dims
        if arr.ndim == dims + 1 and arr.shape[0] > 1:
            arr = np.argmax(arr, axis=0)
        elif arr.ndim == dims + 1:
            arr = arr[0]
        return arr

    @staticmethod
    def _scaled(labels: np.ndarray, spec: OutputSpec) -> np.ndarray:
        """``SaveImaged(scale=...)`` semantics: clip to [0, 1] and multiply (0/1 masks written as 0/255)."""
        if not spec.scale:
            return labels
        return np.clip(labels.astype(np.float32), 0, 1) * float(spec.scale)

    # ------------------------------------------------------------------ in-memory
    def predict_array(self, image: Any, meta: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """Segment one image held in memory.

        Args:
            image: channel-first ``(C, *spatial)`` intensities in the layout MONAI's readers produce
                (``LoadImage(image_only=True, ensure_channel_first=True)``): 2D images indexed (x, y), so an RGB
                numpy image ``(H, W, 3)`` is passed as ``rgb.transpose(2, 1, 0)``.
            meta: optional metadata (``affine`` for volumes, when the bundle resamples).

        Returns:
            ``{postfix: labels}`` for each output of the bundle (same layout as ``image`` without channels), plus
            ``"probabilities"`` ``(C, *spatial)`` and ``"attention_<name>"`` maps when those settings are on.

        Raises:
            InputError: when the channels or dimensions do not fit the bundle.
        """
        parts = self.parts
        arr = image if isinstance(image, torch.Tensor) else torch.as_tensor(np.array(image, copy=True))
        img = MetaTensor(arr.float(), meta=dict(meta or {}))
        img.meta["original_channel_dim"] = 0
        img.meta.setdefault("spatial_shape", tuple(arr.shape[1:]))
        img.meta.setdefault("filename_or_obj", "array")
        data = parts.preprocessing({parts.image_key: img})
        check_image(data[parts.image_key], parts, "array")
        item = self._infer(data)
        out = {spec.postfix: self._label_array(item, spec) for spec in parts.outputs}
        for key, value in item.items():
            if isinstance(key, str) and key.startswith("_") and isinstance(value, torch.Tensor):
                out[key[1:]] = value.detach().cpu().float().numpy()
        return out

    # ------------------------------------------------------------------ files
    def _label_ext(self, spec: OutputSpec) -> str:
        return self.output_ext or spec.ext

    def _expected_names(self, kind: str) -> set[str]:
        names = {spec.postfix for spec in self.parts.outputs}
        if kind == "wsi":
            return names | {"preview"}
        if self.save_probabilities:
            names.add("probabilities")
        if self.save_overlays:
            names.add("overlay")
        return names

    def _settings(self) -> dict[str, Any]:
        return {
            "save_probabilities": self.save_probabilities,
            "save_overlays": self.save_overlays,
            "save_attention": self.save_attention,
            "precision": self.policy.name if self.policy is not None else self.precision,
            "output_ext": self.output_ext,
        }

    def _plan(self, case: CaseInput, kind: str, manifest: Manifest) -> tuple[str, str]:
        """``("skip"|"promote"|"run", why)`` for one case."""
        record = manifest.get(case.case_id)
        if self.overwrite:
            return "run", "overwrite"
        if record is None:
            return "run", "new"
        if record.get("input") != str(case.path):
            return "run", "different input"
        try:
            st = case.path.stat()
            if not case.path.is_dir() and (
                record.get("input_bytes") != st.st_size or record.get("input_mtime_ns") != st.st_mtime_ns
            ):
                return "run", "input changed"
        except OSError:
            return "run", "input missing"
        if record.get("status") == "failed":
            return "run", "failed before"
        missing, changed = manifest.verify_outputs(record)
        outputs = record.get("outputs") or {}
        wanted = self._expected_names(kind)
        if self.save_attention and kind != "wsi" and not (record.get("settings") or {}).get("save_attention"):
            return "run", "attention maps wanted"
        if missing or changed or not wanted <= set(outputs):
            return "run", "partial"
        return ("skip", "done") if record.get("status") == "done" else ("promote", "complete")

    def _check_conflicts(self, finals: Iterable[Path], manifest: Manifest) -> list[Path]:
        """Raise if an output exists that the manifest did not write; returns outputs that changed since written."""
        changed = []
        for final in finals:
            if not final.exists():
                continue
            ours = manifest.written_by_us(final)
            if self.overwrite:
                continue
            if ours is None:
                raise OutputConflictError(
                    f"output {final.name} already exists and was not written by this folder's manifest; "
                    "pass --overwrite (overwrite=True) to replace it"
                )
            if ours is False:
                changed.append(final)
        return changed

    def _base_record(self, case: CaseInput, kind: str) -> dict[str, Any]:
        parts = self.parts
        record: dict[str, Any] = {
            "input": str(case.path),
            "kind": kind,
            "bundle": parts.name,
            "bundle_version": parts.version,
            "checkpoint_sha256": parts.checkpoint_sha256,
            "settings": self._settings(),
        }
        try:
            st = case.path.stat()
            record["input_bytes"], record["input_mtime_ns"] = st.st_size, st.st_mtime_ns
        except OSError:
            pass
        return record

    def _commit(
        self,
        case: CaseInput,
        kind: str,
        produced: dict[str, tuple[Path, Path]],
        manifest: Manifest,
        started: float,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Hash the temporary files, journal ``writing``, rename them into place, journal ``done``."""
        outputs = {}
        for name, (final, tmp) in produced.items():
            outputs[name] = {"path": manifest.relative(final), "sha256": sha256_file(tmp), "bytes": tmp.stat().st_size}
        for final in self._check_conflicts([f for f, _ in produced.values()], manifest):
            manifest.move_aside(final)
        record = {**self._base_record(case, kind), **(extra or {}), "outputs": outputs, "error": None}
        manifest.update(case.case_id, status="writing", **record)
        for final, tmp in produced.values():
            os.replace(tmp, final)
        record["seconds"] = round(time.perf_counter() - started, 3)
        manifest.update(case.case_id, status="done", **record)

    def _write_case(
        self, case: CaseInput, item: Mapping[str, Any], source: Mapping[str, Any], out_dir: Path
    ) -> dict[str, tuple[Path, Path]]:
        parts = self.parts
        produced: dict[str, tuple[Path, Path]] = {}
        shape = tuple(source["spatial_shape"])

        def new(name: str, ext: str) -> tuple[Path, Path]:
            final = output_path(out_dir, case.case_id, name, ext)
            tmp = temporary_path(final, self.rank)
            produced[name] = (final, tmp)
            return final, tmp

        first_labels = None
        for spec in parts.outputs:
            labels = self._label_array(item, spec)
            if tuple(labels.shape) != shape and _trim(labels.shape) == _trim(shape):
                labels = labels.reshape(shape)  # a one-slice volume whose singleton axis moved on the way
            if tuple(labels.shape) != shape:
                raise RuntimeError(
                    f"output '{spec.postfix}' has shape {tuple(labels.shape)} but the input {shape}: the bundle's "
                    "postprocessing must invert its spatial preprocessing (Invertd)"
                )
            _, tmp = new(spec.postfix, self._label_ext(spec))
            write_label(tmp, self._scaled(labels, spec), source, spec.dtype)
            first_labels = labels if first_labels is None else first_labels
        ext3d = ".nii.gz"
        dims = parts.input_dims or parts.spatial_dims
        if self.save_probabilities:
            probs = item["_probabilities"]
            if tuple(probs.shape[1:]) != shape and _trim(probs.shape[1:]) == _trim(shape):
                probs = probs.reshape(probs.shape[0], *shape)
            _, tmp = new("probabilities", ".tif" if dims == 2 else ext3d)
            write_probabilities(tmp, probs, source)
        for key, value in item.items():
            if isinstance(key, str) and key.startswith("_attention_"):
                _, tmp = new(f"attention_{key[len('_attention_') :]}", ".png" if dims == 2 else ext3d)
                write_attention(tmp, value, source)
        if self.save_overlays and first_labels is not None:
            try:
                raw = EnsureChannelFirst()(reader_for(case.path).read(case.path))
            except InputError as exc:  # a format only the bundle's own loader reads
                logger.warning("no overlay for %s: %s", case.path, exc.reason)
            else:
                _, tmp = new("overlay", ".png")
                write_overlay(tmp, raw, first_labels)
        return produced

    def _predict_tile_fn(self, path: Path):
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
            item = self._infer(data, extras=False)
            return {spec.key: self._scaled(self._label_array(item, spec), spec).T for spec in parts.outputs}

        return predict_tile

    def _predict_slide(self, case: CaseInput, out_dir: Path, manifest: Manifest, started: float) -> None:
        parts = self.parts
        if (parts.input_dims or parts.spatial_dims) != 2 or parts.in_channels not in (1, 3):
            raise InputError(case.path, "whole-slide images need a 2D bundle with 1 or 3 input channels")
        produced: dict[str, tuple[Path, Path]] = {}
        outputs = {}
        for spec in parts.outputs:
            final = output_path(out_dir, case.case_id, spec.postfix, ".tif")
            tmp = temporary_path(final, self.rank)
            produced[spec.postfix] = (final, tmp)
            dtype = np.dtype(spec.dtype) if spec.dtype is not None else np.dtype(np.uint8)
            instance = "inst" in spec.key or dtype.itemsize >= 2
            outputs[spec.key] = (tmp, dtype, instance)
        preview_final = output_path(out_dir, case.case_id, "preview", ".png")
        preview_tmp = temporary_path(preview_final, self.rank)
        produced["preview"] = (preview_final, preview_tmp)
        self._check_conflicts([f for f, _ in produced.values()], manifest)
        margin = self.wsi_margin
        if margin is None:
            roi = getattr(parts.inferer, "roi_size", None)
            margin = max(32, int(np.max(np.atleast_1d(roi))) // 2) if roi is not None else 64
        preview_key = next((s.key for s in parts.outputs if not outputs[s.key][2]), parts.outputs[0].key)
        try:
            with open_slide(case.path, self.wsi_backend) as source:
                result = predict_slide(
                    source,
                    self._predict_tile_fn(case.path),
                    outputs,
                    preview_path=preview_tmp,
                    preview_key=preview_key,
                    level=self.wsi_level,
                    tile_size=self.wsi_tile_size,
                    margin=margin,
                    tissue=self.wsi_tissue,
                    progress=self.progress,
                    desc=case.case_id,
                )
            self._commit(case, "wsi", produced, manifest, started, {"slide": result.as_dict()})
        except BaseException:
            for _, tmp in produced.values():
                tmp.unlink(missing_ok=True)
            raise

    def predict_files(
        self, inputs: str | os.PathLike | Iterable[str | os.PathLike], output_dir: str | os.PathLike
    ) -> PredictionSummary:
        """Segment every input into ``output_dir``; returns what this process did.

        Args:
            inputs: a folder, a glob, a datalist JSON, one file, or a list of paths (see
                :func:`~attnseg_monai.inference.inputs.collect_inputs`).
            output_dir: where outputs, the manifest and its journal go (created).

        Raises:
            ValueError: if the inputs match nothing, or ``output_dir`` is the input folder.
        """
        from tqdm.auto import tqdm

        parts = self.parts
        started_all = time.perf_counter()
        out_dir = Path(output_dir).expanduser().absolute()
        if (
            isinstance(inputs, (str, os.PathLike))
            and Path(inputs).is_dir()
            and Path(inputs).resolve() == out_dir.resolve()
        ):
            raise ValueError("the output folder must not be the input folder (outputs would be read as inputs).")
        out_dir.mkdir(parents=True, exist_ok=True)
        extra = BUNDLE_LOADER_SUFFIXES if parts.custom_loader is not None else ()
        collection = collect_inputs(inputs, exclude=[out_dir], datalist_key=self.datalist_key, extra_suffixes=extra)
        group_started = maybe_init_process_group()
        rank, world = self.rank, self.world_size
        if group_started or (torch.distributed.is_available() and torch.distributed.is_initialized()):
            rank, world = resolve_rank()
        mine = shard(collection.cases, rank, world)
        info = {
            "bundle": parts.name,
            "bundle_root": str(parts.root),
            "bundle_version": parts.version,
            "checkpoint": str(parts.checkpoint) if parts.checkpoint else None,
            "checkpoint_sha256": parts.checkpoint_sha256,
            "outputs": [s.as_dict() for s in parts.outputs],
            "settings": self._settings(),
            "world_size": world,
        }
        manifest = Manifest(out_dir, rank=rank, world_size=world, info=info)
        manifest.load()
        cleanup_temporary(out_dir, rank=None if world == 1 else rank)
        summary = PredictionSummary(
            output_dir=str(out_dir),
            manifest=str(manifest.path),
            rank=rank,
            world_size=world,
            total=len(mine),
            ignored=[{"path": p, "reason": r} for p, r in collection.ignored] if rank == 0 else [],
        )
        for path, reason in collection.ignored if rank == 0 else []:
            logger.info("ignored %s: %s", path, reason)
        bar = tqdm(
            total=len(mine),
            desc=f"attnseg {parts.name}" + (f" [{rank}/{world}]" if world > 1 else ""),
            unit="case",
            disable=not self.progress,
        )
        todo: list[tuple[CaseInput, str]] = []
        try:
            for case in mine:
                kind = self._kind(case)
                action, why = self._plan(case, kind, manifest)
                record = manifest.get(case.case_id) or {}
                if action == "run":
                    todo.append((case, kind))
                    continue
                if action == "promote":
                    manifest.update(case.case_id, **{**record, "status": "done"})
                summary.skipped.append(case.case_id)
                if (
                    record.get("checkpoint_sha256") != parts.checkpoint_sha256
                    or record.get("bundle_version") != parts.version
                ):
                    summary.stale.append(case.case_id)
                bar.update(1)
            for loaded in iterate_cases(todo, parts, self.num_workers):
                case, kind = loaded["case"], loaded["kind"]
                started = time.perf_counter()
                try:
                    if loaded["error"] is not None:
                        raise InputError(case.path, loaded["error"])
                    if kind == "wsi":
                        self._predict_slide(case, out_dir, manifest, started)
                    else:
                        self._check_conflicts(self._known_finals(case, out_dir), manifest)
                        item = self._infer(loaded["data"])
                        produced = self._write_case(case, item, loaded["source"], out_dir)
                        try:
                            self._commit(case, kind, produced, manifest, started)
                        finally:
                            for _, tmp in produced.values():
                                tmp.unlink(missing_ok=True)
                    summary.written.append(case.case_id)
                except Exception as exc:  # noqa: BLE001 - the batch goes on
                    reason = _reason(exc)
                    logger.warning("failed: %s: %s", case.path, reason)
                    logger.debug("%s", traceback.format_exc())
                    previous = (manifest.get(case.case_id) or {}).get("outputs") or {}
                    manifest.update(
                        case.case_id,
                        status="failed",
                        **{**self._base_record(case, kind), "outputs": previous, "error": reason},
                    )
                    summary.failed.append({"case": case.case_id, "input": str(case.path), "error": reason})
                    cleanup_temporary(out_dir, rank=rank)
                bar.update(1)
        finally:
            bar.close()
        self._finish(manifest, summary, group_started, world)
        summary.seconds = round(time.perf_counter() - started_all, 3)
        return summary

    def _finish(self, manifest: Manifest, summary: PredictionSummary, group_started: bool, world: int) -> None:
        """Merge the manifest: with a process group, the other ranks merge first and rank 0 last (it then removes
        every part file); without one, each process merges when done (the last one leaves the complete manifest)."""
        grouped = torch.distributed.is_available() and torch.distributed.is_initialized() and world > 1
        if grouped:
            barrier()  # every rank has processed its shard
            if summary.rank != 0:
                summary.manifest_counts = manifest.finalize()
            barrier()  # every other rank has merged
            if summary.rank == 0:
                summary.manifest_counts = manifest.finalize(sole_writer=True)
                cleanup_temporary(manifest.output_dir)
        else:
            summary.manifest_counts = manifest.finalize(sole_writer=world == 1)
            if world == 1:
                cleanup_temporary(manifest.output_dir)
        if group_started:
            torch.distributed.destroy_process_group()

    def _known_finals(self, case: CaseInput, out_dir: Path) -> list[Path]:
        finals = [output_path(out_dir, case.case_id, s.postfix, self._label_ext(s)) for s in self.parts.outputs]
        if self.save_overlays:
            finals.append(output_path(out_dir, case.case_id, "overlay", ".png"))
        if self.save_probabilities:
            finals.append(
                output_path(
                    out_dir,
                    case.case_id,
                    "probabilities",
                    ".tif" if (self.parts.input_dims or self.parts.spatial_dims) == 2 else ".nii.gz",
                )
            )
        return finals

    def _kind(self, case: CaseInput) -> str:
        if self.wsi == "never" or case.path.is_dir():
            return "image"
        if self.wsi == "always":
            return "wsi"
        return "wsi" if is_whole_slide(case.path) else "image"
