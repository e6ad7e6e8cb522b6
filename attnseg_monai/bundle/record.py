"""The record that travels with a bundle's weights, and the one strict way weights are loaded.

Every checkpoint a bundle writes (``models/model.pt``, ``model_final.pt``, the resumable ``checkpoint_*.pt``, EMA
weights) gets a JSON file beside it, ``<stem>.record.json`` (``model.pt`` -> ``model.record.json``), written in the
same save. It holds what shaped the weights and what must agree at inference:

- ``network``: the network's ``_target_`` and every constructor argument (``attnseg_monai.networks.network_config``);
- ``preprocessing``: the settings inference must repeat (spacing, intensity window, window/slice/working size);
- ``classes``: the ``channel_def`` the model was trained for; ``bundle``, ``version``, ``recipe``, software versions;
- ``augmentation``: the random flips and quarter turns of training (:func:`training_augmentation`), which tell
  test-time augmentation which views the network has seen.

The checkpoint itself stays a plain state dict, as the MONAI model zoo ships it, so ``monai.bundle.load``, MONAI Label
and ``torch.load`` read it as before. Consumers build from the record of the checkpoint they load
(:func:`read_record` + :func:`build_network`), and load with :func:`load_weights`, which refuses any checkpoint whose
tensors do not match the network exactly (MONAI's ``copy_model_state`` would copy the matching keys and skip the rest
without a word). A checkpoint without a record still works when it matches the network the config builds.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from monai.utils import optional_import
from torch import nn

from ..handlers.checkpoint import resume_checkpoint
from ..io.atomic import atomic_open
from ..io.checkpoint import RECORD_SUFFIX, CheckpointReadError, load_checkpoint_file, record_path
from ..networks.registry import network_config
from ..networks.utils import monte_carlo_dropout
from .context import raw_config, training_run

__all__ = [
    "RECORD_FORMAT",
    "RECORD_SUFFIX",
    "BundleRecord",
    "CheckpointRecord",
    "RecordError",
    "RecordSpec",
    "StrictCheckpointLoader",
    "WeightsMismatchError",
    "build_network",
    "load_weights",
    "read_record",
    "record_path",
    "starting_record",
    "state_dict_of",
    "training_augmentation",
]

logger = logging.getLogger(__name__)

RECORD_FORMAT = "attnseg-monai.bundle-record/1"
#: network arguments that say what task a network is for; a record and a config must agree on them
TASK_ARGUMENTS = ("spatial_dims", "in_channels", "out_channels")
#: network arguments that hold no weights: a config that gives them overrides the record (MONAI Label's epistemic
#: scoring sets ``network_def#dropout`` to sample with Monte Carlo dropout)
RUNTIME_ARGUMENTS = ("dropout", "attn_dropout")


class RecordError(ValueError):
    """A record is unreadable, or disagrees with the bundle or the config that loads it."""


class WeightsMismatchError(CheckpointReadError):
    """A checkpoint's tensors do not match the network (missing, unexpected or differently shaped keys)."""


def _versions() -> dict[str, str]:
    import monai
    import numpy

    from .. import __version__ as attnseg_version

    return {
        "attnseg_monai": str(attnseg_version),
        "monai": monai.__version__,
        "torch": torch.__version__,
        "numpy": numpy.__version__,
    }


