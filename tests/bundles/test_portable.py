"""Portable, self-describing bundles (issue 12): the record travels with the weights, every consumer builds from it,
a bundle resolves to itself wherever it is copied, and a mismatch fails loudly.

Every bundle is trained for one epoch in a copy with the tiny test network (``bundle_copy``, a width the configs do not
build by default), then inferred, loaded and fine-tuned without any network override.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import monai.bundle
import pytest
import torch
from monai.bundle import ConfigParser, ConfigWorkflow

from attnseg_monai.bundle import (
    BUNDLES_DIR,
    BundleRecord,
    BundleRootError,
    RecordError,
    WeightsMismatchError,
    list_bundles,
    load_weights,
    read_record,
    record_path,
)
from attnseg_monai.inference import CheckpointError, load_bundle
from attnseg_monai.io.checkpoint import CheckpointReadError
from attnseg_monai.networks import network_config
from attnseg_monai.networks.utils import is_monte_carlo
from tests.bundles.helpers import configs, copy_bundle, overrides, working_directory

BUNDLES = list_bundles()
TINY_HANNET = {
    "_target_": "attnseg_monai.networks.nets.HanNet",
    "spatial_dims": 2,
    "in_channels": 3,
    "out_channels": 3,
    "features": [4, 8, 16, 32, 64],
}


def _tree(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def _cause_chain(exc: BaseException) -> str:
    text = []
    while exc is not None:
        text.append(str(exc))
        exc = exc.__cause__ or exc.__context__
    return " | ".join(text)


def _infer_workflow(root: Path, name: str, **extra) -> ConfigWorkflow:
    wf = ConfigWorkflow(
        config_file=configs(root, "inference.json"),
        logging_file=False,
        workflow_type="infer",
        **overrides(name, "infer", net=False, **extra),
    )
    wf.initialize()
    return wf


def _same_weights(net: torch.nn.Module, checkpoint: Path) -> None:
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    own = net.state_dict()
    assert set(own) == set(saved), "the network's keys differ from the checkpoint's"
    for key, value in saved.items():
        assert torch.equal(own[key].cpu(), value), f"{key} was not loaded"


# ----------------------------------------------------------------------------------------------- resolving itself


@pytest.mark.parametrize("name", BUNDLES)
def test_copy_resolves_to_itself_from_any_directory(name: str, tmp_path: Path):
    root = copy_bundle(name, tmp_path / "elsewhere")
    for cwd, config in (("/", root / "configs" / "inference.json"), (root, Path("configs/inference.json"))):
        with working_directory(cwd):
            wf = ConfigWorkflow(config_file=str(config), logging_file=False, workflow_type="infer")
            assert wf.parser.get_parsed_content("bundle_root") == str(root.resolve())
    with working_directory(BUNDLES_DIR.parent):  # the checkout's root: still the copy, never bundles/<name>
        wf = ConfigWorkflow(config_file=str(root / "configs" / "train.json"), logging_file=False)
        assert wf.parser.get_parsed_content("bundle_root") == str(root.resolve())


def test_bare_parser_and_folder_without_metadata_are_errors(tmp_path: Path):
    root = copy_bundle("hannet", tmp_path)
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "inference.json"))
    with pytest.raises(RuntimeError) as info:
        parser.get_parsed_content("bundle_root")
    assert isinstance(info.value.__cause__, BundleRootError) and "--bundle_root" in str(info.value.__cause__)
    (root / "configs" / "metadata.json").unlink()
    wf = ConfigWorkflow(
        config_file=str(root / "configs" / "inference.json"), meta_file=str(tmp_path / "m.json"), logging_file=False
    )
    with pytest.raises(RuntimeError) as info:
        wf.parser.get_parsed_content("bundle_root")
    assert "metadata.json is missing" in _cause_chain(info.value)


@pytest.mark.slow
def test_user_command_from_root_writes_only_into_the_copy(tmp_path: Path):
    """The README's command on a copy, started from ``/``: models and predictions appear in the copy, the checkout's
    bundles/ is untouched."""
    before = _tree(BUNDLES_DIR)
    root = copy_bundle("hannet", tmp_path)
    args = []
    for key, value in overrides("hannet", "train").items():
        args += [f"--{key}", json.dumps(value)]
    cmd = [sys.executable, "-m", "monai.bundle", "run", "training", "--config_file", str(root / "configs/train.json")]
    done = subprocess.run(cmd + args, cwd="/", capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (root / "models" / "model.pt").is_file() and record_path(root / "models" / "model.pt").is_file()
    cmd = [sys.executable, "-m", "monai.bundle", "run", "--config_file", "hannet/configs/inference.json"]
    done = subprocess.run(cmd + ["--roi_size", "[64, 64]"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert any((root / "eval" / "predictions").iterdir())
    assert _tree(BUNDLES_DIR) == before, "a run of a copy changed the checkout's bundles/"


# ------------------------------------------------------------------------------------- the record and its consumers


def test_every_checkpoint_has_its_record(bundle_copy):
    name, root = bundle_copy
    checkpoints = sorted(p for p in (root / "models").glob("*.pt"))
    assert {"model.pt", "model_final.pt"} <= {p.name for p in checkpoints}
    assert any(p.name.startswith("checkpoint") for p in checkpoints), "no resumable checkpoint"
    records = sorted((root / "models").glob("*.record.json"))
    assert [record_path(p) for p in checkpoints] == records, "a checkpoint without a record, or a stray record"
    record = read_record(root / "models" / "model.pt", name, root).record
    assert record.bundle == name and record.version and record.recipe
    meta = json.loads((root / "configs" / "metadata.json").read_text())
    assert record.classes == meta["network_data_format"]["outputs"]["pred"]["channel_def"]
    assert record.software["attnseg_monai"] and record.software["monai"]
    net = record.build_network()
    load_weights(net, root / "models" / "model.pt")  # every tensor, or an error


def test_inference_builds_the_recorded_network(bundle_copy):
    name, root = bundle_copy
    record = read_record(root / "models" / "model.pt").record
    with working_directory("/"):
        wf = _infer_workflow(root, name)
        net = wf.parser.get_parsed_content("network_def")
    assert network_config(net) == record.network
    for setting, value in record.preprocessing.items():
        if setting in wf.parser and setting not in overrides(name, "infer", net=False):
            assert wf.parser.get_parsed_content(setting) == value, f"inference does not repeat {setting}"


def test_monai_bundle_load_from_another_folder_loads_every_tensor(bundle_copy, tmp_path: Path):
    name, root = bundle_copy
    with working_directory(tmp_path):
        net = monai.bundle.load(name=root.name, bundle_dir=str(root.parent), device="cpu")
    _same_weights(net, root / "models" / "model.pt")


def test_attnseg_checkpoint_elsewhere_brings_its_record(bundle_copy, tmp_path: Path):
    name, root = bundle_copy
    elsewhere = tmp_path / "weights"
    elsewhere.mkdir()
    shutil.copy2(root / "models" / "model.pt", elsewhere / "best.pt")
    shutil.copy2(record_path(root / "models" / "model.pt"), record_path(elsewhere / "best.pt"))
    parts = load_bundle(name, checkpoint=elsewhere / "best.pt", overrides=overrides(name, "infer", net=False))
    _same_weights(parts.network, elsewhere / "best.pt")
    # the same weights without their record: the collection's default network does not fit, and that is an error
    record_path(elsewhere / "best.pt").unlink()
    with pytest.raises(CheckpointError, match=r"best\.pt.*do not fit.*no record"):
        load_bundle(name, checkpoint=elsewhere / "best.pt", overrides=overrides(name, "infer", net=False))


@pytest.mark.slow
def test_monailabel_style_finetuning_builds_the_recorded_network(bundle_copy, tmp_path: Path):
    """MONAI Label's /train: ``monai.bundle.run("run", init_id=None, ...)`` with its overrides and a CheckpointLoader
    (strict=False) inserted at index 0 of train#handlers; the trainer must build the recorded width (a quick-recipe
    network would not fit the tiny checkpoint) and every tensor must load."""
    name, source = bundle_copy
    root = tmp_path / name
    shutil.copytree(source, root)
    start = root / "models" / "model.pt"
    recorded = read_record(start).record.network
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    handlers = parser.get("train#handlers")
    handlers.insert(
        0,
        {"_target_": "CheckpointLoader", "load_path": str(start), "load_dict": {"model": "$@network"}, "strict": False},
    )
    train = {k: v for k, v in overrides(name, "train", net=False).items() if not k.startswith("network_def")}
    with working_directory(tmp_path):
        monai.bundle.run(
            run_id="run",
            init_id=None,
            final_id=None,
            meta_file=str(root / "configs" / "metadata.json"),
            config_file=str(root / "configs" / "train.json"),
            logging_file=False,
            **{**train, "bundle_root": str(root), "train#trainer#max_epochs": 1, "device": "cpu"},
            **{"train#handlers": handlers},
        )
    final = read_record(root / "models" / "model_final.pt").record
    assert final.network == recorded, "fine-tuning built another network than the checkpoint's"


# ------------------------------------------------------------------------------------------------------- refusals


def test_checkpoint_of_another_bundle_is_refused(bundle_copy, tmp_path: Path):
    name, root = bundle_copy
    other = "mcsa_unet" if name == "hannet" else "hannet"
    target = copy_bundle(other, tmp_path)
    (target / "models").mkdir()
    shutil.copy2(root / "models" / "model.pt", target / "models" / "model.pt")
    shutil.copy2(record_path(root / "models" / "model.pt"), record_path(target / "models" / "model.pt"))
    wf = _infer_workflow(target, other)
    with pytest.raises(RuntimeError) as info:
        wf.parser.get_parsed_content("network_def")
    text = _cause_chain(info.value)
    assert "model.record.json" in text and f"belongs to the bundle '{name}'" in text


def test_record_that_disagrees_with_the_config_is_refused(tmp_path: Path):
    root = copy_bundle("hannet", tmp_path)
    (root / "models").mkdir()
    net = BundleRecord(bundle="hannet", network=TINY_HANNET).build_network()
    torch.save(net.state_dict(), root / "models" / "model.pt")
    record = {
        "format": "attnseg-monai.bundle-record/1",
        "bundle": "hannet",
        "network": {**network_config(net), "out_channels": 5},
    }
    record_path(root / "models" / "model.pt").write_text(json.dumps(record))
    wf = _infer_workflow(root, "hannet")
    with pytest.raises(RuntimeError) as info:
        wf.parser.get_parsed_content("network_def")
    assert "model.record.json" in _cause_chain(info.value) and "out_channels 5 (config: 3)" in _cause_chain(info.value)
    record_path(root / "models" / "model.pt").write_text("{not json")
    with pytest.raises(RecordError, match=r"model\.record\.json: unreadable"):
        read_record(root / "models" / "model.pt")


def test_truncated_unsafe_and_mismatching_checkpoints_load_nothing(tmp_path: Path):
    record = BundleRecord(bundle="hannet", network=TINY_HANNET)
    net = record.build_network()
    path = tmp_path / "model.pt"
    torch.save(net.state_dict(), path)
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(CheckpointReadError, match=r"model\.pt: truncated"):
        load_weights(net, path)
    wide = BundleRecord(bundle="hannet", network={**record.network, "features": [8, 8, 16, 32, 64]}).build_network()
    torch.save(wide.state_dict(), path)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(WeightsMismatchError, match=r"model\.pt.*different shape.*nothing was loaded"):
        load_weights(net, path)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items()), "a partial load happened"


def test_a_record_never_names_anything_but_a_network_class(tmp_path: Path):
    """A record is data: a _target_ other than a registered network class is refused, never imported and called."""
    marker = tmp_path / "pwned"
    for target, args in (
        ("subprocess.run", {"args": ["touch", str(marker)]}),
        ("pathlib.Path.touch", {"self": str(marker)}),
        ("torch.nn.Linear", {"in_features": 1, "out_features": 1}),
    ):
        record = BundleRecord(bundle="hannet", network={"_target_": target, **args})
        with pytest.raises(RecordError, match="not a network class of attnseg_monai"):
            record.build_network(tmp_path / "model.record.json")
    assert not marker.exists()
    # through a bundle's inference config: refused before anything is built
    root = copy_bundle("hannet", tmp_path)
    (root / "models").mkdir()
    torch.save({}, root / "models" / "model.pt")
    bad = {"format": "attnseg-monai.bundle-record/1", "bundle": "hannet", "network": {"_target_": "os.system"}}
    record_path(root / "models" / "model.pt").write_text(json.dumps(bad))
    wf = _infer_workflow(root, "hannet")
    with pytest.raises(RuntimeError) as info:
        wf.parser.get_parsed_content("network_def")
    assert "not a network class" in _cause_chain(info.value)


def test_monailabel_epistemic_dropout_reaches_a_recorded_network(tmp_path: Path):
    """MONAI Label's epistemic scoring sets ``network_def#dropout``: the recorded network is built with it (dropout
    holds no weights, so every tensor still loads), and in train mode two passes then differ (Monte Carlo dropout)."""
    root = copy_bundle("hannet", tmp_path)
    (root / "models").mkdir()
    record = BundleRecord(bundle="hannet", network=TINY_HANNET)
    torch.save(record.build_network().state_dict(), root / "models" / "model.pt")
    record.write(record_path(root / "models" / "model.pt"))
    parser = ConfigParser()
    parser.read_config(configs(root, "inference.json"))
    parser.update({"bundle_root": str(root)})
    parser["network_def"]["dropout"] = 0.2  # what monailabel/tasks/infer/bundle.py does for scoring
    net = parser.get_parsed_content("network_def")
    rates = {m.p for m in net.modules() if isinstance(m, torch.nn.modules.dropout._DropoutNd)}
    assert rates == {0.2}, rates
    assert network_config(net)["features"] == TINY_HANNET["features"]  # the width is still the record's
    x = torch.rand(1, 3, 64, 64)

    def logits(module: torch.nn.Module) -> torch.Tensor:
        out = module(x)
        return out[0] if isinstance(out, (list, tuple)) else out

    net.train()
    assert not net.training and is_monte_carlo(net)  # batch norm on its running statistics, dropout sampling
    with torch.no_grad():
        assert isinstance(net(x), torch.Tensor)  # one output in train mode: no deep-supervision list
        assert not torch.equal(logits(net), logits(net))  # two Monte Carlo samples differ
        plain = record.build_network().train()  # dropout 0: batch statistics alone are deterministic
        assert torch.equal(logits(plain), logits(plain))
    with pytest.raises(RecordError, match="only"):
        record.build_network(features=[8, 8, 16, 32, 64])


#: the step of each bundle's inference that turns probabilities into labels (postprocessing transform or inferer)
LABEL_STEPS = {"AsDiscreted", "KeepLargestConnectedComponentd", "WatershedInstancesd", "SaveImaged", "Invertd"}


@pytest.mark.parametrize("name", BUNDLES)
def test_monailabel_epistemic_dropout_switches_the_bundle_to_probabilities(name: str, tmp_path: Path):
    """With ``network_def#dropout`` > 0 (MONAI Label's epistemic scoring) every bundle samples (Monte Carlo dropout)
    and its inference ends in class probabilities, which the scoring averages; with the default 0 it ends in labels."""
    root = copy_bundle(name, tmp_path)
    ends = {}
    for dropout in (0.0, 0.2):
        parser = ConfigParser()
        parser.read_config(configs(root, "inference.json"))
        parser.update({"bundle_root": str(root)})
        parser["network_def"]["dropout"] = dropout
        steps = {type(t).__name__ for t in parser.get_parsed_content("postprocessing").transforms}
        output = getattr(parser.get_parsed_content("inferer"), "output", "probabilities")
        sampling = parser.get_parsed_content("sampling")
        assert sampling == is_monte_carlo(parser.get_parsed_content("network_def")) == (dropout > 0)
        ends[dropout] = (
            bool(steps & LABEL_STEPS) or output == "labels",
            "Activationsd" in steps or output == "probabilities",
        )
    assert ends[0.0][0] and ends[0.2] == (False, True), ends
