"""The table of experiments of a bundle: ``configs/experiments/table.json`` and its rows' override files.

Format (``docs/experiments.md``)::

    bundles/<name>/configs/experiments/
        table.json        {"title": str, "seed": str, "rows": [{"id": ..., "name": ..., "overrides": ...}, ...]}
        <row>.json        a MONAI override file (config ids -> values), layered after configs/train.json

Required: ``title``, ``seed`` (the seed document the table reproduces, e.g. ``"001"``) and ``rows``, each row with
``id`` (its override file's stem; names the row's folder and ``--rows``), ``name`` (the row as the seed names it) and
``overrides`` (a file of ``configs/experiments/``). Optional, table level: ``metrics`` (the metric columns shown, in
order: ``attnseg evaluate``'s column names such as ``mean_dice``, ``mpa``, ``miou``, ``acc``, ``dice_mean``,
``hd95_mean``, plus ``time_ms``; default: every metric of the bundle), ``metric_names`` (column headings), ``configs``
(config files layered after ``train.json`` for every row, before the row's overrides, e.g. ``"../paper.json"``; they
also decide the validation cases), ``regions`` (structures scored instead of the classes, each a union of class values,
e.g. ``{"disc": [1, 2], "cup": [2]}``: nested structures). Optional, row level: ``seed_name`` (the seed's own wording),
``description``, ``configs`` (extra training config files of the row), ``evaluation`` (config files layered on
``inference.json`` when the row's model is evaluated, e.g. ``"../crf.json"``), ``model_from`` (the id of a row whose
trained model this row evaluates: nothing is trained for it; its ``overrides`` and ``configs`` must be that row's).
Paths are relative to ``configs/experiments/``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ExperimentError
from .eval_task import task_from_bundle

__all__ = [
    "EXPERIMENTS_DIR",
    "METRIC_NAMES",
    "ExperimentRow",
    "ExperimentTable",
    "check_metrics",
    "load_table",
    "select_rows",
]

#: where a bundle keeps its tables and rows, relative to the bundle folder
EXPERIMENTS_DIR = Path("configs") / "experiments"
#: default headings of the metric columns (``metric_names`` in table.json replaces them)
METRIC_NAMES = {
    "mean_dice": "Mean Dice",
    "mpa": "MPA",
    "miou": "mIoU",
    "acc": "accuracy",
    "aji": "AJI",
    "pq": "PQ",
    "dice_mean": "Dice",
    "iou_mean": "IoU",
    "hd95_mean": "HD95",
    "hd_mean": "HD",
    "asd_mean": "ASD",
    "time_ms": "time (ms/image)",
}
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ROW_KEYS = {"id", "name", "overrides", "seed_name", "description", "configs", "evaluation", "model_from"}
_TABLE_KEYS = {"title", "seed", "rows", "metrics", "metric_names", "configs", "description", "regions"}


@dataclass
class ExperimentRow:
    """One row: its training config files (after ``train.json``: the table's ``configs``, the row's ``configs``, its
    ``overrides``), the config files of its evaluation, and ``model_from`` (evaluate another row's model)."""

    id: str
    name: str
    overrides: Path
    train_configs: list[Path] = field(default_factory=list)
    evaluation: list[Path] = field(default_factory=list)
    model_from: str | None = None
    seed_name: str | None = None

    @property
    def trains(self) -> bool:
        return self.model_from is None

    @property
    def model_row(self) -> str:
        """The row whose training made the model this row evaluates."""
        return self.model_from or self.id


@dataclass
class ExperimentTable:
    """A parsed ``table.json``: ``configs`` are the table's own config files (every row's first, and the ones that
    decide the validation cases), ``regions`` the structures scored instead of the classes."""

    path: Path
    title: str
    seed: str
    rows: list[ExperimentRow]
    metrics: list[str] | None = None
    metric_names: dict[str, str] = field(default_factory=dict)
    configs: list[Path] = field(default_factory=list)
    regions: dict[str, list[int]] = field(default_factory=dict)

    def row(self, row_id: str) -> ExperimentRow:
        for row in self.rows:
            if row.id == row_id:
                return row
        raise ExperimentError(f"{self.path}: no row '{row_id}'; rows: {', '.join(r.id for r in self.rows)}.")

    def heading(self, metric: str) -> str:
        return self.metric_names.get(metric) or METRIC_NAMES.get(metric, metric)


def _read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise ExperimentError(f"{path}: {what} not found.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExperimentError(f"{path}: {what} is not valid JSON: {exc}") from exc


def _strings(value: Any, where: str, path: Path) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ExperimentError(f"{path}: {where} must be a file name or a list of file names.")
    return list(value)


def _config_file(folder: Path, name: str, where: str, path: Path) -> Path:
    found = (folder / name).resolve()
    content = _read_json(found, f"the file {name!r} named by {where} of {path.name}")
    if not isinstance(content, dict):
        raise ExperimentError(f"{found}: a config file must hold a JSON object (config ids -> values).")
    return found


def load_table(root: str | Path, table: str = "table") -> ExperimentTable:
    """Read and check ``<root>/configs/experiments/<table>.json`` and every file it names.

    Raises:
        ExperimentError: a missing or malformed file (named), a row without ``id``/``name``/``overrides``, a duplicate
            id, or a ``model_from`` that names no training row or another model.
    """
    folder = Path(root) / EXPERIMENTS_DIR
    if not _ID.match(str(table)):
        raise ExperimentError(f"table must be a file stem of {folder} such as 'table', got {table!r}.")
    path = folder / f"{table}.json"
    content = _read_json(path, "the table of experiments (see docs/experiments.md)")
    if not isinstance(content, dict):
        raise ExperimentError(f"{path}: expected a JSON object with 'title', 'seed' and 'rows'.")
    missing = [k for k in ("title", "seed", "rows") if k not in content]
    if missing:
        raise ExperimentError(f"{path}: missing {', '.join(repr(k) for k in missing)} (see docs/experiments.md).")
    unknown = sorted(set(content) - _TABLE_KEYS)
    if unknown:
        raise ExperimentError(f"{path}: unknown field(s) {unknown}; allowed: {sorted(_TABLE_KEYS)}.")
    rows_in = content["rows"]
    if not isinstance(rows_in, list) or not rows_in:
        raise ExperimentError(f"{path}: 'rows' must be a non-empty list of rows.")
    common = [_config_file(folder, c, "'configs'", path) for c in _strings(content.get("configs"), "'configs'", path)]
    rows: list[ExperimentRow] = []
    for i, item in enumerate(rows_in):
        where = f"rows[{i}]"
        if not isinstance(item, dict):
            raise ExperimentError(f"{path}: {where} must be an object with 'id', 'name' and 'overrides'.")
        absent = [k for k in ("id", "name", "overrides") if not isinstance(item.get(k), str) or not item.get(k)]
        if absent:
            raise ExperimentError(f"{path}: {where} needs {', '.join(repr(k) for k in absent)} (non-empty strings).")
        extra = sorted(set(item) - _ROW_KEYS)
        if extra:
            raise ExperimentError(f"{path}: {where} ({item['id']}) has unknown field(s) {extra}.")
        row_id = item["id"]
        if not _ID.match(row_id):
            raise ExperimentError(f"{path}: {where} id {row_id!r} must be a plain file stem (letters, digits, _-.).")
        if any(r.id == row_id for r in rows):
            raise ExperimentError(f"{path}: row id {row_id!r} appears twice.")
        where = f"row {row_id!r}"
        own = [_config_file(folder, c, f"{where} 'configs'", path) for c in _strings(item.get("configs"), where, path)]
        rows.append(
            ExperimentRow(
                id=row_id,
                name=item["name"],
                overrides=_config_file(folder, item["overrides"], f"{where} 'overrides'", path),
                train_configs=[*common, *own],
                evaluation=[
                    _config_file(folder, c, f"{where} 'evaluation'", path)
                    for c in _strings(item.get("evaluation"), f"{where} 'evaluation'", path)
                ],
                model_from=item.get("model_from"),
                seed_name=item.get("seed_name"),
            )
        )
    parsed = ExperimentTable(path, str(content["title"]), str(content["seed"]), rows, configs=common)
    parsed.regions = _regions(content.get("regions"), path)
    for row in rows:
        if row.model_from is None:
            continue
        source = next((r for r in rows if r.id == row.model_from), None)
        if source is None or not source.trains:
            raise ExperimentError(f"{path}: row {row.id!r} 'model_from' must name a row that trains a model.")
        if (source.overrides, source.train_configs) != (row.overrides, row.train_configs):
            raise ExperimentError(
                f"{path}: row {row.id!r} evaluates the model of {source.id!r}, so its 'overrides' and 'configs' "
                f"must be that row's ({source.overrides.name})."
            )
    metrics = content.get("metrics")
    if metrics is not None:
        parsed.metrics = _strings(metrics, "'metrics'", path)
    names = content.get("metric_names") or {}
    if not isinstance(names, dict) or not all(isinstance(v, str) for v in names.values()):
        raise ExperimentError(f"{path}: 'metric_names' must map metric names to headings.")
    parsed.metric_names = {str(k): v for k, v in names.items()}
    return parsed


def _regions(value: Any, path: Path) -> dict[str, list[int]]:
    if value is None:
        return {}
    ok = isinstance(value, dict) and value and all(_ID.match(str(k)) for k in value)
    ok = ok and all(isinstance(v, list) and v and all(type(c) is int and c >= 1 for c in v) for v in value.values())
    if not ok:
        raise ExperimentError(
            f"{path}: 'regions' must map region names to lists of class values >= 1, e.g. "
            '{"disc": [1, 2], "cup": [2]}.'
        )
    return {str(k): list(v) for k, v in value.items()}


def select_rows(table: ExperimentTable, rows: Sequence[str] | str | None) -> list[ExperimentRow]:
    """The rows named by ``rows`` (ids, or one comma-separated string), in the table's order; all rows for ``None``.

    Raises:
        ExperimentError: for an id the table does not have (the message lists the table's ids).
    """
    if rows is None or (isinstance(rows, str) and not rows.strip()):
        return list(table.rows)
    wanted = [r.strip() for r in rows.split(",")] if isinstance(rows, str) else [str(r).strip() for r in rows]
    wanted = [w for w in wanted if w]
    known = [r.id for r in table.rows]
    unknown = [w for w in wanted if w not in known]
    if unknown:
        raise ExperimentError(
            f"{table.path}: unknown row(s) {', '.join(unknown)}; the table's rows are {', '.join(known)}."
        )
    return [r for r in table.rows if r.id in wanted]


def check_metrics(table: ExperimentTable, root: str | Path) -> None:
    """Check that the bundle's evaluation computes every metric the table shows (before anything is trained).

    Raises:
        ExperimentError: naming the table file, the unknown metrics and those the bundle's ``evaluate.json`` gives.
    """
    if table.metrics is None:
        return
    task = task_from_bundle(root)
    classes = [task.class_names.get(c, c) for c in range(0 if task.include_background else 1, task.num_classes)]
    known = {*task.extra, "time_ms", *(f"{m}_mean" for m in task.metrics)}
    known |= {f"{m}_{c}" for m in task.metrics for c in (list(table.regions) or classes)}
    unknown = [m for m in table.metrics if m not in known]
    if unknown:
        raise ExperimentError(
            f"{table.path}: metric(s) {unknown} are not computed by the bundle's evaluation (evaluate.json); "
            f"choose from {sorted(known)}."
        )
