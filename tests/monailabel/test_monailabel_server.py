"""The bundles served by the real MONAI Label server: ``/info/``, ``/infer/<bundle>`` and a short ``/train/<bundle>``.

What runs: MONAI Label's own ``monaibundle`` sample app, copied from the installed ``monailabel`` package (the folder
``monailabel apps --download --name monaibundle`` copies), with a copy of every bundle of ``bundles/`` in
``<app>/model/<name>``, started as ``monailabel start_server --app <app> --studies <studies> --conf models <names>
--conf zoo_source github --conf sam2 false --host 127.0.0.1 --port <free port>`` in its own process. The stock app
builds MONAI Label's ``BundleInferTask`` and ``BundleTrainTask`` from each bundle's ``inference.json``,
``train.json`` and ``metadata.json``; nothing of MONAI Label is replaced or mocked.

The bundle copies keep their configs except for the tiny patch, window and sample sizes of
``tests/bundles/cases/<bundle>.py`` (so a check takes seconds on 2 CPU cores). Their network is never written into the
configs: each copy gets ``models/model.pt`` (a plain state dict, as the model zoo ships) of the case's tiny network, a
width the configs do not build, with its record ``models/model.record.json`` beside it, as a user's trained bundle
has. The server must build that width from the record to infer and to fine-tune, and again after a restart.

The studies folder holds odd-sized images written here (2D bundles) and images of the bundle's own embedded training
sample, whose labels are submitted through ``PUT /datastore/label`` before that bundle trains and removed afterwards,
so every bundle trains on its own data.

PyPI's torchvision wheel does not load against the project's CPU torch build; MONAI Label imports only
``torchvision.utils.make_grid/save_image`` on this path, so the server process (only it) gets the stand-in in
``tests/monailabel/torchvision_stub`` first on its ``PYTHONPATH``. The stand-in is never installed or shipped.

Only 127.0.0.1 is contacted; every wait is bounded; the test stops the server (its whole process group) itself.
Install MONAI Label for this test with ``bash scripts/install_monailabel.sh``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

monailabel = pytest.importorskip(
    "monailabel", reason="monailabel is not installed (bash scripts/install_monailabel.sh installs it; CI does)"
)

import httpx  # noqa: E402  (a dependency of monailabel)
import nibabel as nib  # noqa: E402
import torch  # noqa: E402
from monai.bundle import ConfigParser  # noqa: E402
from PIL import Image  # noqa: E402

from attnseg_monai.bundle import (  # noqa: E402
    BUNDLES_DIR,
    BundleRecord,
    list_bundles,
    load_weights,
    read_record,
    record_path,
)
from attnseg_monai.bundle.record import state_dict_of  # noqa: E402
from attnseg_monai.networks import network_config  # noqa: E402
from tests.bundles.cases import BUNDLE_CASES  # noqa: E402

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
STUB_DIR = Path(__file__).resolve().parent / "torchvision_stub"
HOST = "127.0.0.1"
BUNDLES = [name for name in list_bundles() if name in BUNDLE_CASES]

STARTUP_TIMEOUT_S = 240.0
REQUEST_TIMEOUT_S = 180.0
TRAIN_TIMEOUT_S = 420.0
POLL_INTERVAL_S = 2.0
TRAIN_ITEMS = 4  # images (with labels) each bundle trains on; MONAI Label holds out val_split of them
STOP_TIMEOUT_S = 30.0


# ---------------------------------------------------------------------------------------------------------------
# preparing the app, the bundle copies and the studies folder
# ---------------------------------------------------------------------------------------------------------------


def _installed_sample_app(name: str = "monaibundle") -> Path:
    """The sample app shipped in the monailabel wheel's data files (the places ``monailabel apps`` looks in)."""
    candidates = [
        Path(monailabel.__file__).resolve().parents[1] / "sample-apps" / name,  # source checkout of MONAI Label
        Path(sys.prefix) / "monailabel" / "sample-apps" / name,  # pip install into a venv / prefix
        Path(sys.prefix) / "local" / "monailabel" / "sample-apps" / name,
        Path.home() / ".local" / "monailabel" / "sample-apps" / name,  # pip install --user
    ]
    for folder in candidates:
        if (folder / "main.py").is_file():
            return folder
    raise FileNotFoundError(f"monailabel is installed but its {name} sample app is not in any of {candidates}")


