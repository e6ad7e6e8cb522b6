"""UNet3Plus specifics: the full-scale skip connections of every decoder node, the paper's size, deep supervision."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from attnseg_monai.networks.blocks import FullScaleDecoderNode
from attnseg_monai.networks.nets import UNet3Plus


def test_every_decoder_node_sees_every_scale():
    net = UNet3Plus(2, 1, 2, features=(4, 8, 16, 32, 64), cat_channels=3)
    assert [node.level for node in net.decoder] == [3, 2, 1, 0]  # deepest node first
    for node in net.decoder:
        assert len(node.paths) == 5 and node.out_channels == 15
        for k, path in enumerate(node.paths):
            resample = path[0]
            if k < node.level:  # a shallower encoder level: max pooling by 2**(level - k)
                assert isinstance(resample, nn.MaxPool2d) and resample.kernel_size == 2 ** (node.level - k)
            elif k == node.level:  # the same-level skip of U-Net
                assert isinstance(resample, nn.Identity)
            else:  # a deeper decoder node or the bottleneck: bilinear upsampling by 2**(k - level)
                assert isinstance(resample, nn.Upsample) and resample.scale_factor == 2.0 ** (k - node.level)
                assert resample.mode == "bilinear"
    # the inputs' channels: encoder widths at and above the node, 5 x cat_channels below it, the bottleneck last
    top = net.decoder[-1]
    assert [p[1].conv.in_channels for p in top.paths] == [4, 15, 15, 15, 64]
    assert [p[1].conv.in_channels for p in net.decoder[0].paths] == [4, 8, 16, 32, 64]


def test_the_top_encoder_level_reaches_the_deepest_decoder_node():
    """The level-3 node receives encoder level 0 through an inter-encoder skip, max-pooled by 8 to its grid."""
    torch.manual_seed(0)
    net = UNet3Plus(2, 1, 2, features=(4, 4, 8, 8, 16)).eval()
    seen = {}
    net.decoder[0].paths[0].register_forward_hook(lambda m, i, o: seen.update(pooled=o.shape))
    with torch.no_grad():
        net(torch.randn(1, 1, 32, 32))
    assert seen["pooled"] == (1, 4, 4, 4), "encoder level 0 max-pooled by 8 to the level-3 node's 4x4 grid"


def test_the_paper_configuration_has_the_papers_parameter_count():
    net = UNet3Plus(2, 3, 2)  # features 64..1024, cat_channels 64: decoder nodes of 320 channels
    assert net.decoder[0].out_channels == 320
    assert sum(p.numel() for p in net.parameters()) / 1e6 == pytest.approx(26.97, abs=0.01)  # Tab. 1 of the paper


def test_full_scale_deep_supervision_only_in_training():
    torch.manual_seed(0)
    net = UNet3Plus(3, 1, 3, features=(4, 4, 8, 8, 16), deep_supervision=True)
    x = torch.randn(2, 1, 16, 32, 16)
    outs = net.train()(x)
    assert isinstance(outs, list) and len(outs) == 5 and all(o.shape == (2, 3, 16, 32, 16) for o in outs)
    with torch.no_grad():
        final = net.eval()(x)
    assert isinstance(final, torch.Tensor) and final.shape == (2, 3, 16, 32, 16)
    assert len(UNet3Plus(2, 1, 2, features=(4, 4, 8, 8, 16)).side_heads) == 0, "no side heads without the switch"


def test_node_arguments_are_checked():
    with pytest.raises(ValueError, match="level"):
        FullScaleDecoderNode(2, level=4, source_channels=(4, 8, 16, 32, 64), cat_channels=4)
    with pytest.raises(ValueError, match="two levels"):
        FullScaleDecoderNode(2, level=0, source_channels=(4,), cat_channels=4)
    with pytest.raises(ValueError, match="cat_channels"):
        FullScaleDecoderNode(2, level=0, source_channels=(4, 8), cat_channels=0)
