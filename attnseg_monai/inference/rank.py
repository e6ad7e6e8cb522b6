"""``attnseg rank``: the cases of an output folder from most to least uncertain, the order to review or annotate.

Reads the per-case scores ``attnseg infer --save_uncertainty`` recorded in the folder's manifest: the mean of the
entropy map (``entropy``, normalised to [0, 1]) and, with test-time augmentation or an ensemble, the mean mutual
information (``mutual_information``: the part of the uncertainty the samples disagree on, the usual active-learning
criterion).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .manifest import MANIFEST_NAME

__all__ = ["RANK_BY", "rank_cases"]

RANK_BY = ("entropy", "mutual_information")


def rank_cases(output_dir: str | os.PathLike, by: str = "entropy") -> list[dict[str, Any]]:
    """``[{"rank", "case", "input", "score", "entropy", "mutual_information"}]``, most uncertain first (ties by
    case id), for the finished cases of ``output_dir``.

    Raises:
        ValueError: an unknown ``by``, a folder without a manifest, or finished cases without that score (they were
            segmented without ``--save_uncertainty``, or without TTA/ensemble for mutual information).
    """
    if by not in RANK_BY:
        raise ValueError(f"by must be one of {RANK_BY}, got {by!r}.")
    path = Path(output_dir) / MANIFEST_NAME
    try:
        cases = json.loads(path.read_text(encoding="utf-8")).get("cases", {})
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: no readable manifest ({exc}); rank an output folder of attnseg infer.") from exc
    done = {k: v for k, v in cases.items() if v.get("status") == "done"}
    missing = sorted(k for k, v in done.items() if by not in (v.get("uncertainty") or {}))
    if missing:
        hint = "--save_uncertainty" + (" with --tta or --folds/several checkpoints" if by != "entropy" else "")
        raise ValueError(
            f"{path}: {len(missing)} finished case(s) have no {by} score ({', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''}); rerun attnseg infer with {hint} --overwrite."
        )
    rows = [
        {
            "case": k,
            "input": v.get("input"),
            "score": float(v["uncertainty"][by]),
            **{name: v["uncertainty"].get(name) for name in RANK_BY},
        }
        for k, v in done.items()
    ]
    rows.sort(key=lambda r: (-r["score"], r["case"]))
    return [{"rank": i + 1, **r} for i, r in enumerate(rows)]
