"""The code style gate runs with the tests, so the README's one test command checks it too."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff comes with the test extra")
def test_ruff_check_is_clean():
    targets = [name for name in ("attnseg_monai", "tests", "benchmarks") if (ROOT / name).is_dir()]
    result = subprocess.run(["ruff", "check", *targets], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
