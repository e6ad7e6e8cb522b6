"""Deterministic chest-radiograph-like images with lung-field masks (posteroanterior view).

Brightness stands for attenuation, as on a radiograph: air outside the body is dark, soft tissue mid-grey, bone and
the mediastinum bright, and the two lung fields dark with faint vessel markings. The patient's right lung is on the
image's left. The lung mask is the visible lung field: the heart shadow is cut out of the left lung (its cardiac
notch), as in the Montgomery and Shenzhen manual masks. Posterior ribs cross the lungs as bright arcs, clavicles
cross the apices, and the diaphragm domes close the fields below.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .synth_histology import gaussian_blur, smooth_noise

__all__ = ["render_chest_xray"]


def _lung_outline(
    rng: np.random.Generator, medial_x: float, top: float, bottom: float, width: float, side: int
) -> list[tuple[float, float]]:
    """Polygon of one lung field; ``side`` is -1 for the image-left lung, +1 for the image-right one.

    The lateral border widens from a narrow apex down to the costophrenic angle; the diaphragm dome rises from
    there to the medial border, which runs back up to the apex.
    """
    height = bottom - top
    dome = rng.uniform(0.08, 0.13) * height
    shape = rng.uniform(0.6, 0.85)
    points: list[tuple[float, float]] = []
    for v in np.linspace(0.0, 1.0, 40):
        reach = 0.2 + 0.8 * np.sin(np.pi / 2 * min(1.0, v / 0.8)) ** shape
        points.append((medial_x + side * width * reach, top + v * height))
    for t in np.linspace(0.0, 1.0, 20)[1:]:
        points.append((medial_x + side * width * (1.0 - 0.92 * t), bottom - dome * np.sin(np.pi / 2 * t)))
    for t in np.linspace(0.0, 1.0, 20)[1:]:
        points.append((medial_x + side * width * (0.03 + 0.12 * t), bottom - dome - t * (height - dome)))
    return points


def _polygon_mask(points: list[tuple[float, float]], size: int) -> np.ndarray:
    canvas = Image.new("L", (size, size), 0)
    ImageDraw.Draw(canvas).polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _ellipse_mask(cx: float, cy: float, rx: float, ry: float, size: int) -> np.ndarray:
    y = np.arange(size, dtype=np.float32)[:, None]
    x = np.arange(size, dtype=np.float32)[None, :]
    return ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1.0


def render_chest_xray(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """A chest-X-ray-like grey image and its binary lung mask.

    Args:
        rng: the random generator (its state decides everything).
        size: width and height in pixels (>= 64).

    Returns:
        ``(image, mask)``: uint8 ``(size, size)`` each; the mask holds 255 on both lung fields and 0 elsewhere.

    Raises:
        ValueError: if ``size < 64``.
    """
    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}.")
    s = float(size)
    mid = s / 2 + rng.uniform(-0.02, 0.02) * s
    top = rng.uniform(0.1, 0.15) * s
    bottom = rng.uniform(0.74, 0.8) * s
    gap = rng.uniform(0.03, 0.04) * s
    width = rng.uniform(0.25, 0.29) * s
    rows = np.arange(size, dtype=np.float32)[:, None]
    cols = np.arange(size, dtype=np.float32)[None, :]

    body = _ellipse_mask(mid, 0.85 * s, rng.uniform(0.5, 0.56) * s, 0.8 * s, size)
    right_lung = _polygon_mask(_lung_outline(rng, mid - gap, top, bottom, width, -1), size)
    left_lung = _polygon_mask(_lung_outline(rng, mid + gap, top + 0.01 * s, bottom - 0.015 * s, width * 0.95, 1), size)
    heart = _ellipse_mask(
        mid + rng.uniform(0.05, 0.08) * s,
        bottom - rng.uniform(0.12, 0.16) * s,
        rng.uniform(0.12, 0.15) * s,
        rng.uniform(0.1, 0.13) * s,
        size,
    )
    lungs = (right_lung | left_lung) & ~heart & body

    density = np.where(body, 0.5 + 0.1 * rows / s, 0.04).astype(np.float32)
    vessels = smooth_noise(rng, size, size, max(2, size // 48))
    hilum = np.exp(-(((cols - mid) / (0.2 * s)) ** 2)).astype(np.float32)
    density = np.where(lungs, 0.16 + 0.08 * vessels + 0.1 * hilum, density)
    density = np.where(heart & body, density + 0.1, density)
    mediastinum = (np.abs(cols - mid) < gap + 0.01 * s) & (rows > top - 0.05 * s) & body
    density = np.where(mediastinum & ~lungs, density + 0.12, density)

    bones = Image.new("L", (size, size), 0)
    draw = ImageDraw.Draw(bones)
    line = max(2, int(round(0.016 * s)))
    spacing = (bottom - top) / rng.uniform(8.5, 9.5)
    xs = np.linspace(0.0, 1.0, 24)
    for k in range(10):
        y0 = top + 0.02 * s + k * spacing
        for side in (-1, 1):
            # posterior rib: leaves the spine, arcs up and out, then falls along the lateral chest wall
            px = mid + side * (0.02 * s + xs * (width + gap))
            py = y0 - 0.04 * s * np.sin(np.pi * xs * 0.7) + 0.1 * s * xs**2
            draw.line(list(zip(px.tolist(), py.tolist(), strict=True)), fill=45, width=line)
    for side in (-1, 1):  # clavicles
        draw.line(
            [(mid + side * 0.03 * s, top + 0.03 * s), (mid + side * 0.32 * s, top - 0.05 * s)], fill=90, width=line + 1
        )
    draw.rectangle([mid - 0.03 * s, 0, mid + 0.03 * s, s], fill=70)  # thoracic spine behind the mediastinum
    bone = np.asarray(bones, dtype=np.float32) / 255.0
    density += np.where(body, bone, 0.0)

    density = gaussian_blur(density, 0.005 * s)
    gamma = rng.uniform(0.8, 1.2)
    image = np.clip(density, 0.0, 1.0) ** gamma
    image = image * rng.uniform(0.85, 1.0) + rng.normal(0.0, 0.012, size=image.shape).astype(np.float32)
    image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)
    return image, np.where(lungs, 255, 0).astype(np.uint8)
