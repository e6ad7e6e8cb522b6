"""Resumable, fault-stopping training for MONAI trainers: one handler that saves and restores the whole run state.

:class:`ResumableTraining` is attached to a MONAI/ignite trainer and listed in the checkpoint saver's
``save_dict`` (key ``training_state``). What it saves with every checkpoint:

- the trainer's position (``epoch``, ``iteration``, ``epoch_length``, ``max_epochs``: ignite's ``Engine.state_dict``)
  and the step counters of ignite parameter schedulers attached to it (the EMA momentum warm-up of ``EMAHandler``);
- the random states: torch (CPU and CUDA), NumPy's global generator, Python's ``random``, the generator of the
  DataLoader and of its sampler when they have one, and the ``R`` generator of every MONAI ``Randomizable``
  transform in the training dataset's transform chain (found by walking the transforms' attributes; this is what
  decides crops and flips when ``num_workers=0``; with workers, each worker reseeds its transforms from torch's
  generator, which is saved too).

At ``Events.STARTED``, given a checkpoint (``checkpoint=...``; ``find_resume_checkpoint(ckpt_dir)`` picks the
latest complete one), it loads the model, optimiser, scheduler, EMA model and any other object of ``load_dict``,
then the trainer's position and the random states, so the resumed run draws the same batches and augmentations as
an uninterrupted run with the same seed and its loss curve is the same. Everything is loaded with
``torch.load(weights_only=True)``.

With ``stop_on_nonfinite_loss`` (default), a NaN or infinite loss stops the run at once with
:class:`NonFiniteLossError` naming the epoch and iteration; the :class:`AtomicCheckpointSaver` then writes nothing,
so the last good checkpoint stays the newest.
"""

from __future__ import annotations

import logging
import math
import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.handlers.param_scheduler import BaseParamScheduler
from monai.transforms import Randomizable

from ..io.atomic import remove_stale_temporaries
from ..io.checkpoint import load_checkpoint_file
from .checkpoint import STATE_KEY, NonFiniteLossError, _unwrap, nonfinite_parameters

__all__ = ["ResumableTraining", "capture_rng_state", "restore_rng_state", "transform_generators"]

logger = logging.getLogger(__name__)

FORMAT = "attnseg-training-state"
_SKIP = (str, bytes, int, float, bool, type(None), torch.Tensor, np.ndarray, torch.nn.Module, torch.Generator)


def transform_generators(dataset: Any, max_depth: int = 10) -> dict[str, Randomizable]:
    """Every MONAI ``Randomizable`` reachable from the dataset's transform chain, by attribute path, in a fixed order.

    Walks ``dataset.transform`` (and ``dataset.dataset`` of wrappers such as ``Subset``) through object attributes,
    lists, tuples and dicts. Each transform's generator is ``transform.R`` (nested ones too, e.g. the cropper
    inside ``RandSpatialCropSamplesd``). Paths, not object identities, name them: MONAI creates some generators
    lazily, so the same transform chain may share a class-level generator before its first call.
    """
    found: dict[str, Randomizable] = {}
    seen: set[int] = set()

    def visit(obj: Any, path: str, depth: int) -> None:
        if depth > max_depth or isinstance(obj, _SKIP) or id(obj) in seen:
            return
        seen.add(id(obj))
        if isinstance(obj, Randomizable):
            found[path] = obj
        if isinstance(obj, Mapping):
            for key, value in list(obj.items()):
                visit(value, f"{path}[{key!r}]", depth + 1)
            return
        if isinstance(obj, (list, tuple)):
            for index, value in enumerate(obj):
                visit(value, f"{path}[{index}]", depth + 1)
            return
        attrs = getattr(obj, "__dict__", None)
        if isinstance(attrs, dict):
            for key, value in list(attrs.items()):
                if key != "R":
                    visit(value, f"{path}.{key}", depth + 1)

    level = 0
    while dataset is not None and level < 8:
        root = getattr(dataset, "transform", None)
        if root is not None:
            visit(root, f"dataset{'.dataset' * level}.transform", 0)
        dataset = getattr(dataset, "dataset", None)
        level += 1
    return found


