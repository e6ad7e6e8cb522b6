"""Training jobs, one process each, several at once, resumable job by job: what ``attnseg train-folds`` (one job per
fold) and ``attnseg experiment`` (one job per table row) share.

A job is the bundle's own training command (MONAI's runner) with its checkpoint folder. Before it starts, the
folder's state says what to do (:func:`job_state`):

- ``done``: a previous run ended cleanly with ``model.pt`` (its marker file says so): nothing is run;
- ``resume``: checkpoints but no marker (the run was interrupted): the command runs with ``--resume true`` (the
  bundles' exact resumption from their last complete checkpoint);
- ``fresh``: nothing yet, or a previous run that ended without a model (resuming it would end at once again).

When a job's process exits with code 0 the marker is written atomically into its folder (the job's ``marker`` fields
plus ``seconds``, ``command`` and ``model``: whether ``model.pt`` came out); a job that exits otherwise or leaves no
``model.pt`` is ``failed`` with the reason. ``parallel`` jobs run at once; with GPUs each job gets the least busy one
(``CUDA_VISIBLE_DEVICES``); on a CPU-only machine parallel jobs share the cores (``OMP_NUM_THREADS`` is divided among
them unless it is set).
"""

from __future__ import annotations

import logging
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json
from ..io.checkpoint import CHECKPOINT_SUFFIXES

__all__ = ["MODEL_FILE", "JobResult", "TrainingJob", "gpu_count", "job_state", "run_training_jobs", "training_parser"]

logger = logging.getLogger(__name__)

#: the checkpoint a finished training leaves in its folder (the bundles' best validation model)
MODEL_FILE = "model.pt"


@dataclass
class TrainingJob:
    """One training process: ``command`` (without ``--resume``) writes its checkpoints into ``folder``; its output
    goes to ``log``; ``marker`` fields go into the marker file when it ends cleanly."""

    name: str
    command: list[str]
    folder: Path
    log: Path
    cwd: Path
    marker: Mapping[str, Any] = field(default_factory=dict)


@dataclass
class JobResult:
    """What became of a job: ``status`` ``done`` (finished earlier), ``trained``, ``resumed`` or ``failed``
    (``reason`` says why; the log holds the output)."""

    job: TrainingJob
    status: str
    seconds: float = 0.0
    command: list[str] | None = None
    reason: str | None = None


def _started(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix in CHECKPOINT_SUFFIXES for p in folder.iterdir())


def job_state(folder: str | os.PathLike, marker_name: str) -> str:
    """``"done"``, ``"resume"`` or ``"fresh"`` for the checkpoint folder of a job (see the module docstring)."""
    folder = Path(folder)
    marker = (folder / marker_name).is_file()
    if marker and (folder / MODEL_FILE).is_file():
        return "done"
    return "resume" if _started(folder) and not marker else "fresh"


def gpu_count() -> int:
    """CUDA devices visible to this process (0 without CUDA)."""
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001 - no CUDA: jobs share the CPU
        return 0


def _failure(returncode: int, folder: Path) -> str | None:
    if returncode != 0:
        return f"the training exited with code {returncode}; see its log"
    if not (folder / MODEL_FILE).is_file():
        return (
            "the training ended without model.pt (the bundles save it when they validate: give at least as many "
            "epochs as the validation interval, e.g. --overrides '{\"val_interval\": 1}')"
        )
    return None


