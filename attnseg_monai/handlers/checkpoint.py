"""Atomic checkpoints for MONAI trainers, and finding the last complete one to resume from.

:class:`AtomicCheckpointSaver` is MONAI's :class:`~monai.handlers.CheckpointSaver` (same arguments, same file
names, same events) whose files are written through :func:`~attnseg_monai.io.atomic.atomic_torch_save`
(temporary file, fsync, ``os.replace``), and which never writes a model with non-finite weights (so a run that
diverged cannot overwrite the last good checkpoint, not even through the "final" checkpoint MONAI saves when an
exception stops the run).

:func:`find_resume_checkpoint` picks the latest complete training checkpoint of a folder (read with
:func:`attnseg_monai.io.checkpoint.load_checkpoint_file`, weights only), skipping truncated, unreadable and unsafe
files; :func:`resume_checkpoint` is the bundles' ``--resume`` / ``--resume_from`` helper.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from monai.handlers import CheckpointSaver

from ..io.atomic import atomic_open, atomic_torch_save
from ..io.checkpoint import CHECKPOINT_SUFFIXES, CheckpointReadError, load_checkpoint_file, record_path

__all__ = [
    "STATE_KEY",
    "AtomicCheckpointSaver",
    "NonFiniteLossError",
    "find_resume_checkpoint",
    "nonfinite_parameters",
    "resume_checkpoint",
]

logger = logging.getLogger(__name__)

STATE_KEY = "training_state"


class NonFiniteLossError(RuntimeError):
    """A NaN or infinite loss: the run is stopped (raised by :class:`~.training.ResumableTraining`)."""


def nonfinite_parameters(module: torch.nn.Module, limit: int = 5) -> list[str]:
    """Names of parameters and floating buffers holding NaN or inf (at most ``limit``)."""
    bad = []
    tensors = list(module.named_parameters()) + [(n, b) for n, b in module.named_buffers() if b.is_floating_point()]
    for name, tensor in tensors:
        if not bool(torch.isfinite(tensor.detach()).all()):
            bad.append(name)
            if len(bad) >= limit:
                break
    return bad


def _unwrap(obj: Any) -> Any:
    return obj.module if isinstance(obj, (torch.nn.DataParallel, torch.nn.parallel.DistributedDataParallel)) else obj


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` writing every file atomically and refusing to save non-finite weights.

    Arguments are those of :class:`monai.handlers.CheckpointSaver`. Each file goes to a hidden temporary file in
    ``save_dir``, is flushed to disk (``fsync``) and renamed over the final name, so a run killed during a write
    leaves the previous file intact. Before any save, every ``nn.Module`` of ``save_dict`` is checked: if one holds
    NaN/inf weights the save is skipped with an error in the log (the last good checkpoint stays).

    With ``record`` (an :class:`attnseg_monai.bundle.RecordSpec`: any object whose ``record_for(network)`` returns a
    record with ``to_json()``), every checkpoint file gets its record beside it
    (``model.pt`` -> ``model.record.json``: the network's construction arguments and the settings inference must
    repeat), written in the same save and removed with the checkpoint when it is rotated out.

    Example (config)::

        {"_target_": "attnseg_monai.handlers.AtomicCheckpointSaver", "save_dir": "@ckpt_dir",
         "save_dict": {"model": "@network", "optimizer": "@optimizer", "training_state": "@train#reliability"},
         "record": "@record", "save_interval": 1, "n_saved": 1, "save_final": true, "final_filename": "model_final.pt"}

    Raises:
        AssertionError: as MONAI's CheckpointSaver, for a missing ``save_dir`` or empty ``save_dict``.
    """

    def __init__(self, save_dir: str, save_dict: dict, *args: Any, record: Any = None, **kwargs: Any) -> None:
        super().__init__(save_dir, save_dict, *args, **kwargs)
        self.record = record
        for checkpoint in (self._final_checkpoint, self._key_metric_checkpoint, self._interval_checkpoint):
            if checkpoint is not None:
                self._make_atomic(checkpoint.save_handler)

    def _make_atomic(self, handler: Any) -> None:
        """Route the DiskSaver's writes through the atomic writer and defer its removals until the next save
        succeeded (ignite removes the oldest file *before* writing the new one; a kill in between would leave no
        checkpoint at all)."""
        pending: list[str] = []
        remove_now = handler.remove

        def save_func(checkpoint: Mapping, path: Path, func: Any) -> None:
            if self._atomic_save_func(checkpoint, path, func):
                for filename in pending:
                    target = Path(handler.dirname) / (handler.filename or filename)
                    if target.resolve() != Path(path).resolve() and target.exists():
                        remove_now(filename)
                        self._remove_record(target)
                pending.clear()

        handler._save_func = save_func
        handler.remove = pending.append

    def _bad_modules(self) -> dict[str, list[str]]:
        bad = {}
        for key, obj in self.save_dict.items():
            obj = _unwrap(obj)
            if isinstance(obj, torch.nn.Module):
                names = nonfinite_parameters(obj)
                if names:
                    bad[key] = names
        return bad

    def _atomic_save_func(self, checkpoint: Mapping, path: Path, func: Any) -> bool:
        bad = self._bad_modules()
        if bad:
            logger.error(
                "not writing %s: non-finite weights in %s; the previous checkpoints are kept",
                path,
                "; ".join(f"{k}: {', '.join(v)}" for k, v in bad.items()),
            )
            return False
        record = self._record()
        if record is None:
            atomic_torch_save(checkpoint, path, save=func)
            return True
        # the record's temporary file is written first and renamed only after the checkpoint is complete: a kill
        # leaves hidden temporaries, or (between the two renames) the new weights beside the previous record,
        # which every consumer refuses loudly (the shapes are checked): never a record without its checkpoint
        with atomic_open(record_path(path), "w") as handle:
            handle.write(record.to_json())
            atomic_torch_save(checkpoint, path, save=func)
        return True

    def _record(self) -> Any:
        """The record of the saved network (the ``model`` entry, else the only module of ``save_dict``)."""
        if self.record is None:
            return None
        model = self.save_dict.get("model")
        if model is None:
            modules = [v for v in self.save_dict.values() if isinstance(_unwrap(v), torch.nn.Module)]
            model = modules[0] if len(modules) == 1 else None
        if model is None:
            raise ValueError("AtomicCheckpointSaver(record=...) needs the network as save_dict['model'].")
        return self.record.record_for(_unwrap(model))

    @staticmethod
    def _remove_record(checkpoint: Path) -> None:
        record_path(checkpoint).unlink(missing_ok=True)

    def exception_raised(self, engine: Any, e: Exception) -> None:
        """MONAI saves the "final" checkpoint when an exception stops the run; not when the weights diverged."""
        if isinstance(e, NonFiniteLossError) or self._bad_modules():
            self.logger.error("run stopped by %s; no final checkpoint written (the last good one is kept)", e)
            raise e
        super().exception_raised(engine, e)