@dataclass
class BundleRecord:
    """What shaped a checkpoint's weights (see the module docstring)."""

    bundle: str
    network: dict[str, Any]
    preprocessing: dict[str, Any] = field(default_factory=dict)
    classes: dict[str, str] = field(default_factory=dict)
    recipe: str | None = None
    version: str | None = None
    software: dict[str, str] = field(default_factory=dict)
    created: str | None = None
    augmentation: dict[str, Any] = field(default_factory=dict)
    format: str = RECORD_FORMAT

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any, source: str | os.PathLike = "<record>") -> BundleRecord:
        """Validate and build a record from JSON data.

        Raises:
            RecordError: wrong format, missing or ill-typed fields; the message names ``source``.
        """
        if not isinstance(data, Mapping):
            raise RecordError(f"{source}: a bundle record must be a JSON object, got {type(data).__name__}.")
        if data.get("format") != RECORD_FORMAT:
            raise RecordError(
                f"{source}: not a bundle record of this format (format {data.get('format')!r}, "
                f"expected {RECORD_FORMAT!r})."
            )
        unknown = set(data) - {f for f in cls.__dataclass_fields__}
        if unknown:
            raise RecordError(f"{source}: unknown record fields {sorted(unknown)}.")
        if not isinstance(data.get("bundle"), str) or not data["bundle"]:
            raise RecordError(f"{source}: the record names no bundle ('bundle').")
        network = data.get("network")
        if not isinstance(network, Mapping) or not isinstance(network.get("_target_"), str):
            raise RecordError(f"{source}: the record has no network ('network' with a '_target_').")
        for name in ("preprocessing", "classes", "software", "augmentation"):
            if not isinstance(data.get(name, {}), Mapping):
                raise RecordError(f"{source}: record field {name!r} must be a JSON object.")
        return cls(**{k: v for k, v in data.items()})

    @classmethod
    def read(cls, path: str | os.PathLike) -> BundleRecord:
        """Read a record file.

        Raises:
            RecordError: unreadable or invalid (the message names the file).
        """
        p = Path(path)
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise RecordError(f"{p}: unreadable bundle record ({type(exc).__name__}: {exc}).") from exc
        return cls.from_dict(data, p)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    def write(self, path: str | os.PathLike) -> Path:
        """Write the record atomically (a complete file or the previous one, never half of it)."""
        p = Path(path)
        with atomic_open(p, "w") as handle:
            handle.write(self.to_json())
        return p

    def build_network(self, source: str | os.PathLike = "<record>", **runtime: Any) -> nn.Module:
        """The network the record describes, freshly initialised; ``runtime`` replaces arguments that hold no weights
        (:data:`RUNTIME_ARGUMENTS`; anything else is an error).

        Raises:
            RecordError: if the record's ``_target_`` is not a network class of this package's registry (a record is
                data: it never names a function or class to run other than a registered network).
        """
        config = dict(self.network)
        target = _network_class(str(config.pop("_target_")), source)
        unknown = sorted(set(runtime) - set(RUNTIME_ARGUMENTS))
        if unknown:
            raise RecordError(f"{source}: only {RUNTIME_ARGUMENTS} may replace recorded arguments, not {unknown}.")
        return target(**{**config, **runtime})


def _locate(target: str, what: str) -> Any:
    """The object a dotted path names (``attnseg_monai.networks.nets.HanNet``)."""
    from pydoc import locate

    obj = locate(target)
    if obj is None:
        raise RecordError(f"{what}: cannot import {target!r}.")
    return obj


def _network_class(target: str, source: str | os.PathLike) -> type[nn.Module]:
    """The registered network class a record's ``_target_`` names; anything else is refused (never imported and
    called: a record file beside a downloaded checkpoint must not be a way to run code)."""
    from ..networks.registry import registered_classes

    classes = registered_classes()
    by_name = {f"{c.__module__}.{c.__qualname__}": c for c in classes}
    by_name.update({_public_name(c): c for c in classes})
    if target not in by_name:
        raise RecordError(
            f"{source}: the record names the network {target!r}, which is not a network class of attnseg_monai "
            f"({', '.join(sorted(_public_name(c) for c in classes))}); refused."
        )
    return by_name[target]


def _public_name(cls: type) -> str:
    from ..networks.registry import _public_target

    return _public_target(cls)


def _bundle_metadata(bundle_root: str | os.PathLike) -> dict[str, Any]:
    path = Path(bundle_root) / "configs" / "metadata.json"
    if not path.is_file():
        raise RecordError(
            f"{path} not found: {bundle_root} is not a bundle folder (every bundle has "
            "configs/metadata.json); pass --bundle_root /path/to/the/bundle."
        )
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise RecordError(f"{path}: unreadable bundle metadata ({exc}).") from exc


def _channel_def(metadata: Mapping[str, Any]) -> dict[str, str]:
    pred = metadata.get("network_data_format", {}).get("outputs", {}).get("pred", {})
    return {str(k): str(v) for k, v in (pred.get("channel_def") or {}).items()}


def _transforms_of(node: Any) -> list[Any]:
    """Every transform inside ``node`` (a Compose, OneOf, RandomOrder, list or single transform), depth first."""
    if isinstance(node, (list, tuple)):
        return [t for item in node for t in _transforms_of(item)]
    inner = getattr(node, "transforms", None)
    if isinstance(inner, (list, tuple)):
        return [t for item in inner for t in _transforms_of(item)]
    return [node]


