"""Embedded default data of the CT bundles: generated abdominal CT phantoms in the real data sets' layouts.

* :func:`make_pancreas_sample` (Attention U-Net, seed 004): the Medical Segmentation Decathlon Task07 layout,
  ``dataset.json`` + ``imagesTr/`` + ``labelsTr/`` + ``imagesTs/``; labels 0 background, 1 pancreas, 2 cancer.
* :func:`make_synapse_sample` (DANIE, seed 003): the raw BTCV layout, ``img/img0001.nii.gz`` +
  ``label/label0001.nii.gz`` with the 13 BTCV organ ids.
* :func:`make_synapse_transunet_sample` (DANIE): the same phantoms preprocessed the TransUNet way
  (``train_npz/caseXXXX_sliceYYY.npz``, ``test_vol_h5/caseXXXX.npy.h5``, ``lists/lists_Synapse/*.txt``).

The phantoms are drawn by :func:`~attnseg_monai.data.ct_phantom.render_ct_phantom`. Generation is deterministic:
pancreas training case ``i`` (``pancreas_{i+1:03d}``) is drawn from ``numpy.random.default_rng([seed, 4, 0, i])``
and test case ``j`` from ``[seed, 4, 1, j]``; BTCV case ``n`` (``img{n:04d}``, ``case{n:04d}``) from
``[seed, 5, n]``, so the TransUNet sample holds the very phantoms of the raw sample, and the first cases never
depend on how many are made. Writing goes through the same machinery as the 2D samples
(:mod:`attnseg_monai.data.samples`): atomic files, a manifest with every file's SHA-256 written last, a complete
sample is not generated again, and files that differ from what would be written are never overwritten.
"""

from __future__ import annotations

import io
import os
import zipfile
from collections.abc import Iterator, Sequence
from typing import Any

import h5py
import numpy as np

from ..io.atomic import encode_json
from .ct_labels import MSD_PANCREAS_LABELS, btcv_to_synapse8
from .ct_phantom import DEFAULT_SHAPE, DEFAULT_SPACING, CTPhantom, encode_nifti, render_ct_phantom
from .samples import _check_count, _materialise, _pixels_sha, _Plan

__all__ = [
    "TRANSUNET_HU_WINDOW",
    "TRANSUNET_TEST_CASES",
    "TRANSUNET_TRAIN_CASES",
    "make_pancreas_sample",
    "make_synapse_sample",
    "make_synapse_transunet_sample",
    "transunet_preprocess",
]

#: BTCV training cases TransUNet trains on (18) and tests on (12), as in its ``lists_Synapse`` files.
TRANSUNET_TRAIN_CASES: tuple[int, ...] = (5, 6, 7, 9, 10, 21, 23, 24, 26, 27, 28, 30, 31, 33, 34, 37, 39, 40)
TRANSUNET_TEST_CASES: tuple[int, ...] = (1, 2, 3, 4, 8, 22, 25, 29, 32, 35, 36, 38)
#: HU window of TransUNet's preprocessing: clipped to it, then scaled to [0, 1].
TRANSUNET_HU_WINDOW: tuple[float, float] = (-125.0, 275.0)

_DESCRIPTION = "attnseg-monai generated CT phantom (no patient data)"


def _geometry(shape: Sequence[int], spacing: Sequence[float]) -> tuple[list[int], list[float]]:
    if len(shape) != 3 or any(int(n) != n for n in shape) or min(shape[:2]) < 32 or shape[2] < 16:
        raise ValueError(f"shape must be three integers, at least (32, 32, 16); got {tuple(shape)}.")
    if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}.")
    return [int(n) for n in shape], [float(s) for s in spacing]


def _nifti_plan(rel: str, array: np.ndarray, affine: np.ndarray) -> _Plan:
    return rel, lambda: (encode_nifti(array, affine, description=_DESCRIPTION), _pixels_sha(array))


def _pancreas_label(phantom: CTPhantom) -> np.ndarray:
    label = (phantom.label == 11).astype(np.uint8)
    if phantom.tumour is not None:
        label[phantom.tumour] = 2
    return label