def _training_iteration(obj: Any) -> tuple[int, bool] | None:
    """``(iteration, at_epoch_boundary)`` of a checkpoint holding a training state, else ``None``."""
    if not isinstance(obj, Mapping) or not isinstance(obj.get(STATE_KEY), Mapping):
        return None
    engine = obj[STATE_KEY].get("engine")
    if not isinstance(engine, Mapping) or "iteration" not in engine:
        return None
    iteration = int(engine["iteration"])
    length = engine.get("epoch_length")
    boundary = bool(length) and iteration % int(length) == 0
    return iteration, boundary


def find_resume_checkpoint(ckpt_dir: str | os.PathLike, *, allow_mid_epoch: bool = False) -> str | None:
    """The latest complete training checkpoint in ``ckpt_dir``, or ``None`` when there is none.

    Candidates are the non-hidden ``*.pt``/``*.pth``/``*.ckpt`` files that hold a training state (written with
    :class:`~attnseg_monai.handlers.ResumableTraining` in the saver's ``save_dict``). Each is loaded with
    ``weights_only=True``; truncated, unreadable and unsafe files are skipped with a warning. The one with the
    highest iteration wins (newest file on a tie). Checkpoints taken in the middle of an epoch (MONAI's "final"
    checkpoint written when an exception stopped the run) are skipped unless ``allow_mid_epoch``: resuming there
    cannot replay the epoch's data order.

    Args:
        ckpt_dir: the folder the trainer's checkpoint saver writes to.
        allow_mid_epoch: also consider mid-epoch checkpoints.

    Raises:
        ValueError: if ``ckpt_dir`` exists but is not a folder.
    """
    root = Path(ckpt_dir)
    if not root.exists():
        logger.warning("resume: checkpoint folder %s does not exist; starting from scratch", root)
        return None
    if not root.is_dir():
        raise ValueError(f"ckpt_dir {root} is not a folder.")
    best: tuple[int, int, Path] | None = None
    for p in sorted(root.iterdir()):
        if p.name.startswith(".") or p.suffix not in CHECKPOINT_SUFFIXES or not p.is_file():
            continue
        try:
            obj = load_checkpoint_file(p, mmap=True)
        except CheckpointReadError as exc:
            logger.warning("resume: skipping %s", exc)
            continue
        found = _training_iteration(obj)
        if found is None:
            logger.info("resume: %s holds no training state (weights only); skipped", p.name)
            continue
        iteration, boundary = found
        if not boundary and not allow_mid_epoch:
            logger.info("resume: %s was taken mid-epoch (iteration %d); skipped", p.name, iteration)
            continue
        key = (iteration, p.stat().st_mtime_ns, p)
        if best is None or key[:2] > best[:2]:
            best = key
    if best is None:
        logger.warning("resume: no complete training checkpoint in %s; starting from scratch", root)
        return None
    logger.info("resume: latest complete checkpoint %s (iteration %d)", best[2], best[0])
    return str(best[2])


_TRUE = ("1", "true", "yes", "on", "latest")
_FALSE = ("", "0", "false", "no", "off", "none", "null")


def resume_checkpoint(ckpt_dir: str | os.PathLike, resume: Any = False, resume_from: Any = None) -> str | None:
    """The checkpoint a bundle's ``--resume`` / ``--resume_from`` overrides ask for (config helper).

    Args:
        ckpt_dir: the trainer's checkpoint folder.
        resume: ``true`` (also ``"true"``, ``"yes"``, ``1``) resumes from the latest complete checkpoint of
            ``ckpt_dir`` (:func:`find_resume_checkpoint`; none found: starts from scratch); ``false`` starts fresh.
        resume_from: a checkpoint path; takes precedence over ``resume``.

    Raises:
        ValueError: an unrecognised ``resume`` value.
        CheckpointReadError: ``resume_from`` is missing, truncated or unsafe (checked before training starts).
    """
    if resume_from not in (None, "", False):
        load_checkpoint_file(resume_from, mmap=True)
        return str(resume_from)
    flag = str(resume).strip().lower()
    if flag in _FALSE:
        return None
    if flag not in _TRUE:
        raise ValueError(f"resume must be true or false, got {resume!r}.")
    return find_resume_checkpoint(ckpt_dir)