def _set_id(config: dict[str, Any], config_id: str, value: Any) -> None:
    """Set a nested config entry named with MONAI's ``#`` separator (``network_def#features``)."""
    *parents, last = config_id.split("#")
    node: Any = config
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


def _parser(bundle: Path, config_file: str) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config(str(bundle / "configs" / config_file))
    parser["bundle_root"] = str(bundle)
    return parser


def _full_ext(path: Path) -> str:
    return ".nii.gz" if path.name.endswith(".nii.gz") else path.suffix


def _copy_tiny_bundle(name: str, dest: Path) -> dict[str, Any]:
    """Copy a bundle with the test case's tiny sizes, and a trained-like model of the case's tiny network: a plain
    state dict with its record beside it. Returns the recorded network (``network_config``)."""
    shutil.copytree(BUNDLES_DIR / name, dest, ignore=shutil.ignore_patterns("models", "eval", "data", "__pycache__"))
    case = BUNDLE_CASES[name]
    for config_file, kind in (("inference.json", "infer"), ("train.json", "train")):
        path = dest / "configs" / config_file
        config = json.loads(path.read_text())
        for config_id, value in case[kind].items():
            _set_id(config, config_id, value)
        path.write_text(json.dumps(config, indent=2))
    parser = _parser(dest, "train.json")
    parser.update(case["net"])  # the network only here: the configs keep their default width
    network = parser.get_parsed_content("network_def")
    (dest / "models").mkdir()
    model = dest / "models" / "model.pt"
    torch.save(network.state_dict(), model)
    record = BundleRecord.read(parser.get_parsed_content("record").record_for(network).write(record_path(model)))
    assert record.network == network_config(network), f"{name}: the record does not describe the network it saved"
    return record.network


def _training_items(bundle: Path) -> list[dict[str, str]]:
    """The smallest few image/label pairs of the bundle's own embedded training sample (written into the copy)."""
    parser = _parser(bundle, "train.json")
    items = parser.get_parsed_content("train#datalist") + parser.get_parsed_content("validate#datalist")
    items = sorted(items, key=lambda item: (os.path.getsize(item["image"]), item["image"]))
    return [{"image": item["image"], "label": item["label"]} for item in items[:TRAIN_ITEMS]]


