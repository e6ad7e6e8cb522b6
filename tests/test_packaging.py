"""The package as users install it: a wheel carries the five bundles; installed without a checkout, ``attnseg list``
and ``attnseg export`` work from any folder and the exported bundle trains and infers with MONAI's own runner."""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from attnseg_monai.bundle import BUNDLES_DIR, list_bundles

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the same parser, as pip vendors it
    from pip._vendor import tomli as tomllib
from attnseg_monai.inference.export import BUNDLE_FILES, _bundle_files
from tests.bundles.helpers import overrides

REPO = Path(__file__).resolve().parents[1]


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def test_every_package_is_listed_and_the_bundles_are_packaged_as_exported():
    tool = _pyproject()["tool"]["setuptools"]
    found = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "attnseg_monai").rglob("__init__.py")
        if "__pycache__" not in p.parts
    }
    assert set(tool["packages"]) == found | {"attnseg_monai.bundles"}, "pyproject's package list is out of date"
    assert tool["package-dir"] == {"attnseg_monai.bundles": "bundles"}
    assert sorted(tool["package-data"]["attnseg_monai.bundles"]) == sorted(f"*/{g}" for g in BUNDLE_FILES)


#: what a run leaves in a bundle folder: never packaged (planted in the source copy the wheel is built from)
RUN_OUTPUTS = (
    "models/model.pt",
    "models/model.record.json",
    "models/checkpoint_epoch=1.pt",
    "eval/predictions/x_classes.png",
    "runs/events.out",
    "data/generated/nuclei/images/x.png",
    "configs/monailabel_train.json",
)


def _source_copy(dest: Path) -> Path:
    """What the wheel is built from: the package, the bundles and the project files of this checkout, without run
    outputs or an earlier build (in-tree ``build/`` leftovers would be packaged too), plus planted run outputs."""
    dest.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, dest / name)
    shutil.copytree(REPO / "attnseg_monai", dest / "attnseg_monai", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(BUNDLES_DIR, dest / "bundles", ignore=shutil.ignore_patterns("models", "eval", "runs", "data"))
    for name in list_bundles():
        for rel in RUN_OUTPUTS:
            (dest / "bundles" / name / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / "bundles" / name / rel).write_text("a run output")
    return dest


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{cmd}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_wheel_in_a_fresh_environment_lists_exports_trains_and_infers(tmp_path: Path):
    before = _tree(BUNDLES_DIR)
    source = _source_copy(tmp_path / "source")
    wheels = tmp_path / "wheels"
    _run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(wheels), str(source)],
        tmp_path,
        {**os.environ},
    )
    (wheel,) = wheels.glob("attnseg_monai-*.whl")
    # the wheel's bundles are exactly what `attnseg export` copies: configs, docs, licences; no run output
    with zipfile.ZipFile(wheel) as zf:
        packaged = {n for n in zf.namelist() if n.startswith("attnseg_monai/bundles/")}
    expected = {
        f"attnseg_monai/bundles/{name}/{path.relative_to(source / 'bundles' / name).as_posix()}"
        for name in list_bundles()
        for path in _bundle_files(source / "bundles" / name)
    }
    assert packaged == expected, sorted(packaged ^ expected)
    for name in list_bundles():
        for rel in ("LICENSE", "configs/metadata.json", "configs/inference.json", "docs/data_license.txt"):
            assert f"attnseg_monai/bundles/{name}/{rel}" in packaged

    # a new virtual environment that sees this one's torch/MONAI (a .pth line) but not its editable attnseg install
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, {**os.environ})
    python = venv / "bin" / "python"
    venv_site = Path(
        _run([str(python), "-c", "import site; print(site.getsitepackages()[0])"], tmp_path, {}).stdout.strip()
    )
    (venv_site / "outer.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["OMP_NUM_THREADS"] = "1"
    missing = subprocess.run([str(python), "-c", "import attnseg_monai"], cwd=tmp_path, env=env, capture_output=True)
    assert missing.returncode != 0, "the editable install of the checkout leaks into the new environment"
    _run([str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--ignore-installed", str(wheel)], tmp_path, env)
    where = _run([str(python), "-c", "import attnseg_monai; print(attnseg_monai.__file__)"], tmp_path, env).stdout
    assert str(venv) in where and str(REPO) not in where

    work = tmp_path / "elsewhere"
    work.mkdir()
    listed = json.loads(_run([str(venv / "bin" / "attnseg"), "list", "--json"], work, env).stdout)
    assert sorted(row["name"] for row in listed) == list_bundles() and len(listed) == 5
    _run([str(venv / "bin" / "attnseg"), "export", "hannet", str(work / "h")], work, env)
    exported = work / "h"
    args = []
    for key, value in overrides("hannet", "train").items():
        args += [f"--{key}", json.dumps(value)]
    train = [str(python), "-m", "monai.bundle", "run", "training", "--config_file", "h/configs/train.json", *args]
    _run(train, work, env)
    assert (exported / "models" / "model.pt").is_file() and (exported / "models" / "model.record.json").is_file()
    infer = [str(python), "-m", "monai.bundle", "run", "--config_file", str(exported / "configs" / "inference.json")]
    _run(infer + ["--roi_size", "[64, 64]"], tmp_path, env)
    assert sorted((exported / "eval" / "predictions").glob("*_classes.png"))
    # attnseg infer with an installed bundle, from any folder (its weights elsewhere, their record beside them)
    tiles = work / "tiles"
    tiles.mkdir()
    shutil.copy2(next((exported / "data" / "generated" / "nuclei" / "images").glob("*.png")), tiles)
    attnseg_infer = [str(venv / "bin" / "attnseg"), "infer", "hannet", "tiles", "out", "--noprogress"]
    checkpoint = ["--checkpoint", str(exported / "models" / "model.pt"), "--num_workers", "0"]
    _run(attnseg_infer + checkpoint + ["--overrides", '{"roi_size": [64, 64]}'], work, env)
    assert sorted((work / "out").glob("*_classes.png"))
    assert _tree(BUNDLES_DIR) == before, "the installed package wrote into the checkout's bundles/"
