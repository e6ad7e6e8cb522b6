"""Load the parts of a bundle the predictor reuses: network, preprocessing, inferer, postprocessing and outputs.

The bundle's ``configs/inference.json`` is parsed with :class:`monai.bundle.ConfigParser`, as MONAI does. The
predictor then takes from it:

- ``network_def``: instantiated, weights loaded from the checkpoint with ``torch.load(..., weights_only=True)``;
- ``preprocessing``: every transform except ``LoadImage(d)`` (the predictor reads files itself, with the same MONAI
  readers, to report broken files per case); the loader's ``ensure_channel_first`` and explicit reader are kept. A
  bundle that loads files with its own first transform (DANIE's ``LoadSynapsed``) keeps it: the file is checked by
  the predictor's reader when its ending is known, then handed to that transform as a path;
- ``inferer``: as configured (sliding window, or the slab-wise 3D inferer of the CT bundles), on the fast path with
  the requested precision: the bundle's ``precision`` id is set to it (an inferer without a fast path is wrapped by
  :func:`~attnseg_monai.inferers.with_fast_path`), so the network runs exactly as under ``monai.bundle run``;
- ``postprocessing``: every transform except ``SaveImage(d)``; each ``SaveImaged`` becomes an
  :class:`~attnseg_monai.inference.outputs.OutputSpec` holding the bundle's own ``SaveImage``, which the predictor
  calls with a temporary file name (then renames it). So a bundle that writes instances and classes (hannet) produces
  the same two files, with the same names and bytes as ``monai.bundle run``.

Trust: a bundle of this collection (``bundles/<name>`` of this checkout) is loaded as is. Any other folder runs code
from its configs when parsed (``$`` expressions, ``_target_``), so it is refused with
:class:`~attnseg_monai.inference.errors.UntrustedBundleError` unless ``trust_bundle=True``; nothing of it is parsed
before that check.
"""

from __future__ import annotations

import copy
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.bundle import ConfigParser
from monai.inferers import Inferer, SimpleInferer
from monai.transforms import Activationsd, Compose, Invertd, LoadImage, LoadImaged, SaveImage, SaveImaged
from torch import nn

from ..bundle.paths import BUNDLES_DIR, bundle_path, list_bundles
from ..bundle.record import RecordError, load_weights
from ..inferers import FastPathMixin, with_fast_path
from ..io.atomic import sha256_file
from ..io.checkpoint import CheckpointReadError
from ..io.writers import LABEL_WRITERS, label_saver
from ..precision import ENGINES, PRECISIONS
from .errors import BundleError, CheckpointError, UntrustedBundleError
from .outputs import OutputSpec

__all__ = [
    "BundleParts",
    "load_bundle",
    "load_checkpoint",
    "read_bundle_metadata",
    "resolve_bundle",
]

logger = logging.getLogger(__name__)

INFERENCE_CONFIG = "configs/inference.json"
METADATA = "configs/metadata.json"


@dataclass
class BundleParts:
    """What :func:`load_bundle` returns (see the module docstring)."""

    name: str
    root: Path
    trusted_collection: bool
    metadata: dict[str, Any]
    parser: ConfigParser
    network: nn.Module
    spatial_dims: int
    in_channels: int
    out_channels: int
    preprocessing: Compose
    inferer: Inferer
    postprocessing: Compose
    outputs: list[OutputSpec]
    inverters: list[Invertd] = field(default_factory=list)
    activation: str | None = "softmax"
    image_key: str = "image"
    ensure_channel_first: bool = False
    loader: LoadImage | None = None
    custom_loader: Any = None
    input_dims: int = 0
    checkpoint: Path | None = None
    checkpoint_sha256: str | None = None

    @property
    def version(self) -> str:
        return str(self.metadata.get("version", "unknown"))

    @property
    def class_names(self) -> dict[str, str]:
        """``channel_def`` of the ``pred`` output (index -> class name)."""
        pred = self.metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
        return {str(k): str(v) for k, v in (pred.get("channel_def") or {}).items()}


