"""``attnseg export``: a complete, self-contained copy of a bundle, as a folder or a MONAI bundle zip.

The copy holds what a MONAI bundle is (``configs/`` with every override file, ``docs/``, ``LICENSE``, the data
licence) and, when the bundle has a trained model (or ``checkpoint`` is given), ``models/model.pt`` with its record
``models/model.record.json``. It leaves out what a run leaves behind (resumable checkpoints, ``eval/``, generated
data, MONAI Label's ``configs/monailabel_train.json``). The exported folder runs with
``python -m monai.bundle run --config_file <dir>/configs/inference.json`` from anywhere, and loads in MONAI Label's
``monaibundle`` app, wherever this package is installed: it needs no checkout.

Nothing is written half-way: the folder is assembled under a temporary name beside the destination and renamed at the
end; an existing non-empty destination is refused.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from ..bundle.paths import bundle_path
from ..bundle.record import RecordError, load_weights, read_record, record_path

__all__ = ["BUNDLE_FILES", "ExportError", "export_bundle"]

#: what a bundle folder is made of (globs relative to the bundle folder; also what the wheel packages)
BUNDLE_FILES = (
    "LICENSE",
    "configs/*.json",
    "configs/*/*.json",
    "configs/*.conf",
    "docs/*.md",
    "docs/*.txt",
    "docs/*.png",
)
#: written into a bundle's configs by MONAI Label's multi-GPU training: not part of the bundle
_RUN_ARTIFACTS = ("configs/monailabel_train.json",)


class ExportError(ValueError):
    """The bundle cannot be exported as asked (the message names the file or folder and the remedy)."""


def _source(bundle: str | os.PathLike) -> Path:
    text = os.fspath(bundle)
    folder = Path(text).expanduser()
    if folder.is_dir():
        root = folder.resolve()
    else:
        try:
            root = bundle_path(text).resolve()
        except KeyError as exc:
            raise ExportError(str(exc.args[0])) from exc
    if not (root / "configs" / "metadata.json").is_file():
        raise ExportError(f"{root / 'configs' / 'metadata.json'} not found: {root} is not a bundle folder.")
    return root


def _bundle_files(root: Path) -> list[Path]:
    found: set[Path] = set()
    for pattern in BUNDLE_FILES:
        found.update(p for p in root.glob(pattern) if p.is_file())
    skip = {root / a for a in _RUN_ARTIFACTS}
    return sorted(p for p in found if p not in skip)


def _checked_model(root: Path, name: str, checkpoint: Path, trust_bundle: bool) -> Path | None:
    """The record beside ``checkpoint`` after checking both (or ``None`` for a plain state dict that fits)."""
    if not checkpoint.is_file():
        raise ExportError(f"checkpoint {checkpoint} not found: pass an existing weights file with --checkpoint.")
    try:
        found = read_record(checkpoint, name, root)
        if found.record is not None:
            load_weights(found.record.build_network(record_path(checkpoint)), checkpoint)
            return record_path(checkpoint)
        from .bundle_loader import load_bundle

        # no record: the weights must fit the network the bundle's inference.json builds (every tensor, strictly);
        # parsing the config runs its code, so a folder outside the collection needs trust_bundle, as for infer
        load_bundle(root, checkpoint=checkpoint, trust_bundle=trust_bundle)
    except (RecordError, ValueError) as exc:
        raise ExportError(f"not exporting {checkpoint}: {exc}") from exc
    return None


def _destination(dest: str | os.PathLike, as_zip: bool) -> Path:
    target = Path(dest).expanduser().absolute()
    if as_zip:
        if target.suffix != ".zip":
            target = target.with_name(target.name + ".zip")
        if target.exists() or target.is_symlink():
            raise ExportError(f"{target} already exists: choose a new zip file name or remove it.")
    elif target.is_symlink() or (target.exists() and (not target.is_dir() or any(target.iterdir()))):
        raise ExportError(f"{target} exists and is not an empty folder: choose a new destination or remove it.")
    return target


def _write(root: Path, folder: Path, model: Path, record: Path | None) -> None:
    for path in _bundle_files(root):
        out = folder / path.relative_to(root)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, out)
    if model.is_file():
        (folder / "models").mkdir()
        shutil.copy2(model, folder / "models" / "model.pt")
        if record is not None:
            shutil.copy2(record, record_path(folder / "models" / "model.pt"))


def export_bundle(
    bundle: str | os.PathLike,
    dest: str | os.PathLike,
    *,
    checkpoint: str | os.PathLike | None = None,
    as_zip: bool = False,
    trust_bundle: bool = False,
) -> Path:
    """Write a self-contained copy of ``bundle`` to ``dest`` (a folder, or with ``as_zip`` a ``.zip`` file).

    Args:
        bundle: a bundle name of this collection (``"hannet"``) or a bundle folder.
        dest: the folder to create (must not exist, or be empty); with ``as_zip``, the zip file (``.zip`` is added
            when missing), holding ``<bundle name>/...`` as MONAI's bundle zips do.
        checkpoint: the weights to include (default: the bundle's ``models/model.pt`` when it exists). With a record
            beside it, the record comes along; without one, the weights must load strictly into the network the
            bundle's ``inference.json`` builds.
        as_zip: write a zip file instead of a folder.
        trust_bundle: allow checking a checkpoint without a record against the ``inference.json`` of a bundle folder
            outside this collection (parsing a config runs its code; not needed for a checkpoint with a record).

    Returns:
        the folder or zip file written.

    Raises:
        ExportError: unknown bundle, existing destination, a checkpoint that does not fit its bundle, or a
            destination that cannot be written.
    """
    root = _source(bundle)
    name = root.name
    target = _destination(dest, as_zip)
    model = Path(checkpoint).expanduser() if checkpoint is not None else root / "models" / "model.pt"
    record = _checked_model(root, name, model, trust_bundle) if checkpoint is not None or model.is_file() else None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    except OSError as exc:
        raise ExportError(f"cannot write beside {target}: {exc}; choose a destination in a writable folder.") from exc
    try:
        folder = staging / name
        _write(root, folder, model, record)
        if as_zip:
            archive = staging / "bundle.zip"
            with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                for path in sorted(folder.rglob("*")):
                    if path.is_file():
                        zf.write(path, path.relative_to(staging).as_posix())
            os.replace(archive, target)
        else:
            if target.is_dir():
                target.rmdir()  # empty, checked above
            os.replace(folder, target)
    except OSError as exc:
        raise ExportError(f"exporting {root} to {target} failed: {exc}; nothing was written there.") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target
