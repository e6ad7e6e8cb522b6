"""Bad input files for the fuzz tests: valid seeds per format and the ways to break them.

Formats: PNG, TIFF, NIfTI (``.nii``, ``.nii.gz``), NRRD, DICOM (a series folder; one slice is broken). Kinds:
``truncated`` (cut at a drawn offset), ``empty``, ``garbage`` (drawn random bytes), ``flipped`` (drawn bytes of the
seed overwritten), ``huge_header`` (the header claims 2^31-1 or 65535-sized dimensions, the data stays small),
``wrong_extension`` (a valid file of another format under this ending), ``garbage_prefix`` (junk before a valid
file). Run as a script to print outcome counts per format and kind::

    python -m tests.io.fuzzing --examples 40
"""

from __future__ import annotations

import gzip
import io
import re
import struct
import zlib
from pathlib import Path

import nibabel as nib
import numpy as np
from PIL import Image

__all__ = ["FORMATS", "KINDS", "break_file", "check_reader", "make_case", "seed_bytes"]

FORMATS = ("png", "tiff", "nii", "nii.gz", "nrrd", "dicom")
KINDS = ("truncated", "empty", "garbage", "flipped", "huge_header", "wrong_extension", "garbage_prefix")
_SEEDS: dict[str, bytes] = {}


def _png(bits16: bool = False) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    if bits16:
        Image.fromarray(rng.integers(0, 65535, (12, 10), dtype=np.uint16)).save(buf, format="PNG")
    else:
        Image.fromarray(rng.integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _tiff() -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (12, 10, 3), dtype=np.uint8)).save(buf, format="TIFF")
    return buf.getvalue()


def _nifti(gz: bool) -> bytes:
    img = nib.Nifti1Image(np.random.default_rng(2).random((6, 5, 4), dtype=np.float32), np.eye(4))
    raw = img.to_bytes()
    return gzip.compress(raw, mtime=0) if gz else raw


def _nrrd() -> bytes:
    data = np.random.default_rng(3).integers(0, 1000, (4, 5, 6), dtype=np.int16)
    header = (
        "NRRD0004\ntype: short\ndimension: 3\nspace: left-posterior-superior\nsizes: 6 5 4\n"
        "space directions: (1,0,0) (0,1,0) (0,0,2)\nkinds: domain domain domain\nendian: little\n"
        "encoding: raw\nspace origin: (0,0,0)\n\n"
    )
    return header.encode() + data.astype("<i2").tobytes()