def training_augmentation(transforms: Any) -> dict[str, Any]:
    """The random flips and quarter turns among ``transforms`` (a bundle's training Compose), as JSON data:
    ``{"flip_axes": [spatial axes] or "all", "rot90_planes": [[a, b], ...]}`` (only what has a probability > 0).

    MONAI's ``RandFlip(d)`` gives its ``spatial_axis`` (``None``: every axis), ``RandAxisFlip(d)`` every axis,
    ``RandRotate90(d)`` its ``spatial_axes`` plane. Recorded with the weights, it tells test-time augmentation which
    mirrorings the network saw (:func:`attnseg_monai.inferers.ensemble.trained_symmetries`)."""
    flips: set[int] = set()
    every_axis = False
    planes: list[list[int]] = []
    for t in _transforms_of(transforms):
        if float(getattr(t, "prob", 0.0) or 0.0) <= 0.0:
            continue
        name = type(t).__name__
        if name in ("RandAxisFlip", "RandAxisFlipd"):
            every_axis = True
        elif name in ("RandFlip", "RandFlipd"):
            flipper = getattr(t, "flipper", t)
            axis = getattr(flipper, "spatial_axis", None)
            if axis is None:
                every_axis = True
            else:
                flips.update(int(a) for a in ((axis,) if isinstance(axis, int) else axis))
        elif name in ("RandRotate90", "RandRotate90d") and int(getattr(t, "max_k", 3)) >= 1:
            plane = [int(a) for a in getattr(t, "spatial_axes", (0, 1))]
            if plane not in planes:
                planes.append(plane)
    found: dict[str, Any] = {"flip_axes": "all" if every_axis else sorted(flips)}
    if planes:
        found["rot90_planes"] = planes
    return found


class RecordSpec:
    """What a bundle's training records beside each checkpoint it writes (used by the checkpoint savers).

    Args:
        bundle: the bundle's name in this collection (``"hannet"``).
        bundle_root: the bundle folder; its ``configs/metadata.json`` gives the version and the classes.
        recipe: the recipe's name (``"quick"``, ``"paper"``, an ablation row).
        preprocessing: settings inference must repeat (JSON data), e.g. ``{"target_spacing": [1.6, 1.6, 2.5]}``.
        classes: the classes the network is trained for (``{"0": "background", ...}``), where a configuration of the
            bundle has other classes than its ``channel_def`` (attention_unet's 2D Drishti-GS configuration); default
            the bundle's ``channel_def``.
        train_transforms: the training transforms (``"@train#preprocessing"``): their random flips and quarter turns
            are recorded as ``augmentation`` (:func:`training_augmentation`); ``None`` records none.

    Example (train.json)::

        "record": {"_target_": "attnseg_monai.bundle.RecordSpec", "bundle": "hannet", "bundle_root": "@bundle_root",
                   "recipe": "@recipe", "preprocessing": {"roi_size": "@roi_size"}}

    Raises:
        RecordError: if the bundle folder has no readable ``configs/metadata.json``, or the settings are not JSON data.
    """

    def __init__(
        self,
        bundle: str,
        bundle_root: str | os.PathLike,
        recipe: str | None = None,
        preprocessing: Mapping[str, Any] | None = None,
        classes: Mapping[Any, Any] | None = None,
        train_transforms: Any = None,
    ) -> None:
        metadata = _bundle_metadata(bundle_root)
        self.augmentation = {} if train_transforms is None else training_augmentation(train_transforms)
        self.bundle = str(bundle)
        self.version = str(metadata.get("version", ""))
        self.classes = _channel_def(metadata) if classes is None else {str(k): str(v) for k, v in classes.items()}
        self.recipe = None if recipe is None else str(recipe)
        try:
            self.preprocessing = json.loads(json.dumps(dict(preprocessing or {})))
        except (TypeError, ValueError) as exc:
            raise RecordError(f"record preprocessing settings must be JSON data: {exc}") from exc

    def record_for(self, network: nn.Module) -> BundleRecord:
        """The record of ``network`` trained under this spec."""
        return BundleRecord(
            bundle=self.bundle,
            network=network_config(network),
            preprocessing=dict(self.preprocessing),
            classes=dict(self.classes),
            augmentation=dict(self.augmentation),
            recipe=self.recipe,
            version=self.version,
            software=_versions(),
            created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        )