def resolve_bundle(bundle: str | os.PathLike) -> tuple[Path, str, bool]:
    """``(folder, name, in_collection)`` of a bundle given by name (``"hannet"``) or folder.

    Raises:
        BundleError: if no such bundle exists or its configs are missing.
    """
    text = os.fspath(bundle)
    p = Path(text).expanduser()
    if p.is_dir():
        root = p.resolve()
        collection = BUNDLES_DIR.resolve()
        in_collection = root.parent == collection and root.name in list_bundles()
    elif os.sep not in text and "/" not in text:
        try:
            root = bundle_path(text).resolve()
        except KeyError as exc:
            raise BundleError(
                f"unknown bundle {text!r}: give a bundle name ({', '.join(list_bundles()) or 'none found'}) "
                "or a bundle folder."
            ) from exc
        in_collection = True
    else:
        raise BundleError(f"no bundle folder at {text!r}.")
    for rel in (INFERENCE_CONFIG, METADATA):
        if not (root / rel).is_file():
            raise BundleError(f"{root} is not a usable bundle: {rel} is missing.")
    return root, root.name, in_collection


def read_bundle_metadata(root: str | os.PathLike) -> dict[str, Any]:
    """``configs/metadata.json`` of a bundle folder (plain JSON: reading it runs nothing).

    Raises:
        BundleError: if it is missing or not valid JSON.
    """
    path = Path(root) / METADATA
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path}: unreadable metadata ({exc}).") from exc


