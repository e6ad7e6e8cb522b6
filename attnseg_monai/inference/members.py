"""The models of an ensemble: fold checkpoints of a bundle, or several checkpoints, each built from its own record.

``attnseg infer <bundle> in out --folds all`` takes every ``models/fold_<k>/model.pt`` of the bundle (written by a
training with ``--fold k`` into that folder); ``--folds 0,2`` takes those folds; ``--checkpoint a.pt,b.pt`` takes
those files. Each member is the network its record describes (members may differ in width), loaded strictly. They
must agree on what they predict and how the input is prepared: the same classes (the records' ``classes``, else the
networks' output channels) and the same recorded preprocessing; otherwise the run stops before anything is written.
Their records also say what ``--tta`` mirrors (:func:`member_tta`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from ..bundle.record import read_record
from ..inferers import tta_transforms
from ..inferers.ensemble import Augmentation, trained_symmetries
from ..io.atomic import sha256_bytes
from .bundle_loader import BundleParts, load_bundle, resolve_bundle
from .errors import BundleError, CheckpointError
from .options import int_list

__all__ = ["fold_checkpoints", "load_members", "member_checkpoints", "member_tta"]

logger = logging.getLogger(__name__)

FOLD_PREFIX = "fold_"


def fold_checkpoints(root: Path, folds: Any) -> list[Path]:
    """``models/fold_<k>/model.pt`` of the bundle at ``root`` for ``folds`` (``"all"`` or fold numbers).

    Raises:
        CheckpointError: no fold folder, or a fold folder without ``model.pt`` (named, with the remedy).
    """
    models = root / "models"
    if str(folds).strip().lower() == "all":
        folders = sorted(
            (p for p in models.glob(f"{FOLD_PREFIX}*") if p.is_dir() and p.name[len(FOLD_PREFIX) :].isdigit()),
            key=lambda p: int(p.name[len(FOLD_PREFIX) :]),
        )
        if not folders:
            raise CheckpointError(
                f"{models}: no fold_<k>/ folders; train the folds first (python -m monai.bundle run training "
                f"--config_file ... --fold k --ckpt_dir {models}/fold_k) or give --checkpoint."
            )
    else:
        numbers = int_list(folds, "folds") or []
        if not numbers:
            raise CheckpointError("folds must be 'all' or fold numbers such as 0,1,2.")
        folders = [models / f"{FOLD_PREFIX}{k}" for k in numbers]
    found = []
    for folder in folders:
        ckpt = folder / "model.pt"
        if not ckpt.is_file():
            fold = folder.name[len(FOLD_PREFIX) :]
            raise CheckpointError(
                f"{folder}: no model.pt in this fold folder; train fold {fold} or leave it out of --folds"
            )
        found.append(ckpt)
    return found


def member_checkpoints(bundle: str | os.PathLike, checkpoint: Any = None, folds: Any = None) -> list[Path] | None:
    """The checkpoints of the models to run: ``None`` for the bundle's one model, else one path per member.

    Raises:
        ValueError: for both ``checkpoint`` and ``folds``.
        CheckpointError: see :func:`fold_checkpoints`.
    """
    if folds is not None and checkpoint is not None:
        raise ValueError("give --folds or --checkpoint, not both.")
    if folds is not None:
        root, _, _ = resolve_bundle(bundle)
        return fold_checkpoints(root, folds)
    if checkpoint is None:
        return None
    items = checkpoint.split(",") if isinstance(checkpoint, str) else checkpoint
    if isinstance(items, (str, os.PathLike)):
        items = [items]
    return [Path(str(c).strip()).expanduser() for c in items if str(c).strip()]


def _agreement(parts: Sequence[BundleParts]) -> None:
    first = parts[0]
    expected = read_record(first.checkpoint).record if first.checkpoint else None
    for other in parts[1:]:
        if other.out_channels != first.out_channels:
            raise BundleError(
                f"ensemble members predict different numbers of classes: {first.checkpoint} gives "
                f"{first.out_channels}, {other.checkpoint} gives {other.out_channels}; use members of one task."
            )
        record = read_record(other.checkpoint).record if other.checkpoint else None
        if expected is not None and record is not None:
            if record.classes != expected.classes:
                raise BundleError(
                    f"ensemble members have different class sets: {first.checkpoint} {expected.classes}, "
                    f"{other.checkpoint} {record.classes}; use members of one task."
                )
            if record.preprocessing != expected.preprocessing:
                raise BundleError(
                    f"ensemble members were trained with different preprocessing ({first.checkpoint}: "
                    f"{expected.preprocessing}; {other.checkpoint}: {record.preprocessing}); an ensemble needs one."
                )


def load_members(
    bundle: str | os.PathLike,
    checkpoints: Sequence[Path],
    *,
    trust_bundle: bool = False,
    device: Any = "cpu",
    overrides: Mapping[str, Any] | None = None,
    precision: str = "auto",
    engine: str = "auto",
) -> tuple[BundleParts, list[nn.Module], str]:
    """Load every member: ``(parts of the first member, all member networks, a SHA-256 over the members' files)``.

    The first member's preprocessing, inferer and postprocessing serve the ensemble (the members agree on them).

    Raises:
        BundleError: members that disagree (see the module docstring); CheckpointError: a member that cannot load.
    """
    if not checkpoints:
        raise CheckpointError("an ensemble needs at least one checkpoint.")
    loaded = [
        load_bundle(
            bundle,
            checkpoint=c,
            trust_bundle=trust_bundle,
            device=device,
            overrides=overrides,
            precision=precision,
            engine=engine,
        )
        for c in checkpoints
    ]
    _agreement(loaded)
    digest = sha256_bytes("".join(p.checkpoint_sha256 or "" for p in loaded).encode())
    return loaded[0], [p.network for p in loaded], digest


def member_tta(name: str, dims: int, checkpoints: Sequence[Path], axes: Any, rotate: bool) -> list[Augmentation]:
    """The augmentations of ``--tta`` for the members ``checkpoints`` of bundle ``name``: the given ``axes``, else the
    axes every member's training mirrored (its record's ``augmentation``; every axis, with a warning, when a record
    does not say).

    Raises:
        ValueError: an axis or rotation that does not fit ``dims``, or members trained without mirroring and no
            ``axes`` given (TTA would only repeat the identity).
    """
    if axes is not None:
        return tta_transforms(dims, axes, rotate)
    augmentations = []
    for checkpoint in checkpoints:
        record = read_record(checkpoint).record if checkpoint.is_file() else None
        if record is None or not record.augmentation:
            logger.warning(
                "%s: the checkpoint's record does not say which axes training mirrored; --tta mirrors every "
                "spatial axis (give --tta_axes to choose).",
                checkpoint,
            )
            return tta_transforms(dims, None, rotate)
        augmentations.append((checkpoint, record.augmentation))
    if not augmentations:
        return tta_transforms(dims, None, rotate)
    mirrored, turns = set(range(dims)), True
    for _, augmentation in augmentations:
        axes_seen, turned = trained_symmetries(dims, augmentation)
        mirrored &= set(axes_seen)
        turns = turns and turned
    if not mirrored and not rotate:
        checkpoint, augmentation = augmentations[0]
        raise ValueError(
            f"{name}: training mirrored no axis (record of {checkpoint}: augmentation {augmentation}), so --tta "
            "would only repeat the identity: give --tta_axes (e.g. --tta_axes 0) to mirror anyway, or leave out --tta."
        )
    if rotate and not turns:
        logger.warning(
            "%s: --tta_rotate turns the images by quarter turns, which training never did (records of %s).",
            name,
            ", ".join(str(c) for c, _ in augmentations),
        )
    logger.info("%s: --tta mirrors axes %s, the ones training mirrored", name, sorted(mirrored))
    return tta_transforms(dims, sorted(mirrored), rotate)
