"""Paths that cannot escape their folder: safe file names, output paths, joining untrusted names under a folder,
extracting archives.

:func:`sanitize_name` turns any name into a safe file name; :func:`output_path` builds ``<case>_<postfix><ending>``
from sanitised parts under an output folder (the batch app's one naming rule for files).

:func:`safe_join` resolves a relative name under a root and refuses absolute names, ``..`` parts, and symbolic
links pointing outside the root. :func:`safe_extract` unpacks a ``.zip`` or ``.tar(.gz/.bz2/.xz)`` archive member by
member after checking every name (no absolute paths, no ``..``, no links, devices or FIFOs, bounded total size), so
a crafted archive can write nothing outside the target folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import unicodedata
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO

__all__ = ["MAX_NAME_LENGTH", "UnsafePathError", "output_path", "safe_extract", "safe_join", "sanitize_name"]

_UNSAFE = re.compile(r"[^\w.\-]+")
_DOTS = re.compile(r"\.{2,}")
_WINDOWS_RESERVED = {"CON", "PRN", "AUX", "NUL", *(f"COM{i}" for i in range(1, 10)), *(f"LPT{i}" for i in range(1, 10))}
#: Longest case id kept (outputs add a postfix and an ending; most file systems allow 255 bytes).
MAX_NAME_LENGTH = 120

#: Default limit on the bytes an archive may unpack to (a "zip bomb" guard).
MAX_EXTRACT_BYTES = 8 * 1024**3


class UnsafePathError(ValueError):
    """A path that would leave its folder (absolute, ``..``, a link outside), or an archive member that would."""


def sanitize_name(name: str, fallback: str = "case") -> str:
    """A file-name-safe version of ``name``: no path separators, no ``..``, no leading dot, at most 120 characters.

    Letters and digits of any script, ``_``, ``-`` and single dots are kept; every other run of characters becomes
    ``_``. An empty result becomes ``fallback``; Windows device names (``CON``, ``NUL``...) get a leading ``_``.

    Example::

        >>> sanitize_name("../../etc/passwd")
        'etc_passwd'
        >>> sanitize_name("patient 01 (arterial).nii")
        'patient_01_arterial_.nii'
    """
    text = unicodedata.normalize("NFKC", str(name))
    text = _UNSAFE.sub("_", text)
    text = _DOTS.sub(".", text)
    text = text.strip("._-")
    if not text:
        text = fallback
    if text.split(".")[0].upper() in _WINDOWS_RESERVED:
        text = "_" + text
    if len(text) > MAX_NAME_LENGTH:
        digest = hashlib.sha1(text.encode("utf-8")).hexdigest()[:8]
        text = text[: MAX_NAME_LENGTH - 9] + "-" + digest
    return text


def output_path(output_dir: str | os.PathLike, case_id: str, postfix: str, ext: str) -> Path:
    """``<output_dir>/<case_id>_<postfix><ext>``, with both names sanitised and the result checked to stay inside
    (:func:`safe_join`).

    Raises:
        ValueError: if the ending is not a plain ending; :class:`UnsafePathError` if the path would leave
            ``output_dir``.
    """
    if not ext.startswith(".") or "/" in ext or "\\" in ext or ".." in ext:
        raise ValueError(f"output ending must look like '.png' or '.nii.gz', got {ext!r}.")
    stem = sanitize_name(case_id)
    name = f"{stem}_{sanitize_name(postfix, fallback='out')}{ext}" if postfix else f"{stem}{ext}"
    root = Path(output_dir).absolute()
    safe_join(root, name)  # raises if the name would leave the folder
    return root / name


def _parts(name: str) -> list[str]:
    if "\x00" in name:
        raise UnsafePathError(f"{name!r}: NUL byte in a path.")
    posix, windows = PurePosixPath(name), PureWindowsPath(name)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or name.startswith(("/", "\\")):
        raise UnsafePathError(f"{name!r}: absolute path; only names relative to the folder are allowed.")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise UnsafePathError(f"{name!r}: '..' would leave the folder.")
    return parts


def safe_join(root: str | os.PathLike, *names: str) -> Path:
    """``root / name...`` when it stays inside ``root`` (after resolving links that already exist).

    Args:
        root: the folder the result must stay in.
        names: relative names (from users, configs, archives, case ids).

    Raises:
        UnsafePathError: for an absolute name, a ``..`` part, a NUL byte, an empty name, or a path that resolves
            outside ``root`` through a symbolic link.
    """
    base = Path(root).resolve()
    parts: list[str] = []
    for name in names:
        parts += _parts(str(name))
    if not parts:
        raise UnsafePathError(f"empty name under {base}.")
    target = base.joinpath(*parts)
    resolved = target.resolve()
    if resolved != base and base not in resolved.parents:
        raise UnsafePathError(f"{'/'.join(parts)!r} resolves to {resolved}, outside {base}.")
    return target


def _check_size(total: int, limit: int, archive: Path) -> None:
    if total > limit:
        raise UnsafePathError(f"{archive}: would unpack {total} bytes, more than the limit of {limit}.")


def safe_extract(
    archive: str | os.PathLike, target: str | os.PathLike, *, max_bytes: int = MAX_EXTRACT_BYTES
) -> list[Path]:
    """Extract ``archive`` into ``target`` after checking every member; returns the files written.

    Nothing is written if any member is unsafe: all names are checked before the first byte is extracted.

    Args:
        archive: a ``.zip`` or tar archive (any compression ``tarfile`` reads).
        target: the folder to extract into (created).
        max_bytes: refuse archives whose members add up to more than this.

    Raises:
        UnsafePathError: a member with an absolute name, ``..``, a link, a device/FIFO, or too large in total.
        ValueError: not a zip or tar archive.
    """
    src = Path(archive)
    dest = Path(target)
    if zipfile.is_zipfile(src):
        with zipfile.ZipFile(src) as zf:
            members = []
            for info in zf.infolist():
                if stat.S_ISLNK((info.external_attr >> 16) & 0xFFFF):
                    raise UnsafePathError(f"{src}: member {info.filename!r} is a symbolic link (refused).")
                members.append((info.filename, info.file_size, info.is_dir(), lambda info=info: zf.open(info)))
            return _extract_checked(src, dest, members, max_bytes)
    if not tarfile.is_tarfile(src):
        raise ValueError(f"{src}: not a zip or tar archive.")
    with tarfile.open(src) as tf:
        members = []
        for member in tf.getmembers():
            if member.issym() or member.islnk():
                raise UnsafePathError(f"{src}: member {member.name!r} is a link (refused).")
            if not (member.isfile() or member.isdir()):
                raise UnsafePathError(f"{src}: member {member.name!r} is a device, FIFO or other special file.")
            members.append((member.name, member.size, member.isdir(), lambda member=member: tf.extractfile(member)))
        return _extract_checked(src, dest, members, max_bytes)


def _extract_checked(
    src: Path, dest: Path, members: list[tuple[str, int, bool, Callable[[], IO[bytes] | None]]], max_bytes: int
) -> list[Path]:
    """Extract ``(name, size, is_dir, open)`` members of ``src`` under ``dest``: every name and the total size are
    checked before anything is written; returns the files written."""
    plan = []
    total = 0
    for name, size, is_dir, opener in members:
        path = safe_join(dest, name) if _parts(name) else None
        total += size
        _check_size(total, max_bytes, src)
        plan.append((name, path, is_dir, opener))
    dest.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, path, is_dir, opener in plan:
        if path is None:
            continue
        if is_dir:
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        safe_join(dest, name)  # re-check: a folder made above cannot be a link, but be strict
        fin = opener()
        if fin is None:
            continue
        with fin, open(path, "wb") as fout:
            shutil.copyfileobj(fin, fout)
        written.append(path)
    return written
