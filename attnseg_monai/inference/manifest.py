"""The manifest of an output folder: what was segmented, into which files, with which checksum, and what failed.

Layout inside the output folder::

    attnseg_manifest.json          the merged manifest (written atomically)
    .attnseg/parts/<host>-<pid>-r<rank>.json   one journal per running process (written atomically after each case)
    .attnseg/manifest.lock         lock file for merging
    .attnseg/replaced/             outputs the manifest wrote but that changed since, moved aside before a redo

Each case record (keyed by case id)::

    {"case": "img_01", "input": "/data/img_01.png", "input_bytes": 1234, "input_mtime_ns": ...,
     "kind": "image" | "wsi", "status": "done" | "failed" | "writing",
     "outputs": {"classes": {"path": "img_01_classes.png", "sha256": "...", "bytes": 321}, ...},
     "error": null | "reason", "rank": 0, "host": "node1", "seconds": 1.2,
     "updated": "2026-01-01T10:00:00.000000+00:00", "updated_ns": ..., "bundle": "hannet",
     "bundle_version": "0.1.0", "checkpoint_sha256": "...", "settings": {...}}

A case is committed in three steps: every output is written to a temporary file and hashed; the record is saved as
``"writing"`` with those checksums; the files are renamed into place; the record becomes ``"done"``. A crash at any
point leaves either temporary files (removed on the next run) or a ``"writing"`` record whose outputs are checked
file by file, so a partial output is never counted as done.

Sharded runs: each process journals its own records in its part file (no locking during the run, nothing shared is
rewritten by two processes). When a process finishes it takes the lock, merges the main manifest, every part file
and its own records (per case, the most recent record wins) and writes the main manifest atomically; the last
process to finish therefore leaves the complete manifest. Under ``torchrun`` the processes also meet at a barrier
and rank 0 merges last. Part files of processes that were killed stay until a run without concurrent processes
(a single process, or rank 0 after the barrier) merges and removes them; every run reads them, so nothing is lost.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..io.atomic import atomic_write_json, sha256_file

__all__ = ["MANIFEST_FORMAT", "MANIFEST_NAME", "MANIFEST_VERSION", "STATE_DIR", "Manifest", "merge_records"]

logger = logging.getLogger(__name__)

MANIFEST_NAME = "attnseg_manifest.json"
STATE_DIR = ".attnseg"
MANIFEST_FORMAT = "attnseg-manifest"
MANIFEST_VERSION = 1
STATUSES = ("done", "failed", "writing")


def _now() -> tuple[str, int]:
    ns = time.time_ns()
    iso = _dt.datetime.fromtimestamp(ns / 1e9, tz=_dt.timezone.utc).isoformat(timespec="microseconds")
    return iso, ns


def merge_records(*sources: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Merge case records: per case id, the record with the largest ``updated_ns`` wins (later sources win ties)."""
    out: dict[str, dict[str, Any]] = {}
    for source in sources:
        for case, record in source.items():
            old = out.get(case)
            if old is None or int(record.get("updated_ns", 0)) >= int(old.get("updated_ns", 0)):
                out[case] = dict(record)
    return out


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as handle:
        try:
            import fcntl
        except ImportError:  # no advisory locks on this platform: merges are still atomic
            yield
            return
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


