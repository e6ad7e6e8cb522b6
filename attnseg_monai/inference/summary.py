"""What a run of :meth:`~attnseg_monai.inference.BundlePredictor.predict_files` did, and how a failure reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import InputError, OutputConflictError, describe_error

__all__ = ["PredictionSummary", "failure_reason"]


@dataclass
class PredictionSummary:
    """What :meth:`BundlePredictor.predict_files` did in this process.

    ``written``: case ids segmented now; ``skipped``: finished earlier, outputs verified; ``failed``: dicts with
    ``case``, ``input`` and ``error``; ``ignored``: files of the input folder that are not images (``path``,
    ``reason``); ``stale``: skipped cases made with another checkpoint or bundle version (rerun with ``overwrite``);
    ``manifest_counts``: records by status in the merged manifest (all processes, once merged).
    """

    output_dir: str
    manifest: str
    rank: int = 0
    world_size: int = 1
    total: int = 0
    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    ignored: list[dict[str, str]] = field(default_factory=list)
    stale: list[str] = field(default_factory=list)
    seconds: float = 0.0
    manifest_counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No case of this process failed."""
        return not self.failed

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out["ok"] = self.ok
        return out


def failure_reason(exc: BaseException) -> str:
    if isinstance(exc, InputError):
        return str(exc.reason)
    if isinstance(exc, OutputConflictError):
        return str(exc)
    return describe_error(exc, limit=500)
