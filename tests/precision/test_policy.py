"""Precision policy selection from (made-up) device capabilities, and CPU flag parsing."""

from __future__ import annotations

import pytest
import torch

from attnseg_monai.precision import DeviceCapabilities, PrecisionPolicy, cpu_flags, detect_capabilities, resolve_policy

AMX = DeviceCapabilities("cpu", "AVX512", frozenset({"avx512f", "amx_bf16", "amx_tile", "avx512_bf16"}))
AVX512_BF16 = DeviceCapabilities("cpu", "AVX512", frozenset({"avx512f", "avx512_bf16"}))
OLD_CPU = DeviceCapabilities("cpu", "AVX2", frozenset({"avx2"}))
AMPERE = DeviceCapabilities("cuda", cuda_name="A100", cuda_bf16=True)
TURING = DeviceCapabilities("cuda", cuda_name="T4", cuda_bf16=False)


@pytest.mark.parametrize(
    ("caps", "name", "channels_last"),
    [(AMX, "bf16", True), (AVX512_BF16, "bf16", True), (OLD_CPU, "fp32", False), (AMPERE, "bf16", True)],
)
def test_auto_policy_follows_capabilities(caps, name, channels_last):
    policy = resolve_policy("auto", caps.device_type, capabilities=caps)
    assert (policy.name, policy.channels_last, policy.device_type) == (name, channels_last, caps.device_type)
    # auto runs bf16/fp16 under autocast with float32 weights and never folds batch norm (it cost accuracy)
    assert policy.autocast == (name != "fp32") and not policy.fold_batch_norm
    assert policy.weight_dtype == torch.float32
    assert policy.is_reference == (name == "fp32")
    assert policy.reason


def test_auto_policy_on_old_gpu_is_fp16_and_reasons_differ():
    old, new = resolve_policy("auto", "cuda", TURING), resolve_policy("auto", "cuda", AMPERE)
    assert old.dtype == torch.float16 and new.dtype == torch.bfloat16 and old.reason != new.reason


def test_forced_precisions_ignore_capabilities():
    assert resolve_policy("fp32", "cpu", capabilities=AMX).is_reference
    forced = resolve_policy("bf16", "cpu", capabilities=OLD_CPU)
    assert forced.name == "bf16" and forced.channels_last and forced.fold_batch_norm and not forced.autocast
    assert forced.weight_dtype == torch.bfloat16
    assert resolve_policy("fp16", "cpu", capabilities=AMX, fold_batch_norm=False).fold_batch_norm is False


def test_bad_precision_and_policy_names_raise():
    with pytest.raises(ValueError, match="precision must be one of"):
        resolve_policy("fp8")
    with pytest.raises(ValueError, match="policy name"):
        PrecisionPolicy("int8")


def test_cast_input_and_memory_formats():
    bf16 = resolve_policy("bf16")
    x2, x3 = torch.rand(1, 3, 8, 8), torch.rand(1, 2, 4, 4, 4)
    y2, y3 = bf16.cast_input(x2), bf16.cast_input(x3)
    assert y2.dtype == y3.dtype == torch.bfloat16
    assert y2.is_contiguous(memory_format=torch.channels_last)
    assert y3.is_contiguous(memory_format=torch.channels_last_3d)
    assert resolve_policy("fp32").cast_input(x2) is x2
    labels = torch.zeros(1, 1, 4, 4, dtype=torch.long)
    assert bf16.cast_input(labels) is labels


def test_cpu_flags_parsing(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 avx512_bf16\n\nprocessor\t: 1\n")
    assert {"amx_bf16", "avx512_bf16", "avx2"} <= cpu_flags(info)
    assert cpu_flags(tmp_path / "missing") == frozenset()
    caps = detect_capabilities("cpu")
    assert caps.device_type == "cpu" and caps.as_dict()["cpu_bf16"] == caps.cpu_bf16
    with pytest.raises(ValueError, match="device"):
        detect_capabilities("not-a-device")


def test_autocast_iteration_runs_the_trainer_step_in_bf16():
    from monai.engines import SupervisedTrainer

    from attnseg_monai.precision import AutocastIteration

    seen = []
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3, padding=1))
    net.register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    data = [{"image": torch.rand(2, 1, 8, 8), "label": torch.randint(0, 2, (2, 1, 8, 8))}]
    before = net[0].weight.detach().clone()
    trainer = SupervisedTrainer(
        device=torch.device("cpu"),
        max_epochs=1,
        train_data_loader=data,
        network=net,
        optimizer=torch.optim.SGD(net.parameters(), lr=0.1),
        loss_function=lambda pred, label: torch.nn.functional.cross_entropy(pred.float(), label[:, 0].long()),
        iteration_update=AutocastIteration("bf16"),
    )
    trainer.run()
    assert seen == [torch.bfloat16] and net[0].weight.dtype == torch.float32
    assert not torch.equal(before, net[0].weight)  # the optimiser stepped
    assert AutocastIteration("fp32").enabled_for(torch.device("cpu")) is False
    with pytest.raises(ValueError, match="amp=True"):
        AutocastIteration("fp16")


def test_autocast_policy_keeps_float32_weights_and_returns_float32():
    from torch import nn

    from attnseg_monai.precision import prepare_for_inference

    policy = resolve_policy("auto", "cpu", capabilities=AMX)
    net = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 1)).eval()
    fast = prepare_for_inference(net, policy)
    assert all(p.dtype == torch.float32 for p in fast.parameters())
    assert isinstance(fast.module[1], nn.BatchNorm2d)  # not folded
    x = torch.rand(1, 2, 16, 16)
    with torch.no_grad():
        out, ref = fast(x), net(x)
    assert out.dtype == torch.float32 and out.shape == ref.shape
    assert torch.allclose(out, ref, atol=0.05) and not torch.equal(out, ref)  # bf16 convolutions, close to fp32


# measured per bundle (docs/benchmarks.md, "Training precision"): bf16 autocast where it shortened the default
# training with the same validation figures; danie gained 1.04x per step and stays float32
TRAIN_PRECISION = {
    "hannet": "auto",
    "mcsa_unet": "auto",
    "focal_attn_unet": "auto",
    "attention_unet": "auto",
    "danie": "fp32",
}


@pytest.mark.parametrize("bundle", sorted(TRAIN_PRECISION))
def test_bundle_trainers_use_the_measured_training_precision(bundle):
    from monai.bundle import ConfigParser

    from attnseg_monai.bundle import BUNDLES_DIR
    from attnseg_monai.precision import AutocastIteration

    parser = ConfigParser()
    parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "train.json"))
    update = parser.get_parsed_content("train#trainer#iteration_update")
    assert isinstance(update, AutocastIteration) and update.precision == TRAIN_PRECISION[bundle]
    # --train_precision fp32 switches it off on any device
    parser["train_precision"] = "fp32"
    assert parser.get_parsed_content("train#trainer#iteration_update").enabled_for(torch.device("cpu")) is False