def _write_probe_2d(path: Path, height: int, width: int, channels: int, seed: int) -> None:
    """A textured odd-sized image (dark blobs on a light background) in the bundle's channel count."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.full((height, width), 210.0)
    for _ in range(8):
        cy, cx, r = rng.uniform(0, height), rng.uniform(0, width), rng.uniform(5, 12)
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r**2] = 70.0
    image = np.clip(image + rng.normal(0, 8, image.shape), 0, 255).astype(np.uint8)
    if channels == 1:
        Image.fromarray(image, mode="L").save(path)
    else:
        Image.fromarray(np.repeat(image[..., None], channels, axis=-1)).save(path)


def _read_mask(path: Path) -> np.ndarray:
    if path.name.endswith((".nii", ".nii.gz")):
        return np.asarray(nib.load(str(path)).dataobj)
    return np.asarray(Image.open(path))


def _image_shape(path: Path, dims: int) -> tuple[int, ...]:
    """Spatial shape of an image as a reader of its format reports it (PIL: rows, columns)."""
    if dims == 3 or path.name.endswith((".nii", ".nii.gz")):
        return tuple(int(s) for s in nib.load(str(path)).shape[:3])
    return tuple(np.asarray(Image.open(path)).shape[:2])


@dataclass
class BundleSetup:
    """What the server was given for one bundle."""

    name: str
    dims: int
    labels: dict[str, int]
    app_bundle: Path
    network: dict[str, Any] = field(default_factory=dict)  # the recorded (tiny) network of models/model.pt
    probes: list[tuple[str, Path]] = field(default_factory=list)  # (image id, image file) for /infer
    train: list[tuple[str, Path]] = field(default_factory=list)  # (image id, label file) for PUT /datastore/label
    train_error: str = ""  # why the bundle's own training sample could not be made, if it could not


@dataclass
class Server:
    """A running MONAI Label server."""

    url: str
    client: httpx.Client
    process: subprocess.Popen
    log: Path
    bundles: dict[str, BundleSetup]
    restart: Callable[[], Server] | None = None  # a new server on the same app and studies

    def log_tail(self, lines: int = 60) -> str:
        text = self.log.read_text(errors="replace").splitlines()
        return "\n".join(text[-lines:])


def _expected_labels(bundle: Path) -> tuple[int, dict[str, int]]:
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    image = next(iter(meta["network_data_format"]["inputs"].values()))
    pred = next(iter(meta["network_data_format"]["outputs"].values()))
    labels = {v.lower(): int(k) for k, v in pred["channel_def"].items() if v.lower() != "background"}
    return len(image["spatial_shape"]), labels


def _prepare(app: Path, studies: Path, names: list[str]) -> dict[str, BundleSetup]:
    setups: dict[str, BundleSetup] = {}
    label_store = studies.parent / "labels_to_submit"
    label_store.mkdir()
    for index, name in enumerate(names):
        app_bundle = app / "model" / name
        network = _copy_tiny_bundle(name, app_bundle)
        dims, labels = _expected_labels(app_bundle)
        setup = BundleSetup(name=name, dims=dims, labels=labels, app_bundle=app_bundle, network=network)
        try:
            items = _training_items(app_bundle)
        except Exception as err:  # reported by this bundle's training test; the other bundles still run
            items, setup.train_error = [], f"{type(err).__name__}: {err}"
        for item in items:
            image, label = Path(item["image"]), Path(item["label"])
            image_id = f"{name}_{image.name[: -len(_full_ext(image))]}"
            shutil.copy(image, studies / f"{image_id}{_full_ext(image)}")
            shutil.copy(label, label_store / f"{image_id}{_full_ext(label)}")
            setup.train.append((image_id, label_store / f"{image_id}{_full_ext(label)}"))
        if dims == 2 and BUNDLE_CASES[name]["inputs"]:
            for k, (height, width, channels, ext) in enumerate(BUNDLE_CASES[name]["inputs"]):
                probe = studies / f"{name}_probe{k}{ext}"
                _write_probe_2d(probe, height, width, channels, seed=100 * index + k)
                setup.probes.append((probe.stem, probe))
        elif setup.train:  # 3D bundles, and 2D networks that segment volumes slice by slice (danie)
            image_id, _ = setup.train[0]
            setup.probes.append((image_id, next(studies.glob(f"{image_id}.*"))))
        setups[name] = setup
    return setups


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _stop(process: subprocess.Popen) -> None:
    """Stop the server and the processes it started (training runs in a child process): its own process group."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.pid, signal.SIGKILL)  # leftovers of the group, if any
    except (ProcessLookupError, PermissionError):
        pass
    process.wait(timeout=STOP_TIMEOUT_S)


