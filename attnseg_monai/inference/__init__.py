"""Batch inference with the attnseg-monai bundles: a predictor, input readers, output writers, a manifest.

Python::

    from attnseg_monai.inference import BundlePredictor

    predictor = BundlePredictor(device="auto", save_overlays=True).from_bundle("hannet")
    summary = predictor.predict_files("tiles/", "predictions/")

Command line: ``attnseg infer hannet tiles/ predictions/`` (see ``docs/inference.md``).
"""

from __future__ import annotations

from .bundle_loader import BundleParts, OutputSpec, load_bundle, load_checkpoint, resolve_bundle
from .errors import BundleError, CheckpointError, InputError, OutputConflictError, UntrustedBundleError
from .evaluate import EvaluationResult, evaluate_folders
from .inputs import CaseInput, InputCollection, collect_inputs, sanitize_name
from .manifest import MANIFEST_NAME, Manifest
from .predictor import BundlePredictor, PredictionSummary
from .readers import CaseReader, is_whole_slide, read_image, reader_for, sniff_format
from .sharding import resolve_rank, shard
from .wsi import open_slide, predict_slide, tissue_mask

__all__ = [
    "MANIFEST_NAME",
    "BundleError",
    "BundleParts",
    "BundlePredictor",
    "CaseInput",
    "CaseReader",
    "CheckpointError",
    "EvaluationResult",
    "InputCollection",
    "InputError",
    "Manifest",
    "OutputConflictError",
    "OutputSpec",
    "PredictionSummary",
    "UntrustedBundleError",
    "collect_inputs",
    "evaluate_folders",
    "is_whole_slide",
    "load_bundle",
    "load_checkpoint",
    "open_slide",
    "predict_slide",
    "read_image",
    "reader_for",
    "resolve_bundle",
    "resolve_rank",
    "sanitize_name",
    "shard",
    "sniff_format",
    "tissue_mask",
]
