"""The predictor's settings, declared once: model settings (constructor) and run settings (``predict_*``).

nnU-Net v2's split: what the model is and where it runs is fixed when the predictor is built
(:class:`ModelSettings`); what one run reads, writes and shows is given to each ``predict_*`` call
(:class:`RunSettings`, with the whole-slide settings in :class:`SlideSettings`). Each field carries its help text;
the ``attnseg infer`` command line is generated from these fields (:func:`cli_parameters`, :func:`cli_help`), so a
new setting is one new field here.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from ..precision import ENGINES, PRECISIONS
from .slides import WSI_BACKENDS

__all__ = [
    "ModelSettings",
    "RunSettings",
    "SlideSettings",
    "cli_help",
    "int_list",
    "resolve_device",
    "cli_parameters",
    "split_settings",
]

WSI_MODES = ("auto", "always", "never")
WSI_TISSUE = ("otsu", "all")


def _setting(default: Any, help: str) -> Any:  # noqa: A002 - the help text of a command-line flag
    return field(default=default, metadata={"help": help})


def _choice(name: str, value: Any, choices: Iterable[str]) -> None:
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")


def _non_negative_int(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}.")


@dataclass(frozen=True)
class ModelSettings:
    """Which weights run where: fixed for the predictor's life."""

    checkpoint: str | None = _setting(
        None, "weights file (default <bundle>/models/model.pt; its record beside it); loaded with weights_only=True."
    )
    trust_bundle: bool = _setting(False, "allow a bundle folder from outside this collection (its configs run code).")
    device: str = _setting("auto", "auto, cpu, cuda or cuda:N (auto: the local rank's GPU under torchrun, else CPU).")
    precision: str = _setting(
        "auto",
        "auto (the bundle's precision key: bf16 on AMX/AVX-512-BF16 CPUs and CUDA, fp32 elsewhere), fp32 (exact "
        "float32), bf16 or fp16.",
    )
    engine: str = _setting(
        "auto",
        "auto (OpenVINO on the CPU when installed and --precision is auto, else torch), torch or openvino; a network "
        "OpenVINO cannot run falls back to torch with a warning.",
    )
    overrides: Any = _setting(None, "JSON object of bundle config overrides, e.g. '{\"roi_size\": [64, 64]}'.")
    folds: Any = _setting(
        None, "ensemble of fold models: all (every models/fold_<k>/model.pt) or fold numbers, e.g. 0,1,2."
    )
    tta: bool = _setting(
        False, "test-time augmentation: average over the mirrorings training used (at most 2D: 4, 3D: 8)."
    )
    tta_axes: Any = _setting(
        None, "spatial axes mirrored by --tta, e.g. 0,1 (default: those the training mirrored, from the record)."
    )
    tta_rotate: bool = _setting(False, "with --tta, also the 90-degree rotations of 2D images (x4).")

    def __post_init__(self) -> None:
        _choice("precision", self.precision, PRECISIONS)
        _choice("engine", self.engine, ENGINES)
        if self.tta_axes is not None and not self.tta:
            raise ValueError("tta_axes needs tta=True (--tta).")
        if self.tta_rotate and not self.tta:
            raise ValueError("tta_rotate needs tta=True (--tta).")
        text = str(self.device).lower()
        if not (text in ("auto", "cpu", "cuda") or (text.startswith("cuda:") and text[5:].isdigit())):
            raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {self.device!r}.")


@dataclass(frozen=True)
class RunSettings:
    """What one ``predict_*`` call reads, writes and shows."""

    overwrite: bool = _setting(False, "replace existing outputs and recompute finished cases.")
    save_probabilities: bool = _setting(False, "also write class probabilities (2D: float32 TIFF; 3D: 4D NIfTI).")
    save_overlays: bool = _setting(False, "also write PNGs with the label contours over the image.")
    save_attention: bool = _setting(False, "also write the network's attention maps, one file each.")
    save_uncertainty: bool = _setting(
        False,
        "also write per-voxel entropy (and mutual information with --tta or an ensemble); scores in the manifest.",
    )
    output_ext: str | None = _setting(None, "ending of the label files (default: the bundle's, e.g. .png, .nii.gz).")
    num_workers: int = _setting(2, "reader processes loading ahead of the network (0: in this process).")
    progress: bool = _setting(True, "show progress bars over cases, windows and slide tiles (--noprogress hides).")
    rank: int | None = _setting(None, "this process's shard (default: RANK or torch.distributed).")
    world_size: int | None = _setting(None, "number of shards (default: WORLD_SIZE or torch.distributed).")
    datalist_key: str | None = _setting(None, "list of a datalist JSON to read (testing, validation, ...).")

    def __post_init__(self) -> None:
        _non_negative_int("num_workers", self.num_workers)
        if self.output_ext is not None:
            from ..io.suffixes import output_ending
            from ..io.writers import LABEL_EXTENSIONS

            ext = output_ending(self.output_ext)
            if ext not in LABEL_EXTENSIONS:
                raise ValueError(f"output_ext must be one of {', '.join(LABEL_EXTENSIONS)}, got {self.output_ext!r}.")
            object.__setattr__(self, "output_ext", ext)
        for name in ("rank", "world_size"):
            value = getattr(self, name)
            if value is not None:
                _non_negative_int(name, value)