class Manifest:
    """Read, journal and merge the manifest of one output folder (see the module docstring for the format).

    Args:
        output_dir: the output folder.
        rank: this process's rank (recorded in each record).
        world_size: number of processes sharing the folder.
        info: run information stored at the top of the manifest (bundle, settings).

    Example::

        >>> m = Manifest("out/")                    # 2D PNG outputs or 3D NIfTI outputs alike
        >>> m.load()
        >>> m.update("case1", status="done", input="/in/case1.png", outputs={})
        >>> m.finalize()
    """

    def __init__(
        self, output_dir: str | os.PathLike, *, rank: int = 0, world_size: int = 1, info: dict | None = None
    ) -> None:
        self.output_dir = Path(output_dir).absolute()
        self.path = self.output_dir / MANIFEST_NAME
        self.state_dir = self.output_dir / STATE_DIR
        self.parts_dir = self.state_dir / "parts"
        self.rank = int(rank)
        self.world_size = int(world_size)
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.part_path = self.parts_dir / f"{_safe_host(self.host)}-{self.pid}-r{self.rank}.json"
        self.info = dict(info or {})
        self.records: dict[str, dict[str, Any]] = {}
        self.touched: dict[str, dict[str, Any]] = {}
        self._owned: dict[str, str] = {}
        self._sha_cache: dict[tuple[str, int, int], str] = {}

    # ------------------------------------------------------------------ reading
    def _read(self, path: Path) -> dict[str, dict[str, Any]]:
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(content, dict) or content.get("format") != MANIFEST_FORMAT:
                raise ValueError("not an attnseg manifest")
            cases = content.get("cases", {})
            if not isinstance(cases, dict):
                raise ValueError("'cases' is not an object")
            return cases
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            aside = path.with_name(f"{path.name}.unreadable-{int(time.time())}")
            logger.warning("manifest %s is unreadable (%s); moved to %s and ignored.", path, exc, aside)
            with contextlib.suppress(OSError):
                os.replace(path, aside)
            return {}

    def _read_all(self) -> dict[str, dict[str, Any]]:
        sources = [self._read(self.path)]
        if self.parts_dir.is_dir():
            for part in sorted(self.parts_dir.glob("*.json")):
                sources.append(self._read(part))
        return merge_records(*sources)

    def load(self) -> None:
        """Read the main manifest and every part file (records of earlier and concurrent runs)."""
        self.records = merge_records(self._read_all(), self.touched)
        self._index()

    def _index(self) -> None:
        self._owned = {}
        for record in self.records.values():
            for out in (record.get("outputs") or {}).values():
                if isinstance(out, dict) and out.get("path") and out.get("sha256"):
                    self._owned[out["path"]] = out["sha256"]

    def get(self, case_id: str) -> dict[str, Any] | None:
        """The latest record of ``case_id``, or ``None``."""
        return self.records.get(case_id)

    # ------------------------------------------------------------------ checksums
    def file_sha256(self, path: str | os.PathLike) -> str | None:
        """SHA-256 of a file (cached by size and modification time), ``None`` if it does not exist."""
        p = Path(path)
        try:
            st = p.stat()
        except FileNotFoundError:
            return None
        key = (str(p), st.st_size, st.st_mtime_ns)
        if key not in self._sha_cache:
            self._sha_cache[key] = sha256_file(p)
        return self._sha_cache[key]

    def relative(self, path: str | os.PathLike) -> str:
        """``path`` relative to the output folder, with ``/`` separators.

        Raises:
            ValueError: if ``path`` is outside the output folder.
        """
        p = Path(path).absolute()
        try:
            rel = p.relative_to(self.output_dir)
        except ValueError as exc:
            raise ValueError(f"{p} is outside the output folder {self.output_dir}.") from exc
        return rel.as_posix()

    def written_by_us(self, path: str | os.PathLike) -> bool | None:
        """Whether the file at ``path`` is one this manifest wrote: ``True`` (listed, same checksum), ``False`` (listed
        but changed since), ``None`` (not listed)."""
        rel = self.relative(path)
        if rel not in self._owned:
            return None
        return self.file_sha256(path) == self._owned[rel]

    def verify_outputs(self, record: Mapping[str, Any]) -> tuple[list[str], list[str]]:
        """``(missing, changed)`` output names of a record: files absent, and files whose checksum differs."""
        missing, changed = [], []
        for name, out in (record.get("outputs") or {}).items():
            sha = self.file_sha256(self.output_dir / out["path"])
            if sha is None:
                missing.append(name)
            elif sha != out.get("sha256"):
                changed.append(name)
        return missing, changed

    def move_aside(self, path: str | os.PathLike) -> Path:
        """Move a changed output out of the way (into ``.attnseg/replaced/``) instead of overwriting it."""
        p = Path(path)
        target = self.state_dir / "replaced" / f"{int(time.time())}-{p.name}"
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(p), str(target))
        logger.warning("%s changed since it was written; moved to %s before writing it again.", p, target)
        return target

    # ------------------------------------------------------------------ writing
    def update(self, case_id: str, **fields: Any) -> dict[str, Any]:
        """Replace the record of ``case_id`` (``status`` is required) and journal it in this process's part file."""
        status = fields.get("status")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}.")
        iso, ns = _now()
        record = {"case": case_id, **fields, "rank": self.rank, "host": self.host, "updated": iso, "updated_ns": ns}
        self.records[case_id] = record
        self.touched[case_id] = record
        for out in (record.get("outputs") or {}).values():
            if isinstance(out, dict) and out.get("path") and out.get("sha256"):
                self._owned[out["path"]] = out["sha256"]
        self._write_part()
        return record

    def _document(self, cases: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
        iso, _ = _now()
        counts = {s: 0 for s in STATUSES}
        for record in cases.values():
            counts[record.get("status", "failed")] = counts.get(record.get("status", "failed"), 0) + 1
        return {
            "format": MANIFEST_FORMAT,
            "version": MANIFEST_VERSION,
            "updated": iso,
            "info": self.info,
            **extra,
            "counts": counts,
            "cases": dict(sorted(cases.items())),
        }

    def _write_part(self) -> None:
        doc = self._document(self.touched, rank=self.rank, world_size=self.world_size, host=self.host, pid=self.pid)
        atomic_write_json(self.part_path, doc)

    def finalize(self, *, sole_writer: bool = False) -> dict[str, int]:
        """Merge everything into the main manifest (under the lock) and remove this process's part file.

        Args:
            sole_writer: no other process can be writing to this folder (a single process, or rank 0 after a
                barrier): part files of earlier, interrupted runs are merged and removed too.

        Returns:
            the counts of records by status in the merged manifest.
        """
        with _file_lock(self.state_dir / "manifest.lock"):
            merged = merge_records(self._read_all(), self.touched)
            doc = self._document(merged)
            atomic_write_json(self.path, doc)
            self.records = merged
            self._index()
            with contextlib.suppress(FileNotFoundError):
                self.part_path.unlink()
            if sole_writer and self.parts_dir.is_dir():
                for part in self.parts_dir.glob("*.json"):
                    with contextlib.suppress(OSError):
                        part.unlink()
        return dict(doc["counts"])


def _safe_host(host: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in host)[:64] or "host"
