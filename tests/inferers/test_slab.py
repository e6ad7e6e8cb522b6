"""Slab-streamed sliding-window and slice-wise inference equal MONAI's inferers with a slab-sized float stitch.

The slab inferer evaluates MONAI's window grid (same positions, same importance map) and only reorders the
windows along the slab axis, so the blended logits equal MONAI's up to the order of floating-point additions
(and the batch composition of the network calls), i.e. ~1e-7. Labels can then only differ where two classes'
averaged logits tie within that rounding; the tests require >= 99.9% label agreement and in practice see 100%.
There is no halo to tune and no seam: every voxel is finalised only after every window covering it was added.
"""

from __future__ import annotations

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SliceInferer, SlidingWindowInferer
from torch.utils._python_dispatch import TorchDispatchMode

from attnseg_monai.inferers import SlabSlidingWindowInferer, SliceWiseInferer, label_dtype

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_net(spatial_dims: int, out_channels: int, seed: int = 0) -> torch.nn.Module:
    """Two convolutions (receptive field 7) so that a window's border voxels depend on the window's context."""
    conv = torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        conv(1, 4, 3, padding=1), torch.nn.Tanh(), conv(4, out_channels, 3, padding=2, dilation=2)
    ).eval()


def agreement(labels: torch.Tensor, logits: torch.Tensor) -> float:
    return (labels[:, 0].long() == logits.argmax(1)).double().mean().item()


CASES_3D = [
    # roi, overlap, mode, axis, sw_batch_size, shape (B, C, *spatial)
    ((8, 8, 8), 0.25, "constant", None, 1, (1, 1, 21, 17, 13)),
    ((8, 6, 4), 0.5, "gaussian", 0, 3, (2, 1, 14, 12, 9)),
    ((8, 8, 8), 0.25, "gaussian", 2, 4, (1, 1, 21, 17, 13)),
    ((24, 6, 16), 0.3, "gaussian", 1, 2, (1, 1, 21, 17, 13)),  # roi larger than the volume: padded, then cropped
    ((8, 8, 8), 0.0, "constant", -1, 2, (1, 1, 16, 16, 16)),  # no overlap
]


@pytest.mark.parametrize("roi, overlap, mode, axis, sw, shape", CASES_3D)
def test_3d_matches_monai_sliding_window(roi, overlap, mode, axis, sw, shape):
    net = tiny_net(3, 5)
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = SlidingWindowInferer(roi, sw, overlap, mode)(x, net)

    def make(output: str) -> SlabSlidingWindowInferer:
        return SlabSlidingWindowInferer(roi, sw, overlap, mode, axis=axis, output=output)

    logits = make("logits")(x, net)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    labels = make("labels")(x, net)
    assert labels.dtype == torch.uint8 and labels.shape == (shape[0], 1, *shape[2:])
    assert agreement(labels, reference) >= 0.999