def _np_state_out(state: tuple) -> dict[str, Any]:
    name, keys, pos, has_gauss, cached = state
    return {
        "name": str(name),
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def _np_state_in(state: Mapping[str, Any]) -> tuple:
    keys = state["keys"].numpy().astype(np.uint32)
    return state["name"], keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"])


def _generators(dataloader: Any) -> dict[str, torch.Generator]:
    out = {}
    if dataloader is None:
        return out
    gen = getattr(dataloader, "generator", None)
    if isinstance(gen, torch.Generator):
        out["dataloader"] = gen
    sampler = getattr(dataloader, "sampler", None)
    gen = getattr(sampler, "generator", None)
    if isinstance(gen, torch.Generator) and all(gen is not g for g in out.values()):
        out["sampler"] = gen
    return out


def capture_rng_state(dataloader: Any = None) -> dict[str, Any]:
    """All random states a training run draws from (see the module docstring), as tensors and plain values only
    (loadable with ``torch.load(weights_only=True)``)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": _np_state_out(np.random.get_state()),
        "python": {"version": int(version), "internal": [int(v) for v in internal], "gauss": gauss},
        "generators": {k: g.get_state() for k, g in _generators(dataloader).items()},
        "transforms": [],
    }
    if torch.cuda.is_available():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    dataset = getattr(dataloader, "dataset", None)
    if dataset is not None:
        state["transforms"] = {k: _np_state_out(t.R.get_state()) for k, t in transform_generators(dataset).items()}
    return state


def restore_rng_state(state: Mapping[str, Any], dataloader: Any = None) -> None:
    """Restore what :func:`capture_rng_state` saved.

    Raises:
        ValueError: if the dataset's transform chain lacks random transforms whose states were saved (another
            config), or the DataLoader's generators differ.
    """
    torch.set_rng_state(state["torch"])
    np.random.set_state(_np_state_in(state["numpy"]))
    py = state["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])
    gens = _generators(dataloader)
    saved = state.get("generators", {})
    if set(saved) != set(gens):
        raise ValueError(
            f"the DataLoader's random generators ({sorted(gens)}) differ from the checkpoint's ({sorted(saved)}): "
            "resume with the configuration the checkpoint was trained with."
        )
    for key, gen in gens.items():
        gen.set_state(saved[key])
    dataset = getattr(dataloader, "dataset", None)
    saved_transforms = state.get("transforms", {})
    if dataset is not None:
        current = transform_generators(dataset)
        missing = sorted(set(saved_transforms) - set(current))
        if missing:
            raise ValueError(
                f"the checkpoint holds random states of transforms that this training's dataset lacks ({missing[:3]}"
                f"{' ...' if len(missing) > 3 else ''}): resume with the configuration the checkpoint was trained with."
            )
        for path, transform in current.items():
            if path not in saved_transforms:
                continue
            if "R" not in vars(transform):
                transform.R = np.random.RandomState()  # own generator instead of the shared class-level one
            transform.R.set_state(_np_state_in(saved_transforms[path]))


def attached_schedulers(engine: Engine) -> list[BaseParamScheduler]:
    """Ignite parameter schedulers attached to ``engine`` (e.g. the EMA momentum warm-up of ``EMAHandler``), in
    attachment order; their step counters are part of the run's state."""
    found: list[BaseParamScheduler] = []
    for handlers in list(engine._event_handlers.values()):
        for entry in handlers:
            handler = entry[0]
            if isinstance(handler, BaseParamScheduler) and all(handler is not f for f in found):
                found.append(handler)
    return found


def _scheduler_state(scheduler: BaseParamScheduler) -> dict[str, Any]:
    state: dict[str, Any] = {"class": type(scheduler).__name__, "event_index": int(scheduler.event_index)}
    if hasattr(scheduler, "_index"):
        state["_index"] = int(scheduler._index)
    return state


def _loss_value(output: Any, key: str) -> float | None:
    item = output[0] if isinstance(output, (list, tuple)) and output else output
    if isinstance(item, Mapping):
        item = item.get(key)
    if isinstance(item, torch.Tensor) and item.numel() == 1:
        return float(item.detach())
    if isinstance(item, (int, float)):
        return float(item)
    return None


