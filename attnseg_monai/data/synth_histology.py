"""Deterministic H&E-like pathology images: nuclei tiles with instance masks, and slides with mitotic figures.

Colour follows the Beer-Lambert model of stained tissue: each pixel holds a haematoxylin and an eosin
concentration, and ``RGB = 255 * exp(-(c_H * h + c_E * e + c_0))`` with optical-density stain vectors ``h`` and
``e`` (the reference vectors of Macenko et al., 2009). Stroma is eosin with low-frequency variation and fibres,
with a few empty (white) spaces; nuclei are haematoxylin ellipses with a wobbling outline and chromatin texture;
mitotic figures are very dark, irregular clumps (prophase clusters, metaphase plates, anaphase pairs) inside a
pale halo.

Every function takes a :class:`numpy.random.Generator`; the same generator state gives the same pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["gaussian_blur", "render_he_tile", "render_mitosis_slide", "smooth_noise"]

# optical-density stain vectors (unit length): Macenko et al.'s reference haematoxylin and eosin
_H = (0.5626, 0.7201, 0.4062)
_E = (0.2159, 0.8012, 0.5581)
_BACKGROUND = (0.03, 0.05, 0.04)


def smooth_noise(rng: np.random.Generator, height: int, width: int, scale: int) -> np.ndarray:
    """Band-limited noise in about [0, 1]: uniform values on a grid ``scale`` pixels apart, interpolated
    (bicubic for coarse grids, bilinear for fine ones)."""
    grid = rng.random((height // scale + 3, width // scale + 3), dtype=np.float32)
    method = Image.Resampling.BICUBIC if scale >= 8 else Image.Resampling.BILINEAR
    box = (1.0, 1.0, 1.0 + width / scale, 1.0 + height / scale)
    big = Image.fromarray(grid).resize((width, height), method, box=box)
    return np.clip(np.asarray(big), 0.0, 1.0)


def gaussian_blur(image: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a 2D float array (edge values repeated), radius ``ceil(3 * sigma)``."""
    radius = max(1, int(np.ceil(3 * sigma)))
    offsets = np.arange(-radius, radius + 1)
    weights = np.exp(-0.5 * (offsets / sigma) ** 2).astype(np.float32)
    weights /= weights.sum()
    out = image.astype(np.float32)
    for axis in (0, 1):
        padded = np.pad(out, [(radius, radius) if a == axis else (0, 0) for a in (0, 1)], mode="edge")
        acc = np.zeros_like(out)
        n = out.shape[axis]
        for w, k in zip(weights, range(2 * radius + 1), strict=True):
            acc += w * (padded[k : k + n] if axis == 0 else padded[:, k : k + n])
        out = acc
    return out


def _stain_to_rgb(c_h: np.ndarray, c_e: np.ndarray, noise: np.ndarray | None = None) -> np.ndarray:
    out = np.empty((*c_h.shape, 3), dtype=np.uint8)
    for k in range(3):
        channel = c_h * np.float32(_H[k]) + c_e * np.float32(_E[k]) + np.float32(_BACKGROUND[k])
        np.exp(-channel, out=channel)
        channel *= np.float32(255.0)
        if noise is not None:
            channel += noise
        channel += np.float32(0.5)
        np.clip(channel, 0, 255, out=channel)
        out[..., k] = channel
    return out


