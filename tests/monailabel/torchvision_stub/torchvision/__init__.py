"""Test-only stand-in for ``torchvision``: just ``torchvision.utils.make_grid`` and ``save_image``.

MONAI Label imports these two functions at module level on the bundle path (``monailabel.transform.post``); PyPI's
torchvision wheel does not load against the project's CPU torch build. The MONAI Label server test puts the parent
folder on ``PYTHONPATH`` of the server process only. Never installed, never shipped with the package.
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.0.0+attnseg.test.stub"
