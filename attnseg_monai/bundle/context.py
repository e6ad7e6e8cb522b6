"""What a bundle config being resolved can know about itself: its own folder, and whether it is training.

MONAI evaluates a config's ``$`` expressions without telling them which file they came from: ``"bundle_root": "."``
means the current directory, wherever the bundle lies. MONAI's workflow objects know it, though:
``ConfigWorkflow`` keeps the folder of its first config file (``config_root_path``), and the script entry points
(``verify_net_in_out``, ``ckpt_export``, ...) hold their ``config_file`` argument. The helpers here look for them on
the call stack of the expression being evaluated, so a bundle copied anywhere resolves to itself and to no other copy.
Where neither is on the stack (a bare ``ConfigParser``), nothing is guessed: the caller is told to set
``bundle_root``.

The same look at the stack tells whether an id is being resolved for a training run (one of the run ids
``run``/``training``, or the trainer ``train#...``, is being resolved), and gives the raw (unresolved) config of an
id, e.g. the ``CheckpointLoader`` that MONAI Label inserts into ``train#handlers`` before it starts a fine-tuning
run.
"""

from __future__ import annotations

import gc
import inspect
import os
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

__all__ = ["BundleRootError", "config_root_on_stack", "raw_config", "resolving_ids", "training_run"]

#: run ids of a training workflow (``run`` is what MONAI Label and the model zoo execute)
TRAINING_RUN_IDS = ("run", "training")

#: monai.bundle script functions whose ``config_file`` argument names the bundle's config
_SCRIPT_FUNCTIONS = {"run", "run_workflow", "verify_net_in_out", "ckpt_export", "onnx_export", "trt_export", "load"}


class BundleRootError(FileNotFoundError):
    """A config cannot tell which bundle folder it belongs to."""


def _frames() -> Iterator[FrameType]:
    frame = inspect.currentframe()
    try:
        frame = frame.f_back if frame is not None else None
        while frame is not None:
            yield frame
            frame = frame.f_back
    finally:
        del frame


def _first_config_file(config_file: Any) -> Path | None:
    if isinstance(config_file, (str, os.PathLike)):
        text = os.fspath(config_file)
        if text.startswith("[") and text.endswith("]"):  # "['a.json','b.json']" as given on the command line
            items = [t.strip().strip("'\"") for t in text[1:-1].split(",") if t.strip()]
            return Path(items[0]) if items else None
        return Path(text)
    if isinstance(config_file, (list, tuple)) and config_file and isinstance(config_file[0], (str, os.PathLike)):
        return Path(config_file[0])
    return None


def config_root_on_stack() -> Path | None:
    """The folder holding the config file being run (``.../configs``), absolute, or ``None`` if not found.

    Looks for, innermost first: a ``monai.bundle.ConfigWorkflow`` (its ``config_root_path``) or a
    ``monai.bundle.scripts`` entry point's ``config_file`` argument; then, for a parser used directly
    (``workflow.parser.get_parsed_content(...)``), the ``ConfigWorkflow`` that owns the parser being resolved.
    """
    from monai.bundle import ConfigParser, ConfigWorkflow

    parsers = []
    for frame in _frames():
        owner = frame.f_locals.get("self")
        if isinstance(owner, ConfigWorkflow) and getattr(owner, "config_root_path", None) is not None:
            return Path(owner.config_root_path).absolute()
        if isinstance(owner, ConfigParser) and all(owner is not p for p in parsers):
            parsers.append(owner)
        code = frame.f_code
        if code.co_name in _SCRIPT_FUNCTIONS and frame.f_globals.get("__name__") == "monai.bundle.scripts":
            first = _first_config_file(frame.f_locals.get("config_file"))
            if first is not None:
                return first.parent.absolute()
    for parser in parsers:
        for referrer in gc.get_referrers(parser):
            if isinstance(referrer, ConfigWorkflow) and referrer.parser is parser:
                if getattr(referrer, "config_root_path", None) is not None:
                    return Path(referrer.config_root_path).absolute()
    return None


def _resolver_frames() -> Iterator[FrameType]:
    from monai.bundle.reference_resolver import ReferenceResolver

    target = ReferenceResolver._resolve_one_item.__code__
    for frame in _frames():
        if frame.f_code is target:
            yield frame


def resolving_ids() -> list[str]:
    """Ids whose resolution is in progress, innermost first (``["network_def", "network", "train#trainer",
    "run#0"]``); empty outside MONAI's reference resolution."""
    return [str(frame.f_locals.get("id")) for frame in _resolver_frames()]


def training_run() -> bool:
    """``True`` while a training run id (``run``, ``training``) or a part of the trainer (``train#...``, e.g.
    ``train#trainer`` resolved directly) is being resolved."""
    return any(i.split("#", 1)[0] in (*TRAINING_RUN_IDS, "train") for i in resolving_ids())


def raw_config(id: str) -> Any:
    """The raw (unresolved) config content of ``id`` in the config being resolved, or ``None``.

    Raises:
        LookupError: if no MONAI reference resolution is in progress.
    """
    for frame in _resolver_frames():
        resolver = frame.f_locals.get("self")
        items = getattr(resolver, "items", None)
        if isinstance(items, dict):
            item = items.get(id)
            return None if item is None else item.get_config()
    raise LookupError("raw_config() is only available while a MONAI config is being resolved.")
