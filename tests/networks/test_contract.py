"""One contract, run over every registered network (in the manner of segmentation_models_pytorch's model tests).

Per-network settings live in ``tests/networks/cases/<network>.py``; per-network behaviour in ``test_<network>.py``.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from monai.networks import convert_to_torchscript

from attnseg_monai import describe_network, get_network, list_networks
from tests.networks.cases import NetCase, all_cases

CASES = all_cases()
DIM_CASES = [pytest.param(c, d, id=f"{c}-{d}d") for c in CASES for d in c.dims]


def _sizes(net: torch.nn.Module, spatial_dims: int) -> list[tuple[int, ...]]:
    """The smallest valid input and an odd-but-valid, anisotropic one."""
    d = int(net.size_divisible_by)
    if spatial_dims == 2:
        return [(d, d), (3 * d, 5 * d if d < 32 else d)]
    return [(d, d, d), (d, 3 * d, d)]


def _input(spatial_dims: int, size: tuple[int, ...], channels: int, batch: int = 2) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn((batch, channels, *size), generator=g)


def test_every_registered_network_has_a_case():
    covered = {c.name for c in CASES}
    missing = sorted(set(list_networks()) - covered)
    assert not missing, f"networks without a contract case in tests/networks/cases: {missing}"
    assert len(list_networks()) >= 5


def test_unknown_name_lists_known_networks():
    with pytest.raises(KeyError) as err:
        get_network("no-such-network")
    for name in list_networks():
        assert name in str(err.value)


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
@pytest.mark.parametrize("in_channels,out_channels", [(1, 2), (3, 4)])
def test_eval_shapes(case: NetCase, spatial_dims: int, in_channels: int, out_channels: int):
    torch.manual_seed(0)
    net = get_network(case.name, **case.build_kwargs(spatial_dims, in_channels, out_channels)).eval()
    assert net.in_channels == in_channels and net.out_channels == out_channels
    for size in _sizes(net, spatial_dims):
        with torch.no_grad():
            out = net(_input(spatial_dims, size, in_channels))
        assert isinstance(out, torch.Tensor), f"{case.name} must return a Tensor in eval mode"
        assert out.shape == (2, out_channels, *size)
        assert torch.isfinite(out).all()


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
def test_backward_gives_finite_gradients(case: NetCase, spatial_dims: int):
    torch.manual_seed(0)
    net = get_network(case.name, **case.build_kwargs(spatial_dims)).train()
    size = _sizes(net, spatial_dims)[0]
    out = net(_input(spatial_dims, size, 1))
    outs = out if isinstance(out, (list, tuple)) else [out]
    loss = sum(o.float().square().mean() for o in outs)
    loss.backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert grads, "network has no trainable parameters"
    with_grad = [g for g in grads if g is not None]
    assert len(with_grad) == len(grads), f"{len(grads) - len(with_grad)} parameters received no gradient"
    assert all(torch.isfinite(g).all() for g in with_grad)
    assert any(g.abs().sum() > 0 for g in with_grad)


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
def test_deep_supervision_outputs(case: NetCase, spatial_dims: int):
    if case.deep_supervision is None:
        net = get_network(case.name, **case.build_kwargs(spatial_dims)).train()
        out = net(_input(spatial_dims, _sizes(net, spatial_dims)[0], 1))
        assert isinstance(out, torch.Tensor), "a network without deep supervision returns a Tensor in training too"
        return
    net = get_network(case.name, **case.build_kwargs(spatial_dims, out_channels=3, **case.deep_supervision))
    size = _sizes(net, spatial_dims)[0]
    x = _input(spatial_dims, size, 1)
    net.train()
    outs = net(x)
    assert isinstance(outs, list) and len(outs) == case.deep_supervision_outputs
    assert outs[0].shape == (2, 3, *size), "the final output comes first, at the input size"
    for o in outs[1:]:
        assert o.shape[:2] == (2, 3) and o.ndim == 2 + spatial_dims
        assert all(s <= t for s, t in zip(o.shape[2:], size))
    net.eval()
    with torch.no_grad():
        assert isinstance(net(x), torch.Tensor)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_invalid_arguments_raise_value_error(case: NetCase):
    common = [{"spatial_dims": 4}, {"spatial_dims": 1}, {"in_channels": 0}, {"out_channels": 0}]
    for bad in common + case.invalid_kwargs:
        kwargs = {**case.build_kwargs(2), **bad}
        with pytest.raises(ValueError):
            get_network(case.name, **kwargs)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_wrong_input_size_raises_value_error(case: NetCase):
    net = get_network(case.name, **case.build_kwargs(2)).eval()
    d = int(net.size_divisible_by)
    if d == 1:
        pytest.skip("every size is valid for this network")
    with pytest.raises(ValueError, match=str(d)):
        net(torch.zeros(1, 1, d + 1, d))


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
def test_torchscript_round_trip(case: NetCase, spatial_dims: int):
    torch.manual_seed(0)
    net = get_network(case.name, **case.build_kwargs(spatial_dims)).eval()
    x = _input(spatial_dims, _sizes(net, spatial_dims)[0], 1, batch=1)
    reason = getattr(net, "torchscript_unsupported", None)
    if reason:
        with pytest.raises(Exception):  # noqa: B017 - the declared failure, whatever TorchScript raises
            convert_to_torchscript(net, verify=True, inputs=[x], device="cpu")
        return
    scripted = convert_to_torchscript(net, verify=True, inputs=[x], device="cpu", rtol=1e-4, atol=case.atol)
    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    buffer.seek(0)
    loaded = torch.jit.load(buffer)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), net(x), rtol=1e-4, atol=case.atol)


@pytest.mark.parametrize("case", CASES, ids=str)
def test_onnx_export_matches_pytorch(case: NetCase, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    net = get_network(case.name, **case.build_kwargs(2)).eval()
    x = _input(2, _sizes(net, 2)[0], 1, batch=1)
    path = tmp_path / f"{case.name}{case.variant}.onnx"
    reason = getattr(net, "onnx_unsupported", None)
    if reason:
        with pytest.raises(Exception):  # noqa: B017 - the declared failure
            torch.onnx.export(net, (x,), str(path), dynamo=False, opset_version=17)
        return
    torch.onnx.export(
        net, (x,), str(path), dynamo=False, opset_version=17, input_names=["image"], output_names=["pred"]
    )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = net(x).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=max(case.atol, 1e-4))


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
def test_describe_network(case: NetCase, spatial_dims: int):
    net = get_network(case.name, **case.build_kwargs(spatial_dims))
    size = _sizes(net, spatial_dims)[0]
    desc = describe_network(net, size)
    assert desc.parameters == sum(p.numel() for p in net.parameters()) > 0
    assert desc.flops > 0 and desc.flops_per_element == pytest.approx(desc.flops / np.prod(size))
    assert net.training, "describe_network restores the training flag"


@pytest.mark.parametrize("case,spatial_dims", DIM_CASES)
def test_attention_maps_leave_the_network_as_it_was(case: NetCase, spatial_dims: int):
    torch.manual_seed(0)
    net = get_network(case.name, **case.build_kwargs(spatial_dims)).train()
    if not hasattr(net, "attention_maps"):
        pytest.skip("this network has no attention_maps")
    maps = net.attention_maps(_input(spatial_dims, _sizes(net, spatial_dims)[0], 1))
    assert isinstance(maps, dict) and all(isinstance(v, torch.Tensor) for v in maps.values())
    for name, m in maps.items():
        assert not m.requires_grad and m.shape[0] == 2 and m.ndim == 2 + spatial_dims, name
        assert 0 <= float(m.min()) and float(m.max()) <= 1, f"{name} is not in [0, 1]"
    assert all(m.training for m in net.modules()), "attention_maps restores the training flag"
    d = int(net.size_divisible_by)
    if d > 1:
        with pytest.raises(ValueError, match=str(d)):
            net.attention_maps(torch.zeros(1, 1, d + 1, *([d] * (spatial_dims - 1))))
        assert all(m.training for m in net.modules()), "and so it does when the input is refused"
