"""Batch inference with the attnseg-monai bundles: a predictor, input readers, output writers, a manifest.

Python::

    from attnseg_monai.inference import BundlePredictor

    predictor = BundlePredictor(device="auto").from_bundle("hannet")
    summary = predictor.predict_files("tiles/", "predictions/", save_overlays=True)

Command line: ``attnseg infer hannet tiles/ predictions/`` (see ``docs/inference.md``).
"""

from __future__ import annotations

from ..io.paths import sanitize_name
from ..io.suffixes import sniff_format
from .bundle_loader import BundleParts, load_bundle, load_checkpoint, resolve_bundle
from .errors import BundleError, CheckpointError, InputError, OutputConflictError, UntrustedBundleError
from .evaluate import EvaluationResult, evaluate_folders
from .inputs import CaseInput, InputCollection, collect_inputs
from .manifest import MANIFEST_NAME, Manifest
from .options import ModelSettings, RunSettings, SlideSettings
from .outputs import OutputPlan, OutputSpec
from .predictor import BundlePredictor, PredictionSummary
from .readers import CaseReader, read_image, reader_for
from .sharding import resolve_rank, shard
from .slides import is_whole_slide, open_slide
from .wsi import predict_slide, tissue_mask

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
    "ModelSettings",
    "OutputPlan",
    "OutputConflictError",
    "OutputSpec",
    "PredictionSummary",
    "RunSettings",
    "SlideSettings",
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
