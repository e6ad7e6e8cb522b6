"""``attnseg train-folds``: train the cross-validation folds of a bundle into ``models/fold_<k>/``, resumably.

Each fold is the bundle's own training, run by MONAI's runner in its own process::

    python -m monai.bundle run training --config_file <bundle>/configs/train.json --fold k \\
        --ckpt_dir <bundle>/models/fold_k --output_dir <bundle>/eval/fold_k [--dataset_dir D] [overrides]

so the datalist is the bundle's (the same split and seed for every fold, fold ``k`` held out for validation), and the
checkpoint of each fold carries its record. When a fold's training exits cleanly ``models/fold_<k>/fold.json`` is
written (atomically); with ``model.pt`` beside it the fold is finished and a rerun skips it. An interrupted fold (no
``fold.json``) is resumed from its last complete checkpoint (``--resume true``, the bundles' exact resumption); a
failed one is reported with its reason and trained afresh on the next run. ``parallel`` folds run at once, one per
GPU when GPUs exist (``CUDA_VISIBLE_DEVICES``). The fold models are then an ensemble: ``attnseg infer <bundle> in out
--folds all``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json
from ..io.checkpoint import CHECKPOINT_SUFFIXES
from .bundle_loader import resolve_bundle
from .errors import UntrustedBundleError
from .members import FOLD_PREFIX

__all__ = ["FOLD_MARKER", "FoldRun", "train_folds"]

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


def _command(root: Path, fold: int, dataset_dir: str | None, overrides: Mapping[str, Any], resume: bool) -> list[str]:
    folder = root / "models" / f"{FOLD_PREFIX}{fold}"
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training"]
    cmd += ["--config_file", str(root / "configs" / "train.json"), "--fold", str(fold)]
    cmd += ["--ckpt_dir", str(folder), "--output_dir", str(root / "eval" / f"{FOLD_PREFIX}{fold}")]
    if dataset_dir is not None:
        cmd += ["--dataset_dir", str(Path(dataset_dir).expanduser().absolute())]
    if resume:
        cmd += ["--resume", "true"]
    for key, value in overrides.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cmd


def _started(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix in CHECKPOINT_SUFFIXES for p in folder.iterdir())


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
        ValueError: ``folds`` or ``parallel`` below 1; UntrustedBundleError: an outside folder without trust.
    """
    from tqdm.auto import tqdm

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
    gpus = _gpu_count()
    runs: list[FoldRun] = []
    todo: list[tuple[int, list[str], Path, bool]] = []
    for k in range(folds):
        folder = root / "models" / f"{FOLD_PREFIX}{k}"
        log = root / "eval" / f"{FOLD_PREFIX}{k}" / "train_folds.log"
        if (folder / FOLD_MARKER).is_file() and (folder / "model.pt").is_file():
            runs.append(FoldRun(k, "done", str(folder), str(log)))
            continue
        # an interrupted training (checkpoints, no marker) resumes; one that ran to its end without a model (marker
        # written, no model.pt) starts afresh, since resuming it would end at once again
        resume = _started(folder) and not (folder / FOLD_MARKER).is_file()
        todo.append(
            (
                k,
                _command(root, k, None if dataset_dir is None else str(dataset_dir), overrides or {}, resume),
                folder,
                resume,
            )
        )
    bar = tqdm(total=len(todo), desc=f"attnseg train-folds {root.name}", unit="fold", disable=not progress)
    running: list[tuple[int, list[str], Path, bool, subprocess.Popen, Any, float]] = []
    try:
        while todo or running:
            while todo and len(running) < parallel:
                k, cmd, folder, resume = todo.pop(0)
                log = root / "eval" / f"{FOLD_PREFIX}{k}" / "train_folds.log"
                log.parent.mkdir(parents=True, exist_ok=True)
                env = dict(os.environ)
                if gpus:
                    env["CUDA_VISIBLE_DEVICES"] = str(len(running) % gpus)
                handle = open(log, "w", encoding="utf-8")  # noqa: SIM115 - closed when the process ends
                proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(root))
                running.append((k, cmd, folder, resume, proc, handle, time.perf_counter()))
            time.sleep(0.2)
            for entry in list(running):
                k, cmd, folder, resume, proc, handle, started = entry
                if proc.poll() is None:
                    continue
                handle.close()
                running.remove(entry)
                seconds = round(time.perf_counter() - started, 1)
                reason = None
                if proc.returncode != 0:
                    reason = f"the training exited with code {proc.returncode}; see its log"
                elif not (folder / "model.pt").is_file():
                    reason = (
                        "the training ended without model.pt (the bundles save it when they validate: give at least "
                        "as many epochs as the validation interval, e.g. --overrides '{\"val_interval\": 1}')"
                    )
                status = "failed" if reason else ("resumed" if resume else "trained")
                if proc.returncode == 0:  # the training ran to its end (with or without a model)
                    marker = {"fold": k, "seconds": seconds, "command": cmd, "model": reason is None}
                    atomic_write_json(folder / FOLD_MARKER, marker)
                runs.append(FoldRun(k, status, str(folder), handle.name, seconds, cmd, reason))
                bar.update(1)
    finally:
        for _, _, _, _, proc, handle, _ in running:  # interrupted: stop the folds still training
            proc.terminate()
            proc.wait()
            handle.close()
        bar.close()
    return sorted(runs, key=lambda r: r.fold)


def _gpu_count() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no CUDA: folds share the CPU
        return 0
