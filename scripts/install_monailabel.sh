#!/usr/bin/env bash
# Install MONAI Label 0.8.5 into the active Python environment without touching torch, numpy or monai.
#
#   bash scripts/install_monailabel.sh                         # the environment of `python` (activate the venv)
#   PYTHON=/path/to/venv/bin/python bash scripts/install_monailabel.sh
#
# Install the project first (pip install -e ".[test]"). Why not `pip install monailabel`: its requirements pull
# torchvision and sam2, and pip then replaces a CPU torch with a CUDA build of several GB; pydicom-seg also asks for
# numpy<2. So monailabel and pydicom-seg go in with --no-deps, and the runtime dependencies the server needs are
# installed under constraints that hold every package already installed at its version, plus
# scripts/monailabel-constraints.txt.
# Left out on purpose: torchvision (PyPI's build does not load against this CPU torch; on the bundle path MONAI
# Label imports only torchvision.utils, see docs/monailabel.md), sam2, ninja, numpymaxflow (scribbles sample app)
# and MONAI's gdown/lmdb/mlflow/openslide extras. pip reports these, and pydicom-seg's numpy<2, as conflicts at the
# end; that is expected.
set -euo pipefail

HERE="$(cd "$(dirname "$0")" && pwd)"
PY="${PYTHON:-python}"
CONSTRAINTS="$(mktemp)"
trap 'rm -f "$CONSTRAINTS"' EXIT

versions() { "$PY" -c 'import numpy, torch; print(torch.__version__, numpy.__version__)'; }
before="$(versions)"

# Everything installed now stays at its version (editable installs and direct references are skipped); pydicom is
# left free so that a pydicom 3 can go back below 3.
"$PY" -m pip freeze --exclude-editable 2>/dev/null | grep -E '^[A-Za-z0-9_.-]+==' | grep -v -i -E '^pydicom==' \
    >"$CONSTRAINTS" || true
cat "$HERE/monailabel-constraints.txt" >>"$CONSTRAINTS"

# pydicom-seg's own jsonschema range, unless a jsonschema is already installed (then it is kept as it is).
jsonschema="jsonschema>=3.2.0,<4"
if "$PY" -c 'import jsonschema' 2>/dev/null; then jsonschema="jsonschema"; fi

pip_install() { "$PY" -m pip install --quiet --disable-pip-version-check --constraint "$CONSTRAINTS" "$@"; }

pip_install --no-deps "monailabel==0.8.5" "pydicom-seg==0.4.1"
echo "install_monailabel.sh: monailabel's runtime dependencies (torch and numpy held at $before)"
pip_install \
    "uvicorn>=0.29.0" "pydantic>=2.7.0" "pydantic-settings>=2.2.1" "python-dotenv>=1.0.1" "fastapi>=0.110.2" \
    "python-multipart>=0.0.9" "httpx>=0.27.0" "schedule>=1.2.1" "dicomweb-client" "timeloop>=1.0.2" \
    "expiringdict>=1.2.2" "expiring_dict>=1.1.0" "cachetools>=5.3.3" "watchdog>=4.0.0" "pydicom" "pynetdicom" \
    "pynrrd>=1.0.0" "girder-client>=3.2.3" "einops>=0.7.0" "pyyaml>=6.0.1" "filelock>=3.11.0" "passlib>=1.7.4" \
    "pyjwt>=2.8.0" "bcrypt>=4.1.2" "shapely>=2.0.4" "requests>=2.31.0" "requests-toolbelt>=1.0.0" \
    "urllib3>=2.2.1" "scikit-learn" "scipy" "google-auth>=2.29.0" "SimpleITK>1.2.4" "$jsonschema"

after="$(versions)"
if [[ "$before" != "$after" ]]; then
    echo "install_monailabel.sh: torch/numpy changed: $before -> $after" >&2
    exit 1
fi
"$PY" -c 'import monailabel, monailabel.endpoints.infer; print("monailabel", monailabel.__version__, "installed")'
