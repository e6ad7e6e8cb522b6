"""The manifest journal: per-process parts, merging (latest record wins), ownership of outputs by checksum."""

from __future__ import annotations

import json

from attnseg_monai.inference import MANIFEST_NAME, Manifest
from attnseg_monai.inference.manifest import merge_records
from attnseg_monai.io.atomic import sha256_file


def test_merge_keeps_the_latest_record_per_case():
    old = {"a": {"status": "failed", "updated_ns": 1}, "b": {"status": "done", "updated_ns": 5}}
    new = {"a": {"status": "done", "updated_ns": 2}, "b": {"status": "failed", "updated_ns": 4}}
    merged = merge_records(old, new)
    assert merged["a"]["status"] == "done" and merged["b"]["status"] == "done"


def test_two_writers_journal_separately_and_merge_into_one_manifest(tmp_path):
    out = tmp_path / "out"
    (out).mkdir()
    (out / "a_seg.png").write_bytes(b"a")
    (out / "b_seg.png").write_bytes(b"b")
    first, second = Manifest(out, rank=0, world_size=2), Manifest(out, rank=1, world_size=2)
    second.part_path = second.parts_dir / "other-host-r1.json"  # as if on another machine
    for m in (first, second):
        m.load()
    entry = {"path": "a_seg.png", "sha256": sha256_file(out / "a_seg.png"), "bytes": 1}
    first.update("a", status="done", input="/in/a.png", outputs={"seg": entry})
    second.update("b", status="failed", input="/in/b.png", outputs={}, error="empty file (0 bytes)")
    assert first.part_path.is_file() and second.part_path.is_file() and not (out / MANIFEST_NAME).exists()
    # a third process starting now sees both journals
    third = Manifest(out)
    third.load()
    assert third.get("a")["status"] == "done" and third.get("b")["error"] == "empty file (0 bytes)"
    assert third.written_by_us(out / "a_seg.png") is True
    assert third.written_by_us(out / "b_seg.png") is None
    (out / "a_seg.png").write_bytes(b"changed")
    assert third.written_by_us(out / "a_seg.png") is False
    assert third.verify_outputs(third.get("a")) == ([], ["seg"])
    counts = first.finalize()
    assert counts == {"done": 1, "failed": 1, "writing": 0}
    assert not first.part_path.exists() and second.part_path.exists()
    second.finalize(sole_writer=True)
    doc = json.loads((out / MANIFEST_NAME).read_text())
    assert set(doc["cases"]) == {"a", "b"} and not list(first.parts_dir.glob("*.json"))


def test_unreadable_manifest_is_moved_aside_not_trusted(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text("{not json")
    m = Manifest(tmp_path)
    m.load()
    assert m.records == {}
    assert list(tmp_path.glob(f"{MANIFEST_NAME}.unreadable-*"))