def test_probabilities_are_float16_softmax():
    net = tiny_net(3, 4)
    x = torch.randn(1, 1, 15, 13, 11, generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        reference = SlidingWindowInferer(8, 2, 0.25, "gaussian")(x, net)
    probs = SlabSlidingWindowInferer(8, 2, 0.25, "gaussian", output="probabilities")(x, net)
    assert probs.dtype == torch.float16 and probs.shape == reference.shape
    torch.testing.assert_close(probs.float(), reference.softmax(1), atol=1e-3, rtol=0)


def test_2d_matches_monai_sliding_window():
    net = tiny_net(2, 3)
    x = torch.randn(2, 1, 37, 29, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = SlidingWindowInferer((12, 10), 3, 0.5, "gaussian")(x, net)
    labels = SlabSlidingWindowInferer((12, 10), 3, 0.5, "gaussian")(x, net)
    assert labels.shape == (2, 1, 37, 29)
    assert agreement(labels, reference) >= 0.999


@pytest.mark.parametrize("roi, axis, sw", [((8, 8), -1, 8), (None, 0, 3), ((10, 6), 1, 5)])
def test_slice_wise_matches_monai_slice_inferer(roi, axis, sw):
    net = tiny_net(2, 9)
    x = torch.randn(1, 1, 19, 17, 11, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        reference = SliceInferer(
            roi_size=roi or (-1, -1), sw_batch_size=sw, spatial_dim=axis % 3, overlap=0.25, mode="gaussian"
        )(x, net)
    logits = SliceWiseInferer(roi, sw, 0.25, "gaussian", axis=axis, output="logits")(x, net)
    torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
    labels = SliceWiseInferer(roi, sw, 0.25, "gaussian", axis=axis)(x, net)
    assert labels.dtype == torch.uint8 and labels.shape == (1, 1, 19, 17, 11)
    assert agreement(labels, reference) >= 0.999


def test_output_is_a_metatensor_with_the_input_metadata():
    affine = torch.tensor([[0.0, -0.8, 0, 10], [0.9, 0, 0, -5], [0, 0, 2.5, 3], [0, 0, 0, 1]], dtype=torch.float64)
    x = MetaTensor(torch.randn(1, 1, 12, 10, 9), affine=affine, meta={"filename_or_obj": "ct.nii.gz"})
    x.applied_operations = [{"class": "Spacingd", "id": 1}]
    out = SlabSlidingWindowInferer(8)(x, tiny_net(3, 4))
    assert isinstance(out, MetaTensor) and out.dtype == torch.uint8
    torch.testing.assert_close(out.affine, affine)
    assert out.meta["filename_or_obj"] == "ct.nii.gz"
    assert out.applied_operations == x.applied_operations
    plain = SlabSlidingWindowInferer(8)(x.as_tensor(), tiny_net(3, 4))
    assert not isinstance(plain, MetaTensor)
    torch.testing.assert_close(plain, out.as_tensor())


def test_label_dtype_and_single_channel_networks():
    assert label_dtype(2) == torch.uint8 and label_dtype(256) == torch.uint8
    assert label_dtype(257) == torch.int16 and label_dtype(40000) == torch.int32
    x = torch.randn(1, 1, 10, 9, 8, generator=torch.Generator().manual_seed(4))
    net = tiny_net(3, 1)
    with torch.no_grad():
        logit = SlidingWindowInferer(6, 2, 0.5)(x, net)
    labels = SlabSlidingWindowInferer(6, 2, 0.5)(x, net)
    torch.testing.assert_close(labels, (logit > 0).to(torch.uint8))
    probs = SlabSlidingWindowInferer(6, 2, 0.5, output="probabilities")(x, net)
    torch.testing.assert_close(probs.float(), torch.sigmoid(logit), atol=1e-3, rtol=0)


def test_deep_supervision_list_uses_the_final_output():
    net = tiny_net(3, 3)

    def supervised(x: torch.Tensor) -> list[torch.Tensor]:
        out = net(x)
        return [out, out[:, :, ::2, ::2, ::2]]

    x = torch.randn(1, 1, 12, 12, 12, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(SlabSlidingWindowInferer(8)(x, supervised), SlabSlidingWindowInferer(8)(x, net))


def test_invalid_arguments_and_inputs_raise_value_error():
    x = torch.randn(1, 1, 10, 10, 10)
    net = tiny_net(3, 2)
    for kwargs, match in [
        ({"sw_batch_size": 0}, "sw_batch_size"),
        ({"overlap": 1.0}, "overlap"),
        ({"mode": "linear"}, "mode"),
        ({"output": "argmax"}, "output"),
        ({"axis": 1.5}, "axis"),
        ({"sigma_scale": 0}, "sigma_scale"),
        ({"padding_mode": "wrap"}, "padding_mode"),
    ]:
        with pytest.raises(ValueError, match=match):
            SlabSlidingWindowInferer(8, **kwargs)
    with pytest.raises(ValueError, match="roi_size"):
        SlabSlidingWindowInferer((8, 8))(x, net)
    with pytest.raises(ValueError, match="axis"):
        SlabSlidingWindowInferer(8, axis=3)(x, net)
    with pytest.raises(ValueError, match="B, C"):
        SlabSlidingWindowInferer(8)(torch.randn(10), net)
    with pytest.raises(ValueError, match="spatial size"):
        SlabSlidingWindowInferer(8)(x, lambda w: w[:, :, :4])
    with pytest.raises(ValueError, match="Tensor"):
        SlabSlidingWindowInferer(8)(x, lambda w: {"pred": w})
    with pytest.raises(ValueError, match="2D window"):
        SliceWiseInferer((8, 8, 8))
    with pytest.raises(ValueError, match="3D volume"):
        SliceWiseInferer(8)(torch.randn(1, 1, 10, 10), tiny_net(2, 2))


class LargestAllocation(TorchDispatchMode):
    """Bytes of the largest floating-point and of the largest integer tensor any op creates."""

    def __init__(self) -> None:
        super().__init__()
        self.float_bytes = 0
        self.int_bytes = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = [a for a in (*args, *(kwargs or {}).values()) if isinstance(a, torch.Tensor)]
        storages = {a.untyped_storage().data_ptr() for a in inputs}
        for t in out if isinstance(out, (tuple, list)) else (out,):
            # views (window slices) and in-place results share an input's storage: they allocate nothing
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in storages:
                size = t.numel() * t.element_size()
                if t.is_floating_point():
                    self.float_bytes = max(self.float_bytes, size)
                else:
                    self.int_bytes = max(self.int_bytes, size)
        return out


def largest_allocations(inferer, x: torch.Tensor, net: torch.nn.Module) -> LargestAllocation:
    mode = LargestAllocation()
    with torch.no_grad(), mode:
        inferer(x, net)
    return mode


def test_float_memory_scales_with_the_slab_not_the_volume():
    classes, roi = 5, (8, 8, 8)
    net = tiny_net(3, classes)
    slab = SlabSlidingWindowInferer(roi, 2, 0.25, "gaussian", axis=2)
    monai = SlidingWindowInferer(roi, 2, 0.25, "gaussian")
    short, long = torch.randn(1, 1, 12, 11, 16), torch.randn(1, 1, 12, 11, 64)

    slab_short, slab_long = largest_allocations(slab, short, net), largest_allocations(slab, long, net)
    monai_long = largest_allocations(monai, long, net)
    # the float stitch is one slab deep whatever the length along the slab axis ...
    assert slab_short.float_bytes == slab_long.float_bytes
    estimate = slab.estimate_memory(long.shape[2:], classes)
    assert estimate["slab_planes"] == roi[2]
    assert slab_long.float_bytes == estimate["slab_bytes"] * classes // (classes + 1)  # the C-channel slab buffer
    # ... the only volume-sized allocation is the uint8 output (argmax indices are made per block of planes),
    # while MONAI stitches C float32 channels of the whole volume
    assert slab_long.int_bytes == estimate["output_bytes"] == long.numel()
    assert monai_long.float_bytes == classes * long.numel() * 4
    assert monai_long.float_bytes >= 5 * slab_long.float_bytes


def test_automatic_axis_picks_the_smallest_slab():
    inferer = SlabSlidingWindowInferer((96, 96, 96))
    ct = inferer.estimate_memory((512, 512, 200), num_classes=14)
    along_z = SlabSlidingWindowInferer((96, 96, 96), axis=-1).estimate_memory((512, 512, 200), num_classes=14)
    assert ct["axis"] == 1 and ct["slab_planes"] == 96
    assert ct["slab_bytes"] == 15 * 96 * 512 * 200 * 4
    assert along_z["slab_bytes"] > 2.5 * ct["slab_bytes"]
    assert ct["output_bytes"] == 512 * 512 * 200
    slices = SliceWiseInferer(None, sw_batch_size=4).estimate_memory((512, 512, 200), num_classes=9)
    assert slices["axis"] == 2 and slices["slab_planes"] == 4
