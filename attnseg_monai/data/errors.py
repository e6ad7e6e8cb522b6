"""The one error type of the data layer: every problem found in a data set, listed file by file."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

__all__ = ["DatasetError", "read_checked"]

_Header = TypeVar("_Header")


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


def read_checked(
    path: str,
    role: str,
    problems: list[tuple[str, str]],
    read: Callable[[Path], _Header],
    folder_note: str = "",
) -> _Header | None:
    """Read one file's header with ``read``, or record why it cannot be read in ``problems`` and return ``None``.

    The checks every validator makes before decoding: the path exists, is a file (``folder_note`` is appended to
    the message for a folder, e.g. a hint about DICOM series), is not empty, and ``read`` does not raise
    :class:`OSError` (readers turn decoder errors into ``OSError``).

    Args:
        path: the file.
        role: what the file is (``"image"``, ``"label"``), the first word of each message.
        problems: the list the ``(path, message)`` pair is appended to.
        read: the header reader, called with the path.
        folder_note: extra text for the "is a folder" message.
    """
    p = Path(path)
    if not p.exists():
        problems.append((path, f"{role} file not found"))
        return None
    if p.is_dir():
        problems.append((path, f"{role} path is a folder, not a file{folder_note}"))
        return None
    if p.stat().st_size == 0:
        problems.append((path, f"{role} file is empty (0 bytes)"))
        return None
    try:
        return read(p)
    except OSError as err:
        problems.append((path, f"{role} file is unreadable or corrupt ({err})"))
        return None
