"""The output plan of a run: which files each case gets, their names, conflicts, and the commit.

Names follow the bundle: a label file is named as the bundle's own ``SaveImaged`` names it under
``python -m monai.bundle run`` (its ``output_name_formatter`` gives the subject, MONAI's ``FolderLayout`` gives
``<subject>_<postfix><ext>``), with characters unsafe in file names replaced (:func:`~attnseg_monai.io.paths.
sanitize_name`) and, when two inputs would get the same name, a hash of the path added. The extras share the rule:

| output | name |
|---|---|
| labels (one per ``SaveImaged`` of the bundle) | ``<case>_<postfix><ext>`` (``--output_ext`` replaces the ending) |
| probabilities | ``<case>_probabilities.tif`` (2D) / ``.nii.gz`` (3D) |
| uncertainty | ``<case>_entropy``, ``<case>_mutual_information``: ``.tif`` (2D) / ``.nii.gz`` (3D) |
| attention maps | ``<case>_attention_<name>.png`` (2D) / ``.nii.gz`` (3D) |
| overlay | ``<case>_overlay.png`` |
| whole-slide labels, preview | ``<case>_<postfix>.tif``, ``<case>_preview.png`` |

A case is committed by :meth:`OutputPlan.commit`: every file was written to a temporary name; they are hashed,
journalled as ``writing``, renamed into place and journalled ``done`` (see :mod:`~attnseg_monai.inference.manifest`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from monai.transforms import SaveImage

from ..io.writers import label_saver
from .errors import OutputConflictError
from .inputs import CaseInput
from .manifest import Manifest

__all__ = ["EXTRA_OUTPUTS", "OutputPlan", "OutputSpec", "subject_of"]

#: the outputs besides the labels (their names end ``<case>_<name>``; attention maps are ``attention_<name>``)
EXTRA_OUTPUTS = ("probabilities", "overlay", "entropy", "mutual_information", "preview")


@dataclass(frozen=True)
class OutputSpec:
    """One label output per case: the item ``key`` after postprocessing, written by ``saver`` (the bundle's own
    ``SaveImage``, or :func:`~attnseg_monai.io.writers.label_saver` for another ending) as
    ``<case>_<postfix><ext>``."""

    key: str
    postfix: str
    ext: str
    saver: SaveImage

    @property
    def dtype(self) -> Any:
        value = self.saver.init_kwargs.get("output_dtype")
        try:
            return None if value is None else np.dtype(value)
        except TypeError:
            return None

    @property
    def scale(self) -> int | None:
        return self.saver.init_kwargs.get("scale")

    def with_ending(self, ext: str) -> OutputSpec:
        """The same output written with another ending (and that ending's writer)."""
        if ext == self.ext:
            return self
        return OutputSpec(self.key, self.postfix, ext, label_saver(ext, self.postfix, self.dtype, self.scale))

    def as_dict(self) -> dict[str, Any]:
        dtype = self.dtype
        return {
            "key": self.key,
            "postfix": self.postfix,
            "ext": self.ext,
            "dtype": None if dtype is None else dtype.name,
            "scale": self.scale,
            "writer": ", ".join(w.__name__ for w in self.saver.writers),
        }


def subject_of(path: str | os.PathLike, saver: SaveImage) -> str:
    """The name stem ``saver`` gives the prediction of ``path`` under ``monai.bundle run`` (its
    ``output_name_formatter``, then MONAI's rule: the base name without its ending, ``.nii.gz`` counted whole)."""
    kw = saver.fname_formatter({"filename_or_obj": os.fspath(path)}, saver)
    name = os.path.basename(os.fspath(kw.get("subject", path)).rstrip("/\\"))
    stem, ext = os.path.splitext(name)
    if ext == ".gz":
        stem = os.path.splitext(stem)[0]
    return stem if Path(path).is_file() or ext else name


class OutputPlan:
    """Names, conflict checks and commits of one run's outputs.

    Args:
        output_dir: the run's output folder.
        outputs: the label outputs (endings already chosen).
        dims: spatial dimensions of the inputs (picks the extras' endings).
        manifest: the folder's manifest.
        overwrite: replace outputs the manifest did not write.
        rank: this process's shard (its temporary files carry it).
        extras: which extra outputs are written (``probabilities``, ``overlay``, ``attention``).
    """

    def __init__(
        self,
        output_dir: Path,
        outputs: list[OutputSpec],
        dims: int,
        manifest: Manifest,
        *,
        overwrite: bool,
        rank: int,
        extras: Iterable[str] = (),
    ) -> None:
        self.output_dir = output_dir
        self.outputs = outputs
        self.dims = dims
        self.manifest = manifest
        self.overwrite = overwrite
        self.rank = rank
        self.extras = frozenset(extras)

    # ------------------------------------------------------------------ names
    def path(self, case_id: str, name: str, ext: str) -> Path:
        """``<output_dir>/<case_id>_<name><ext>`` (checked to stay inside the folder)."""
        from ..io.paths import output_path

        return output_path(self.output_dir, case_id, name, ext)

    def extra_ending(self, name: str) -> str:
        """The ending of an extra output: probabilities TIFF/NIfTI, attention PNG/NIfTI, overlay and preview PNG."""
        if name == "probabilities":
            return ".tif" if self.dims == 2 else ".nii.gz"
        if name.startswith("attention_"):
            return ".png" if self.dims == 2 else ".nii.gz"
        if name in ("entropy", "mutual_information"):
            return ".tif" if self.dims == 2 else ".nii.gz"
        return ".png"

    def label_files(self, case_id: str, kind: str = "image") -> dict[str, Path]:
        """``{postfix: final path}`` of the label outputs (slides: tiled TIFFs)."""
        return {s.postfix: self.path(case_id, s.postfix, ".tif" if kind == "wsi" else s.ext) for s in self.outputs}

    def expected(self, case_id: str, kind: str) -> dict[str, Path]:
        """Every output a finished case has (attention maps: as many as the network gives, so not listed)."""
        files = self.label_files(case_id, kind)
        names = ["preview"] if kind == "wsi" else [n for n in EXTRA_OUTPUTS if n in self.extras]
        for name in names:
            files[name] = self.path(case_id, name, self.extra_ending(name))
        return files

    def temporary(self, final: Path) -> Path:
        """A new temporary file for ``final`` (same folder and ending; removed unless committed)."""
        from ..io.atomic import temporary_path

        return temporary_path(final, self.rank)

    def action(self, case: CaseInput, kind: str, settings: Mapping[str, Any]) -> str:
        """``"skip"``, ``"promote"`` (complete but journalled ``writing``) or ``"run"`` for one case."""
        record = self.manifest.get(case.case_id)
        if self.overwrite or record is None or record.get("input") != str(case.path):
            return "run"
        try:
            st = case.path.stat()
            if not case.path.is_dir() and (
                record.get("input_bytes") != st.st_size or record.get("input_mtime_ns") != st.st_mtime_ns
            ):
                return "run"
        except OSError:
            return "run"
        if record.get("status") == "failed":
            return "run"
        if settings["save_attention"] and kind != "wsi" and not (record.get("settings") or {}).get("save_attention"):
            return "run"
        missing, changed = self.manifest.verify_outputs(record)
        if missing or changed or not set(self.expected(case.case_id, kind)) <= set(record.get("outputs") or {}):
            return "run"
        return "skip" if record.get("status") == "done" else "promote"

    # ------------------------------------------------------------------ conflicts and commit
    def check_conflicts(self, finals: Iterable[Path]) -> list[Path]:
        """Raise if an output exists that the manifest did not write; returns outputs that changed since written.

        Raises:
            OutputConflictError: naming the file and the remedy (``--overwrite``).
        """
        changed = []
        for final in finals:
            if not final.exists() or self.overwrite:
                continue
            ours = self.manifest.written_by_us(final)
            if ours is None:
                raise OutputConflictError(
                    f"output {final.name} already exists and was not written by this folder's manifest; "
                    "pass --overwrite (overwrite=True) to replace it"
                )
            if ours is False:
                changed.append(final)
        return changed

    def commit(self, case_id: str, record: Mapping[str, Any], produced: Mapping[str, tuple[Path, Path]]) -> None:
        """Hash the temporary files, journal ``writing``, rename them into place, journal ``done``.

        Args:
            case_id: the case.
            record: the case's record (input, bundle, settings, ...); ``started`` (perf counter) gives ``seconds``.
            produced: ``{name: (final, temporary)}``.
        """
        from ..io.atomic import sha256_file

        manifest = self.manifest
        outputs = {}
        for name, (final, tmp) in produced.items():
            outputs[name] = {"path": manifest.relative(final), "sha256": sha256_file(tmp), "bytes": tmp.stat().st_size}
        for final in self.check_conflicts([f for f, _ in produced.values()]):
            manifest.move_aside(final)
        started = record.get("started")
        entry = {k: v for k, v in record.items() if k != "started"}
        entry.update(outputs=outputs, error=None)
        manifest.update(case_id, status="writing", **entry)
        for final, tmp in produced.values():
            os.replace(tmp, final)
        if started is not None:
            entry["seconds"] = round(time.perf_counter() - float(started), 3)
        manifest.update(case_id, status="done", **entry)