class ResumableTraining:
    """Save and restore a training run's full state; stop on a NaN/inf loss (see the module docstring).

    Args:
        load_dict: the objects to restore from the checkpoint, by the keys the saver's ``save_dict`` uses
            (``{"model": net, "optimizer": opt, "lr_scheduler": sched}``; EMA models too). Not this handler: it
            restores itself from the ``training_state`` entry.
        checkpoint: the checkpoint to resume from; ``None`` starts from scratch.
        dataloader: the training DataLoader (its dataset's random transforms and generators are saved).
        strict: require the model keys to match exactly.
        stop_on_nonfinite_loss: raise :class:`NonFiniteLossError` when the iteration's loss is NaN or inf.
        loss_key: key of the loss in the trainer's output.

    Example (2D or 3D, the handler does not depend on the network)::

        state = ResumableTraining({"model": net, "optimizer": opt}, checkpoint=find_resume_checkpoint("models"),
                                  dataloader=train_loader)
        trainer = SupervisedTrainer(..., train_handlers=[state, AtomicCheckpointSaver(
            "models", {"model": net, "optimizer": opt, "training_state": state}, save_interval=1, n_saved=1)])

    Raises:
        ValueError: for a ``load_dict`` that is not a mapping of objects with ``load_state_dict``.
    """

    def __init__(
        self,
        load_dict: Mapping[str, Any] | None = None,
        checkpoint: str | os.PathLike | None = None,
        dataloader: Any = None,
        *,
        strict: bool = True,
        stop_on_nonfinite_loss: bool = True,
        loss_key: str = "loss",
    ) -> None:
        load_dict = dict(load_dict or {})
        for key, obj in load_dict.items():
            if not hasattr(obj, "load_state_dict"):
                raise ValueError(f"load_dict[{key!r}] ({type(obj).__name__}) has no load_state_dict method.")
        if STATE_KEY in load_dict:
            raise ValueError(f"load_dict must not hold {STATE_KEY!r}: this handler restores it itself.")
        self.load_dict = load_dict
        self.checkpoint = None if checkpoint in (None, "", False) else str(checkpoint)
        self.dataloader = dataloader
        self.strict = strict
        self.stop_on_nonfinite_loss = stop_on_nonfinite_loss
        self.loss_key = loss_key
        self.engine: Engine | None = None
        self.resumed_from: str | None = None

    def attach(self, engine: Engine) -> None:
        """Register the resume step (first ``STARTED`` handler) and the loss check."""
        self.engine = engine
        engine.add_event_handler(Events.STARTED, self.resume)
        if self.stop_on_nonfinite_loss:
            engine.add_event_handler(Events.ITERATION_COMPLETED, self.check_loss)

    def state_dict(self) -> dict[str, Any]:
        if self.engine is None:
            raise RuntimeError("ResumableTraining is not attached to a trainer.")
        items = self.engine.state_dict().items()
        engine_state = {k: (int(v) if isinstance(v, (int, np.integer)) else v) for k, v in items}
        return {
            "format": FORMAT,
            "version": 1,
            "engine": engine_state,
            "schedulers": [_scheduler_state(s) for s in attached_schedulers(self.engine)],
            "rng": capture_rng_state(self.dataloader),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if self.engine is None:
            raise RuntimeError("ResumableTraining is not attached to a trainer.")
        if not isinstance(state, Mapping) or state.get("format") != FORMAT:
            raise ValueError("not a training state written by attnseg_monai.handlers.ResumableTraining.")
        prior_max_epochs = self.engine.state.max_epochs
        self.engine.load_state_dict(state["engine"])
        if prior_max_epochs is not None:
            if self.engine.state.epoch > prior_max_epochs:
                raise ValueError(
                    f"the checkpoint is at epoch {self.engine.state.epoch}, beyond max_epochs={prior_max_epochs}."
                )
            self.engine.state.max_epochs = prior_max_epochs
        schedulers = attached_schedulers(self.engine)
        saved = list(state.get("schedulers", []))
        if [type(s).__name__ for s in schedulers] != [s["class"] for s in saved]:
            raise ValueError(
                f"the trainer's parameter schedulers {[type(s).__name__ for s in schedulers]} differ from the "
                f"checkpoint's {[s['class'] for s in saved]}: resume with the configuration it was trained with."
            )
        for scheduler, saved_state in zip(schedulers, saved):
            scheduler.event_index = int(saved_state["event_index"])
            if "_index" in saved_state:
                scheduler._index = int(saved_state["_index"])
        restore_rng_state(state["rng"], self.dataloader)

    def resume(self, engine: Engine) -> None:
        """Load ``checkpoint`` into ``load_dict`` and this handler (called at ``Events.STARTED``)."""
        if self.checkpoint is None:
            return
        data = load_checkpoint_file(self.checkpoint)
        if not isinstance(data, Mapping) or STATE_KEY not in data:
            raise ValueError(
                f"{self.checkpoint}: holds no {STATE_KEY!r} entry, so it cannot resume a run (it may be a weights-only "
                "checkpoint such as model.pt; use it as pretrained weights instead)."
            )
        missing = [k for k in self.load_dict if k not in data]
        if missing:
            raise ValueError(f"{self.checkpoint}: no entries {missing} (it has {sorted(data)}).")
        for key, obj in self.load_dict.items():
            target = _unwrap(obj)
            if isinstance(target, torch.nn.Module):
                target.load_state_dict(data[key], strict=self.strict)
            else:
                target.load_state_dict(data[key])
        self.load_state_dict(data[STATE_KEY])
        self.resumed_from = self.checkpoint
        for stale in remove_stale_temporaries(os.path.dirname(os.path.abspath(self.checkpoint))):
            engine.logger.info("removed %s, a checkpoint write that did not finish", stale)
        engine.logger.info(
            "resumed from %s at epoch %d, iteration %d", self.checkpoint, engine.state.epoch, engine.state.iteration
        )

    def check_loss(self, engine: Engine) -> None:
        """Raise :class:`NonFiniteLossError` when this iteration's loss is NaN or inf."""
        loss = _loss_value(engine.state.output, self.loss_key)
        if loss is None or math.isfinite(loss):
            return
        models = [k for k, obj in self.load_dict.items() if isinstance(_unwrap(obj), torch.nn.Module)]
        bad = {k: nonfinite_parameters(_unwrap(self.load_dict[k]), limit=3) for k in models}
        detail = "; ".join(f"{k}: non-finite {', '.join(v)}" for k, v in bad.items() if v) or "weights still finite"
        raise NonFiniteLossError(
            f"training loss is {loss} at epoch {engine.state.epoch}, iteration {engine.state.iteration} "
            f"({detail}). The run is stopped; the last good checkpoint is kept. Lower the learning rate, check the "
            "data for NaN/inf values, or resume from the last checkpoint with another seed."
        )