def load_checkpoint(path: str | os.PathLike, network: nn.Module) -> str:
    """Load every tensor of a checkpoint into ``network`` (:func:`attnseg_monai.bundle.load_weights`); returns the
    file's SHA-256.

    Raises:
        CheckpointError: if the file is missing, holds anything but tensors and plain containers (a pickle that would
            run code is refused, not executed), or does not match the network (nothing is loaded then).
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise CheckpointError(
            f"checkpoint {p} not found: train the bundle first (python -m monai.bundle run training ...) or pass "
            "a checkpoint file."
        )
    try:
        load_weights(network, p)
    except CheckpointReadError as exc:
        raise CheckpointError(str(exc)) from exc
    return sha256_file(p)


def _flat(compose: Any) -> list[Any]:
    if isinstance(compose, Compose):
        return list(compose.flatten().transforms)
    if isinstance(compose, (list, tuple)):
        out = []
        for t in compose:
            out.extend(_flat(t))
        return out
    return [compose]


def _rebuild(original: Any, transforms: list[Any]) -> Compose:
    if isinstance(original, Compose):
        return Compose(
            transforms,
            map_items=original.map_items,
            unpack_items=original.unpack_items,
            lazy=original.lazy,
            overrides=original.overrides,
        )
    return Compose(transforms)


def _slice_wise(inferer: Any) -> bool:
    """Whether the inferer runs a 2D network over the slices of volumes (inputs then have one more dimension)."""
    from monai.inferers import SliceInferer

    if isinstance(inferer, SliceInferer):
        return True
    try:
        from ..inferers import SliceWiseInferer
    except ImportError:
        return False
    return isinstance(inferer, SliceWiseInferer)


def _output_specs(transform: SaveImaged, root: Path) -> list[OutputSpec]:
    """The outputs of one ``SaveImaged``: its own ``SaveImage`` for each key.

    Raises:
        BundleError: for a layout ``attnseg infer`` does not write (a folder per case, names relative to a data root).
    """
    saver: SaveImage = transform.saver
    layout = saver.folder_layout
    if getattr(layout, "parent", False) or getattr(layout, "data_root_dir", ""):
        raise BundleError(
            f"{root / INFERENCE_CONFIG}: a SaveImaged writes a folder per case (separate_folder) or names relative to "
            "data_root_dir; attnseg infer writes one flat output folder: set separate_folder to false and "
            "data_root_dir to ''."
        )
    postfix = str(getattr(layout, "postfix", "") or "")
    ext = str(saver.output_ext)
    # the predictor's own copy: the writer of this ending (the class the collection's bundles name, so both paths
    # write the same bytes; a bundle naming MONAI's NibabelWriter gets the geometry-exact one), quiet (it logs
    # the committed name, not the temporary one)
    own = copy.copy(saver)
    own.writers = (LABEL_WRITERS[ext],) if ext in LABEL_WRITERS else saver.writers
    own.write_kwargs = {**saver.write_kwargs, "verbose": False}
    return [OutputSpec(str(key), postfix, ext, own) for key in transform.keys]


def _fast_inferer(parser: ConfigParser, precision: str, root: Path, engine: str = "auto") -> Inferer:
    """The bundle's inferer on the fast path (wrapped when it has none; never modified).

    Raises:
        ValueError: for a precision or engine not in :data:`~attnseg_monai.precision.PRECISIONS` / ``ENGINES``.
    """
    inferer = parser.get_parsed_content("inferer") if "inferer" in parser else SimpleInferer()
    if not isinstance(inferer, FastPathMixin):
        inferer = with_fast_path(inferer, precision, engine=engine)
    elif engine != "auto" and "engine" not in parser:  # a bundle without an engine key: the option still applies
        inferer.engine = engine
    if inferer.precision not in PRECISIONS or inferer.engine not in ENGINES:
        raise ValueError(
            f"{root / INFERENCE_CONFIG}: the bundle's 'precision' must be one of {PRECISIONS} and its 'engine' one "
            f"of {ENGINES}, got {inferer.precision!r} and {inferer.engine!r}."
        )
    return inferer


def load_bundle(
    bundle: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    trust_bundle: bool = False,
    device: str | torch.device = "cpu",
    overrides: Mapping[str, Any] | None = None,
    load_weights: bool = True,
    precision: str = "auto",
    engine: str = "auto",
) -> BundleParts:
    """Parse a bundle's ``inference.json`` and return the parts the predictor uses.

    Args:
        bundle: a bundle name of this collection or a bundle folder.
        checkpoint: weights file (default ``<bundle>/models/model.pt``).
        trust_bundle: allow a bundle folder from outside this collection (its configs run code).
        device: where the network is put.
        overrides: config overrides by id, as on MONAI's command line (``{"roi_size": [64, 64]}``).
        load_weights: ``False`` keeps the freshly initialised weights (``attnseg info``).
        precision: ``"auto"`` keeps the bundle's ``precision``; ``"fp32"``, ``"bf16"``, ``"fp16"`` replace it.
        engine: ``"auto"`` keeps the bundle's ``engine``; ``"torch"``, ``"openvino"`` replace it.

    Raises:
        BundleError: for a missing bundle or config id.
        UntrustedBundleError: for an outside bundle without ``trust_bundle``.
        CheckpointError: see :func:`load_checkpoint`.
    """
    root, name, in_collection = resolve_bundle(bundle)
    if not in_collection and not trust_bundle:
        raise UntrustedBundleError(
            f"{root} is not a bundle of this collection. Its configs run code when loaded (MONAI '$' expressions "
            "and '_target_' imports); pass --trust_bundle (trust_bundle=True) only if you trust its source."
        )
    metadata = read_bundle_metadata(root)
    parser = ConfigParser()
    parser.read_meta(str(root / METADATA))
    parser.read_config(str(root / INFERENCE_CONFIG))
    parser["bundle_root"] = str(root)
    parser["device"] = f"$torch.device('{torch.device(device)}')"
    if checkpoint is not None:
        # configs that read settings recorded beside the weights (DANIE's train settings) look where they are
        ckpt = Path(checkpoint).expanduser().absolute()
        for key, value in (("ckpt_dir", str(ckpt.parent)), ("ckpt_path", str(ckpt))):
            if key in parser:
                parser[key] = value
    for key, value in (overrides or {}).items():
        parser[key] = value
    for key, value in (("precision", precision), ("engine", engine)):
        if value != "auto" and key in parser:
            parser[key] = value
    if "imports" in parser:
        parser.get_parsed_content("imports")
    for required in ("network_def", "preprocessing"):
        if required not in parser:
            raise BundleError(f"{root / INFERENCE_CONFIG}: no '{required}' entry.")
    try:
        network = parser.get_parsed_content("network_def")
    except RuntimeError as exc:  # MONAI wraps what the config's helpers raise: surface the record/weights error
        cause: BaseException | None = exc
        while cause is not None and not isinstance(cause, (CheckpointReadError, RecordError)):
            cause = cause.__cause__
        if cause is None:
            raise
        raise CheckpointError(str(cause)) from cause
    if not isinstance(network, nn.Module):
        raise BundleError(f"{root / INFERENCE_CONFIG}: 'network_def' is not a torch module.")

    fmt = metadata.get("network_data_format", {})
    image_fmt = fmt.get("inputs", {}).get("image", {})
    pred_fmt = fmt.get("outputs", {}).get("pred", {})
    spatial_dims = int(getattr(network, "spatial_dims", len(image_fmt.get("spatial_shape", [0, 0]))))
    in_channels = int(getattr(network, "in_channels", image_fmt.get("num_channels", 1)))
    out_channels = int(getattr(network, "out_channels", pred_fmt.get("num_channels", 2)))

    pre_all = parser.get_parsed_content("preprocessing")
    pre_kept: list[Any] = []
    loader: LoadImage | None = None
    ensure_cf = False
    image_key = "image"
    flat_pre = _flat(pre_all)
    custom_loader = None
    if flat_pre and not any(isinstance(t, (LoadImaged, LoadImage)) for t in flat_pre):
        # the bundle loads files with its own transform (e.g. DANIE's LoadSynapsed): it gets the path
        custom_loader, flat_pre = flat_pre[0], flat_pre[1:]
        keys = getattr(custom_loader, "keys", ("image",))
        image_key = "image" if "image" in keys else str(keys[0])
    for t in flat_pre:
        if isinstance(t, (LoadImaged, LoadImage)):
            inner = t._loader if isinstance(t, LoadImaged) else t
            ensure_cf = ensure_cf or bool(inner.ensure_channel_first)
            if not inner.auto_select:
                loader = inner
            if isinstance(t, LoadImaged) and "image" not in t.keys and t.keys:
                image_key = str(t.keys[0])
            continue
        pre_kept.append(t)
    inferer = _fast_inferer(parser, precision, root, engine)
    input_dims = spatial_dims + 1 if _slice_wise(inferer) else spatial_dims

    outputs: list[OutputSpec] = []
    post_kept: list[Any] = []
    inverters: list[Invertd] = []
    activation: str | None = None
    post_all = parser.get_parsed_content("postprocessing") if "postprocessing" in parser else Compose([])
    for t in _flat(post_all):
        if isinstance(t, SaveImaged):
            outputs.extend(_output_specs(t, root))
            continue
        if isinstance(t, SaveImage):
            continue
        if isinstance(t, Invertd):
            inverters.append(t)
        if isinstance(t, Activationsd) and activation is None:
            for key, softmax, sigmoid in zip(t.keys, t.softmax, t.sigmoid):
                if key == "pred":
                    activation = "softmax" if softmax else "sigmoid" if sigmoid else None
        post_kept.append(t)
    if not outputs:  # a bundle that saves nothing: labels as the collection's bundles write them
        ext = ".png" if input_dims == 2 else ".nii.gz"
        dtype = np.uint8 if out_channels <= 256 else np.uint16
        outputs.append(OutputSpec("pred", "seg", ext, label_saver(ext, "seg", dtype)))
    parts = BundleParts(
        name=name,
        root=root,
        trusted_collection=in_collection,
        metadata=metadata,
        parser=parser,
        network=network,
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=out_channels,
        preprocessing=_rebuild(pre_all, pre_kept),
        inferer=inferer,
        postprocessing=_rebuild(post_all, post_kept),
        outputs=outputs,
        inverters=inverters,
        activation=activation if activation is not None else ("softmax" if out_channels > 1 else "sigmoid"),
        image_key=image_key,
        ensure_channel_first=ensure_cf,
        loader=loader,
        custom_loader=custom_loader,
        input_dims=input_dims,
    )
    if load_weights:
        ckpt = Path(checkpoint).expanduser() if checkpoint is not None else root / "models" / "model.pt"
        parts.checkpoint_sha256 = load_checkpoint(ckpt, network)
        parts.checkpoint = ckpt.absolute()
    network.to(torch.device(device)).eval()
    return parts