def _dicom_slice(z: int, rows: int = 8, columns: int = 8, series: str = "1.2.826.0.1.3680043.8.498.1") -> bytes:
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{z}"
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("slice", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyInstanceUID = "1.2.826.0.1.3680043.8.498.3"
    ds.SeriesInstanceUID = series
    ds.Modality, ds.PatientName, ds.PatientID = "CT", "fuzz", "0"
    ds.Rows, ds.Columns = rows, columns
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.ImagePositionPatient = [0, 0, float(z)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.PixelSpacing = [1, 1]
    ds.SliceThickness = 1
    ds.InstanceNumber = z + 1
    ds.PixelData = (np.arange(64, dtype=np.uint16) + z).tobytes()
    ds.is_little_endian, ds.is_implicit_VR = True, False
    buf = io.BytesIO()
    ds.save_as(buf, write_like_original=False)
    return buf.getvalue()


def seed_bytes(fmt: str) -> bytes:
    """A small valid file of ``fmt`` (for DICOM: one slice of a 2-slice series)."""
    if fmt not in _SEEDS:
        makers = {
            "png": _png,
            "tiff": _tiff,
            "nii": lambda: _nifti(False),
            "nii.gz": lambda: _nifti(True),
            "nrrd": _nrrd,
            "dicom": lambda: _dicom_slice(0),
        }
        _SEEDS[fmt] = makers[fmt]()
    return _SEEDS[fmt]


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _huge(fmt: str, seed: bytes) -> bytes:
    if fmt == "png":  # IHDR claims 2^31-1 x 2^31-1 with a valid CRC; the pixel data stays 12 x 10
        ihdr = struct.pack(">IIBBBBB", 2**31 - 1, 2**31 - 1, 8, 2, 0, 0, 0)
        return seed[:8] + _png_chunk(b"IHDR", ihdr) + seed[33:]
    if fmt == "tiff":  # ImageWidth / ImageLength tags set to 2^31-1 (SHORT tags become LONG)
        data = bytearray(seed)
        (offset,) = struct.unpack("<I", data[4:8])
        (count,) = struct.unpack("<H", data[offset : offset + 2])
        for i in range(count):
            at = offset + 2 + 12 * i
            tag, _typ = struct.unpack("<HH", data[at : at + 4])
            if tag in (256, 257):
                data[at + 2 : at + 12] = struct.pack("<HII", 4, 1, 2**31 - 1)
        return bytes(data)
    if fmt in ("nii", "nii.gz"):  # dim[1..3] = 32767 (the int16 maximum), data left small
        raw = bytearray(gzip.decompress(seed) if fmt == "nii.gz" else seed)
        raw[40:56] = struct.pack("<8h", 3, 32767, 32767, 32767, 1, 1, 1, 1)
        return gzip.compress(bytes(raw), mtime=0) if fmt == "nii.gz" else bytes(raw)
    if fmt == "nrrd":
        return re.sub(rb"sizes: [0-9 ]+", b"sizes: 2147483647 2147483647 2147483647", seed, count=1)
    if fmt == "dicom":  # Rows/Columns 65535 with 64 pixels of data
        return _dicom_slice(0, rows=65535, columns=65535)
    raise ValueError(fmt)


_OTHER = {"png": "nii", "tiff": "png", "nii": "png", "nii.gz": "tiff", "nrrd": "png", "dicom": "png"}


def break_file(fmt: str, kind: str, rng: np.random.Generator) -> bytes:
    """The bytes of a broken ``fmt`` file of ``kind``, drawing offsets and junk from ``rng``."""
    seed = seed_bytes(fmt)
    if kind == "truncated":
        return seed[: int(rng.integers(1, len(seed)))]
    if kind == "empty":
        return b""
    if kind == "garbage":
        return rng.bytes(int(rng.integers(1, 4096)))
    if kind == "flipped":
        data = bytearray(seed)
        for _ in range(int(rng.integers(1, 16))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        return bytes(data)
    if kind == "huge_header":
        return _huge(fmt, seed)
    if kind == "wrong_extension":
        return seed_bytes(_OTHER[fmt])
    if kind == "garbage_prefix":
        return rng.bytes(int(rng.integers(1, 300))) + seed
    raise ValueError(kind)


def make_case(folder: Path, fmt: str, kind: str, rng: np.random.Generator, name: str = "case") -> Path:
    """Write a broken input of ``fmt``/``kind`` under ``folder``; returns the file (or the DICOM series folder)."""
    folder.mkdir(parents=True, exist_ok=True)
    data = break_file(fmt, kind, rng)
    if fmt == "dicom":
        series = folder / name
        series.mkdir()
        (series / "slice_000.dcm").write_bytes(data)
        (series / "slice_001.dcm").write_bytes(_dicom_slice(1))
        return series
    path = folder / f"{name}.{fmt}"
    path.write_bytes(data)
    return path


def check_reader(path: Path) -> str:
    """Read ``path`` through the predictor's reader; ``"read"`` or ``"refused"`` (an InputError naming the file).

    Raises:
        AssertionError: any other exception, or an error message that does not name the file.
    """
    from attnseg_monai.inference.errors import InputError
    from attnseg_monai.inference.readers import reader_for

    try:
        img = reader_for(path).read(path)
    except InputError as exc:
        assert str(path) in str(exc), f"error does not name the file: {exc}"
        assert exc.reason.strip(), "empty reason"
        return "refused"
    except Exception as exc:  # noqa: BLE001 - this is the failure the fuzzing looks for
        raise AssertionError(f"{path}: {type(exc).__name__} escaped the reader: {exc}") from exc
    assert img.numel() > 0
    return "read"


def main() -> None:
    import argparse
    import collections
    import tempfile
    import time

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--examples", type=int, default=20, help="files per format and kind (drawn kinds only)")
    args = parser.parse_args()
    counts: dict[tuple[str, str], collections.Counter] = collections.defaultdict(collections.Counter)
    start = time.perf_counter()
    slowest = (0.0, "")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in FORMATS:
            for kind in KINDS:
                n = args.examples if kind in ("truncated", "garbage", "flipped", "garbage_prefix") else 1
                for i in range(n):
                    rng = np.random.default_rng(i)
                    path = make_case(Path(tmp) / f"{fmt}-{kind}", fmt, kind, rng, name=f"c{i}")
                    t = time.perf_counter()
                    try:
                        outcome = check_reader(path)
                    except AssertionError as exc:
                        outcome = f"BUG: {exc}"
                    slowest = max(slowest, (time.perf_counter() - t, str(path)))
                    counts[(fmt, kind)][outcome if not outcome.startswith("BUG") else "bug"] += 1
                    if outcome.startswith("BUG"):
                        print(outcome)
    total = collections.Counter()
    print("| format | kind | files | refused (InputError naming the file) | read (valid after the change) | bugs |")
    print("|---|---|---|---|---|---|")
    for (fmt, kind), c in counts.items():
        total.update(c)
        print(f"| {fmt} | {kind} | {sum(c.values())} | {c['refused']} | {c['read']} | {c['bug']} |")
    print(f"total: {sum(total.values())} files, {dict(total)}; {time.perf_counter() - start:.1f} s; slowest {slowest}")


if __name__ == "__main__":
    main()
