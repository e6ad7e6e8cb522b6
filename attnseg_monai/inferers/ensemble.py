"""Test-time augmentation and model ensembles as one network an inferer can run window by window.

nnU-Net averages the softmax probabilities of its test-time mirrorings and of its fold models; so does
:class:`ProbabilityEnsemble`. Given member networks (each prepared for the device's precision) and a list of
invertible augmentations (:func:`tta_transforms`: mirrorings along spatial axes, optionally 90-degree rotations in
2D), its ``__call__`` maps a window ``x`` to

``log(mean_k softmax(member_k(aug_k(x)) inverted))``

in float32: a drop-in for the network's logits, since the bundle's own ``softmax`` postprocessing then recovers the
averaged probabilities exactly and an ``argmax`` gives the ensemble's labels. Any sliding-window inferer (MONAI's,
the fast one, the memory-bounded slab inferer, the slice-wise one) stitches it like a single network. With
``expected_entropy=True`` one more channel is appended: the mean entropy of the samples, ``mean_k H(p_k)``, so that
the mutual information ``H(mean_k p_k) - mean_k H(p_k)`` (the part of the uncertainty the samples disagree on) can be
formed after stitching. Networks with one output channel use the sigmoid instead of the softmax (two-class form).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from .slab import class_probabilities

__all__ = ["Augmentation", "ProbabilityEnsemble", "entropy", "trained_symmetries", "tta_transforms"]

_EPS = 1e-12


@dataclass(frozen=True)
class Augmentation:
    """An invertible test-time augmentation of ``(B, C, *spatial)`` tensors: mirror ``flip`` axes (spatial indices,
    0-based), then rotate by ``rot90`` quarter turns in the plane of the first two spatial axes (2D only)."""

    flip: tuple[int, ...] = ()
    rot90: int = 0

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        if self.flip:
            x = torch.flip(x, dims=[a + 2 for a in self.flip])
        if self.rot90:
            x = torch.rot90(x, self.rot90, dims=(2, 3))
        return x

    def invert(self, y: torch.Tensor) -> torch.Tensor:
        if self.rot90:
            y = torch.rot90(y, -self.rot90, dims=(2, 3))
        if self.flip:
            y = torch.flip(y, dims=[a + 2 for a in self.flip])
        return y

    @property
    def name(self) -> str:
        parts = [f"flip{''.join(map(str, self.flip))}"] if self.flip else []
        parts += [f"rot{90 * self.rot90}"] if self.rot90 else []
        return "+".join(parts) or "identity"


def tta_transforms(dims: int, axes: Sequence[int] | None = None, rotations: bool = False) -> list[Augmentation]:
    """The augmentations of test-time augmentation: every subset of the mirrored ``axes`` (all spatial axes by
    default: 4 in 2D, 8 in 3D, the identity included), times the four quarter turns when ``rotations`` (2D only).

    Raises:
        ValueError: for an axis that does not exist in ``dims`` spatial dimensions, or rotations in 3D.
    """
    if dims not in (2, 3):
        raise ValueError(f"test-time augmentation needs 2 or 3 spatial dimensions, got {dims}.")
    chosen = tuple(range(dims)) if axes is None else tuple(int(a) for a in axes)
    bad = [a for a in chosen if not 0 <= a < dims]
    if bad or len(set(chosen)) != len(chosen):
        raise ValueError(
            f"TTA axes {list(chosen)} do not fit {dims}D inputs: give distinct spatial axes in 0..{dims - 1} "
            f"({'x, y' if dims == 2 else 'x, y, z'})."
        )
    if rotations and dims != 2:
        raise ValueError("TTA rotations are 90-degree turns of 2D images; 3D inputs take mirrorings only.")
    flips = [combo for r in range(len(chosen) + 1) for combo in itertools.combinations(chosen, r)]
    turns = range(4) if rotations else range(1)
    return [Augmentation(tuple(f), k) for k in turns for f in flips]


def _signed_permutation(dims: int, flips: Sequence[int] = (), plane: Sequence[int] | None = None) -> tuple:
    """An axis flip or a quarter turn as a signed permutation of the ``dims`` axes: ``((source axis, sign), ...)``."""
    if plane is not None:
        a, b = plane
        out = [(i, 1) for i in range(dims)]
        out[a], out[b] = (b, -1), (a, 1)
        return tuple(out)
    return tuple((i, -1 if i in flips else 1) for i in range(dims))


def _compose(f: tuple, g: tuple) -> tuple:
    return tuple((g[src][0], sign * g[src][1]) for src, sign in f)


def trained_symmetries(dims: int, augmentation: dict) -> tuple[tuple[int, ...], bool]:
    """What training's random flips and quarter turns showed the network: ``(mirrored axes, quarter turns)``.

    ``augmentation`` is a record's ``augmentation`` (``{"flip_axes": [...], "rot90_planes": [[a, b], ...]}``, see
    :func:`attnseg_monai.bundle.training_augmentation`). The flips and turns generate a group of signed axis
    permutations; an axis is *mirrored* when mirroring it alone is in that group (hannet flips x and y; mcsa_unet flips
    x and turns by quarters, which makes the y mirror a member too), and *quarter turns* are seen when the turn of
    the first two axes is. Test-time augmentation should average over these only: a view training never showed
    (attention_unet upside down along z) costs accuracy (docs/inference.md).
    """
    flips = augmentation.get("flip_axes", [])
    flips = list(range(dims)) if flips == "all" else [int(a) for a in flips if 0 <= int(a) < dims]
    planes = [tuple(int(a) for a in p) for p in augmentation.get("rot90_planes", [])]
    generators = [_signed_permutation(dims, (a,)) for a in flips]
    generators += [_signed_permutation(dims, plane=p) for p in planes if all(0 <= a < dims for a in p)]
    identity = _signed_permutation(dims)
    group, frontier = {identity}, [identity]
    while frontier:
        element = frontier.pop()
        for g in generators:
            new = _compose(element, g)
            if new not in group:
                group.add(new)
                frontier.append(new)
    mirrored = tuple(a for a in range(dims) if _signed_permutation(dims, (a,)) in group)
    turns = dims >= 2 and _signed_permutation(dims, plane=(0, 1)) in group
    return mirrored, turns


def entropy(probs: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Shannon entropy (nats) of probabilities along ``dim``, normalised by ``log(C)`` into [0, 1] (two-class form
    for a single sigmoid channel)."""
    p = probs.float()
    if p.shape[dim] == 1:
        p = torch.cat([1 - p, p], dim=dim)
    h = -(p * torch.log(p.clamp_min(_EPS))).sum(dim=dim, keepdim=True)
    return h / math.log(p.shape[dim])


