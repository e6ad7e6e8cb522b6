"""``output_transform`` functions for MONAI's metric handlers (``MeanDice``, ``IgniteMetricHandler``...)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

__all__ = ["one_class_output", "region_output"]


def one_class_output(
    index: int, keys: Sequence[str] = ("pred", "label")
) -> Callable[[Sequence[Mapping[str, Any]]], tuple[list[Any], ...]]:
    """An ``output_transform`` that scores one class: channels ``[0, index]`` of each decollated item's one-hot
    ``keys`` (background and the class), as ``monai.handlers.from_engine(keys)`` returns them for all classes.

    With ``include_background=False`` the metric (``MeanDice``, HD95 through ``IgniteMetricHandler``) then sees class
    ``index`` alone, so a config writes one metric per organ without a lambda::

        "val_dice_pancreas": {"_target_": "MeanDice", "include_background": false,
                              "output_transform": "$attnseg_monai.handlers.one_class_output(1)"}

    Args:
        index: the class channel (>= 1; 0 is the background).
        keys: the one-hot entries of each item, prediction first.

    Raises:
        ValueError: if ``index`` is not an int >= 1.
    """
    if isinstance(index, bool) or not isinstance(index, int) or index < 1:
        raise ValueError(f"index must be a class channel >= 1 (0 is the background), got {index!r}.")
    names = tuple(keys)

    def transform(batch: Sequence[Mapping[str, Any]]) -> tuple[list[Any], ...]:
        items = batch if isinstance(batch, (list, tuple)) else [batch]
        return tuple([item[key][[0, index]] for item in items] for key in names)

    return transform


def region_output(
    regions: Sequence[Sequence[int]], keys: Sequence[str] = ("pred", "label")
) -> Callable[[Sequence[Mapping[str, Any]]], tuple[list[Any], ...]]:
    """An ``output_transform`` that scores regions made of several classes (nested structures: the optic disc is
    its rim and its cup): channel 0 of each decollated item's one-hot ``keys``, then one channel per region, the
    union of its classes' channels.

    With ``include_background=False`` the metric then sees the regions alone (overlapping channels, which MONAI's
    Dice and surface metrics score channel by channel)::

        "val_dice_disc": {"_target_": "MeanDice", "include_background": false,
                          "output_transform": "$attnseg_monai.handlers.region_output([[1, 2]])"}

    Args:
        regions: the class channels of each region (each >= 1; 0 is the background), e.g. ``[[1, 2], [2]]``.
        keys: the one-hot entries of each item, prediction first.

    Raises:
        ValueError: if ``regions`` is empty or a region is not a non-empty list of ints >= 1.
    """
    groups = [list(r) for r in regions] if isinstance(regions, Sequence) and not isinstance(regions, str) else []
    if not groups or any(
        not r or any(isinstance(c, bool) or not isinstance(c, int) or c < 1 for c in r) for r in groups
    ):
        raise ValueError(
            f"regions must be non-empty lists of class channels >= 1, e.g. [[1, 2], [2]]; got {regions!r}."
        )
    names = tuple(keys)

    def union(onehot: Any) -> Any:
        import torch

        return torch.stack([onehot[0], *(onehot[r].amax(dim=0) for r in groups)])

    def transform(batch: Sequence[Mapping[str, Any]]) -> tuple[list[Any], ...]:
        items = batch if isinstance(batch, (list, tuple)) else [batch]
        return tuple([union(item[key]) for item in items] for key in names)

    return transform
