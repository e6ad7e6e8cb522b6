"""What ``attnseg experiment`` writes: ``table.md``, ``table.csv``, ``table.png`` and ``command.txt``.

- ``table.md``: one line per row, ``mean ± std`` of each shown metric over the validation cases (population std, as
  ``attnseg evaluate``'s summary), then the values pooled over the validation set where the bundle reports pooled
  metrics (MPA, mIoU, Mean Dice, accuracy: the bundles' ``reduction="dataset"``), then the rows that failed;
- ``table.csv``: every metric, per case (``kind=case``) and summarised (``mean``, ``std``, ``count``, ``pooled``);
- ``table.png``: one panel per shown metric, one bar per row (the mean), the standard deviation as an error bar and
  every case as a dot (the per-case spread); needs matplotlib (a dependency of the package);
- ``command.txt``: the command line, then the exact training command of every row.
"""

from __future__ import annotations

import csv
import io
import math
import shlex
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_bytes
from .evaluate import _nan_stats
from .experiment_spec import METRIC_NAMES, ExperimentTable

__all__ = [
    "PLOT_MISSING",
    "available_metrics",
    "row_statistics",
    "write_command",
    "write_csv",
    "write_markdown",
    "write_plot",
]

#: what is said instead of writing table.png when matplotlib is missing
PLOT_MISSING = "matplotlib is not installed: no table.png (pip install matplotlib for the plot)"


def available_metrics(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    """Metric columns present in the rows' cases: the known ones in :data:`METRIC_NAMES` order, then the rest."""
    found: list[str] = []
    for row in rows:
        for case in row.get("cases", []):
            for key, value in case.items():
                if key != "case" and isinstance(value, (int, float)) and key not in found:
                    found.append(key)
    known = [m for m in METRIC_NAMES if m in found]
    return known + [m for m in found if m not in known]


def row_statistics(row: Mapping[str, Any], metric: str) -> dict[str, float]:
    """``mean``, ``std``, ``median``, ``min``, ``max``, ``count`` of a metric over a row's cases (NaN left out)."""
    return _nan_stats([c.get(metric, math.nan) for c in row.get("cases", [])])


def _fmt(metric: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    digits = 1 if metric == "time_ms" or metric.startswith(("hd", "asd")) else 4
    return f"{value:.{digits}f}"


def write_markdown(
    path: Path, table: ExperimentTable, rows: Sequence[Mapping[str, Any]], metrics: Sequence[str], about: str
) -> Path:
    """``table.md``: title, ``about`` (data, budget, cases), mean ± std per row and metric, pooled values, failures."""
    head = "| row | " + " | ".join(table.heading(m) for m in metrics) + " | n |"
    rule = "|---|" + "---|" * (len(metrics) + 1)
    lines = [f"# {table.title}", "", about, "", head, rule]
    for row in rows:
        if not row.get("cases"):
            continue
        cells = []
        count = 0
        for m in metrics:
            s = row_statistics(row, m)
            count = max(count, s["count"])
            cells.append(f"{_fmt(m, s['mean'])} ± {_fmt(m, s['std'])}" if s["count"] else "n/a")
        lines.append(f"| {row['name']} | " + " | ".join(cells) + f" | {count} |")
    pooled = [m for m in metrics if any(m in (r.get("pooled") or {}) for r in rows)]
    if pooled:
        lines += ["", "Pooled over the validation set (confusion counts summed over the cases, as the bundle's "]
        lines[-1] += "validation reports them):"
        lines.append("")
        lines += ["| row | " + " | ".join(table.heading(m) for m in pooled) + " |", "|---|" + "---|" * len(pooled)]
        for row in rows:
            if row.get("pooled"):
                cells = [_fmt(m, row["pooled"].get(m)) for m in pooled]
                lines.append(f"| {row['name']} | " + " | ".join(cells) + " |")
    failed = [r for r in rows if r.get("reason")]
    if failed:
        lines += ["", "Rows without a result or with failed cases:", ""]
        lines += [f"- {r['name']} (`{r['id']}`): {r['reason']}" for r in failed]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))


def write_csv(path: Path, rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> Path:
    """``table.csv``: per case and per row summary (``kind``: case, mean, std, count, pooled) of every metric."""
    columns = list(metrics) + [m for m in available_metrics(rows) if m not in metrics]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["row", "name", "kind", "case", *columns])

    def cell(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        return f"{value:.6g}" if isinstance(value, float) else str(value)

    for row in rows:
        for case in row.get("cases", []):
            writer.writerow([row["id"], row["name"], "case", case["case"], *(cell(case.get(m)) for m in columns)])
        if row.get("cases"):
            stats = {m: row_statistics(row, m) for m in columns}
            for kind in ("mean", "std", "count"):
                writer.writerow([row["id"], row["name"], kind, "", *(cell(stats[m][kind]) for m in columns)])
        if row.get("pooled"):
            writer.writerow([row["id"], row["name"], "pooled", "", *(cell(row["pooled"].get(m)) for m in columns)])
    return atomic_write_bytes(path, buf.getvalue().encode("utf-8"))


def write_plot(
    path: Path, table: ExperimentTable, rows: Sequence[Mapping[str, Any]], metrics: Sequence[str]
) -> Path | None:
    """``table.png`` (see the module docstring); ``None`` when matplotlib is missing or no row has a result."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    done = [r for r in rows if r.get("cases")]
    if not done or not metrics:
        return None
    fig, axes = plt.subplots(1, len(metrics), figsize=(max(4.0, 0.9 * len(done) + 1.5) * len(metrics), 4.2))
    axes = [axes] if len(metrics) == 1 else list(axes)
    for ax, m in zip(axes, metrics):
        means, stds = [], []
        for i, row in enumerate(done):
            s = row_statistics(row, m)
            means.append(s["mean"] if s["count"] else 0.0)
            stds.append(s["std"] if s["count"] else 0.0)
            values = [c[m] for c in row["cases"] if isinstance(c.get(m), (int, float)) and not math.isnan(c[m])]
            if values:
                offsets = [(k - (len(values) - 1) / 2) * min(0.5 / len(values), 0.08) for k in range(len(values))]
                ax.scatter([i + o for o in offsets], values, s=10, color="black", zorder=3)
        ax.bar(range(len(done)), means, yerr=stds, capsize=4, color="tab:blue", alpha=0.7, zorder=2)
        ax.set_xticks(range(len(done)))
        ax.set_xticklabels([r["name"] for r in done], rotation=30, ha="right", fontsize=8)
        ax.set_title(table.heading(m))
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(table.title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def write_command(path: Path, command_line: str, commands: Mapping[str, Sequence[str]]) -> Path:
    """``command.txt``: the command line, then each row's training command (``shlex``-quoted)."""
    lines = [command_line, "", "# the training of each row (MONAI's runner; --resume true is added to resume):"]
    lines += [f"# {row}\n{shlex.join(cmd)}" for row, cmd in commands.items()]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode("utf-8"))
