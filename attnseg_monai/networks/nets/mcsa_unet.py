"""Placeholder until the network lands (being written now)."""

from __future__ import annotations

__all__: list[str] = []
