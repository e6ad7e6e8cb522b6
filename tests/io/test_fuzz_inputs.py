"""Fuzzing the readers and the batch predictor with broken NIfTI/NRRD/DICOM/PNG/TIFF files (hypothesis).

Every broken file must end in an ``InputError`` naming it (or be read, when the damage left a valid file), never
another exception, a hang (hypothesis deadline) or an output file; a batch mixing them with good files segments the
good ones and lists each bad one with its reason.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from attnseg_monai.inference import BundlePredictor, load_bundle
from tests.inference.helpers import HANNET_OVERRIDES, QUIET, UNTRAINED, write_3d_bundle, write_png
from tests.io.fuzzing import FORMATS, KINDS, check_reader, make_case, seed_bytes

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EXAMPLES_PER_FORMAT = 12
_names = itertools.count()


@pytest.fixture(scope="module", autouse=True)
def _warm_readers(tmp_path_factory):
    """Import the readers and ITK once (the first read pays seconds of imports, which is no hang)."""
    folder = tmp_path_factory.mktemp("warm")
    for fmt in ("tiff", "nrrd", "dicom"):
        make_case(folder, fmt, "truncated", np.random.default_rng(0), name=f"warm{fmt.replace('.', '')}")
    for p in sorted(folder.iterdir()):
        check_reader(p)


@pytest.mark.parametrize("fmt", FORMATS)
def test_readers_refuse_broken_files_with_the_file_named(fmt: str, tmp_path: Path):
    outcomes: list[str] = []

    @settings(
        max_examples=EXAMPLES_PER_FORMAT,
        deadline=10_000,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(kind=st.sampled_from(KINDS), seed=st.integers(0, 2**32 - 1))
    def fuzz(kind: str, seed: int) -> None:
        path = make_case(tmp_path, fmt, kind, np.random.default_rng(seed), name=f"case{next(_names)}")
        outcome = check_reader(path)  # raises AssertionError on an escaped exception
        if kind in ("empty", "huge_header", "wrong_extension", "garbage"):
            assert outcome == "refused", f"{kind} {fmt} file was read: {path}"
        outcomes.append(outcome)

    fuzz()
    assert len(outcomes) == EXAMPLES_PER_FORMAT


def _corpus(folder: Path, formats: tuple[str, ...]) -> dict[str, str]:
    """One broken file per format and kind (fixed seeds); returns {input path: kind}."""
    out = {}
    for fmt in formats:
        for kind in KINDS:
            name = f"{fmt.replace('.', '_')}_{kind}"
            out[str(make_case(folder, fmt, kind, np.random.default_rng(7), name=name))] = kind
    return out


def _check_batch(summary, bad: dict[str, str], good: list[str], out: Path) -> None:
    failed = {f["input"]: f["error"] for f in summary.failed}
    for path, kind in bad.items():
        if path in failed:
            assert failed[path].strip(), path
        else:  # the damage left a valid file (e.g. flipped pixel bytes): it must have been segmented
            assert kind in ("flipped", "truncated"), (path, kind, summary.as_dict())
    assert sorted(summary.written) == sorted(good) or set(good) <= set(summary.written)
    written = {p.name for p in out.iterdir() if p.is_file()}
    failed_ids = {f["case"] for f in summary.failed}
    for name in written:
        assert not any(name.startswith(case + "_") for case in failed_ids), f"output {name} of a failed case"
        assert not name.endswith(".attnseg-tmp") and ".attnseg-tmp" not in name, name


@pytest.mark.timeout(300)
def test_2d_batch_fails_each_bad_file_and_writes_only_good_ones(tmp_path: Path):
    torch.manual_seed(0)
    parts = load_bundle("hannet", load_weights=False, checkpoint=UNTRAINED, overrides=HANNET_OVERRIDES)
    ckpt = tmp_path / "hannet_tiny.pt"
    torch.save(parts.network.state_dict(), ckpt)
    inputs = tmp_path / "in"
    bad = _corpus(inputs, ("png", "tiff"))
    write_png(inputs / "good.png", 40, 48)
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle("hannet", checkpoint=ckpt, overrides=HANNET_OVERRIDES)
    summary = predictor.predict_files(str(inputs), str(tmp_path / "out"), **QUIET)
    _check_batch(summary, bad, ["good"], tmp_path / "out")
    assert len(summary.failed) >= len(bad) - 2


@pytest.mark.timeout(300)
def test_3d_batch_fails_each_bad_volume_and_writes_only_good_ones(tmp_path: Path):
    root = write_3d_bundle(tmp_path / "ct_tiny")
    torch.manual_seed(0)
    parts = load_bundle(root, trust_bundle=True, load_weights=False)
    ckpt = tmp_path / "ct.pt"
    torch.save(parts.network.state_dict(), ckpt)
    inputs = tmp_path / "in"
    bad = _corpus(inputs, ("nii", "nii.gz", "nrrd", "dicom"))
    (inputs / "good.nii.gz").write_bytes(seed_bytes("nii.gz"))
    predictor = BundlePredictor(device="cpu")
    predictor.from_bundle(root, checkpoint=ckpt, trust_bundle=True)
    summary = predictor.predict_files(str(inputs), str(tmp_path / "out"), **QUIET)
    _check_batch(summary, bad, ["good"], tmp_path / "out")


def test_huge_headers_are_refused_before_allocating(tmp_path: Path):
    """Headers claiming 2^31-1 or 32767^3-sized images: refused from the header, without a MemoryError path."""
    from attnseg_monai.inference.errors import InputError
    from attnseg_monai.inference.readers import reader_for

    expected = {"nii": "the header describes (32767, 32767, 32767)", "png": "too large", "tiff": "too large"}
    for fmt, fragment in expected.items():
        path = make_case(tmp_path, fmt, "huge_header", np.random.default_rng(0), name=f"huge_{fmt}")
        with pytest.raises(InputError, match=re.escape(fragment)):
            reader_for(path).read(path)


def test_a_broken_slice_is_not_silently_dropped_from_a_dicom_series(tmp_path: Path):
    """Before the fix, GDCM left out the unparsable slice and the series was read with one slice less."""
    from attnseg_monai.inference.errors import InputError
    from attnseg_monai.inference.readers import reader_for

    series = make_case(tmp_path, "dicom", "garbage", np.random.default_rng(0), name="series")
    with pytest.raises(InputError, match=r"1 DICOM file\(s\) cannot be read as part of the series \(slice_000.dcm\)"):
        reader_for(series).read(series)
