"""The package layout of docs/architecture.md, checked: each folder says what it holds, imports only the packages
its paragraph allows, and the batch app's modules stay readable."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import attnseg_monai

PACKAGE = Path(attnseg_monai.__file__).resolve().parent

#: what each package may import from the others (docs/architecture.md, "Packages"): lower layers never import
#: higher ones, so the graph has no cycle
ALLOWED: dict[str, set[str]] = {
    "io": set(),
    "networks": set(),
    "precision": {"io"},
    "inferers": {"precision"},
    "data": {"io"},
    "metrics": {"io", "data"},
    "transforms": {"io", "data", "metrics"},
    "handlers": {"io", "data", "metrics", "networks"},
    "bundle": {"io", "data", "handlers", "inferers", "metrics", "networks", "precision", "transforms"},
    "inference": {"bundle", "data", "handlers", "inferers", "io", "metrics", "networks", "precision", "transforms"},
}
#: modules of the batch app stay under this many lines (one concern per module)
MAX_LINES = 400


def _packages() -> list[str]:
    return sorted(p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file())


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    rel = path.relative_to(PACKAGE).parts
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = list(rel[:-1])[: len(rel) - node.level]
                target = [*base, *(node.module.split(".") if node.module else [])]
            elif node.module and node.module.startswith("attnseg_monai."):
                target = node.module.split(".")[1:]
            else:
                continue
            if target:
                found.add(target[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("attnseg_monai."):
                    found.add(alias.name.split(".")[1])
    return found


def test_every_package_is_in_the_layout_and_says_what_it_holds():
    assert set(_packages()) == set(ALLOWED), "a package was added or removed: update ALLOWED and docs/architecture.md"
    for name in _packages():
        doc = ast.get_docstring(ast.parse((PACKAGE / name / "__init__.py").read_text(encoding="utf-8")))
        assert doc and doc.strip(), f"attnseg_monai/{name}/__init__.py has no docstring saying what the folder holds"


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_follow_the_layout(package: str):
    wrong = {}
    for path in sorted((PACKAGE / package).rglob("*.py")):
        extra = _imported_packages(path) - ALLOWED[package] - {package} - {"cli", "__main__"}
        extra = {e for e in extra if (PACKAGE / e).is_dir()}
        if extra:
            wrong[str(path.relative_to(PACKAGE))] = sorted(extra)
    assert not wrong, f"imports outside what docs/architecture.md allows for {package}/: {wrong}"


def test_batch_app_modules_stay_small():
    long = {
        p.name: n
        for p in sorted((PACKAGE / "inference").glob("*.py"))
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"inference/ modules over {MAX_LINES} lines: {long}"
