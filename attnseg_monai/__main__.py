"""``python -m attnseg_monai``: the ``attnseg`` command line (see :mod:`attnseg_monai.cli`)."""

from __future__ import annotations

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
