"""What to segment: a folder, a glob, a datalist JSON or a list of paths, turned into named cases.

Every case gets a *case id*: the file name without its image ending (``ct_001.nii.gz`` -> ``ct_001``; a DICOM
folder's own name), reduced to letters, digits, ``.``, ``_`` and ``-`` (:func:`sanitize_name`), so an output name
can never leave the output folder, whatever the input is called. Ids that would collide (``a.png`` and ``a.tif``,
or the same name in two folders of a glob) get a short hash of the input path appended. The list is sorted by path,
so every process of a sharded run (:mod:`~attnseg_monai.inference.sharding`) sees the same cases with the same ids.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..io.dicom import is_dicom_folder
from ..io.paths import MAX_NAME_LENGTH, sanitize_name
from ..io.suffixes import image_suffix, split_image_name
from .readers import supported_suffixes

__all__ = ["CaseInput", "InputCollection", "collect_inputs"]

_DATALIST_KEYS = ("testing", "test", "validation", "training", "data", "images")
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class CaseInput:
    """One input: its absolute ``path`` (a file or a DICOM folder) and its unique, safe ``case_id``."""

    path: Path
    case_id: str

    def as_dict(self) -> dict[str, str]:
        return {"path": str(self.path), "case_id": self.case_id}


@dataclass
class InputCollection:
    """The cases found, sorted by path, and the entries left out with the reason (``(path, reason)`` pairs)."""

    cases: list[CaseInput]
    ignored: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cases)


def _case_name(path: Path, name: str | None, name_of: Callable[[Path], str] | None = None) -> str:
    if name:
        return sanitize_name(name)
    if name_of is not None:
        return sanitize_name(name_of(path))
    if path.is_dir():
        return sanitize_name(path.name)
    return sanitize_name(split_image_name(path)[0])


def _unique_ids(
    entries: list[tuple[Path, str | None]], name_of: Callable[[Path], str] | None = None
) -> list[CaseInput]:
    """Assign ids; every member of a group of colliding ids (compared case-insensitively) gets a path hash."""
    names = [_case_name(p, n, name_of) for p, n in entries]
    groups: dict[str, int] = {}
    for n in names:
        groups[n.casefold()] = groups.get(n.casefold(), 0) + 1
    cases = []
    for (path, _), name in zip(entries, names):
        if groups[name.casefold()] > 1:
            digest = hashlib.sha1(str(path).encode("utf-8")).hexdigest()[:8]
            name = f"{name[: MAX_NAME_LENGTH - 9]}-{digest}"
        cases.append(CaseInput(path=path, case_id=name))
    return cases


def _is_input_file(path: Path, extra: Sequence[str] = ()) -> bool:
    suffix = image_suffix(path)
    return path.is_file() and not path.name.startswith(".") and (suffix in supported_suffixes() or suffix in extra)


def _scan_folder(
    folder: Path, exclude: Sequence[Path], extra: Sequence[str] = ()
) -> tuple[list[Path], list[tuple[str, str]]]:
    if is_dicom_folder(folder) and not any(_is_input_file(p) and image_suffix(p) != ".dcm" for p in folder.iterdir()):
        return [folder], []
    found: list[Path] = []
    ignored: list[tuple[str, str]] = []
    for p in sorted(folder.iterdir()):
        if p.name.startswith("."):
            continue
        if any(_same(p, e) for e in exclude):
            continue
        if p.is_dir():
            if is_dicom_folder(p):
                found.append(p)
            else:
                ignored.append((str(p), "folder without DICOM files (sub-folders are not searched)"))
        elif _is_input_file(p, extra):
            if image_suffix(p) == ".dcm":
                ignored.append((str(p), "single DICOM file: give the folder of its series"))
            else:
                found.append(p)
        else:
            ignored.append((str(p), f"not an image file this tool reads ({image_suffix(p) or 'no ending'})"))
    return found, ignored


def _same(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


def _read_datalist(path: Path, key: str | None) -> list[tuple[Path, str | None]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable datalist JSON ({exc}).") from exc
    if isinstance(content, dict):
        keys = [key] if key else [k for k in _DATALIST_KEYS if k in content]
        if not keys or keys[0] not in content:
            raise ValueError(
                f"{path}: datalist has no {repr(key) if key else 'list of items'}; expected a list, or a dict "
                f"with one of {', '.join(_DATALIST_KEYS)} (choose with datalist_key)."
            )
        items = content[keys[0]]
    else:
        items = content
    if not isinstance(items, list):
        raise ValueError(f"{path}: the datalist entry must be a list of items, got {type(items).__name__}.")
    out: list[tuple[Path, str | None]] = []
    for i, item in enumerate(items):
        name = None
        if isinstance(item, dict):
            if "image" not in item:
                raise ValueError(f"{path}: item {i} has no 'image' entry.")
            image = item["image"]
            name = item.get("name")
        else:
            image = item
        if not isinstance(image, str):
            raise ValueError(f"{path}: item {i}: 'image' must be one path (multi-file inputs are not supported).")
        p = Path(image).expanduser()
        out.append(((p if p.is_absolute() else path.parent / p).absolute(), str(name) if name else None))
    return out


def collect_inputs(
    source: str | os.PathLike | Iterable[str | os.PathLike],
    *,
    exclude: Sequence[str | os.PathLike] = (),
    datalist_key: str | None = None,
    extra_suffixes: Sequence[str] = (),
    name_of: Callable[[Path], str] | None = None,
) -> InputCollection:
    """The cases of ``source``, sorted by path, with unique safe ids.

    Args:
        source: a folder (its image files and DICOM series sub-folders; a folder of DICOM files is one case), a glob
            (``"scans/**/*.nii.gz"``), a datalist JSON (a list, or a dict with ``testing``/``test``/``validation``/
            ``training``/``data``; items are paths or ``{"image": path, "name": optional id}``, relative to the
            JSON's folder), a single file, or a list of paths.
        exclude: folders never taken as inputs (the output folder).
        datalist_key: the datalist entry to read.
        extra_suffixes: endings to take besides the readers' (for bundles that load files themselves).
        name_of: the case id of a path without a datalist ``name`` (the predictor passes the bundle's output
            naming, :func:`~attnseg_monai.inference.outputs.subject_of`); default: the file name without its ending.

    Raises:
        ValueError: if ``source`` matches nothing or a datalist is malformed.
    """
    excluded = [Path(e).absolute() for e in exclude]
    entries: list[tuple[Path, str | None]] = []
    ignored: list[tuple[str, str]] = []
    if isinstance(source, (str, os.PathLike)):
        text = os.fspath(source)
        p = Path(text).expanduser()
        if p.is_file() and p.suffix.lower() == ".json":
            entries = _read_datalist(p.absolute(), datalist_key)
        elif p.is_dir():
            found, ignored = _scan_folder(p.absolute(), excluded, extra_suffixes)
            entries = [(f, None) for f in found]
        elif p.exists():
            entries = [(p.absolute(), None)]
        elif _GLOB_CHARS & set(text):
            for match in sorted(glob.glob(os.path.expanduser(text), recursive=True)):
                m = Path(match).absolute()
                if any(_same(m, e) or e in m.parents for e in excluded):
                    continue
                if m.is_dir():
                    if is_dicom_folder(m):
                        entries.append((m, None))
                elif _is_input_file(m, extra_suffixes):
                    entries.append((m, None))
                elif m.is_file():
                    ignored.append((str(m), f"not an image file this tool reads ({image_suffix(m) or 'no ending'})"))
            if not entries and not ignored:
                raise ValueError(f"no file matches the pattern {text!r}.")
        else:
            raise ValueError(f"input {text!r} not found: give a folder, a glob, a datalist JSON or an image file.")
    else:
        entries = [(Path(s).expanduser().absolute(), None) for s in source]
    unique: dict[Path, str | None] = {}
    for path, name in entries:
        unique.setdefault(path, name)
    ordered = sorted(unique.items(), key=lambda kv: str(kv[0]))
    return InputCollection(cases=_unique_ids(ordered, name_of), ignored=ignored)
