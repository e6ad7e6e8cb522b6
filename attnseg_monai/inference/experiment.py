"""``attnseg experiment``: train every row of a bundle's table of experiments with the same data, split, seed and
budget, evaluate each row with the bundle's metrics on the same validation cases, and write the table.

::

    attnseg experiment mcsa_unet [--rows unet,all] [--epochs N] [--dataset_dir D] [--out DIR] [--parallel N]

The rows are override files of ``configs/experiments/`` listed by ``table.json``
(:mod:`~attnseg_monai.inference.experiment_spec`, ``docs/experiments.md``). Into ``--out`` (default
``<bundle>/eval/experiments/<table>``):

1. **Data, once**: the bundle's validation items and their labels, ``validation/``
   (:func:`~attnseg_monai.inference.experiment_eval.validation_items`).
2. **Training, one process per row** (:mod:`~attnseg_monai.inference.jobs`, shared with ``attnseg train-folds``;
   ``parallel`` rows at once, one per GPU when GPUs exist)::

       python -m monai.bundle run training --config_file "[train.json, <table/row configs>, <row>.json]" \\
           --ckpt_dir OUT/rows/<row>/models --output_dir OUT/rows/<row>/train [--dataset_dir D] \\
           [--max_epochs N] [overrides]

   Every row has the same data and split (the bundle's seeded split of the same ``--dataset_dir``; a row whose
   validation split differs is failed), the same seed (the bundles' ``set_determinism(seed=0)``) and the same
   budget (``--epochs N`` sets ``max_epochs``, and ``val_interval`` to N where the bundle validates less often, so
   every row validates and keeps its best model). ``rows/<row>/row_settings.json`` records the row's files and
   options: a rerun skips finished rows (``models/row.json`` + ``model.pt``), resumes interrupted ones and refuses
   to mix in rows trained with other settings.
3. **Evaluation** of each row's model on the validation cases, in this process
   (:func:`~attnseg_monai.inference.experiment_eval.evaluate_row`: ``attnseg infer``'s predictor, then
   ``attnseg evaluate`` with the bundle's metrics, plus the time per image).
4. **The table** (:mod:`~attnseg_monai.inference.experiment_table`): ``table.md``, ``table.csv``, ``table.png``,
   ``command.txt``, and ``experiment.json`` (everything, machine-readable).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json
from ..metrics import EVALUATE_METRICS
from .bundle_loader import read_bundle_metadata, resolve_bundle
from .errors import ExperimentError, UntrustedBundleError
from .evaluate import _jsonable
from .experiment_eval import evaluate_row, file_digest, labels_folder, same_split, validation_items
from .experiment_spec import EXPERIMENTS_DIR, ExperimentRow, ExperimentTable, check_metrics, load_table, select_rows
from .experiment_table import (
    PLOT_MISSING,
    available_metrics,
    write_command,
    write_csv,
    write_markdown,
    write_plot,
)
from .jobs import MODEL_FILE, TrainingJob, gpu_count, job_state, run_training_jobs

__all__ = ["ROW_MARKER", "ExperimentResult", "RowResult", "run_experiment"]

logger = logging.getLogger(__name__)

#: written into ``rows/<row>/models/`` when the row's training ended (as ``fold.json`` for a fold)
ROW_MARKER = "row.json"
_SETTINGS = "row_settings.json"


@dataclass
class RowResult:
    """One row: ``status`` of its training (``done`` earlier, ``trained``, ``resumed``, ``failed``, or ``model of
    <row>``), its cases' metrics, the pooled metrics, and ``reason`` when something failed."""

    id: str
    name: str
    status: str
    folder: str
    seconds: float = 0.0
    reason: str | None = None
    log: str | None = None
    cases: list[dict[str, Any]] = field(default_factory=list)
    pooled: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` did and wrote."""

    bundle: str
    title: str
    out_dir: Path
    rows: list[RowResult]
    metrics: list[str]
    table_md: Path
    table_csv: Path
    command_txt: Path
    plot: Path | None = None
    plot_message: str | None = None

    @property
    def ok(self) -> bool:
        return all(r.cases and not r.reason for r in self.rows)

    def as_dict(self) -> dict[str, Any]:
        out = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items() if k != "rows"}
        return {**out, "ok": self.ok, "rows": [r.as_dict() for r in self.rows]}


def _budget(root: Path, epochs: int | None, configs: Sequence[Path] = ()) -> dict[str, Any]:
    """``max_epochs``, and ``val_interval`` where ``train.json`` or the table's configs validate less often."""
    if epochs is None:
        return {}
    budget: dict[str, Any] = {"max_epochs": epochs}
    interval = None
    for path in (root / "configs" / "train.json", *configs):
        try:
            interval = json.loads(Path(path).read_text(encoding="utf-8")).get("val_interval", interval)
        except (OSError, ValueError, AttributeError):
            pass
    if isinstance(interval, int) and not isinstance(interval, bool) and interval > epochs:
        budget["val_interval"] = epochs
    return budget


def _row_command(root: Path, row: ExperimentRow, row_dir: Path, dataset_dir: str | None, flags: Mapping) -> list[str]:
    configs = [str(root / "configs" / "train.json"), *map(str, row.train_configs), str(row.overrides)]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", json.dumps(configs)]
    cmd += ["--ckpt_dir", str(row_dir / "models"), "--output_dir", str(row_dir / "train")]
    if dataset_dir is not None:
        cmd += ["--dataset_dir", dataset_dir]
    for key, value in flags.items():
        cmd += [f"--{key}", value if isinstance(value, str) else json.dumps(value)]
    return cmd


def run_experiment(
    bundle: str | os.PathLike,
    *,
    rows: Sequence[str] | str | None = None,
    epochs: int | None = None,
    dataset_dir: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    table: str = "table",
    overrides: Mapping[str, Any] | None = None,
    eval_overrides: Mapping[str, Any] | None = None,
    parallel: int | None = None,
    device: str = "auto",
    precision: str = "auto",
    trust_bundle: bool = False,
    progress: bool = True,
    command_line: str | None = None,
) -> ExperimentResult:
    """Train, evaluate and tabulate the rows of ``<bundle>/configs/experiments/<table>.json`` (module docstring).

    Args:
        bundle: bundle name of this collection or bundle folder.
        rows: row ids (a list or ``"a,b"``); default all rows of the table.
        epochs: the training budget of every row (``max_epochs``); default the bundle's.
        dataset_dir: the data set (default the bundle's embedded data).
        out: output folder (default ``<bundle>/eval/experiments/<table>``).
        table: the table's file stem in ``configs/experiments/``.
        overrides: training config overrides for every row (e.g. ``{"train_patch_size": [64, 64]}``).
        eval_overrides: inference config overrides for every row's evaluation (e.g. ``{"roi_size": [64, 64]}``).
        parallel: rows trained at once (default: the number of GPUs, 1 without).
        device, precision: of the evaluation (``attnseg infer``'s ``--device`` and ``--precision``).
        trust_bundle: allow a bundle folder from outside this collection (its configs run code).
        progress: show progress bars.
        command_line: the command to record in ``command.txt`` (default: the equivalent ``attnseg`` command).

    Raises:
        ExperimentError: a missing/malformed table or row file, an unknown row or metric, rows of this output folder
            trained with other settings. UntrustedBundleError: an outside folder without ``trust_bundle``.
    """
    from tqdm.auto import tqdm

    root, name, in_collection = resolve_bundle(bundle)
    if not in_collection and not trust_bundle:
        raise UntrustedBundleError(
            f"{root} is not a bundle of this collection; its configs run code when trained. Pass --trust_bundle "
            "(trust_bundle=True) only if you trust its source."
        )
    if epochs is not None and (isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a positive number of epochs, got {epochs!r}.")
    spec = load_table(root, table)
    selected = select_rows(spec, rows)
    check_metrics(spec, root)
    parallel = parallel if parallel is not None else max(1, gpu_count())
    out_dir = Path(out).expanduser().absolute() if out else root / "eval" / "experiments" / table
    data = None if dataset_dir is None else str(Path(dataset_dir).expanduser().absolute())
    flags = {**_budget(root, epochs, spec.configs), **(overrides or {})}
    if command_line is None:
        parts = ["attnseg", "experiment", str(bundle), "--table", table, "--out", str(out_dir)]
        for flag, value in (("rows", ",".join(r.id for r in selected) if rows else None), ("epochs", epochs)):
            parts += [f"--{flag}", str(value)] if value is not None else []
        parts += ["--dataset_dir", data] if data else []
        for flag, value in (("overrides", overrides), ("eval_overrides", eval_overrides)):
            parts += [f"--{flag}", json.dumps(value)] if value else []
        command_line = shlex.join(parts + ["--parallel", str(parallel), "--device", device, "--precision", precision])

    # the rows that train: the selected ones and those whose model a selected row evaluates
    training = [r for r in spec.rows if r.trains and any(s.model_row == r.id for s in selected)]
    commands = {r.id: _row_command(root, r, out_dir / "rows" / r.id, data, flags) for r in training}
    signature = {"epochs": epochs, "dataset_dir": data, "overrides": _jsonable(dict(overrides or {}))}
    mismatched, to_write = [], {}
    for r in training:
        settings = {**signature, "configs": [file_digest(p) for p in (*r.train_configs, r.overrides)]}
        path = out_dir / "rows" / r.id / _SETTINGS
        try:
            before = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            before = None
        if before is not None and before != settings and job_state(path.parent / "models", ROW_MARKER) != "fresh":
            mismatched.append(f"{r.id} ({', '.join(k for k in settings if before.get(k) != settings[k])})")
        elif before != settings:
            to_write[path] = settings
    if mismatched:
        raise ExperimentError(
            f"{out_dir}: row(s) {'; '.join(mismatched)} were trained with other settings; delete their folders under "
            f"{out_dir / 'rows'} to retrain them, or give another --out."
        )
    for path, settings in to_write.items():
        atomic_write_json(path, settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    command_txt = write_command(out_dir / "command.txt", command_line, commands)
    logger.info("attnseg experiment %s: %d row(s) -> %s", name, len(selected), out_dir)

    items = validation_items(root, out_dir / "validation", data, overrides or {}, spec.configs)
    labels = labels_folder(items, out_dir / "validation" / "labels")
    jobs = [
        TrainingJob(
            name=f"row {r.id}",
            command=commands[r.id],
            folder=out_dir / "rows" / r.id / "models",
            log=out_dir / "rows" / r.id / "train.log",
            cwd=root,
            marker={"row": r.id, "name": r.name, "table": str(spec.path)},
        )
        for r in training
    ]
    desc = f"attnseg experiment {name}: training"
    trained = {
        r.job.marker["row"]: r
        for r in run_training_jobs(jobs, marker_name=ROW_MARKER, parallel=parallel, progress=progress, desc=desc)
    }
    options = {"device": device, "precision": precision, "eval_overrides": dict(eval_overrides or {})}
    if spec.regions:
        options["regions"] = spec.regions
    results: list[RowResult] = []
    bar = tqdm(selected, desc=f"attnseg experiment {name}: evaluation", unit="row", disable=not progress)
    for row in bar:
        job = trained[row.model_row]
        row_dir = out_dir / "rows" / row.id
        status = job.status if row.trains else f"model of {row.model_row}"
        result = RowResult(row.id, row.name, status, str(row_dir), job.seconds, job.reason, str(job.job.log))
        results.append(result)
        if job.status == "failed":
            result.reason = f"training failed: {job.reason} ({job.job.log})"
            continue
        if not same_split(out_dir / "rows" / row.model_row, items):
            result.reason = "its validation split differs from the table's (its overrides change the data)"
            continue
        try:
            record = evaluate_row(
                root, row, job.job.folder / MODEL_FILE, row_dir, items, labels, options, progress=progress
            )
        except Exception as exc:  # noqa: BLE001 - one row's evaluation does not stop the table
            logger.exception("row %s: evaluation failed", row.id)
            result.reason = f"evaluation failed: {exc}"
            continue
        result.cases, result.pooled = record["cases"], record["pooled"] or {}
        if record["failures"]:
            result.reason = f"{len(record['failures'])} case(s) failed: " + "; ".join(record["failures"][:3])
    bar.close()
    return _write_outputs(spec, name, root, out_dir, results, command_txt, epochs, data, len(items))


def _write_outputs(
    spec: ExperimentTable,
    name: str,
    root: Path,
    out_dir: Path,
    results: list[RowResult],
    command_txt: Path,
    epochs: int | None,
    data: str | None,
    n_cases: int,
) -> ExperimentResult:
    dicts = [r.as_dict() for r in results]
    # default: every metric but the per-class columns (dice_<class>, ...)
    metrics = spec.metrics or [
        m for m in available_metrics(dicts) if m.endswith("_mean") or m.split("_")[0] not in EVALUATE_METRICS
    ]
    version = read_bundle_metadata(root).get("version", "?")
    about = (
        f"Seed {spec.seed}; bundle `{name}` {version}; table `{spec.path.relative_to(root / EXPERIMENTS_DIR.parent)}`. "
        f"Every row trained on {'`' + data + '`' if data else 'the embedded data'} with the same split, seed and "
        f"budget ({f'{epochs} epoch(s)' if epochs else 'the bundle default epochs'}) and scored on the same {n_cases} "
        "validation case(s); mean ± std over the cases (n). The exact command: `command.txt`."
    )
    table_md = write_markdown(out_dir / "table.md", spec, dicts, metrics, about)
    table_csv = write_csv(out_dir / "table.csv", dicts, metrics)
    plot = write_plot(out_dir / "table.png", spec, dicts, metrics)
    message = None
    if plot is None:
        message = PLOT_MISSING if not _has_matplotlib() else "no row has a result: no table.png"
        logger.warning("%s", message)
    result = ExperimentResult(
        name, spec.title, out_dir, results, list(metrics), table_md, table_csv, command_txt, plot, message
    )
    atomic_write_json(out_dir / "experiment.json", _jsonable(result.as_dict()))
    return result


def _has_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True
