"""Helpers the bundle configs call: locating a bundle's folder wherever it is run from."""

from __future__ import annotations

from .paths import BUNDLES_DIR, bundle_path, find_bundle_root, list_bundles

__all__ = ["BUNDLES_DIR", "bundle_path", "find_bundle_root", "list_bundles"]
