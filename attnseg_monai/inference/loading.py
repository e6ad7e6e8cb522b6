"""Loading cases for the predictor: read and preprocess in DataLoader workers, errors returned per case.

:func:`iterate_cases` yields one dict per case, in order: ``case``, ``kind``, ``data`` (the preprocessed item) and
``source`` (the input's geometry), or ``error`` (the reason the file cannot be used). Loading runs ``num_workers``
processes ahead of the network. A reader that kills its worker process (a segfault in a codec) stops the loader;
the cases that were in flight are then loaded again one by one, each in its own process, so that only the file
that crashes fails.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import EnsureChannelFirst
from torch.utils.data import DataLoader, Dataset

from .bundle_loader import BundleParts
from .errors import InputError, describe_error
from .inputs import CaseInput
from .readers import reader_for

__all__ = ["CaseDataset", "check_image", "iterate_cases", "load_case"]

logger = logging.getLogger(__name__)


def _identity(batch: list[Any]) -> Any:
    return batch[0]


_PREFETCH = 2


def _detach_sigchld(iterator: Any) -> None:
    """Let a dead worker surface as an error of the next ``next()`` call rather than as an exception raised by
    PyTorch's SIGCHLD handler at an arbitrary point of the main loop (which would fail an unrelated case). The
    iterator still notices dead workers by itself when it waits for data."""
    try:
        if getattr(iterator, "_worker_pids_set", False):
            torch._C._remove_worker_pids(id(iterator))
            iterator._worker_pids_set = False
    except Exception:  # noqa: BLE001 - a PyTorch without these internals keeps its default behaviour
        pass


def _spatial_shape(img: MetaTensor) -> tuple[int, ...]:
    shape = img.meta.get("spatial_shape")
    if shape is not None:
        return tuple(int(s) for s in np.asarray(shape).reshape(-1))
    return tuple(img.shape)


def _channel_message(found: int, expected: int) -> str:
    if found == 4 and expected == 3:
        return "image has 4 channels (RGBA) but the bundle expects 3 (RGB): drop the alpha channel (convert to RGB)"
    if found == 1 and expected == 3:
        return "grey image (1 channel) but the bundle expects 3 channels (RGB)"
    if found >= 3 and expected == 1:
        return f"colour image ({found} channels) but the bundle expects 1 channel (grey): convert it to grey"
    return f"image has {found} channel(s) but the bundle expects {expected}"


class CaseDataset(Dataset):
    """Reads and preprocesses one case per item; errors are returned, not raised (the batch goes on)."""

    def __init__(self, cases: list[tuple[CaseInput, str]], parts: BundleParts, keep_image: bool = False) -> None:
        self.cases = cases
        self.parts = parts
        self.keep_image = keep_image

    def __len__(self) -> int:
        return len(self.cases)

    def __getitem__(self, index: int) -> dict[str, Any]:
        case, kind = self.cases[index]
        out: dict[str, Any] = {"index": index, "case": case, "kind": kind, "data": None, "error": None}
        if kind == "wsi":
            return out
        try:
            out["data"], out["source"] = load_case(case.path, self.parts, keep_image=self.keep_image)
        except Exception as exc:  # noqa: BLE001 - reported as this case's failure
            out["error"] = exc.reason if isinstance(exc, InputError) else describe_error(exc, limit=500)
            logger.debug("loading %s failed:\n%s", case.path, traceback.format_exc())
        return out


def load_case(path: Path, parts: BundleParts, keep_image: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Read a file once with its reader and run the bundle's preprocessing; returns ``(data, source)``: the input's
    geometry (``affine``, ``spatial_shape``, ``filename_or_obj``) and, with ``keep_image``, the image as read,
    channel first (``raw``, for overlays)."""
    if parts.custom_loader is not None:
        return _load_with_bundle_loader(path, parts, keep_image)
    loader = parts.loader
    if loader is not None and not any(r.verify_suffix(str(path)) for r in loader.readers):
        loader = None  # the bundle's explicit reader does not read this format: use ours
    img = reader_for(path).read(path, loader=loader)
    source = {
        "affine": img.affine.clone(),
        "spatial_shape": _spatial_shape(img),
        "filename_or_obj": str(path),
    }
    if parts.ensure_channel_first:
        img = EnsureChannelFirst()(img)
    if keep_image:
        raw = img if parts.ensure_channel_first else EnsureChannelFirst()(img)
        source["raw"] = raw.detach().cpu().numpy().copy()
    data = parts.preprocessing({parts.image_key: img})
    check_image(data[parts.image_key], parts, path)
    return data, source


