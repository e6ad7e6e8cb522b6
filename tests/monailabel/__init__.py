"""MONAI Label integration tests (skipped when ``monailabel`` is not installed)."""
