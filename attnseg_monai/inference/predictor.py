"""Batch prediction with a bundle, in nnU-Net v2's shape: model settings in the constructor, run settings per call.

::

    from attnseg_monai.inference import BundlePredictor

    predictor = BundlePredictor(device="auto", precision="auto").from_bundle("hannet")
    summary = predictor.predict_files("slides/", "predictions/", save_overlays=True)
    if not summary.ok:
        for failure in summary.failed:
            print(failure["input"], failure["error"])

The bundle's own pieces segment (:mod:`~attnseg_monai.inference.bundle_loader`, :mod:`~.segment`): its
preprocessing, its inferer with its precision, its postprocessing and its ``SaveImage`` writers, so
``attnseg infer`` and ``python -m monai.bundle run`` write the same files. The predictor owns the loop around them:

- inputs are read by :mod:`~attnseg_monai.inference.readers` in DataLoader workers (:mod:`~.loading`), so loading
  overlaps compute; a broken file fails its case with the reason and the batch goes on;
- every output goes to a temporary file, is hashed, recorded, then renamed (:mod:`~.outputs`, :mod:`~.manifest`),
  so a rerun skips finished cases, redoes partial ones, and never overwrites a file it did not write unless
  ``overwrite=True``;
- under ``torchrun`` or with ``RANK``/``WORLD_SIZE`` each process takes its shard of the sorted inputs
  (:mod:`~.sharding`);
- whole-slide images go tile by tile through :mod:`~.wsi`.

Settings are declared once, in :mod:`~.options`: :class:`~.options.ModelSettings` (constructor and
:meth:`BundlePredictor.from_bundle`), :class:`~.options.RunSettings` and :class:`~.options.SlideSettings`
(keywords of :meth:`BundlePredictor.predict_files`).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch

from ..inferers.ensemble import Augmentation
from ..io.suffixes import BUNDLE_LOADER_SUFFIXES
from .bundle_loader import BundleParts, load_bundle
from .errors import InputError
from .inputs import CaseInput, collect_inputs
from .loading import iterate_cases
from .manifest import Manifest
from .members import load_members, member_checkpoints, member_tta
from .options import ModelSettings, RunSettings, SlideSettings, int_list, resolve_device, split_settings
from .outputs import OutputPlan, subject_of
from .segment import CaseSegmenter
from .sharding import barrier, maybe_init_process_group, resolve_rank, shard
from .slides import is_whole_slide
from .summary import PredictionSummary, failure_reason

__all__ = ["BundlePredictor", "PredictionSummary"]

logger = logging.getLogger(__name__)


class BundlePredictor:
    """Segment files or arrays with a MONAI bundle: robust, resumable, shardable.

    Args:
        device: ``"auto"`` (CUDA when available, the local rank's GPU under ``torchrun``), ``"cpu"``, ``"cuda"`` or
            ``"cuda:N"``.
        precision: ``"auto"`` (the bundle's ``precision`` key: bf16 + channels-last with batch norm folded on CPUs
            with AMX/AVX-512 BF16, bf16/fp16 on CUDA, float32 elsewhere), ``"fp32"`` (the untouched float32
            network), ``"bf16"`` or ``"fp16"``; given to the bundle's own inferer (see :mod:`attnseg_monai.precision`
            and ``docs/benchmarks.md``; reduced precision may move class borders by a pixel).
        engine: ``"auto"`` (OpenVINO on the CPU when installed and ``precision`` is ``"auto"``, else torch),
            ``"torch"`` or ``"openvino"``; replaces the bundle's ``engine`` (:mod:`attnseg_monai.precision.engine`).

    Raises:
        ValueError: for an unknown device, precision or engine.

    Example::

        >>> # 2D: nuclei in H&E tiles, with overlays
        >>> BundlePredictor().from_bundle("hannet").predict_files("tiles/", "out/", save_overlays=True)
        >>> # 3D: CT volumes on the GPU, probabilities kept
        >>> p = BundlePredictor(device="cuda").from_bundle("attention_unet")
        >>> p.predict_files("ct/*.nii.gz", "out_ct/", save_probabilities=True)
    """

    def __init__(
        self,
        device: str = "auto",
        precision: str = "auto",
        tta: bool = False,
        tta_axes: Any = None,
        tta_rotate: bool = False,
        engine: str = "auto",
    ) -> None:
        settings = ModelSettings(
            device=str(device), precision=precision, engine=engine, tta=tta, tta_axes=tta_axes, tta_rotate=tta_rotate
        )
        self.device = resolve_device(settings.device)
        self.precision, self.engine = settings.precision, settings.engine
        self.tta, self.tta_axes, self.tta_rotate = settings.tta, int_list(settings.tta_axes, "tta_axes"), tta_rotate
        self._parts: BundleParts | None = None
        self.members: list[torch.nn.Module] = []
        self.augmentations: list[Augmentation] | None = None  # test-time augmentation, set by from_bundle

    # ------------------------------------------------------------------ set-up
    def from_bundle(
        self,
        bundle: str | os.PathLike,
        checkpoint: Any = None,
        trust_bundle: bool = False,
        overrides: Mapping[str, Any] | None = None,
        folds: Any = None,
    ) -> BundlePredictor:
        """Load a bundle's network (with weights), preprocessing, inferer and postprocessing; returns ``self``.

        Args:
            bundle: a bundle name of this collection (``"hannet"``) or a bundle folder.
            checkpoint: weights file (default ``<bundle>/models/model.pt``), loaded with ``weights_only=True``;
                several files (a list or ``"a.pt,b.pt"``) make an ensemble (:mod:`~.members`).
            folds: an ensemble of the bundle's fold models: ``"all"`` or fold numbers (``"0,1,2"``).
            trust_bundle: required for a bundle folder from outside this collection (its configs run code).
            overrides: config overrides by id (``{"roi_size": [64, 64], "inferer#sw_batch_size": 8}``).

        Raises:
            BundleError, UntrustedBundleError, CheckpointError: see :func:`load_bundle`.
        """
        options = {"trust_bundle": trust_bundle, "device": self.device, "overrides": overrides, "engine": self.engine}
        checkpoints = member_checkpoints(bundle, checkpoint, folds)
        if checkpoints is None or len(checkpoints) == 1:
            one = checkpoints[0] if checkpoints else None
            self._parts = load_bundle(bundle, checkpoint=one, precision=self.precision, **options)
            self.members = [self._parts.network]
        else:
            self._parts, self.members, digest = load_members(bundle, checkpoints, precision=self.precision, **options)
            self._parts.checkpoint_sha256 = digest
        if self.tta:  # an axis or rotation that does not fit the network fails here, before any output
            paths = checkpoints if checkpoints is not None else [self._parts.checkpoint]
            checkpoints_used = [Path(c) for c in paths if c is not None]
            self.augmentations = member_tta(
                self._parts.name, self._parts.spatial_dims, checkpoints_used, self.tta_axes, self.tta_rotate
            )
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

    @property
    def policy(self) -> Any:
        """The precision policy the bundle's inferer runs the network with on this device."""
        return self.parts.inferer.policy_for(self.device)

    @property
    def network(self) -> torch.nn.Module:
        """The network as the bundle's inferer runs it on this device (the prepared fast copy, or the network)."""
        parts = self.parts
        if not parts.inferer.uses_prepared(self.policy):
            return parts.network
        return parts.inferer.prepared_network(parts.network, self.policy)

    def _record(self, case: CaseInput, kind: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        parts = self.parts
        record: dict[str, Any] = {
            "input": str(case.path),
            "kind": kind,
            "bundle": parts.name,
            "bundle_version": parts.version,
            "checkpoint_sha256": parts.checkpoint_sha256,
            "settings": dict(settings),
        }
        try:
            st = case.path.stat()
            record["input_bytes"], record["input_mtime_ns"] = st.st_size, st.st_mtime_ns
        except OSError:
            pass
        return record

    def _segmenter(self, run: RunSettings) -> CaseSegmenter:
        return CaseSegmenter(self.parts, self.device, run, self.members, self.augmentations if self.tta else None)

    def _settings(self, run: RunSettings) -> dict[str, Any]:
        return {
            "save_probabilities": run.save_probabilities,
            "save_overlays": run.save_overlays,
            "save_attention": run.save_attention,
            "precision": self.policy.name,
            "output_ext": run.output_ext,
            "save_uncertainty": run.save_uncertainty,
            "members": len(self.members),
            "tta": [a.name for a in self.augmentations] if self.tta and self.augmentations else None,
        }

    # ------------------------------------------------------------------ in-memory
    def predict_array(self, image: Any, meta: Mapping[str, Any] | None = None, **settings: Any) -> dict[str, Any]:
        """Segment one image held in memory.

        Args:
            image: channel-first ``(C, *spatial)`` intensities in the layout MONAI's readers produce
                (``LoadImage(image_only=True, ensure_channel_first=True)``): 2D images indexed (x, y), so an RGB
                numpy image ``(H, W, 3)`` is passed as ``rgb.transpose(2, 1, 0)``.
            meta: optional metadata (``affine`` for volumes, when the bundle resamples).
            settings: run settings (:class:`~.options.RunSettings`): ``save_probabilities``, ``save_attention``.

        Returns:
            ``{postfix: labels}`` for each output of the bundle (same layout as ``image`` without channels), plus
            ``"probabilities"`` ``(C, *spatial)`` and ``"attention_<name>"`` maps when those settings are on.

        Raises:
            InputError: when the channels or dimensions do not fit the bundle.
        """
        (run,) = split_settings({"progress": False, **settings}, RunSettings)
        return self._segmenter(run).predict_array(image, meta)

    # ------------------------------------------------------------------ files
    def _kind(self, case: CaseInput, slides: SlideSettings) -> str:
        if slides.wsi == "never" or case.path.is_dir():
            return "image"
        if slides.wsi == "always":
            return "wsi"
        return "wsi" if is_whole_slide(case.path) else "image"

    def predict_files(
        self, inputs: str | os.PathLike | Iterable[str | os.PathLike], output_dir: str | os.PathLike, **settings: Any
    ) -> PredictionSummary:
        """Segment every input into ``output_dir``; returns what this process did.

        Args:
            inputs: a folder, a glob, a datalist JSON, one file, or a list of paths (see
                :func:`~attnseg_monai.inference.inputs.collect_inputs`).
            output_dir: where outputs, the manifest and its journal go (created).
            settings: run settings by name (:class:`~.options.RunSettings`, :class:`~.options.SlideSettings`):
                ``overwrite``, ``save_probabilities``, ``save_overlays``, ``save_attention``, ``output_ext``,
                ``num_workers``, ``progress``, ``rank``, ``world_size``, ``datalist_key``, ``wsi*``.

        Raises:
            ValueError: if the inputs match nothing, ``output_dir`` is the input folder, or a setting is invalid.
        """
        from tqdm.auto import tqdm

        from ..io.atomic import cleanup_temporary

        run, slides = split_settings(settings, RunSettings, SlideSettings)
        parts = self.parts
        started_all = time.perf_counter()
        out_dir = Path(output_dir).expanduser().absolute()
        if (
            isinstance(inputs, (str, os.PathLike))
            and Path(inputs).is_dir()
            and Path(inputs).resolve() == out_dir.resolve()
        ):
            raise ValueError("the output folder must not be the input folder (outputs would be read as inputs).")
        outputs = [s.with_ending(run.output_ext) if run.output_ext else s for s in parts.outputs]
        out_dir.mkdir(parents=True, exist_ok=True)
        extra = BUNDLE_LOADER_SUFFIXES if parts.custom_loader is not None else ()
        saver = outputs[0].saver
        collection = collect_inputs(
            inputs,
            exclude=[out_dir],
            datalist_key=run.datalist_key,
            extra_suffixes=extra,
            name_of=lambda path: subject_of(path, saver),
        )
        group_started = maybe_init_process_group()
        rank, world = resolve_rank(run.rank, run.world_size)
        mine = shard(collection.cases, rank, world)
        settings_record = self._settings(run)
        info = {
            "bundle": parts.name,
            "bundle_root": str(parts.root),
            "bundle_version": parts.version,
            "checkpoint": str(parts.checkpoint) if parts.checkpoint else None,
            "checkpoint_sha256": parts.checkpoint_sha256,
            "outputs": [s.as_dict() for s in outputs],
            "settings": settings_record,
            "world_size": world,
        }
        manifest = Manifest(out_dir, rank=rank, world_size=world, info=info)
        manifest.load()
        cleanup_temporary(out_dir, rank=None if world == 1 else rank)
        several = len(self.members) > 1 or self.tta
        kinds = ("probabilities", "overlay", "entropy", "mutual_information")
        wanted = (run.save_probabilities, run.save_overlays, run.save_uncertainty, run.save_uncertainty and several)
        extras = [n for n, on in zip(kinds, wanted) if on]
        plan = OutputPlan(
            out_dir,
            outputs,
            parts.input_dims or parts.spatial_dims,
            manifest,
            overwrite=run.overwrite,
            rank=rank,
            extras=extras,
        )
        segmenter = self._segmenter(run)
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
            disable=not run.progress,
        )
        todo: list[tuple[CaseInput, str]] = []
        try:
            for case in mine:
                kind = self._kind(case, slides)
                action = plan.action(case, kind, settings_record)
                if action == "run":
                    todo.append((case, kind))
                    continue
                record = manifest.get(case.case_id) or {}
                if action == "promote":
                    manifest.update(case.case_id, **{**record, "status": "done"})
                summary.skipped.append(case.case_id)
                if (
                    record.get("checkpoint_sha256") != parts.checkpoint_sha256
                    or record.get("bundle_version") != parts.version
                ):
                    summary.stale.append(case.case_id)
                bar.update(1)
            for loaded in iterate_cases(todo, parts, run.num_workers, keep_image=run.save_overlays):
                case, kind = loaded["case"], loaded["kind"]
                record = {**self._record(case, kind, settings_record), "started": time.perf_counter()}
                try:
                    if loaded["error"] is not None:
                        raise InputError(case.path, loaded["error"])
                    if kind == "wsi":
                        segmenter.predict_slide(case, plan, slides, record)
                    else:
                        plan.check_conflicts(plan.expected(case.case_id, kind).values())
                        item = segmenter.infer(loaded["data"])
                        produced = segmenter.write(case.case_id, item, loaded["source"], plan)
                        record["engine"] = segmenter.engine_used()
                        if run.save_uncertainty:
                            record["uncertainty"] = segmenter.uncertainty_scores(item)
                        try:
                            plan.commit(case.case_id, record, produced)
                        finally:
                            for _, tmp in produced.values():
                                tmp.unlink(missing_ok=True)
                    summary.written.append(case.case_id)
                except Exception as exc:  # noqa: BLE001 - the batch goes on
                    reason = failure_reason(exc)
                    logger.warning("failed: %s: %s", case.path, reason)
                    logger.debug("%s", traceback.format_exc())
                    previous = (manifest.get(case.case_id) or {}).get("outputs") or {}
                    base = {k: v for k, v in record.items() if k != "started"}
                    manifest.update(case.case_id, status="failed", **{**base, "outputs": previous, "error": reason})
                    summary.failed.append({"case": case.case_id, "input": str(case.path), "error": reason})
                    cleanup_temporary(out_dir, rank=rank)
                bar.update(1)
        finally:
            bar.close()
        self._finish(manifest, summary, group_started, world)
        summary.seconds = round(time.perf_counter() - started_all, 3)
        return summary

    @staticmethod
    def _finish(manifest: Manifest, summary: PredictionSummary, group_started: bool, world: int) -> None:
        """Merge the manifest: with a process group, the other ranks merge first and rank 0 last (it then removes
        every part file); without one, each process merges when done (the last one leaves the complete manifest)."""
        from ..io.atomic import cleanup_temporary

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
