"""Tests of the dense-CRF refinement (attnseg_monai.transforms.crf): formula, probabilities, edges, 2D and 3D."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.data import MetaTensor

from attnseg_monai.transforms.crf import CRFd, CRFRefine, mean_field_crf, monai_crf_available


def _dense_reference(logits, image, iterations, wb, wg, ss, sc, sg, factor):
    """Brute-force mean field on a tiny 2D image: every pixel pair, the normalised kernels written out."""
    _, c, h, w = logits.shape
    yy, xx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
    pos = np.stack([yy.ravel(), xx.ravel()], 1).astype(np.float64)
    feat = image[0].reshape(image.shape[1], -1).T.astype(np.float64)
    d_pos = ((pos[:, None] - pos[None]) ** 2).sum(-1)
    d_col = ((feat[:, None] - feat[None]) ** 2).sum(-1)
    k_bil = np.exp(-d_pos / (2 * ss**2) - d_col / (2 * sc**2))
    k_gau = np.exp(-d_pos / (2 * sg**2))
    k_bil /= k_bil.sum(1, keepdims=True)
    k_gau /= k_gau.sum(1, keepdims=True)
    u = logits[0].reshape(c, -1).T.astype(np.float64)

    def softmax(a):
        e = np.exp(a - a.max(1, keepdims=True))
        return e / e.sum(1, keepdims=True)

    q = softmax(u)
    for _ in range(iterations):
        q = softmax(u + factor * (wb * k_bil @ q + wg * k_gau @ q))
    return q.T.reshape(1, c, h, w)


def test_torch_backend_matches_the_dense_formula():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 3, 7, 9, generator=gen, dtype=torch.float64)
    image = torch.rand(1, 2, 7, 9, generator=gen, dtype=torch.float64)
    args = {"iterations": 3, "wb": 0.7, "wg": 1.3, "ss": 2.0, "sc": 0.3, "sg": 1.5, "factor": 2.0}
    expected = _dense_reference(logits.numpy(), image.numpy(), **args)
    # a window wider than the image and every offset: the direct filters are exact
    got = mean_field_crf(
        logits,
        image,
        iterations=3,
        bilateral_weight=0.7,
        gaussian_weight=1.3,
        bilateral_spatial_sigma=2.0,
        bilateral_color_sigma=0.3,
        gaussian_spatial_sigma=1.5,
        update_factor=2.0,
        truncate=8.0,
        bilateral_step=1,
    )
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


def test_identity_compatibility_and_zero_iterations():
    gen = torch.Generator().manual_seed(1)
    logits, image = torch.randn(2, 2, 12, 10, generator=gen), torch.rand(2, 1, 12, 10, generator=gen)
    plain = mean_field_crf(logits, image, iterations=2)
    eye = mean_field_crf(logits, image, iterations=2, compatibility_matrix=[[1.0, 0.0], [0.0, 1.0]])
    torch.testing.assert_close(plain, eye)
    torch.testing.assert_close(mean_field_crf(logits, image, iterations=0), torch.softmax(logits, 1))
    # with the CRF off (no messages) the probabilities come back unchanged
    probs = torch.softmax(logits[0], 0)
    same = CRFRefine(bilateral_weight=0.0, gaussian_weight=0.0)(probs, image[0])
    torch.testing.assert_close(same, probs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("shape", [(24, 20), (12, 10, 8)])
def test_crfd_keeps_shape_type_and_returns_probabilities(shape):
    gen = torch.Generator().manual_seed(2)
    probs = MetaTensor(torch.softmax(torch.randn(3, *shape, generator=gen), 0), meta={"filename_or_obj": "case.png"})
    image = torch.rand(1, *shape, generator=gen)
    crf = CRFd("pred", image_key="image", bilateral_spatial_sigma=2.0, bilateral_color_sigma=0.2, backend="torch")
    out = crf({"pred": probs, "image": image})
    pred = out["pred"]
    assert isinstance(pred, MetaTensor) and pred.meta["filename_or_obj"] == "case.png"
    assert pred.shape == probs.shape and pred.dtype == torch.float32
    assert pred.min() >= 0 and pred.max() <= 1
    torch.testing.assert_close(pred.sum(0), torch.ones(shape), atol=1e-5, rtol=0)
    assert out["image"] is image
    # numpy in, numpy out
    arr = CRFRefine(bilateral_spatial_sigma=2.0, backend="torch")(probs.numpy(), image.numpy())
    assert isinstance(arr, np.ndarray) and arr.shape == probs.shape


def _edge_case(dims: int, seed: int = 0):
    """An image with a step edge and a prediction whose boundary is 4 pixels off, blurred and noisy."""
    size = (32,) * dims if dims == 2 else (24, 12, 8)
    coords = torch.meshgrid(*[torch.arange(n, dtype=torch.float32) for n in size], indexing="ij")
    col = coords[0]
    edge = size[0] // 2
    truth = (col >= edge).float()
    gen = torch.Generator().manual_seed(seed)
    image = (0.2 + 0.6 * truth + 0.03 * torch.randn(size, generator=gen))[None]
    logit = (col - (edge - 4.5)) / 2.0 + 1.5 * torch.randn(size, generator=gen)
    p_fg = torch.sigmoid(logit)
    return torch.stack([1 - p_fg, p_fg]), image, truth


def _errors(probs, truth):
    return int(((probs.argmax(0) == 1).float() != truth).sum())


@pytest.mark.parametrize("dims", [2, 3])
def test_crf_moves_a_noisy_boundary_to_the_image_edge(dims):
    probs, image, truth = _edge_case(dims)
    before = _errors(probs, truth)
    refined = CRFRefine(
        iterations=5,
        bilateral_weight=3.0,
        gaussian_weight=0.5,
        bilateral_spatial_sigma=4.0,  # reaches across the 4-pixel displacement
        bilateral_step=1 if dims == 2 else 2,
        bilateral_color_sigma=0.1,
        gaussian_spatial_sigma=2.0,
        update_factor=3.0,
        backend="torch",
    )(probs, image)
    after = _errors(refined, truth)
    assert before > 0.1 * truth.numel()  # the band between the wrong and the true boundary, plus noise
    assert after < 0.25 * before, (before, after)
    # without the image (Gaussian term only) the noise is smoothed but the boundary stays where it was
    smooth = CRFRefine(bilateral_weight=0.0, gaussian_weight=3.0, gaussian_spatial_sigma=2.0, backend="torch")(
        probs, image
    )
    assert _errors(smooth, truth) > 2 * after


def test_sampled_offsets_stay_close_to_every_offset():
    probs, image, _ = _edge_case(2, seed=3)
    full = CRFRefine(bilateral_color_sigma=0.1, bilateral_step=1, backend="torch")(probs, image)
    sampled = CRFRefine(bilateral_color_sigma=0.1, backend="torch")(probs, image)  # step 2 for sigma 5
    assert float((full - sampled).abs().mean()) < 0.02
    assert float((full.argmax(0) != sampled.argmax(0)).float().mean()) < 0.02


def test_bad_arguments_raise_value_errors():
    for kwargs in (
        {"iterations": -1},
        {"iterations": 2.5},
        {"bilateral_spatial_sigma": 0},
        {"bilateral_color_sigma": -1.0},
        {"gaussian_weight": -0.1},
        {"update_factor": math.inf},
        {"truncate": 0},
        {"bilateral_step": 0},
        {"compatibility_matrix": [[1.0, 0.0]]},
        {"backend": "cuda"},
        {"eps": 0},
    ):
        with pytest.raises(ValueError):
            CRFRefine(**kwargs)
    refine = CRFRefine(backend="torch")
    with pytest.raises(ValueError, match="spatial size"):
        refine(torch.rand(2, 8, 8), torch.rand(1, 8, 9))
    with pytest.raises(ValueError, match="at least 2"):
        refine(torch.rand(1, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="3 classes"):
        CRFRefine(compatibility_matrix=[[1, 0], [0, 1]], backend="torch")(torch.rand(3, 8, 8), torch.rand(1, 8, 8))
    with pytest.raises(ValueError, match="reference image"):
        CRFd("pred", image_key="img")({"pred": torch.rand(2, 8, 8)})


@pytest.mark.skipif(monai_crf_available(), reason="MONAI's compiled extension is installed")
def test_monai_backend_without_extension_says_what_to_do():
    refine = CRFRefine(backend="monai")
    with pytest.raises(RuntimeError, match="BUILD_MONAI"):
        refine(torch.rand(2, 8, 8), torch.rand(1, 8, 8))
    assert CRFRefine(backend="auto").resolved_backend() == "torch"


@pytest.mark.skipif(not monai_crf_available(), reason="needs MONAI built with its C++ extension")
def test_monai_backend_agrees_with_torch_backend():
    probs, image, truth = _edge_case(2)
    kwargs = {"bilateral_color_sigma": 0.1, "bilateral_weight": 3.0, "gaussian_spatial_sigma": 2.0}
    a = CRFRefine(backend="monai", **kwargs)(probs, image)
    b = CRFRefine(backend="torch", **kwargs)(probs, image)
    assert float((a.argmax(0) != b.argmax(0)).float().mean()) < 0.05
