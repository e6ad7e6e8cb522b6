"""``multi_gpu_train.json`` under torchrun (gloo, 2 CPU processes): every bundle, and the way MONAI Label starts it.

MONAI Label's multi-GPU training (``monailabel/tasks/train/bundle.py``) inserts a ``CheckpointLoader`` at index 0 of
``train#handlers``, writes the result as ``configs/monailabel_train.json`` beside the bundle's configs and runs
``torchrun ... -m monai.bundle run run --meta_file ... --config_file "['<monailabel_train.json>',
'<multi_gpu_train.json>']" --logging_file ...``; ``--tracking mlflow`` appends handlers. Handlers are therefore kept
by kind on ranks > 0 (``attnseg_monai.bundle.rank_handlers``), never by position.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.handlers import (
    CheckpointLoader,
    LogfileHandler,
    LrScheduleHandler,
    MetricsSaver,
    MLFlowHandler,
    StatsHandler,
    TensorBoardStatsHandler,
    ValidationHandler,
)

from attnseg_monai.bundle import BUNDLES_DIR, list_bundles, local_device, rank_handlers, read_record
from attnseg_monai.handlers import AtomicCheckpointSaver, ProgressHandler
from tests.bundles.helpers import configs, copy_bundle, overrides, run_workflow

BUNDLES = list_bundles()


def _handlers(tmp_path: Path) -> list:
    net = torch.nn.Linear(1, 1)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    return [
        CheckpointLoader(load_path=str(tmp_path / "model.pt"), load_dict={"model": net}),  # MONAI Label's, index 0
        LrScheduleHandler(scheduler),
        ValidationHandler(interval=1, validator=None),
        ProgressHandler(),
        StatsHandler(),
        LogfileHandler(output_dir=str(tmp_path)),
        TensorBoardStatsHandler(log_dir=str(tmp_path)),
        AtomicCheckpointSaver(save_dir=str(tmp_path), save_dict={"model": net}, save_final=True),
        MetricsSaver(save_dir=str(tmp_path)),
        # appended by --tracking mlflow (mlflow itself is not installed here: the handler's kind is what matters)
        MLFlowHandler.__new__(MLFlowHandler),
    ]


def test_rank_handlers_keep_by_kind_not_position(tmp_path: Path):
    handlers = _handlers(tmp_path)
    assert rank_handlers(handlers, rank=0) == handlers
    kept = rank_handlers(handlers, rank=1)
    assert [type(h) for h in kept] == [CheckpointLoader, LrScheduleHandler, ValidationHandler, MetricsSaver]
    # the same on any order and with the loader removed or moved: identity, not position
    assert [type(h) for h in rank_handlers(handlers[::-1], rank=3)] == [
        MetricsSaver,
        ValidationHandler,
        LrScheduleHandler,
        CheckpointLoader,
    ]
    assert rank_handlers(None, rank=1) == []


def test_device_is_the_local_rank(monkeypatch):
    monkeypatch.setenv("RANK", "5")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert local_device() == torch.device("cuda:1")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(RuntimeError, match="LOCAL_RANK='2'.*--nproc_per_node"):
        local_device()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert local_device() == torch.device("cpu")


def test_no_multi_gpu_config_selects_handlers_by_position():
    for name in BUNDLES:
        text = (BUNDLES_DIR / name / "configs" / "multi_gpu_train.json").read_text()
        assert "handlers[" not in text and "get_rank()}" not in text, f"{name}: handlers or device by position"
        assert "rank_handlers(@train#handlers)" in text and "rank_handlers(@validate#handlers)" in text
        assert "local_device()" in text


def _torchrun(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Two processes on this node, as MONAI Label starts them (``--standalone``: a free port for each run, so runs of
    other test sessions on the same machine cannot collide)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes=1", "--nproc_per_node=2"]
    return subprocess.run(run + cmd, capture_output=True, text=True, env=env, timeout=600, cwd=cwd)


def _cli(values: dict) -> list[str]:
    args = []
    for key, value in values.items():
        args += [f"--{key}", json.dumps(value) if not isinstance(value, str) else value]
    return args


@pytest.mark.slow
@pytest.mark.parametrize("name", BUNDLES)
def test_two_process_gloo_training(name: str, tmp_path: Path):
    root = copy_bundle(name, tmp_path)
    configs_arg = "['{}','{}']".format(*configs(root, "train.json", "multi_gpu_train.json"))
    cmd = ["-m", "monai.bundle", "run", "training", "--config_file", configs_arg, *_cli(overrides(name, "train"))]
    result = _torchrun(cmd, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (root / "models" / "model_final.pt").is_file()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hannet", "attention_unet"])
def test_two_process_training_as_monailabel_starts_it(name: str, tmp_path: Path):
    """A tiny model trained first (its record: the tiny width); then MONAI Label's multi-GPU fine-tuning command with
    its CheckpointLoader at index 0: both ranks build the recorded width and keep their ValidationHandler."""
    root = copy_bundle(name, tmp_path)
    train = overrides(name, "train")
    run_workflow(configs(root, "train.json"), root, "train", "training", **train)
    start = root / "models" / "model.pt"
    recorded = read_record(start).record.network
    parser = ConfigParser()
    parser.read_config(str(root / "configs" / "train.json"))
    for key, value in {k: v for k, v in train.items() if not k.startswith("network_def")}.items():
        parser[key] = value
    parser["bundle_root"] = str(root)
    parser["train#trainer#max_epochs"] = 1
    handlers = parser.get("train#handlers")
    handlers.insert(
        0,
        {"_target_": "CheckpointLoader", "load_path": str(start), "load_dict": {"model": "$@network"}, "strict": False},
    )
    ConfigParser.export_config_file(parser.config, str(root / "configs" / "monailabel_train.json"), indent=2)
    configs_arg = "['{}','{}']".format(*configs(root, "monailabel_train.json", "multi_gpu_train.json"))
    cmd = ["-m", "monai.bundle", "run", "run", "--meta_file", str(root / "configs" / "metadata.json")]
    cmd += ["--config_file", configs_arg, "--logging_file", str(root / "configs" / "logging.conf")]
    (root / "models" / "model_final.pt").unlink()
    result = _torchrun(cmd, tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (root / "models" / "model_final.pt").is_file()
    assert read_record(root / "models" / "model_final.pt").record.network == recorded