@dataclass
class CheckpointRecord:
    """A checkpoint path and its record (``None`` for a plain state dict without one)."""

    checkpoint: Path
    record: BundleRecord | None = None

    @property
    def exists(self) -> bool:
        return self.checkpoint.is_file()

    def setting(self, name: str, default: Any = None) -> Any:
        """A preprocessing setting recorded with the weights, else ``default`` (the config's own value)."""
        if self.record is not None and name in self.record.preprocessing:
            return self.record.preprocessing[name]
        return default

    def __bool__(self) -> bool:
        return self.record is not None


def read_record(
    checkpoint: str | os.PathLike,
    bundle: str | None = None,
    bundle_root: str | os.PathLike | None = None,
    classes: Mapping[Any, Any] | None = None,
) -> CheckpointRecord:
    """The record beside ``checkpoint`` (config helper: ``"$attnseg_monai.bundle.read_record(@ckpt_path, ...)"``).

    A missing checkpoint or a checkpoint without a record gives a :class:`CheckpointRecord` whose ``record`` is
    ``None`` (the config's own settings then apply; loading a missing checkpoint fails later, with its own error).

    Args:
        checkpoint: the weights file.
        bundle: the bundle the checkpoint must belong to.
        bundle_root: the bundle folder; its ``channel_def`` must equal the record's classes.
        classes: the classes the record must hold instead of the bundle's ``channel_def`` (a configuration of the
            bundle for another task, see :class:`RecordSpec`).

    Raises:
        RecordError: an unreadable record, or one of another bundle or other classes (the message names the file).
    """
    ckpt = Path(checkpoint).expanduser()
    path = record_path(ckpt)
    if bundle_root is not None:
        _bundle_metadata(bundle_root)  # a bundle folder without metadata is an error, whatever the checkpoint
    if not path.is_file():
        return CheckpointRecord(ckpt, None)
    record = BundleRecord.read(path)
    if bundle is not None and record.bundle != bundle:
        raise RecordError(
            f"{path}: the checkpoint {ckpt.name} belongs to the bundle {record.bundle!r}, not {bundle!r}; pass a "
            f"checkpoint trained with this bundle."
        )
    if (bundle_root is not None or classes is not None) and record.classes:
        if classes is not None:
            expected = {str(k): str(v) for k, v in classes.items()}
            said = f"the config expects {expected}"
        else:
            expected = _channel_def(_bundle_metadata(bundle_root))
            said = f"the bundle at {bundle_root} declares {expected} (configs/metadata.json channel_def)"
        if expected and expected != record.classes:
            raise RecordError(
                f"{path}: the checkpoint was trained for the classes {record.classes}, {said}; use a checkpoint "
                "trained for these classes."
            )
    return CheckpointRecord(ckpt, record)


def _checkpoint_loader_path(handlers: Any) -> str | None:
    """``load_path`` of a ``CheckpointLoader`` in a raw handler list (the one MONAI Label inserts for fine-tuning)."""
    if not isinstance(handlers, list):
        return None
    for handler in handlers:
        if isinstance(handler, Mapping) and str(handler.get("_target_", "")).split(".")[-1] == "CheckpointLoader":
            path = handler.get("load_path")
            if isinstance(path, (str, os.PathLike)) and not str(path).startswith(("$", "@", "%")):
                return os.fspath(path)
    return None


def starting_record(
    ckpt_dir: str | os.PathLike,
    bundle: str | None = None,
    bundle_root: str | os.PathLike | None = None,
    resume: Any = False,
    resume_from: Any = None,
    handlers_id: str = "train#handlers",
    classes: Mapping[Any, Any] | None = None,
) -> CheckpointRecord | None:
    """The checkpoint whose record decides the network a ``train.json`` builds (config helper), or ``None``.

    - During a training run (the ``run``/``training`` ids): the checkpoint the run starts from, i.e. the
      ``load_path`` of a ``CheckpointLoader`` in ``train#handlers`` (MONAI Label's fine-tuning) or the checkpoint
      ``--resume``/``--resume_from`` picks; ``None`` for a training from scratch (the recipe's network).
    - Otherwise (``monai.bundle.load``, ``verify_net_in_out``, reading ``network_def``): ``<ckpt_dir>/model.pt``, the
      bundle's trained model, when it exists.

    ``classes`` is passed to :func:`read_record` (a configuration of the bundle with other classes than its
    ``channel_def``).
    """
    if training_run():
        try:
            loader = _checkpoint_loader_path(raw_config(handlers_id))
        except LookupError:
            loader = None
        start = loader or resume_checkpoint(ckpt_dir, resume, resume_from)
        if start is None:
            return None
        return read_record(start, bundle=bundle, bundle_root=bundle_root, classes=classes)
    model = Path(ckpt_dir) / "model.pt"
    return read_record(model, bundle=bundle, bundle_root=bundle_root, classes=classes) if model.is_file() else None