def run_training_jobs(
    jobs: Sequence[TrainingJob],
    *,
    marker_name: str,
    parallel: int = 1,
    progress: bool = True,
    desc: str = "training",
    unit: str = "job",
) -> list[JobResult]:
    """Run ``jobs`` (finished ones are skipped, interrupted ones resumed), ``parallel`` at once; one result per job,
    in the order given. Interrupting this call (Ctrl-C) stops the processes still running; their folders resume.

    Raises:
        ValueError: ``parallel`` below 1.
    """
    from tqdm.auto import tqdm

    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ValueError(f"parallel must be a positive number of processes, got {parallel!r}.")
    results: dict[int, JobResult] = {}
    todo: list[tuple[int, TrainingJob, bool]] = []
    for i, job in enumerate(jobs):
        state = job_state(job.folder, marker_name)
        if state == "done":
            results[i] = JobResult(job, "done")
        else:
            todo.append((i, job, state == "resume"))
    gpus = gpu_count()
    threads = None
    if not gpus and min(parallel, len(todo)) > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = str(max(1, (os.cpu_count() or 1) // min(parallel, len(todo))))
    bar = tqdm(total=len(todo), desc=desc, unit=unit, disable=not progress)
    running: list[dict[str, Any]] = []
    try:
        while todo or running:
            while todo and len(running) < parallel:
                i, job, resume = todo.pop(0)
                cmd = [*job.command, "--resume", "true"] if resume else list(job.command)
                env = dict(os.environ)
                gpu = None
                if gpus:
                    busy = [sum(r["gpu"] == g for r in running) for g in range(gpus)]
                    gpu = busy.index(min(busy))
                    env["CUDA_VISIBLE_DEVICES"] = str(gpu)
                elif threads is not None:
                    env["OMP_NUM_THREADS"] = threads
                job.log.parent.mkdir(parents=True, exist_ok=True)
                job.folder.mkdir(parents=True, exist_ok=True)
                handle = open(job.log, "w", encoding="utf-8")  # noqa: SIM115 - closed when the process ends
                proc = subprocess.Popen(cmd, stdout=handle, stderr=subprocess.STDOUT, env=env, cwd=str(job.cwd))
                where = f"GPU {gpu}" if gpu is not None else "CPU"
                logger.info("%s: %s on %s (log %s)", job.name, "resuming" if resume else "training", where, job.log)
                entry = {"i": i, "job": job, "cmd": cmd, "resume": resume, "proc": proc, "handle": handle, "gpu": gpu}
                running.append({**entry, "started": time.perf_counter()})
            time.sleep(0.2)
            for entry in list(running):
                proc, job = entry["proc"], entry["job"]
                if proc.poll() is None:
                    continue
                entry["handle"].close()
                running.remove(entry)
                seconds = round(time.perf_counter() - entry["started"], 1)
                reason = _failure(proc.returncode, job.folder)
                status = "failed" if reason else ("resumed" if entry["resume"] else "trained")
                if proc.returncode == 0:  # the training ran to its end (with or without a model)
                    marker = {**job.marker, "seconds": seconds, "command": entry["cmd"], "model": reason is None}
                    atomic_write_json(job.folder / marker_name, marker)
                results[entry["i"]] = JobResult(job, status, seconds, entry["cmd"], reason)
                logger.info("%s: %s in %.1f s%s", job.name, status, seconds, f" ({reason})" if reason else "")
                bar.update(1)
    finally:
        for entry in running:  # interrupted: stop the jobs still training
            entry["proc"].terminate()
            entry["proc"].wait()
            entry["handle"].close()
        bar.close()
    return [results[i] for i in range(len(jobs))]


def training_parser(
    root: Path,
    output_dir: str | os.PathLike,
    dataset_dir: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    configs: Sequence[str | os.PathLike] = (),
) -> Any:
    """The bundle's ``configs/train.json`` (with ``configs`` layered on it) as its training run would resolve it, with
    ``output_dir`` (where its datalist is written), ``dataset_dir`` and ``overrides`` set and its imports done: what
    ``attnseg experiment`` reads its validation cases from and ``attnseg train-folds`` its folds from, in this
    process, before any training starts."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(root / "configs" / "train.json"), *map(str, configs)])
    parser["bundle_root"] = str(root)
    parser["output_dir"] = str(output_dir)
    if dataset_dir is not None:
        parser["dataset_dir"] = dataset_dir
    for key, value in (overrides or {}).items():
        parser[key] = value
    if "imports" in parser:
        parser.get_parsed_content("imports")
    return parser
