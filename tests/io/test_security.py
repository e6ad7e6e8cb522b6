"""Malicious checkpoints are refused without running their code; archives and output names cannot escape."""

from __future__ import annotations

import io
import os
import pickle
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from attnseg_monai.handlers.checkpoint import find_resume_checkpoint, resume_checkpoint
from attnseg_monai.handlers.training import ResumableTraining
from attnseg_monai.inference import load_checkpoint
from attnseg_monai.inference.errors import CheckpointError
from attnseg_monai.io.checkpoint import UnsafeCheckpointError, load_checkpoint_file
from attnseg_monai.io.paths import UnsafePathError, safe_extract, safe_join


class _Payload:
    """Unpickling this calls ``exec`` with code that creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",))


def _malicious(tmp_path: Path, zip_format: bool) -> tuple[Path, Path]:
    marker = tmp_path / ("marker_zip" if zip_format else "marker_pickle")
    path = tmp_path / ("checkpoint_epoch=99.pt" if zip_format else "checkpoint_epoch=98.pt")
    payload = {
        "model": {"w": torch.ones(1)},
        "training_state": {"engine": {"iteration": 10**6, "epoch_length": 1}},
        "x": _Payload(marker),
    }
    if zip_format:
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))
    return path, marker


@pytest.mark.parametrize("zip_format", [True, False], ids=["torch-zip", "raw-pickle"])
def test_malicious_checkpoint_is_refused_and_never_runs(tmp_path: Path, zip_format: bool):
    path, marker = _malicious(tmp_path, zip_format)
    # control: the payload is live (plain unpickling runs it)
    control = tmp_path / "control"
    pickle.loads(pickle.dumps(_Payload(control)))
    assert control.read_text() == "pwned"

    with pytest.raises(UnsafeCheckpointError, match="refused"):
        load_checkpoint_file(path)
    with pytest.raises(UnsafeCheckpointError, match=path.name):
        resume_checkpoint(tmp_path, False, resume_from=str(path))
    assert find_resume_checkpoint(tmp_path) is None  # skipped although it claims the highest iteration
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path, torch.nn.Linear(1, 1))  # the predictor's loader
    state = ResumableTraining({"model": torch.nn.Linear(1, 1)}, checkpoint=str(path))
    with pytest.raises(UnsafeCheckpointError):
        state.resume(engine=None)  # refused before anything is touched
    assert not marker.exists()


def test_safe_join_refuses_escapes(tmp_path: Path):
    out = tmp_path / "out"
    out.mkdir()
    assert safe_join(out, "case_1", "seg.nii.gz") == out.resolve() / "case_1" / "seg.nii.gz"
    assert safe_join(out, "./a/./b.png") == out.resolve() / "a" / "b.png"
    for bad in ("../x.png", "a/../../x", "/etc/passwd", "\\\\server\\share\\x", "C:\\x.png", "..\\x", "a\x00b", ""):
        with pytest.raises(UnsafePathError):
            safe_join(out, bad)
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "link")
    with pytest.raises(UnsafePathError, match="outside"):
        safe_join(out, "link", "x.png")


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def _tar(path: Path, members: dict[str, bytes], link: tuple[str, str] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        if link is not None:
            info = tarfile.TarInfo(link[0])
            info.type = tarfile.SYMTYPE
            info.linkname = link[1]
            tf.addfile(info)
    return path


def test_safe_extract_good_archives(tmp_path: Path):
    members = {"bundle/configs/a.json": b"{}", "bundle/models/m.pt": b"x" * 10}
    for archive in (_zip(tmp_path / "a.zip", members), _tar(tmp_path / "a.tar.gz", members)):
        dest = tmp_path / ("x" + archive.suffix)
        written = safe_extract(archive, dest)
        assert sorted(p.relative_to(dest).as_posix() for p in written) == sorted(members)


@pytest.mark.parametrize("name", ["../evil.txt", "a/../../evil.txt", "/tmp/evil_abs.txt", "..\\evil.txt"])
@pytest.mark.parametrize("kind", ["zip", "tar"])
def test_safe_extract_refuses_traversal_and_writes_nothing(tmp_path: Path, name: str, kind: str):
    members = {"ok.txt": b"fine", name: b"evil"}
    archive = _zip(tmp_path / "a.zip", members) if kind == "zip" else _tar(tmp_path / "a.tar.gz", members)
    dest = tmp_path / "dest"
    with pytest.raises(UnsafePathError):
        safe_extract(archive, dest)
    assert not dest.exists()  # checked before the first byte is written
    assert not (tmp_path / "evil.txt").exists() and not Path("/tmp/evil_abs.txt").exists()


def test_safe_extract_refuses_links_and_bombs(tmp_path: Path):
    archive = _tar(tmp_path / "l.tar.gz", {"a.txt": b"a"}, link=("link", "/etc"))
    with pytest.raises(UnsafePathError, match="link"):
        safe_extract(archive, tmp_path / "d1")
    archive = _zip(tmp_path / "big.zip", {"big.bin": b"\0" * 100_000})
    with pytest.raises(UnsafePathError, match="limit"):
        safe_extract(archive, tmp_path / "d2", max_bytes=50_000)
    with pytest.raises(ValueError, match="not a zip or tar"):
        safe_extract(_write(tmp_path / "n.bin", b"nope"), tmp_path / "d3")


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_predictor_output_names_cannot_escape(tmp_path: Path):
    from attnseg_monai.io.paths import output_path

    out = tmp_path / "out"
    out.mkdir()
    for case in ("../../x", "/abs/x", "..", ".hidden", "a/b"):
        try:
            path = output_path(out, case, "seg", ".nii.gz")
        except ValueError:
            continue
        assert out.resolve() in path.resolve().parents, path
