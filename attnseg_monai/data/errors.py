"""The one error type of the data layer: every problem found in a data set, listed file by file."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

__all__ = ["DatasetError"]


class DatasetError(ValueError):
    """A data set cannot be used as it is; ``problems`` lists each offending path with what is wrong with it.

    The readers and :func:`~attnseg_monai.data.validation.validate_pairs` collect every problem they find before
    raising, so one run shows everything that needs fixing rather than the first fault only.

    Args:
        summary: one line saying what was being done (e.g. ``"3 problems in 120 image/label pairs"``).
        problems: ``(path, problem)`` pairs; each becomes one line of the message.

    Example::

        >>> raise DatasetError("1 problem", [("/data/images/a.png", "no label found")])
        Traceback (most recent call last):
        ...
        attnseg_monai.data.errors.DatasetError: 1 problem:
          - /data/images/a.png: no label found
    """

    def __init__(self, summary: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        self.summary = summary
        self.problems: list[tuple[str, str]] = [(str(p), str(m)) for p, m in problems]
        super().__init__(self._format())

    def _format(self) -> str:
        if not self.problems:
            return self.summary
        lines = [f"  - {path}: {message}" for path, message in self.problems]
        return f"{self.summary}:\n" + "\n".join(lines)

    @classmethod
    def raise_if_any(cls, problems: Iterable[tuple[str, str]], what: str) -> None:
        """Raise one :class:`DatasetError` listing ``problems`` if there are any; ``what`` names the checked set."""
        found = list(problems)
        if found:
            noun = "problem" if len(found) == 1 else "problems"
            raise cls(f"{len(found)} {noun} in {what}", found)