def _stroma(rng: np.random.Generator, height: int, width: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Eosin concentration of the stroma and a mask of empty spaces (lumina, fat)."""
    coarse = smooth_noise(rng, height, width, max(4, int(48 * scale)))
    medium = smooth_noise(rng, height, width, max(2, int(12 * scale)))
    warp = smooth_noise(rng, height, width, max(4, int(40 * scale)))
    theta = rng.uniform(0, np.pi)
    period = rng.uniform(7, 12) * scale
    xs = np.arange(width, dtype=np.float32)[None, :] * np.float32(np.cos(theta) * 2 * np.pi / period)
    ys = np.arange(height, dtype=np.float32)[:, None] * np.float32(np.sin(theta) * 2 * np.pi / period)
    fibres = 0.5 + 0.5 * np.sin(xs + ys + np.float32(9.0) * warp)
    c_e = 0.30 + 0.35 * coarse + 0.12 * medium + 0.10 * fibres
    space = smooth_noise(rng, height, width, max(8, int(80 * scale))) > rng.uniform(0.78, 0.86)
    c_e = np.where(space, 0.04 + 0.04 * medium, c_e).astype(np.float32)
    return c_e, space


def _blob(
    cx: float,
    cy: float,
    a: float,
    b: float,
    angle: float,
    wobble: np.ndarray,
    phases: np.ndarray,
    shape: tuple[int, int],
) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """Pixels of a wobbly ellipse: the bounding box slices and the inside mask within them (None if off-image).

    The outline is ``rho(phi) = 1 + w0 cos(2 phi + p0) + w1 cos(3 phi + p1)`` in the ellipse's own coordinates.
    """
    reach = a * (1.0 + float(np.abs(wobble).sum())) + 1.0
    y0, y1 = max(0, int(cy - reach)), min(shape[0], int(cy + reach) + 2)
    x0, x1 = max(0, int(cx - reach)), min(shape[1], int(cx + reach) + 2)
    if y0 >= y1 or x0 >= x1:
        return None
    dy = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
    dx = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
    c, s = np.float32(np.cos(angle)), np.float32(np.sin(angle))
    u = (dx * c + dy * s) / np.float32(a)
    v = (dy * c - dx * s) / np.float32(b)
    r2 = u * u + v * v
    phi = np.arctan2(v, u)
    rho = 1.0 + wobble[0] * np.cos(2 * phi + phases[0]) + wobble[1] * np.cos(3 * phi + phases[1])
    inside = r2 <= rho * rho
    if not inside.any():
        return None
    return (slice(y0, y1), slice(x0, x1)), inside


def _place_nuclei(
    rng: np.random.Generator,
    inst: np.ndarray,
    c_h: np.ndarray,
    density: np.ndarray,
    spacing: float,
    radius: tuple[float, float],
    keep_out: list[tuple[float, float, float]],
    first_id: int,
) -> int:
    """Draw ordinary nuclei on a jittered grid (kept with probability ``density``); returns the next free id."""
    height, width = inst.shape
    chromatin = rng.random((height, width), dtype=np.float32)
    gy, gx = np.meshgrid(np.arange(spacing / 2, height, spacing), np.arange(spacing / 2, width, spacing), indexing="ij")
    n = gy.size
    cy = gy.ravel() + rng.uniform(-0.35, 0.35, n) * spacing
    cx = gx.ravel() + rng.uniform(-0.35, 0.35, n) * spacing
    a = rng.uniform(radius[0], radius[1], n)
    b = a * rng.uniform(0.55, 0.95, n)
    angle = rng.uniform(0, np.pi, n)
    wobble = rng.uniform(-0.12, 0.12, (n, 2))
    phases = rng.uniform(0, 2 * np.pi, (n, 2))
    darkness = rng.uniform(0.75, 1.35, n)
    iy = np.clip(cy, 0, height - 1).astype(int)
    ix = np.clip(cx, 0, width - 1).astype(int)
    keep = rng.random(n) <= density[iy, ix]
    for kx, ky, kr in keep_out:
        keep &= (cx - kx) ** 2 + (cy - ky) ** 2 >= kr * kr
    next_id = first_id
    for i in np.flatnonzero(keep):
        found = _blob(cx[i], cy[i], a[i], b[i], angle[i], wobble[i], phases[i], inst.shape)
        if found is None:
            continue
        box, inside = found
        inst[box][inside] = next_id
        c_h[box][inside] = darkness[i] * (0.7 + 0.6 * chromatin[box][inside])
        next_id += 1
    return next_id


def render_he_tile(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """An H&E-like tile with nuclei and its instance mask.

    Args:
        rng: the random generator (its state decides everything).
        size: width and height in pixels (>= 32).

    Returns:
        ``(rgb, instances)``: uint8 ``(size, size, 3)`` and uint16 ``(size, size)`` with ids 1..N (0 background;
        a nucleus drawn later covers an earlier one where they touch).

    Raises:
        ValueError: if ``size < 32``.
    """
    if size < 32:
        raise ValueError(f"size must be >= 32, got {size}.")
    c_e, space = _stroma(rng, size, size, 0.6)
    density = np.where(space, 0.0, 0.25 + 0.75 * smooth_noise(rng, size, size, 48))
    inst = np.zeros((size, size), dtype=np.uint16)
    c_h = np.full((size, size), 0.08, dtype=np.float32)
    _place_nuclei(rng, inst, c_h, density, spacing=17.0, radius=(4.0, 8.5), keep_out=[], first_id=1)
    c_h = gaussian_blur(c_h, 0.7)
    c_e = np.where(inst > 0, c_e * 0.4, c_e)
    noise = rng.normal(0.0, 3.0, size=(size, size)).astype(np.float32)
    return _stain_to_rgb(c_h, c_e, noise), inst


def _mitotic_figure(rng: np.random.Generator, cx: float, cy: float, shape: tuple[int, int]) -> list[tuple]:
    """Clump ellipses ``(cx, cy, a, b, angle)`` of one mitotic figure (prophase, metaphase or anaphase)."""
    kind = rng.integers(0, 3)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    clumps: list[tuple] = []
    if kind == 0:  # prophase/prometaphase: irregular cluster of condensed chromatin
        for _ in range(int(rng.integers(7, 13))):
            r, t = rng.uniform(0, 8), rng.uniform(0, 2 * np.pi)
            clumps.append((cx + r * np.cos(t), cy + r * np.sin(t), rng.uniform(2.0, 4.0), rng.uniform(1.5, 3.0), t))
    else:  # metaphase plate (one band) or anaphase (two parallel bands)
        length = rng.uniform(16, 26)
        offsets = [0.0] if kind == 1 else [-rng.uniform(6, 9), rng.uniform(6, 9)]
        for offset in offsets:
            for s in np.linspace(-length / 2, length / 2, int(rng.integers(6, 10))):
                jitter = rng.normal(0, 1.0)
                px, py = np.array([cx, cy]) + s * normal + (offset + jitter) * direction
                clumps.append((px, py, rng.uniform(2.0, 3.5), rng.uniform(1.5, 2.5), angle + rng.normal(0, 0.4)))
    return clumps


def render_mitosis_slide(
    rng: np.random.Generator, width: int = 1720, height: int = 1280, num_mitoses: int | None = None
) -> tuple[np.ndarray, np.ndarray, int]:
    """A breast-cancer-like H&E slide with many ordinary nuclei and a few mitotic figures.

    Args:
        rng: the random generator.
        width: width in pixels (>= 128).
        height: height in pixels (>= 128).
        num_mitoses: number of mitotic figures; default 1 to 4, drawn from ``rng``.

    Returns:
        ``(rgb, label, count)``: uint8 ``(height, width, 3)``; uint8 ``(height, width)`` label with 255 on
        mitotic figures only and 0 elsewhere; the number of figures drawn.

    Raises:
        ValueError: for sizes below 128 or a negative ``num_mitoses``.
    """
    if width < 128 or height < 128:
        raise ValueError(f"width and height must be >= 128, got {width}x{height}.")
    if num_mitoses is not None and num_mitoses < 0:
        raise ValueError(f"num_mitoses must be >= 0, got {num_mitoses}.")
    count = int(rng.integers(1, 5)) if num_mitoses is None else int(num_mitoses)
    c_e, space = _stroma(rng, height, width, 1.0)
    density = np.where(space, 0.0, 0.15 + 0.8 * smooth_noise(rng, height, width, 160) ** 1.5)
    c_h = np.full((height, width), 0.08, dtype=np.float32)
    figure_mask = np.zeros((height, width), dtype=bool)
    halo = np.zeros((height, width), dtype=bool)
    centres: list[tuple[float, float, float]] = []
    for _ in range(count):
        for _attempt in range(50):
            cx, cy = rng.uniform(40, width - 40), rng.uniform(40, height - 40)
            if not space[int(cy), int(cx)] and all((cx - x) ** 2 + (cy - y) ** 2 > 80**2 for x, y, _ in centres):
                break
        centres.append((cx, cy, 26.0))
        halo_blob = _blob(
            cx,
            cy,
            rng.uniform(15, 19),
            rng.uniform(12, 16),
            rng.uniform(0, np.pi),
            np.zeros(2),
            np.zeros(2),
            (height, width),
        )
        if halo_blob is not None:
            halo[halo_blob[0]] |= halo_blob[1]
        darkness = rng.uniform(2.1, 2.7)
        for ccx, ccy, a, b, ang in _mitotic_figure(rng, cx, cy, (height, width)):
            found = _blob(ccx, ccy, a, b, ang, rng.uniform(-0.2, 0.2, 2), rng.uniform(0, 6.3, 2), (height, width))
            if found is not None:
                box, inside = found
                figure_mask[box] |= inside
                c_h[box][inside] = darkness * rng.uniform(0.9, 1.1)
    inst = np.zeros((height, width), dtype=np.uint16)
    _place_nuclei(rng, inst, c_h, density, spacing=26.0, radius=(5.0, 10.0), keep_out=centres, first_id=1)
    c_e = np.where(halo & ~figure_mask, c_e * 0.35, c_e)
    c_e = np.where(inst > 0, c_e * 0.4, c_e)
    c_h = gaussian_blur(c_h, 0.8)
    noise = (smooth_noise(rng, height, width, 4) - 0.5) * 4.0
    label = figure_mask.copy()
    # grow by one pixel so the label covers the blurred rim of each clump
    label[1:, :] |= figure_mask[:-1, :]
    label[:-1, :] |= figure_mask[1:, :]
    label[:, 1:] |= figure_mask[:, :-1]
    label[:, :-1] |= figure_mask[:, 1:]
    return _stain_to_rgb(c_h, c_e, noise), np.where(label, 255, 0).astype(np.uint8), count
