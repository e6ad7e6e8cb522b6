"""Fixtures shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from attnseg_monai.bundle import list_bundles


@pytest.fixture(scope="session", params=list_bundles())
def bundle_copy(request, trained_bundle) -> tuple[str, Path]:
    """``(name, root)`` of the session's trained copy of each bundle (see ``trained_bundle`` in tests/conftest.py)."""
    return request.param, trained_bundle(request.param)
