"""The CT part of ``benchmarks/bench_speed.py``'s accuracy section: each trained 3D bundle's own inference on its
embedded CT phantoms, once on the default path (``precision="auto"``, ``engine="auto"``: OpenVINO bf16 on an AMX
CPU when installed) and once in MONAI's float32 on torch, through :class:`~attnseg_monai.inference.BundlePredictor`
(the path ``attnseg infer`` runs); the label files of the two are compared voxel by voxel.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["CT_BUNDLES", "bench_ct_accuracy", "ct_markdown"]

ROOT = Path(__file__).resolve().parents[1]
#: the 3D bundles whose trained checkpoints are checked
CT_BUNDLES = ("attention_unet", "danie")
#: the two paths compared: the default and MONAI's float32 on torch
PATHS = {"default": {"precision": "auto", "engine": "auto"}, "fp32": {"precision": "fp32", "engine": "torch"}}


def _images(bundle: str) -> list[str]:
    """The image files of the bundle's inference datalist (its embedded phantoms by default)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(ROOT / "bundles" / bundle / "configs" / "inference.json"))
    parser["bundle_root"] = str(ROOT / "bundles" / bundle)
    return [str(item["image"]) for item in parser.get_parsed_content("datalist")]


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    """Mean Dice over the foreground classes present in either label map (1.0 when none is)."""
    scores = []
    for k in np.union1d(np.unique(a), np.unique(b)):
        if k == 0:
            continue
        x, y = a == k, b == k
        scores.append(2.0 * np.logical_and(x, y).sum() / (x.sum() + y.sum()))
    return float(np.mean(scores)) if scores else 1.0


def _case(bundle: str, images: list[str], log: Callable[[str], None], checkpoint: str | None) -> dict[str, Any]:
    import nibabel as nib

    from attnseg_monai.inference import BundlePredictor

    ckpt = Path(checkpoint) if checkpoint else ROOT / "bundles" / bundle / "models" / "model.pt"
    if not ckpt.is_file():
        return {"bundle": bundle, "skipped": f"no checkpoint at {ckpt} (train the bundle first)"}
    row: dict[str, Any] = {"bundle": bundle, "checkpoint": str(ckpt), "cases": []}
    with tempfile.TemporaryDirectory(prefix=f"bench_ct_{bundle}_") as tmp:
        outputs = {}
        for key, settings in PATHS.items():
            predictor = BundlePredictor(device="cpu", **settings).from_bundle(bundle, checkpoint=ckpt)
            out = Path(tmp) / key
            predictor.predict_files(images, out, num_workers=0, progress=False)  # the first run pays conversion
            summary = predictor.predict_files(images, out, num_workers=0, progress=False, overwrite=True)
            if summary.failed:
                raise RuntimeError(f"{bundle} {key}: {summary.failed}")
            cases = json.loads((out / "attnseg_manifest.json").read_text())["cases"]
            row[key] = {
                "seconds": summary.seconds,
                "engine": sorted({c.get("engine", "?") for c in cases.values()}),
                "policy": predictor.policy.name,
            }
            outputs[key] = {p.name: p for p in out.glob("*.nii.gz")}
        for name in sorted(outputs["fp32"]):
            ref = np.asarray(nib.load(outputs["fp32"][name]).dataobj)
            got = np.asarray(nib.load(outputs["default"][name]).dataobj)
            row["cases"].append(
                {
                    "case": name,
                    "shape": list(ref.shape),
                    "agreement": float((ref == got).mean()),
                    "dice": _dice(got, ref),
                    "classes": [int(c) for c in np.unique(ref)],
                }
            )
            c = row["cases"][-1]
            log(f"  accuracy ct {bundle:16s} {name:28s} voxels equal {100 * c['agreement']:.3f}% dice {c['dice']:.4f}")
    row["min_agreement"] = min(c["agreement"] for c in row["cases"])
    row["mean_dice"] = float(np.mean([c["dice"] for c in row["cases"]]))
    return row


def bench_ct_accuracy(
    bundles: list[str], log: Callable[[str], None], checkpoints: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """One row per bundle: the default path against float32 on its phantoms (or why it was skipped/failed).

    Args:
        bundles: 3D bundles of the collection.
        log: progress lines.
        checkpoints: bundle -> weights file (default ``bundles/<name>/models/model.pt``).
    """
    rows = []
    for bundle in bundles:
        try:
            row = _case(bundle, _images(bundle), log, (checkpoints or {}).get(bundle))
        except Exception as exc:  # noqa: BLE001 - one bundle failing must not end a long run
            row = {"bundle": bundle, "error": f"{exc.__class__.__name__}: {str(exc)[:300]}"}
        if "cases" not in row:
            log(f"  accuracy ct {bundle}: {row.get('skipped') or row.get('error')}")
        rows.append(row)
    return rows


def ct_markdown(rows: list[dict[str, Any]]) -> list[str]:
    """Lines of the CT accuracy table."""
    if not rows:
        return []
    lines = [
        "**Accuracy on CT**: each trained 3D bundle's own inference (`BundlePredictor`, the path of `attnseg infer`) "
        "on its embedded CT phantoms, the default path (precision and engine `auto`) against MONAI float32 on torch "
        "(`--precision fp32 --engine torch`); label files compared voxel by voxel (Dice: mean over the foreground "
        "classes present); seconds for all phantoms after a first run that converts and compiles:",
        "",
        "| bundle | phantom | shape | classes | voxels equal | Dice default vs fp32 | default s [engine] | fp32 s |",
        "|---|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if "cases" not in r:
            lines.append(f"| {r['bundle']} | {r.get('skipped') or 'failed: ' + r.get('error', '')[:100]} |" + " |" * 6)
            continue
        for i, c in enumerate(r["cases"]):
            timing = (
                f"{r['default']['seconds']:.1f} [{'+'.join(r['default']['engine'])}] | {r['fp32']['seconds']:.1f}"
                if i == 0
                else " | "
            )
            lines.append(
                f"| {r['bundle'] if i == 0 else ''} | {c['case']} | {'x'.join(map(str, c['shape']))} "
                f"| {len(c['classes'])} | {100 * c['agreement']:.3f}% | {c['dice']:.4f} | {timing} |"
            )
    return [*lines, ""]