def _start(
    root: Path,
    app: Path,
    studies: Path,
    setups: dict[str, BundleSetup],
    log_name: str,
    models: list[str] | None = None,
    conf: dict[str, str] | None = None,
) -> Server:
    """Start MONAI Label on the app and studies with ``models`` (default: every bundle) and further ``--conf`` settings;
    returns once ``/info/`` answers (bounded wait)."""
    port = _free_port()
    url = f"http://{HOST}:{port}"
    cmd = [
        sys.executable, "-m", "monailabel.main", "start_server",
        "--app", str(app), "--studies", str(studies),
        "--conf", "models", ",".join(models or BUNDLES),
        "--conf", "zoo_source", "github",  # local bundles only: no model-zoo look-up
        "--conf", "sam2", "false",
        "--conf", "preload", "false",
        *[arg for key, value in (conf or {}).items() for arg in ("--conf", key, value)],
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(STUB_DIR), str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["MONAI_LABEL_DATASTORE_AUTO_RELOAD"] = "false"
    # scoring runs when a test asks for it (POST /scoring/<name>), not when the server starts
    env["MONAI_LABEL_AUTO_UPDATE_SCORING"] = "false"
    log = root / log_name
    with open(log, "w") as log_file:
        process = subprocess.Popen(
            cmd, cwd=root, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    client = httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S, trust_env=False)
    srv = Server(url=url, client=client, process=process, log=log, bundles=setups)
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        if process.poll() is not None:
            client.close()
            pytest.fail(f"MONAI Label exited with {process.returncode} while starting:\n{srv.log_tail()}")
        try:
            if client.get("/info/", timeout=10).status_code == 200:
                return srv
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            client.close()
            _stop(process)
            pytest.fail(f"MONAI Label did not answer /info/ within {STARTUP_TIMEOUT_S:.0f} s:\n{srv.log_tail()}")
        time.sleep(1.0)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("monailabel")
    app = root / "apps" / "monaibundle"
    shutil.copytree(_installed_sample_app(), app, ignore=shutil.ignore_patterns("__pycache__", "logs", "model"))
    studies = root / "studies"
    studies.mkdir()
    setups = _prepare(app, studies, BUNDLES)
    srv = _start(root, app, studies, setups, "server.log")
    srv.restart = lambda: _start(root, app, studies, setups, "server_restarted.log")
    try:
        yield srv
    finally:
        srv.client.close()
        _stop(srv.process)


def _info(server: Server) -> dict[str, Any]:
    response = server.client.get("/info/")
    assert response.status_code == 200, response.text
    return response.json()


def _infer(server: Server, name: str, image_id: str, image: Path, out_dir: Path) -> np.ndarray:
    response = server.client.post(f"/infer/{name}", params={"image": image_id, "output": "image"})
    assert response.status_code == 200, f"/infer/{name} answered {response.status_code}: {response.text[:500]}\n" + (
        server.log_tail()
    )
    out = out_dir / f"{image_id}_mask{_full_ext(image)}"
    out.write_bytes(response.content)
    return _read_mask(out)


def _check_mask(mask: np.ndarray, image: Path, setup: BundleSetup) -> None:
    expected = _image_shape(image, setup.dims)
    assert mask.shape == expected, f"mask {mask.shape} for image {expected} ({image.name})"
    assert np.issubdtype(mask.dtype, np.integer), f"mask dtype {mask.dtype}: expected integer label values"
    allowed = {0, *setup.labels.values()}
    found = {int(v) for v in np.unique(mask)}
    assert found <= allowed, f"label values {sorted(found - allowed)} not in {sorted(allowed)}"


# ---------------------------------------------------------------------------------------------------------------
# tests
# ---------------------------------------------------------------------------------------------------------------


def test_bundles_and_sample_app_are_found():
    assert "hannet" in BUNDLES, "the hannet bundle (and its test case) must be served"
    assert (_installed_sample_app() / "main.py").is_file()


@pytest.mark.parametrize("name", BUNDLES)
def test_info_lists_bundle_with_its_labels(server: Server, name: str):
    info = _info(server)
    setup = server.bundles[name]
    assert name in info["models"], f"{name} missing from /info/ models: {sorted(info['models'])}\n{server.log_tail()}"
    model = info["models"][name]
    assert model["type"] == "segmentation"
    assert model["labels"] == setup.labels  # channel_def without background
    assert model["dimension"] == setup.dims
    assert model["version"] == json.loads((BUNDLES_DIR / name / "configs" / "metadata.json").read_text())["version"]
    assert set(setup.labels) <= set(info["labels"])
    assert name in info["trainers"], f"{name} has no trainer in /info/: {sorted(info['trainers'])}"


@pytest.mark.parametrize("name", BUNDLES)
def test_infer_returns_mask_of_image_size(server: Server, name: str, tmp_path: Path):
    setup = server.bundles[name]
    assert setup.probes, f"no image to segment for {name}: {setup.train_error}"
    for image_id, image in setup.probes:
        mask = _infer(server, name, image_id, image, tmp_path)
        _check_mask(mask, image, setup)


def _train_status(server: Server) -> dict[str, Any]:
    response = server.client.get("/train/", timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


@pytest.mark.parametrize("name", BUNDLES)
def test_train_one_epoch_then_infer(server: Server, name: str, tmp_path: Path):
    setup = server.bundles[name]
    assert not setup.train_error, f"{name}: train#datalist of train.json gave no training sample: {setup.train_error}"
    assert setup.train, f"{name}: the embedded training sample is empty"
    final = setup.app_bundle / "models" / "model_final.pt"
    assert not final.exists()
    for image_id, label in setup.train:
        with open(label, "rb") as fh:
            response = server.client.put(
                "/datastore/label", params={"image": image_id, "tag": "final"}, files={"label": (label.name, fh)}
            )
        assert response.status_code == 200, response.text
    try:
        request = {"max_epochs": 1, "val_split": 0.25, "multi_gpu": False, "device": "cpu", "pretrained": True}
        response = server.client.post(f"/train/{name}", json=request, timeout=60)
        assert response.status_code == 200, response.text
        task_id = response.json()["id"]

        status: dict[str, Any] = {}
        for _ in range(int(TRAIN_TIMEOUT_S / POLL_INTERVAL_S)):
            status = _train_status(server)
            if status.get("id") == task_id and status.get("status") not in ("SUBMITTED", "QUEUED", "RUNNING"):
                break
            time.sleep(POLL_INTERVAL_S)
        else:
            server.client.delete("/train/", timeout=30)
            pytest.fail(f"training {name} did not finish within {TRAIN_TIMEOUT_S:.0f} s: {status}")
        details = "\n".join(status.get("details", []))
        assert status["status"] == "DONE", f"training {name} ended {status['status']}:\n{details}\n{server.log_tail()}"
        assert "Training Finished" in details
    finally:
        for image_id, _ in setup.train:
            server.client.delete("/datastore/label", params={"id": image_id, "tag": "final"}, timeout=30)

    assert final.is_file(), "the bundle's CheckpointSaver wrote no model_final.pt"
    # a full training checkpoint ({"model": ..., "optimizer": ...}) or a plain state dict, with model weights in it
    assert state_dict_of(torch.load(final, map_location="cpu", weights_only=True), final)
    # fine-tuning kept the recorded (tiny) network: the records beside the new checkpoints say so, and every tensor
    # of each checkpoint loads into the network its record builds
    for checkpoint in (setup.app_bundle / "models" / "model.pt", final):
        assert record_path(checkpoint).is_file(), f"{checkpoint.name} has no record beside it"
        record = read_record(checkpoint, name, setup.app_bundle).record
        assert record is not None, f"{checkpoint.name}: no record read"
        assert record.network == setup.network, f"{checkpoint.name}: {record.network} is not the served tiny network"
        load_weights(record.build_network(), checkpoint)
    # MONAI Label reloads model.pt when it changes; the bundle still answers with a valid mask after training
    image_id, image = setup.probes[0]
    _check_mask(_infer(server, name, image_id, image, tmp_path), image, setup)


def test_restarted_server_builds_the_recorded_width(server: Server, tmp_path: Path):
    """Run last: after the fine-tuning above, a new server on the same app and studies builds every bundle from the
    record of its models/model.pt (the tiny width, not the configs' default, which would not fit the weights: MONAI
    Label's load would fail) and segments every probe image again."""
    assert server.restart is not None
    first_log = server.log
    server.client.close()
    _stop(server.process)
    restarted = server.restart()  # the fixture stops this process at the end of the module
    server.client, server.process, server.log, server.url = (
        restarted.client,
        restarted.process,
        restarted.log,
        restarted.url,
    )
    assert server.log != first_log
    for name in BUNDLES:
        setup = server.bundles[name]
        assert setup.probes, f"no image to segment for {name}: {setup.train_error}"
        record = read_record(setup.app_bundle / "models" / "model.pt", name, setup.app_bundle).record
        assert record is not None and record.network == setup.network, f"{name}: models/model.pt is not the tiny one"
        for image_id, image in setup.probes:
            _check_mask(_infer(server, name, image_id, image, tmp_path), image, setup)
    for log in (first_log, server.log):
        text = log.read_text(errors="replace")
        for sign in ("size mismatch", "do not fit the network"):
            assert sign not in text, (
                f"{log.name} reports {sign!r}:\n" + "\n".join(line for line in text.splitlines() if sign in line)[:3000]
            )
