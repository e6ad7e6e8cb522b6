"""Deterministic fundus-photograph-like images centred on the optic nerve head, with soft maps of the optic disc and
cup in the manner of Drishti-GS (the fraction of annotators who marked each pixel).

What is drawn, as on a colour fundus photograph of a 30 degree field centred on the optic disc: a dark frame
outside the circular field of view; an orange-red retina, darker towards the rim of the field and at the macula
(temporal to the disc); the optic disc as a bright yellow-orange, slightly vertically elongated ellipse with a
soft border; inside it the cup, paler and brighter, off-centre towards the temporal side (cup-to-disc ratios of
0.35 to 0.75, glaucomatous eyes included) with a gradual border, the rim's pallor varying so that rim and cup
brightness overlap; dark-red vessels that leave the disc above and below and cross its rim; uneven illumination;
then blur and noise.

Each of the simulated annotators marks the disc and the cup as an ellipse close to the true one (disc: its centre
moved by up to 3 % of the radius, its radii scaled by 0.955 to 1.045; cup, whose border is less clear: 7 % and 0.895
to 1.105); the soft map of a structure is the share of annotators who marked the pixel, scaled to 0..255, as in
Drishti-GS's ``SoftMap`` files.

Every function takes a :class:`numpy.random.Generator`; the same generator state gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw

from .synth_histology import gaussian_blur, smooth_noise

__all__ = ["FundusImage", "render_fundus"]


@dataclass
class FundusImage:
    """One rendered fundus image: ``image`` (H, W, 3) uint8 RGB; ``disc_softmap`` and ``cup_softmap`` (H, W) uint8
    (share of annotators x 255); ``disc`` and ``cup`` the true regions (H, W) bool."""

    image: np.ndarray
    disc_softmap: np.ndarray
    cup_softmap: np.ndarray
    disc: np.ndarray
    cup: np.ndarray


def _ellipse(shape: tuple[int, int], cx: float, cy: float, rx: float, ry: float, angle: float = 0.0) -> np.ndarray:
    y = np.arange(shape[0], dtype=np.float32)[:, None] - cy
    x = np.arange(shape[1], dtype=np.float32)[None, :] - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = c * x + s * y, -s * x + c * y
    return (u / rx) ** 2 + (v / ry) ** 2 <= 1.0


def _soft_map(
    rng: np.random.Generator, shape: tuple[int, int], ellipse: tuple[float, ...], annotators: int, spread: float
) -> np.ndarray:
    cx, cy, rx, ry, angle = ellipse
    votes = np.zeros(shape, dtype=np.int32)
    for _ in range(annotators):
        shift = rng.uniform(-spread, spread, size=2) * (rx, ry)
        scale = rng.uniform(1.0 - 1.5 * spread, 1.0 + 1.5 * spread, size=2)
        votes += _ellipse(shape, cx + shift[0], cy + shift[1], rx * scale[0], ry * scale[1], angle)
    return np.rint(255.0 * votes / annotators).astype(np.uint8)


def _vessel_path(rng: np.random.Generator, x: float, y: float, heading: float, length: float, steps: int):
    points = [(x, y)]
    step = length / steps
    for _ in range(steps):
        heading += rng.normal(0.0, 0.12)
        x, y = x + step * np.cos(heading), y + step * np.sin(heading)
        points.append((x, y))
    return points, heading


def render_fundus(
    rng: np.random.Generator, width: int = 288, height: int = 192, annotators: int = 4, left_eye: bool | None = None
) -> FundusImage:
    """A fundus-like RGB image centred on the optic disc, with the annotators' soft maps of disc and cup.

    Args:
        rng: the random generator (its state decides everything).
        width: image width in pixels (>= 64).
        height: image height in pixels (>= 64).
        annotators: simulated annotators per structure (>= 1; Drishti-GS had four).
        left_eye: which eye (the macula lies temporal to the disc: right of it in a left eye's image); ``None``
            draws it at random.

    Returns:
        a :class:`FundusImage`; the true cup lies inside the true disc.

    Raises:
        ValueError: for a size below 64 pixels or fewer than one annotator.
    """
    if width < 64 or height < 64:
        raise ValueError(f"width and height must be >= 64, got {width}x{height}.")
    if annotators < 1:
        raise ValueError(f"annotators must be >= 1, got {annotators}.")
    shape = (height, width)
    short = float(min(width, height))
    left = bool(rng.random() < 0.5) if left_eye is None else bool(left_eye)
    temporal = 1.0 if left else -1.0

    # field of view: a centred circle of 0.9 times the long side (cut off at the short sides, as on Drishti-GS)
    fov_radius = 0.45 * max(width, height)
    fov = _ellipse(shape, width / 2, height / 2, fov_radius, fov_radius)
    yy = (np.arange(height, dtype=np.float32)[:, None] - height / 2) / fov_radius
    xx = (np.arange(width, dtype=np.float32)[None, :] - width / 2) / fov_radius
    radial = np.sqrt(xx**2 + yy**2)

    # optic disc near the centre, cup inside it towards the temporal side
    disc_ry = rng.uniform(0.17, 0.21) * short
    disc_rx = disc_ry * rng.uniform(0.85, 0.95)
    disc_cx = width / 2 + rng.uniform(-0.06, 0.06) * width
    disc_cy = height / 2 + rng.uniform(-0.06, 0.06) * height
    angle = rng.uniform(-0.15, 0.15)
    cdr = rng.uniform(0.35, 0.75)
    cup_ry, cup_rx = cdr * disc_ry, cdr * disc_rx * rng.uniform(0.9, 1.05)
    room = max(0.0, disc_rx - cup_rx) * 0.45
    cup_cx = disc_cx + temporal * rng.uniform(0.0, 1.0) * room
    cup_cy = disc_cy + rng.uniform(-0.3, 0.3) * max(0.0, disc_ry - cup_ry) * 0.45
    disc_geom = (disc_cx, disc_cy, disc_rx, disc_ry, angle)
    cup_geom = (cup_cx, cup_cy, cup_rx, cup_ry, angle)
    disc = _ellipse(shape, *disc_geom[:4], angle)
    cup = _ellipse(shape, *cup_geom[:4], angle) & disc

    # retina: orange-red, darker at the rim of the field and at the macula, with choroidal texture
    texture = smooth_noise(rng, height, width, max(4, int(short // 12)))
    base = 0.78 - 0.35 * np.clip(radial - 0.3, 0.0, None) + 0.08 * (texture - 0.5)
    macula_x = disc_cx + temporal * 2.4 * disc_rx * 1.1
    macula = np.exp(
        -(((np.arange(width)[None, :] - macula_x) / (1.2 * disc_rx)) ** 2)
        - ((np.arange(height)[:, None] - disc_cy) / (1.2 * disc_ry)) ** 2
    ).astype(np.float32)
    shade = np.clip(base - 0.25 * macula, 0.05, 1.0)
    red = 0.85 * shade + 0.1
    green = 0.38 * shade
    blue = 0.12 * shade

    # disc: yellow-orange rim with a soft border, its brightness varying within and between eyes (pallor); cup:
    # paler, with a gradual border (the cup's edge is judged from the vessels' bend and the pallor on photographs)
    soft_disc = gaussian_blur(disc.astype(np.float32), 0.012 * short)
    soft_cup = gaussian_blur(cup.astype(np.float32), 0.03 * short)
    pallor = rng.uniform(0.0, 0.1) + 0.12 * (smooth_noise(rng, height, width, max(4, int(disc_ry // 2))) - 0.5)
    red = red + soft_disc * (0.95 - red) + soft_cup * 0.03
    green = green + soft_disc * (0.52 + pallor - green) + soft_cup * 0.16
    blue = blue + soft_disc * (0.22 + pallor - blue) + soft_cup * 0.2

    # vessels: arcades leaving the disc above and below, crossing the rim; thinner branches towards the nasal side
    vessels = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(vessels)
    thick = max(2, int(round(0.02 * short)))
    for vertical in (-1.0, 1.0):
        for k in range(2):
            x0 = cup_cx + rng.uniform(-0.3, 0.3) * cup_rx
            y0 = cup_cy + vertical * rng.uniform(0.2, 0.6) * cup_ry
            heading = np.arctan2(vertical, temporal * (0.25 + 0.5 * k)) + rng.normal(0.0, 0.1)
            points, end = _vessel_path(rng, x0, y0, heading, rng.uniform(1.2, 2.0) * short, 14)
            draw.line(points, fill=255, width=max(1, thick - k))
            bx, by = points[len(points) // 2]
            branch, _ = _vessel_path(rng, bx, by, end - temporal * rng.uniform(0.4, 0.9), 0.5 * short, 8)
            draw.line(branch, fill=200, width=max(1, thick - 1 - k))
        nasal, _ = _vessel_path(rng, cup_cx, cup_cy, np.arctan2(vertical * 0.6, -temporal), 0.8 * short, 10)
        draw.line(nasal, fill=180, width=max(1, thick - 1))
    vessel = gaussian_blur(np.asarray(vessels, dtype=np.float32) / 255.0, 0.004 * short + 0.3)
    vessel = np.clip(vessel * 1.4, 0.0, 1.0)
    red = red * (1.0 - 0.45 * vessel)
    green = green * (1.0 - 0.7 * vessel)
    blue = blue * (1.0 - 0.6 * vessel)

    # uneven illumination across the field, then the camera's overall exposure
    tilt = rng.uniform(-1.0, 1.0, size=2)
    light = 1.0 + 0.12 * (tilt[0] * xx + tilt[1] * yy)
    rgb = np.stack([red, green, blue], axis=-1) * light[..., None] * rng.uniform(0.85, 1.05)
    rgb = rgb + rng.normal(0.0, 0.015, size=rgb.shape).astype(np.float32)
    rgb = np.where(fov[..., None], rgb, 0.01)
    image = np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)

    disc_soft = _soft_map(rng, shape, disc_geom, annotators, spread=0.03)
    cup_soft = _soft_map(rng, shape, cup_geom, annotators, spread=0.07)  # experts disagree more on the cup
    cup_soft = np.minimum(cup_soft, disc_soft)  # no more annotators mark a pixel as cup than as disc
    return FundusImage(image, disc_soft, cup_soft, disc, cup)
