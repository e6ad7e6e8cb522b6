"""``attnseg train-folds``: train the cross-validation folds of a bundle into ``models/fold_<k>/``, resumably.

Each fold is the bundle's own training, run by MONAI's runner in its own process::

    python -m monai.bundle run training --config_file <bundle>/configs/train.json --fold k \\
        --ckpt_dir <bundle>/models/fold_k --output_dir <bundle>/eval/fold_k [--dataset_dir D] [overrides]

so the datalist is the bundle's (the same split and seed for every fold, fold ``k`` held out for validation), and the
checkpoint of each fold carries its record. When a fold's training exits cleanly ``models/fold_<k>/fold.json`` is
written (atomically); with ``model.pt`` beside it the fold is finished and a rerun skips it. An interrupted fold (no
``fold.json``) is resumed from its last complete checkpoint (``--resume true``, the bundles' exact resumption); a
failed one is reported with its reason and trained afresh on the next run. ``parallel`` folds run at once, one per
GPU when GPUs exist (``CUDA_VISIBLE_DEVICES``). The processes, markers and resumption are
:mod:`~attnseg_monai.inference.jobs`, shared with ``attnseg experiment``. The fold models are then an ensemble:
``attnseg infer <bundle> in out --folds all``.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .bundle_loader import resolve_bundle
from .errors import UntrustedBundleError, innermost_cause
from .jobs import TrainingJob, run_training_jobs, training_parser
from .members import FOLD_PREFIX

__all__ = ["FOLD_MARKER", "FoldRun", "folds_in_datalist", "train_folds"]

#: written into a fold folder when its training finished
FOLD_MARKER = "fold.json"


@dataclass
class FoldRun:
    """One fold of :func:`train_folds`: ``status`` is ``done`` (finished earlier), ``trained``, ``resumed`` or
    ``failed`` (``reason`` says why, ``log`` holds its output)."""

    fold: int
    status: str
    folder: str
    log: str
    seconds: float = 0.0
    command: list[str] | None = None
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _command(root: Path, fold: int, dataset_dir: str | None, overrides: Mapping[str, Any]) -> list[str]:
    folder = root / "models" / f"{FOLD_PREFIX}{fold}"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training"]
    cmd += ["--config_file", str(root / "configs" / "train.json"), "--fold", str(fold)]
    cmd += ["--ckpt_dir", str(folder), "--output_dir", str(root / "eval" / f"{FOLD_PREFIX}{fold}")]
    if dataset_dir is not None:
        cmd += ["--dataset_dir", str(Path(dataset_dir).expanduser().absolute())]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cmd


def folds_in_datalist(root: Path, dataset_dir: str | None, overrides: Mapping[str, Any]) -> list[int]:
    """The folds of the bundle's training datalist (``train#datalist`` of ``train.json`` without a fold, resolved in
    this process with the same ``dataset_dir`` and ``overrides`` as the fold runs; its datalist file goes to a
    temporary folder). Items without a ``fold`` key belong to no fold."""
    with tempfile.TemporaryDirectory(prefix="attnseg_folds_") as tmp:
        parser = training_parser(root, tmp, dataset_dir, {**overrides, "fold": None})
        if "train#datalist" not in parser:
            raise ValueError(f"{root / 'configs' / 'train.json'}: no 'train#datalist' (the training items).")
        try:
            items = list(parser.get_parsed_content("train#datalist"))
        except (ValueError, RuntimeError) as exc:  # MONAI wraps what an expression raises: report the reason
            raise ValueError(
                f"{root / 'configs' / 'train.json'}: the training datalist of "
                f"{dataset_dir or 'the embedded data'} cannot be built ({innermost_cause(exc)}); nothing was trained."
            ) from exc
    return sorted({int(item["fold"]) for item in items if isinstance(item, Mapping) and item.get("fold") is not None})


def train_folds(
    bundle: str | os.PathLike,
    folds: int = 5,
    *,
    dataset_dir: str | os.PathLike | None = None,
    overrides: Mapping[str, Any] | None = None,
    parallel: int = 1,
    trust_bundle: bool = False,
    progress: bool = True,
) -> list[FoldRun]:
    """Train folds ``0 .. folds-1`` of ``bundle`` (see the module docstring); returns one :class:`FoldRun` each.

    Raises:
        ValueError: ``folds`` or ``parallel`` below 1, or more folds than the training datalist holds (checked
            before any fold trains); UntrustedBundleError: an outside folder without trust.
    """
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 1:
        raise ValueError(f"folds must be a positive number of folds, got {folds!r}.")
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a positive number of processes, got {parallel!r}.")
    root, _, in_collection = resolve_bundle(bundle)
    if not in_collection and not trust_bundle:
        raise UntrustedBundleError(
            f"{root} is not a bundle of this collection; its configs run code when trained. Pass --trust_bundle "
            "(trust_bundle=True) only if you trust its source."
        )
    data = None if dataset_dir is None else str(dataset_dir)
    present = folds_in_datalist(root, data, overrides or {})
    missing = [k for k in range(folds) if k not in present]
    if missing:
        raise ValueError(
            f"{root / 'configs' / 'train.json'}: the training datalist"
            f"{'' if data is None else ' of ' + data} holds folds {present}, so --folds {folds} cannot train "
            f"fold{'s' if len(missing) > 1 else ''} {', '.join(map(str, missing))}: pass --folds {len(present)} "
            "or add training data. Nothing was trained."
        )
    jobs = [
        TrainingJob(
            name=f"fold {k}",
            command=_command(root, k, data, overrides or {}),
            folder=root / "models" / f"{FOLD_PREFIX}{k}",
            log=root / "eval" / f"{FOLD_PREFIX}{k}" / "train_folds.log",
            cwd=root,
            marker={"fold": k},
        )
        for k in range(folds)
    ]
    results = run_training_jobs(
        jobs,
        marker_name=FOLD_MARKER,
        parallel=parallel,
        progress=progress,
        desc=f"attnseg train-folds {root.name}",
        unit="fold",
    )
    return [
        FoldRun(k, r.status, str(r.job.folder), str(r.job.log), r.seconds, r.command, r.reason)
        for k, r in enumerate(results)
    ]