def _load_with_bundle_loader(path: Path, parts: BundleParts, keep_image: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    """Bundles with their own loading transform: check the file where a reader knows its ending, then hand the
    path to that transform; the source geometry is what it loaded (channel-first)."""
    try:
        reader = reader_for(path)
    except InputError:
        reader = None
    if reader is not None:
        reader.check(path)
    elif not path.exists():
        raise InputError(path, "file not found")
    elif path.is_file() and path.stat().st_size == 0:
        raise InputError(path, "empty file (0 bytes)")
    try:
        data = parts.custom_loader({parts.image_key: str(path)})
    except Exception as exc:  # noqa: BLE001 - the bundle's loader names the problem
        raise InputError(path, f"the bundle's loader cannot read it ({describe_error(exc)})") from exc
    img = data[parts.image_key]
    if not isinstance(img, MetaTensor):
        img = MetaTensor(img)
    source = {"affine": img.affine.clone(), "spatial_shape": tuple(img.shape[1:]), "filename_or_obj": str(path)}
    if keep_image:
        source["raw"] = img.detach().cpu().numpy().copy()
    data = parts.preprocessing(data)
    check_image(data[parts.image_key], parts, path)
    return data, source


def check_image(x: Any, parts: BundleParts, path: Path | str) -> None:
    if not isinstance(x, torch.Tensor):
        raise InputError(path, f"preprocessing returned {type(x).__name__}, not a tensor")
    dims = x.ndim - 1
    expected = parts.input_dims or parts.spatial_dims
    if dims != expected:
        shape = tuple(x.shape[1:])
        if dims == 3 and expected == 2:
            raise InputError(path, f"a 3D volume (shape {shape}) given to a 2D bundle; this bundle segments 2D images")
        raise InputError(path, f"a {dims}D image (shape {shape}) given to a {expected}D bundle")
    if x.shape[0] != parts.in_channels:
        raise InputError(path, _channel_message(int(x.shape[0]), parts.in_channels))
    if x.is_floating_point() and not bool(torch.isfinite(x).all()):
        bad = int((~torch.isfinite(x)).sum())
        raise InputError(
            path,
            f"image holds {bad} NaN or infinite value(s) after the bundle's preprocessing; replace them (e.g. with "
            "the background value) before segmenting",
        )


def make_loader(
    cases: list[tuple[CaseInput, str]], parts: BundleParts, workers: int, keep_image: bool = False
) -> DataLoader:
    """A DataLoader over ``cases`` (one case per batch, in order) with ``workers`` reading processes."""
    return DataLoader(
        CaseDataset(cases, parts, keep_image),
        batch_size=1,
        shuffle=False,
        num_workers=workers,
        collate_fn=_identity,
        prefetch_factor=_PREFETCH if workers else None,
    )


def _load_isolated(case: CaseInput, kind: str, parts: BundleParts, keep_image: bool) -> dict[str, Any]:
    """Load one case in its own worker process, so a crash is blamed on exactly this file."""
    try:
        return list(make_loader([(case, kind)], parts, 1, keep_image))[0]
    except RuntimeError as exc:
        if "DataLoader worker" not in str(exc):
            raise
        return {
            "case": case,
            "kind": kind,
            "data": None,
            "error": f"the reader crashed its process while loading this file ({describe_error(exc)})",
        }


def iterate_cases(
    todo: list[tuple[CaseInput, str]], parts: BundleParts, num_workers: int, keep_image: bool = False
) -> Iterator[dict[str, Any]]:
    """The loaded cases of ``todo`` (``(case, kind)`` pairs) in order (see the module docstring)."""
    if num_workers == 0:
        yield from make_loader(todo, parts, 0, keep_image)
        return
    start, isolate_until = 0, 0
    while start < len(todo):
        if start < isolate_until:
            case, kind = todo[start]
            start += 1
            yield _load_isolated(case, kind, parts, keep_image)
            continue
        iterator = iter(make_loader(todo[start:], parts, num_workers, keep_image))
        _detach_sigchld(iterator)
        offset = start
        try:
            for item in iterator:
                start = offset + item["index"] + 1
                yield item
            return
        except RuntimeError as exc:
            if "DataLoader worker" not in str(exc):
                raise
            logger.warning("a reader crashed its worker process; loading the next cases one by one (%s)", exc)
            isolate_until = start + num_workers * _PREFETCH + 1