class ProbabilityEnsemble:
    """Average the probabilities of several networks and augmentations (see the module docstring).

    Args:
        members: callables mapping ``(B, C_in, *spatial)`` to ``(B, C, *spatial)`` logits (float32 out), e.g. the
            fast-path copies of the fold models; all with the same ``C``.
        augmentations: from :func:`tta_transforms` (default: the identity only).
        expected_entropy: append the samples' mean entropy as channel ``C``.

    Raises:
        ValueError: without members.

    Example::

        >>> ens = ProbabilityEnsemble([net_fold0, net_fold1], tta_transforms(2))   # 2D: 2 folds x 4 mirrorings
        >>> logits = SlidingWindowInferer(roi_size=(256, 256))(image, ens)           # softmax(logits) = mean probs
    """

    def __init__(
        self,
        members: Sequence[Callable[[torch.Tensor], torch.Tensor]],
        augmentations: Sequence[Augmentation] | None = None,
        expected_entropy: bool = False,
    ) -> None:
        if not members:
            raise ValueError("an ensemble needs at least one member network.")
        self.members = list(members)
        self.augmentations = list(augmentations or [Augmentation()])
        self.expected_entropy = bool(expected_entropy)

    @property
    def samples(self) -> int:
        """Predictions averaged per window: members x augmentations."""
        return len(self.members) * len(self.augmentations)

    @staticmethod
    def _probabilities(logits: torch.Tensor) -> torch.Tensor:
        if isinstance(logits, (list, tuple)):  # deep supervision: the full-resolution head
            logits = logits[0]
        return class_probabilities(logits.float())

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = None
        mean_entropy = None
        for member in self.members:
            for aug in self.augmentations:
                p = aug.invert(self._probabilities(member(aug.apply(x))))
                mean = p if mean is None else mean + p
                if self.expected_entropy:
                    h = entropy(p)
                    mean_entropy = h if mean_entropy is None else mean_entropy + h
        mean = mean / self.samples
        if mean.shape[1] == 1:
            p1 = mean.clamp(_EPS, 1 - _EPS)
            out = torch.log(p1) - torch.log1p(-p1)  # the logit: sigmoid(out) = the mean probability
        else:
            out = torch.log(mean.clamp_min(_EPS))  # softmax(out) = the mean probabilities
        if self.expected_entropy:
            out = torch.cat([out, mean_entropy / self.samples], dim=1)
        return out