@dataclass(frozen=True)
class SlideSettings:
    """How whole-slide images are segmented (tile by tile)."""

    wsi: str = _setting("auto", "auto (slides by ending, pyramidal or huge tiled TIFFs), always or never.")
    wsi_tile_size: int = _setting(1024, "slide tile size in pixels (a multiple of 256).")
    wsi_level: int = _setting(0, "slide pyramid level to segment.")
    wsi_backend: str = _setting("auto", "auto, openslide, cucim or tifffile.")
    wsi_tissue: str = _setting("otsu", "otsu (tissue tiles only) or all.")
    wsi_margin: int | None = _setting(None, "context read around each slide tile (default: half the window, >= 32).")

    def __post_init__(self) -> None:
        _choice("wsi", self.wsi, WSI_MODES)
        _choice("wsi_backend", self.wsi_backend, WSI_BACKENDS)
        _choice("wsi_tissue", self.wsi_tissue, WSI_TISSUE)
        if (
            isinstance(self.wsi_tile_size, bool)
            or not isinstance(self.wsi_tile_size, int)
            or (self.wsi_tile_size < 256 or self.wsi_tile_size % 256)
        ):
            raise ValueError(f"wsi_tile_size must be a positive multiple of 256, got {self.wsi_tile_size!r}.")
        _non_negative_int("wsi_level", self.wsi_level)
        if self.wsi_margin is not None:
            _non_negative_int("wsi_margin", self.wsi_margin)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto``: the local rank's GPU when CUDA is available, else the CPU; ``cuda``: the local rank's GPU.

    Raises:
        ValueError: for CUDA without CUDA, or an unknown device.
    """
    text = str(device).lower()
    local = int(os.environ.get("LOCAL_RANK", "0") or 0)
    if text == "auto":
        return torch.device(f"cuda:{local}") if torch.cuda.is_available() else torch.device("cpu")
    if text.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError("device 'cuda' requested but CUDA is not available here; use device='cpu' or 'auto'.")
        return torch.device(f"cuda:{local}") if text == "cuda" else torch.device(text)
    if text == "cpu":
        return torch.device("cpu")
    raise ValueError(f"device must be 'auto', 'cpu', 'cuda' or 'cuda:N', got {device!r}.")


_GROUPS = (ModelSettings, RunSettings, SlideSettings)


def int_list(value: Any, name: str) -> list[int] | None:
    """``"0,1"``, ``[0, 1]``, ``(0, 1)`` or ``0`` as a list of ints (``None`` stays ``None``).

    Raises:
        ValueError: for anything else.
    """
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value if isinstance(value, (list, tuple)) else [value]
    try:
        return [int(str(v).strip()) for v in items if str(v).strip() != ""]
    except ValueError as exc:
        raise ValueError(f"{name} must be integers such as 0,1, got {value!r}.") from exc


def split_settings(values: Mapping[str, Any], *groups: type) -> list[Any]:
    """``values`` (flat keyword settings) as one object of each dataclass of ``groups``, in order.

    Raises:
        TypeError: for a name no group declares (the message lists the valid names).
    """
    names = {f.name: g for g in groups for f in fields(g)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise TypeError(f"unknown setting(s) {', '.join(unknown)}; valid: {', '.join(sorted(names))}.")
    return [g(**{k: v for k, v in values.items() if names[k] is g}) for g in groups]


def cli_parameters(*groups: type) -> list[inspect.Parameter]:
    """Keyword parameters (name, default, annotation) for every field of ``groups`` (default: all settings)."""
    out = []
    for group in groups or _GROUPS:
        for f in fields(group):
            out.append(
                inspect.Parameter(f.name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=f.default, annotation=f.type)
            )
    return out


def cli_help(*groups: type, indent: str = "    ") -> str:
    """Google-style ``Args:`` lines for every field of ``groups`` (python-fire shows them in ``--help``)."""
    lines = []
    for group in groups or _GROUPS:
        for f in fields(group):
            lines.append(f"{indent}{f.name}: {f.metadata['help']}")
    return "\n".join(lines)


def as_dict(*settings: Any) -> dict[str, Any]:
    """The fields of settings objects as one flat dict (for the manifest and ``--json``)."""
    out: dict[str, Any] = {}
    for s in settings:
        out.update(dataclasses.asdict(s))
    return out