def make_pancreas_sample(
    out_dir: str | os.PathLike,
    num_cases: int = 6,
    seed: int = 0,
    *,
    num_test: int = 2,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
) -> list[dict[str, str]]:
    """Write the pancreas sample (Attention U-Net's embedded default) in the MSD Task07 layout.

    Layout::

        out_dir/
          dataset.json                      MSD style: name, modality {"0": "CT"}, labels, training, test
          imagesTr/pancreas_001.nii.gz      int16 HU
          labelsTr/pancreas_001.nii.gz      uint8: 0 background, 1 pancreas, 2 cancer
          imagesTs/pancreas_101.nii.gz      test images, no labels
          attnseg_sample.json               manifest (written last)

    Training cases ``i`` with ``i % 3 != 2`` have a hypo-attenuating tumour in the pancreatic head or body (label 2);
    the others have none. About 1.9 MB and 0.6 s of CPU time per case at the default shape.

    Args:
        out_dir: target folder (created).
        num_cases: number of training cases (>= 1).
        seed: base seed (>= 0).
        num_test: number of test images in ``imagesTs`` (>= 0), numbered from 101.
        shape: array shape (I, J, K) of every case, at least (32, 32, 16).
        spacing: voxel size in mm.

    Returns:
        the training items ``[{"image": path, "label": path}, ...]`` (absolute paths), as
        ``read_dataset(out_dir, layout="msd")`` returns them.

    Raises:
        ValueError: for bad counts, shapes or spacings.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_cases", num_cases, 1)
    _check_count("num_test", num_test, 0)
    _check_count("seed", seed, 0)
    shape_, spacing_ = _geometry(shape, spacing)
    spec = {
        "sample": "ct_pancreas_msd",
        "version": 1,
        "seed": seed,
        "num_cases": num_cases,
        "num_test": num_test,
        "shape": shape_,
        "spacing": spacing_,
    }
    train = [f"pancreas_{i + 1:03d}.nii.gz" for i in range(num_cases)]
    test = [f"pancreas_{101 + j:03d}.nii.gz" for j in range(num_test)]
    pairs = [(f"imagesTr/{name}", f"labelsTr/{name}") for name in train]
    dataset = {
        "name": "Pancreas",
        "description": "Pancreas and pancreatic tumour segmentation: generated CT phantoms in the MSD Task07 "
        "layout (attnseg_monai.data.make_pancreas_sample); no patient data",
        "reference": "attnseg-monai",
        "licence": "Apache-2.0 (generated by attnseg-monai)",
        "release": "1.0",
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {str(k): v for k, v in MSD_PANCREAS_LABELS.items()},
        "numTraining": num_cases,
        "numTest": num_test,
        "training": [{"image": f"./{img}", "label": f"./{lab}"} for img, lab in pairs],
        "test": [f"./imagesTs/{name}" for name in test],
    }

    def plans() -> Iterator[_Plan]:
        yield "dataset.json", lambda: (encode_json(dataset), None)
        for i, (image_rel, label_rel) in enumerate(pairs):
            phantom = render_ct_phantom(np.random.default_rng([seed, 4, 0, i]), shape_, spacing_, tumour=(i % 3 != 2))
            yield _nifti_plan(image_rel, phantom.image, phantom.affine)
            yield _nifti_plan(label_rel, _pancreas_label(phantom), phantom.affine)
        for j, name in enumerate(test):
            phantom = render_ct_phantom(np.random.default_rng([seed, 4, 1, j]), shape_, spacing_, tumour=True)
            yield _nifti_plan(f"imagesTs/{name}", phantom.image, phantom.affine)

    return _materialise(out_dir, spec, plans(), pairs)


def _btcv_case(seed: int, case: int, shape: list[int], spacing: list[float]) -> CTPhantom:
    return render_ct_phantom(np.random.default_rng([seed, 5, case]), shape, spacing)


def make_synapse_sample(
    out_dir: str | os.PathLike,
    num_cases: int = 6,
    seed: int = 0,
    *,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
) -> list[dict[str, str]]:
    """Write the Synapse multi-organ sample (DANIE's embedded default) in the raw BTCV layout.

    Layout::

        out_dir/
          img/img0001.nii.gz        int16 HU
          label/label0001.nii.gz    uint8 BTCV ids 0..13 (all 13 organs; map them with btcv_to_synapse8)
          attnseg_sample.json       manifest (written last)

    Args:
        out_dir: target folder (created).
        num_cases: number of cases (>= 1), numbered 1..num_cases.
        seed: base seed (>= 0).
        shape: array shape (I, J, K) of every case, at least (32, 32, 16).
        spacing: voxel size in mm.

    Returns:
        ``[{"image": path, "label": path}, ...]`` (absolute paths), as ``read_dataset(out_dir, layout="btcv")``
        returns them.

    Raises:
        ValueError: for bad counts, shapes or spacings.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_cases", num_cases, 1)
    _check_count("seed", seed, 0)
    shape_, spacing_ = _geometry(shape, spacing)
    spec = {
        "sample": "ct_synapse_btcv",
        "version": 1,
        "seed": seed,
        "num_cases": num_cases,
        "shape": shape_,
        "spacing": spacing_,
    }
    cases = list(range(1, num_cases + 1))
    pairs = [(f"img/img{n:04d}.nii.gz", f"label/label{n:04d}.nii.gz") for n in cases]

    def plans() -> Iterator[_Plan]:
        for n, (image_rel, label_rel) in zip(cases, pairs):
            phantom = _btcv_case(seed, n, shape_, spacing_)
            yield _nifti_plan(image_rel, phantom.image, phantom.affine)
            yield _nifti_plan(label_rel, phantom.label, phantom.affine)

    return _materialise(out_dir, spec, plans(), pairs)


def transunet_preprocess(image_hu: np.ndarray, label_btcv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TransUNet's preprocessing of one BTCV volume: HU clipped to [-125, 275] and scaled to [0, 1]; labels mapped to
    the 8 Synapse classes; axes reversed from the NIfTI array order (I, J, K) to (K, J, I), slices first.

    With the reversal a stored slice ``image[k]`` is indexed (row, column) = (J, I), the usual radiological view of
    an LPS-ordered series, and :class:`~attnseg_monai.data.ct_layouts.TransUNetNpzReader` (which reverses the axes
    back by default) loads it in the same (I, J) order as the raw NIfTI slice.

    Args:
        image_hu: (I, J, K) HU values.
        label_btcv: (I, J, K) BTCV ids 0..13.

    Returns:
        ``(image, label)``: float32 arrays of shape (K, J, I); labels hold 0..8.

    Raises:
        ValueError: if the shapes differ or are not 3D.
    """
    if image_hu.ndim != 3 or image_hu.shape != label_btcv.shape:
        raise ValueError(f"expected two 3D arrays of one shape, got {image_hu.shape} and {label_btcv.shape}.")
    low, high = TRANSUNET_HU_WINDOW
    image = (np.clip(image_hu.astype(np.float32), low, high) - low) / (high - low)
    label = btcv_to_synapse8(np.asarray(label_btcv)).astype(np.float32)
    return np.ascontiguousarray(image.transpose(2, 1, 0)), np.ascontiguousarray(label.transpose(2, 1, 0))


def _encode_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """``numpy.savez_compressed`` bytes with fixed zip timestamps, so equal arrays give equal bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in arrays.items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.ascontiguousarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def _encode_h5(arrays: dict[str, np.ndarray]) -> bytes:
    """An HDF5 file with one dataset per array (h5py does not record times by default: equal arrays, equal bytes)."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        for key, array in arrays.items():
            handle.create_dataset(key, data=array)
    return buffer.getvalue()


def make_synapse_transunet_sample(
    out_dir: str | os.PathLike,
    num_train_cases: int = 2,
    num_test_cases: int = 1,
    seed: int = 0,
    *,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
) -> list[dict[str, Any]]:
    """Write the Synapse phantoms in TransUNet's preprocessed layout (see :func:`transunet_preprocess`).

    Layout::

        out_dir/
          train_npz/case0005_slice000.npz     "image" (J, I) float32 in [0, 1], "label" (J, I) float32 0..8
          test_vol_h5/case0001.npy.h5         "image" (K, J, I) float32, "label" (K, J, I) float32
          lists/lists_Synapse/train.txt       one slice name per line (case0005_slice000)
          lists/lists_Synapse/test_vol.txt    one case name per line (case0001)
          attnseg_sample.json                 manifest (written last)

    Training cases are the first ``num_train_cases`` of :data:`TRANSUNET_TRAIN_CASES` (5, 6, ...), test cases the
    first ``num_test_cases`` of :data:`TRANSUNET_TEST_CASES` (1, 2, ...); case ``n`` is the phantom
    ``img{n:04d}`` of :func:`make_synapse_sample` with the same seed, shape and spacing. Every slice of a training
    case becomes one ``.npz`` file.

    Args:
        out_dir: target folder (created).
        num_train_cases: number of training volumes cut into slices (1..18).
        num_test_cases: number of test volumes (0..12).
        seed: base seed (>= 0).
        shape: array shape (I, J, K) of every case, at least (32, 32, 16).
        spacing: voxel size in mm (not stored: the TransUNet files carry no geometry).

    Returns:
        the training items (one per slice), as ``read_dataset(out_dir, layout="transunet")`` returns them.

    Raises:
        ValueError: for bad counts, shapes or spacings.
        DatasetError: if files in ``out_dir`` differ from what would be written (nothing of theirs is touched).
    """
    _check_count("num_train_cases", num_train_cases, 1)
    _check_count("num_test_cases", num_test_cases, 0)
    _check_count("seed", seed, 0)
    if num_train_cases > len(TRANSUNET_TRAIN_CASES) or num_test_cases > len(TRANSUNET_TEST_CASES):
        raise ValueError(
            f"TransUNet's split has {len(TRANSUNET_TRAIN_CASES)} training and {len(TRANSUNET_TEST_CASES)} test "
            f"cases; got num_train_cases={num_train_cases}, num_test_cases={num_test_cases}."
        )
    shape_, spacing_ = _geometry(shape, spacing)
    spec = {
        "sample": "ct_synapse_transunet",
        "version": 1,
        "seed": seed,
        "num_train_cases": num_train_cases,
        "num_test_cases": num_test_cases,
        "shape": shape_,
        "spacing": spacing_,
    }
    train_cases = TRANSUNET_TRAIN_CASES[:num_train_cases]
    test_cases = TRANSUNET_TEST_CASES[:num_test_cases]
    slices = [f"case{n:04d}_slice{k:03d}" for n in train_cases for k in range(shape_[2])]
    pairs = [(f"train_npz/{name}.npz", f"train_npz/{name}.npz") for name in sorted(slices)]

    def plans() -> Iterator[_Plan]:
        train_list = "".join(f"{name}\n" for name in slices).encode()
        test_list = "".join(f"case{n:04d}\n" for n in test_cases).encode()
        yield "lists/lists_Synapse/train.txt", lambda: (train_list, None)
        yield "lists/lists_Synapse/test_vol.txt", lambda: (test_list, None)
        for n in train_cases:
            phantom = _btcv_case(seed, n, shape_, spacing_)
            image, label = transunet_preprocess(phantom.image, phantom.label)
            for k in range(image.shape[0]):
                arrays = {"image": image[k], "label": label[k]}
                rel = f"train_npz/case{n:04d}_slice{k:03d}.npz"
                yield rel, lambda a=arrays: (_encode_npz(a), _pixels_sha(a["image"]))
        for n in test_cases:
            phantom = _btcv_case(seed, n, shape_, spacing_)
            image, label = transunet_preprocess(phantom.image, phantom.label)
            arrays = {"image": image, "label": label}
            yield f"test_vol_h5/case{n:04d}.npy.h5", lambda a=arrays: (_encode_h5(a), _pixels_sha(a["image"]))

    return _materialise(out_dir, spec, plans(), pairs)