def _same_target(recorded: str, network: str, source: str | os.PathLike) -> bool:
    return recorded == network or _network_class(recorded, source) is _locate(network, network)


def build_network(
    network: str, record: CheckpointRecord | None = None, monte_carlo: bool = False, **kwargs: Any
) -> nn.Module:
    """Build a bundle's network: the one recorded with the checkpoint, else ``network(**kwargs)`` (config helper).

    ``kwargs`` are the config's network arguments: used as they are when the checkpoint has no record, and checked
    against the record otherwise (the network class and ``spatial_dims``/``in_channels``/``out_channels`` must agree;
    widths and depths follow the record; ``dropout``/``attn_dropout``, which hold no weights, follow the config when it
    gives them, e.g. MONAI Label's epistemic scoring switching on Monte Carlo dropout). When a checkpoint exists, its
    tensors are checked against the built network's before anything runs.

    ``monte_carlo=True`` makes the network's ``train()`` switch on only its dropout layers
    (:func:`attnseg_monai.networks.utils.monte_carlo_dropout`): the bundles set it when ``network_def#dropout`` > 0,
    which is how MONAI Label's epistemic scoring asks for Monte Carlo dropout samples.

    Example (inference.json)::

        "network_def": {"_target_": "attnseg_monai.bundle.build_network", "record": "@record",
                        "network": "attnseg_monai.networks.nets.HanNet", "spatial_dims": 2, "in_channels": 3,
                        "out_channels": 3, "features": [32, 64, 128, 256, 512]}

    Raises:
        RecordError: the record describes a network for another task than the config's.
        WeightsMismatchError: the checkpoint does not fit the network (names the file, the keys and the remedy).
        ValueError: ``monte_carlo`` on a network without dropout.
    """
    net = _build(network, record, kwargs)
    return monte_carlo_dropout(net) if monte_carlo else net


def _build(network: str, record: CheckpointRecord | None, kwargs: dict[str, Any]) -> nn.Module:
    if record is not None and record.record is not None:
        recorded = record.record
        source = record_path(record.checkpoint)
        target = str(recorded.network["_target_"])
        if not _same_target(target, network, source):
            raise RecordError(
                f"{source}: the checkpoint {record.checkpoint.name} was made by {target}, this config builds "
                f"{network}; pass a checkpoint of this bundle."
            )
        differ = {
            k: (recorded.network[k], kwargs[k])
            for k in TASK_ARGUMENTS
            if k in kwargs and k in recorded.network and recorded.network[k] != kwargs[k]
        }
        if differ:
            text = ", ".join(f"{k} {a} (config: {b})" for k, (a, b) in differ.items())
            raise RecordError(
                f"{source}: the checkpoint {record.checkpoint.name} was trained for {text}; the config and the "
                "checkpoint are for different tasks: pass the matching checkpoint or config."
            )
        runtime = {k: kwargs[k] for k in RUNTIME_ARGUMENTS if k in kwargs and kwargs[k] != recorded.network.get(k)}
        net = recorded.build_network(source, **runtime)
        logger.info(
            "network built from the record %s (recipe %s)%s",
            source,
            recorded.recipe,
            f", with {runtime} from the config" if runtime else "",
        )
    else:
        net = _locate(network, "network_def")(**kwargs)
    if record is not None and record.exists:
        check_weights(net, record.checkpoint)
    return net


