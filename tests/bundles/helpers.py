"""Running the bundles' real workflows on tiny data, and reading their raw configs: shared by the bundle tests."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from monai.bundle import ConfigWorkflow

from attnseg_monai.bundle import BUNDLES_DIR
from tests.bundles.cases import BUNDLE_CASES

__all__ = [
    "checkout_tree",
    "config_strings",
    "configs",
    "copy_bundle",
    "overrides",
    "run_workflow",
    "working_directory",
]


def configs(root: Path, *names: str) -> list[str]:
    return [str(root / "configs" / n) for n in names]


def config_strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string of a raw (unparsed) config with its MONAI id: ``[("train#datalist", "$..."), ...]``."""
    if isinstance(node, dict):
        return [x for k, v in node.items() for x in config_strings(v, f"{path}#{k}" if path else str(k))]
    if isinstance(node, list):
        return [x for i, v in enumerate(node) for x in config_strings(v, f"{path}#{i}")]
    return [(path, node)] if isinstance(node, str) else []


def overrides(name: str, kind: str, root: Path | None = None, net: bool = True, **extra) -> dict:
    """The tiny case's overrides; ``root`` sets ``bundle_root`` explicitly (``None``: the bundle finds itself);
    ``net=False`` leaves the network to the config (and the record beside the checkpoint)."""
    case = BUNDLE_CASES[name]
    found = {**(case["net"] if net else {}), **case[kind], **extra}
    return found if root is None else {"bundle_root": str(root), **found}


def checkout_tree() -> dict[str, int]:
    """Every file under the collection's bundles/ with its modification time: a run of a copy must not change it."""
    return {str(p.relative_to(BUNDLES_DIR)): p.stat().st_mtime_ns for p in BUNDLES_DIR.rglob("*") if p.is_file()}


def copy_bundle(name: str, parent: Path) -> Path:
    """A copy of the collection's bundle ``name`` without run outputs (models, eval, generated data)."""
    root = parent / name
    shutil.copytree(BUNDLES_DIR / name, root, ignore=shutil.ignore_patterns("models", "eval", "data"))
    return root


@contextmanager
def working_directory(path: str | os.PathLike) -> Iterator[None]:
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def run_workflow(config_files: list[str], root: Path, workflow_type: str, run_id: str, **kw) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=config_files,
        meta_file=str(root / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type=workflow_type,
        run_id=run_id,
        **kw,
    )
    wf.initialize()
    wf.run()
    wf.finalize()
    return wf