def state_dict_of(obj: Any, path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The model weights inside a loaded checkpoint: a state dict, or the ``model``/``state_dict`` entry of a
    training checkpoint; ``module.`` prefixes (DDP) removed.

    Raises:
        CheckpointReadError: no weights found (names the file).
    """
    found: Mapping[str, Any] | None = None
    if isinstance(obj, Mapping):
        if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
            found = obj
        else:
            for key in ("model", "state_dict", "network", "net"):
                inner = obj.get(key)
                if isinstance(inner, Mapping) and inner and all(isinstance(v, torch.Tensor) for v in inner.values()):
                    found = inner
                    break
    if found is None:
        raise CheckpointReadError(
            f"{path}: no weights found (expected a state_dict, or a dict with a 'model' or 'state_dict' entry)."
        )
    return {(k[7:] if k.startswith("module.") else k): v for k, v in found.items()}


def _mismatch(network: nn.Module, state: Mapping[str, torch.Tensor]) -> tuple[list[str], list[str], list[str]]:
    own = network.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k} {tuple(state[k].shape)} (network: {tuple(own[k].shape)})"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    return missing, unexpected, shapes


def _raise_mismatch(path: Path, network: nn.Module, found: tuple[list[str], list[str], list[str]]) -> None:
    missing, unexpected, shapes = found
    parts = []
    if shapes:
        parts.append(f"{len(shapes)} of different shape, first {shapes[:3]}")
    if missing:
        parts.append(f"{len(missing)} missing, first {missing[:3]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected, first {unexpected[:3]}")
    has_record = record_path(path).is_file()
    remedy = (
        "its record and its tensors disagree (a damaged or replaced file): retrain or restore the pair"
        if has_record
        else f"it has no record ({record_path(path).name}) saying how it was built: pass the network settings it was "
        "trained with (e.g. --network_def#features [...]) or a checkpoint written by this bundle's training"
    )
    raise WeightsMismatchError(
        f"{path}: the checkpoint's weights do not fit the network {type(network).__name__} ({'; '.join(parts)}); "
        f"nothing was loaded. {remedy[0].upper()}{remedy[1:]}."
    )


def check_weights(network: nn.Module, checkpoint: str | os.PathLike) -> None:
    """Refuse a checkpoint whose tensors do not match ``network`` (read memory-mapped: cheap for large files).

    Raises:
        CheckpointReadError: unreadable, unsafe or without weights; WeightsMismatchError: keys or shapes differ.
    """
    path = Path(checkpoint)
    state = state_dict_of(load_checkpoint_file(path, mmap=True), path)
    found = _mismatch(network, state)
    if any(found):
        _raise_mismatch(path, network, found)


def load_weights(network: nn.Module, checkpoint: str | os.PathLike, map_location: Any = "cpu") -> nn.Module:
    """Load every tensor of ``checkpoint`` into ``network`` or raise; the one weights loader of this project.

    The file is read with ``torch.load(weights_only=True)`` (a pickle that would run code is refused, not run); a
    state dict or a training checkpoint's ``model`` entry is accepted; DDP's ``module.`` prefixes are removed.

    Raises:
        CheckpointReadError: missing, empty, truncated, unsafe or without weights (names the file).
        WeightsMismatchError: missing, unexpected or differently shaped keys: nothing is loaded; the message names the
            file, the first mismatching keys and the remedy.
    """
    path = Path(checkpoint).expanduser()
    state = state_dict_of(load_checkpoint_file(path), path)
    target = network.module if isinstance(network, nn.parallel.DistributedDataParallel) else network
    found = _mismatch(target, state)
    if any(found):
        _raise_mismatch(path, target, found)
    if map_location is not None:
        state = {k: v.to(map_location) for k, v in state.items()}
    target.load_state_dict(state, strict=True)
    return network


Events, _ = optional_import("ignite.engine", name="Events")


class StrictCheckpointLoader:
    """Ignite handler: load a bundle checkpoint into the network when the engine starts, every tensor or an error.

    The strict counterpart of ``monai.handlers.CheckpointLoader`` for inference and evaluation configs (see
    :func:`load_weights` for what is refused).

    Args:
        load_path: the checkpoint file.
        load_dict: ``{"model": network}`` (the only entry read).
        map_location: where the tensors go (default: the network's device).
    """

    def __init__(self, load_path: str | os.PathLike, load_dict: Mapping[str, nn.Module], map_location: Any = None):
        if "model" not in load_dict or len(load_dict) != 1:
            raise ValueError("StrictCheckpointLoader loads one network: load_dict={'model': network}.")
        self.load_path = Path(load_path)
        self.network = load_dict["model"]
        self.map_location = map_location

    def attach(self, engine: Any) -> None:
        engine.add_event_handler(Events.STARTED, self)

    def __call__(self, engine: Any = None) -> None:
        load_weights(self.network, self.load_path, map_location=self.map_location)
        logger.info("loaded every tensor of %s", self.load_path)
