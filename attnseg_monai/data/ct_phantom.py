"""Generated abdominal CT phantoms: HU volumes with BTCV organ labels and scanner-like geometry, written as NIfTI.

The embedded default data of the two CT bundles (Attention U-Net on pancreas, seed 004; DANIE on the Synapse
organs, seed 003) are drawn here; :mod:`attnseg_monai.data.ct_samples` lays them out as MSD Task07 and BTCV data
sets. Nothing is taken from a patient: every structure is an analytic shape.

Anatomy. The array axes are those of a scanner series stored the DICOM way: ``i`` runs towards the patient's left,
``j`` towards posterior, ``k`` towards superior (LPS voxel order; a supine patient seen from the feet when a slice
``image[:, :, k].T`` is displayed). In each axial slice the body is an ellipse (half-width ``a``, about 45% of the
in-plane field of view, half-depth ``0.74 a``) of subcutaneous fat over a muscle wall around an abdominal cavity
of mesenteric fat and bowel with a few gas bubbles, with paraspinal muscles, a vertebral column (cortical shell,
cancellous body, discs, arch, canal) and ribs. Organs are smooth blobs -- ellipsoids and tubes along polylines
whose surfaces are perturbed by low-frequency random fields -- placed in body-relative coordinates
(``u = x / a``, ``v = y / (0.74 a)``, ``w`` = height in the volume from 0 to 1), so the anatomy scales with the field
of view: at the default 0.8 mm in-plane spacing and 160 voxels the phantom is a small (about 0.4 scale) abdomen with
adult attenuation values. Every case jitters the body size, organ positions and sizes, the tumour, and the scanner
geometry. A Gaussian blur (partial-volume effect) and Gaussian noise are applied last; the image is rounded to
int16 HU in [-1024, 3071].

Attenuation (mean HU of each structure before blur and noise) is :data:`STRUCTURE_HU`: portal-venous-phase
contrast (aorta ~200, kidney cortex ~150) over unenhanced-looking parenchyma values (liver ~60, spleen ~50,
pancreas ~40), as asked of the phantom; the pancreatic tumour is hypo-attenuating (~15 HU).

Geometry. :func:`phantom_affine` builds the voxel-to-world (RAS, mm) affine of a series acquired with a small gantry
tilt and in-plane rotation (a few degrees each) and a DICOM-like position of the first voxel: the LPS direction
cosines are those rotations, the image centre lies at a table position of several hundred millimetres, and the
affine is converted to NIfTI's RAS convention (first two rows negated), as dcm2niix writes it. :func:`encode_nifti`
writes qform and sform (code 1, scanner anatomical), millimetre units, slope 1 and intercept 0, and gzips with a
zero timestamp so equal arrays give equal bytes.
"""

from __future__ import annotations

import gzip
import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import nibabel as nib
import numpy as np
from scipy import ndimage

from .ct_labels import BTCV_LABELS

__all__ = [
    "DEFAULT_SHAPE",
    "DEFAULT_SPACING",
    "STRUCTURE_HU",
    "CTPhantom",
    "encode_nifti",
    "phantom_affine",
    "render_ct_phantom",
]

#: Default array shape (i, j, k) of a phantom: in-plane 160 x 160 so that 96-voxel sliding windows overlap.
DEFAULT_SHAPE: tuple[int, int, int] = (160, 160, 64)
#: Default voxel spacing in mm: thin in-plane pixels, 2.5 mm slices (portal-venous abdominal CT).
DEFAULT_SPACING: tuple[float, float, float] = (0.8, 0.8, 2.5)

#: Mean attenuation (HU) of each structure before blur and noise.
STRUCTURE_HU: dict[str, float] = {
    "air": -1000.0,
    "subcutaneous_fat": -100.0,
    "muscle": 50.0,
    "cavity_fat": -90.0,
    "bowel": 35.0,
    "bowel_gas": -950.0,
    "bone_cortical": 900.0,
    "bone_cancellous": 300.0,
    "rib": 700.0,
    "disc": 90.0,
    "spinal_canal": 15.0,
    "liver": 60.0,
    "gallbladder": 10.0,
    "spleen": 50.0,
    "stomach": 20.0,
    "stomach_gas": -1000.0,
    "kidney_cortex": 150.0,
    "kidney_medulla": 100.0,
    "adrenal_gland": 30.0,
    "pancreas": 40.0,
    "tumour": 15.0,
    "aorta": 200.0,
    "inferior_vena_cava": 130.0,
    "portal_and_splenic_vein": 160.0,
    "esophagus": 40.0,
    "esophagus_gas": -800.0,
}

_BTCV_ID = {name: idx for idx, name in BTCV_LABELS.items()}
_HU_MIN, _HU_MAX = -1024, 3071


@dataclass(frozen=True)
class CTPhantom:
    """One generated case.

    Attributes:
        image: int16 HU, shape (I, J, K) in LPS voxel order (see the module docstring).
        label: uint8 BTCV organ ids 0..13 (:data:`~attnseg_monai.data.ct_labels.BTCV_LABELS`), same shape.
        tumour: bool mask of the pancreatic tumour (a subset of the pancreas, id 11, in ``label``), or ``None``.
        affine: 4x4 voxel-to-world matrix, NIfTI RAS convention, millimetres.
    """

    image: np.ndarray
    label: np.ndarray
    tumour: np.ndarray | None
    affine: np.ndarray

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel size in mm along i, j, k (the column norms of the affine)."""
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))  # type: ignore[return-value]


def _rotation(axis: int, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    rot = np.eye(3)
    rot[i, i], rot[i, j], rot[j, i], rot[j, j] = c, -s, s, c
    return rot


def phantom_affine(
    shape: Sequence[int],
    spacing: Sequence[float],
    *,
    tilt_deg: float = 4.0,
    yaw_deg: float = 1.5,
    centre_lps: Sequence[float] = (0.0, -25.0, -480.0),
) -> np.ndarray:
    """Voxel-to-world affine (NIfTI RAS, mm) of an LPS-ordered series with a gantry tilt and an in-plane rotation.

    Args:
        shape: array shape (I, J, K).
        spacing: voxel size in mm along I, J, K (all > 0).
        tilt_deg: rotation about the left-right axis (gantry tilt), degrees.
        yaw_deg: rotation about the head-foot axis, degrees.
        centre_lps: DICOM patient coordinates (LPS, mm) of the volume centre.

    Returns:
        float64 4x4 matrix; its columns have the norms ``spacing``; ``nibabel.aff2axcodes`` gives ``('L', 'P', 'S')``
        for small angles.

    Raises:
        ValueError: for a shape or spacing that is not three positive numbers.
    """
    if len(shape) != 3 or any(int(n) < 1 for n in shape):
        raise ValueError(f"shape must be three positive integers, got {tuple(shape)}.")
    if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}.")
    direction_lps = _rotation(2, yaw_deg) @ _rotation(0, tilt_deg)
    matrix_lps = direction_lps @ np.diag([float(s) for s in spacing])
    half = (np.asarray(shape, dtype=np.float64) - 1.0) / 2.0
    origin_lps = np.asarray(centre_lps, dtype=np.float64) - matrix_lps @ half
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ matrix_lps
    affine[:3, 3] = lps_to_ras @ origin_lps
    return affine


def encode_nifti(array: np.ndarray, affine: np.ndarray, *, description: str = "", compress_level: int = 1) -> bytes:
    """Gzipped NIfTI-1 bytes of ``array`` with ``affine``: qform and sform code 1, mm units, slope 1, intercept 0.

    The gzip header carries no timestamp or file name, so the same array and affine give the same bytes.
    ``compress_level`` is zlib's (1, nibabel's default, is about four times as fast as 6 on noisy CT for files
    2% larger).

    Raises:
        ValueError: if ``affine`` is not 4x4 or its rotation part is singular.
    """
    affine = np.asarray(affine, dtype=np.float64)
    if affine.shape != (4, 4) or abs(np.linalg.det(affine[:3, :3])) < 1e-12:
        raise ValueError(f"affine must be an invertible 4x4 matrix, got shape {affine.shape}.")
    image = nib.Nifti1Image(np.asarray(array), affine)
    header = image.header
    header.set_data_dtype(array.dtype)
    header.set_xyzt_units("mm", "sec")
    header.set_slope_inter(1.0, 0.0)
    header["descrip"] = description.encode("ascii", "replace")[:79]
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    data = bytearray(image.to_bytes())
    # nibabel writes NaN (no scaling) for unscaled data; store the explicit identity scaling scanners write
    data[112:120] = struct.pack(f"{header.endianness}ff", 1.0, 0.0)
    return gzip.compress(bytes(data), compresslevel=int(compress_level), mtime=0)


def _smooth_field(rng: np.random.Generator, shape: Sequence[int], order: int = 4) -> np.ndarray:
    """A low-frequency random field in [-1, 1]: a random cosine series with ``order`` terms per axis."""
    bases = []
    for n in shape:
        t = (np.arange(n, dtype=np.float64) + 0.5) / n
        freq = np.arange(1, order + 1, dtype=np.float64)
        phase = rng.uniform(0.0, 2.0 * np.pi, order)
        bases.append(np.cos(np.pi * t[:, None] * freq[None, :] + phase[None, :]).astype(np.float32))
    m = np.arange(order, dtype=np.float32)
    decay = 1.0 / (1.0 + m[:, None, None] + m[None, :, None] + m[None, None, :])
    coef = rng.standard_normal((order, order, order)).astype(np.float32) * decay
    field = np.einsum("abc,ia,jb,kc->ijk", coef, *bases, optimize=True)
    return (field / max(float(np.abs(field).max()), 1e-6)).astype(np.float32)


class _Canvas:
    """The volume being drawn: HU, labels, and the body-relative coordinate grids."""

    def __init__(self, rng: np.random.Generator, shape: Sequence[int], spacing: Sequence[float]) -> None:
        self.rng = rng
        self.shape = tuple(int(n) for n in shape)
        nx, ny, nz = self.shape
        sx, sy, sz = (float(s) for s in spacing)
        self.scale = float(rng.uniform(0.9, 1.0))
        self.a = 0.45 * nx * sx * self.scale  # body half-width (mm)
        self.b = min(0.74 * self.a, 0.46 * ny * sy)  # body half-depth (mm)
        centre_x = rng.normal(0.0, 0.01 * nx * sx)
        centre_y = 0.03 * ny * sy + rng.normal(0.0, 0.01 * ny * sy)  # patient lies on the table: a bit posterior
        self.x = ((np.arange(nx) - (nx - 1) / 2.0) * sx - centre_x).astype(np.float32)[:, None, None]
        self.y = ((np.arange(ny) - (ny - 1) / 2.0) * sy - centre_y).astype(np.float32)[None, :, None]
        self.z_extent = max(nz - 1, 1) * sz
        self.z = (np.arange(nz) * sz).astype(np.float32)[None, None, :]
        self.u = self.x / self.a
        self.v = self.y / self.b
        self.w = self.z / self.z_extent
        self.r = np.sqrt(self.u**2 + self.v**2)
        self.fields = [_smooth_field(rng, self.shape) for _ in range(4)]
        self.hu = np.full(self.shape, STRUCTURE_HU["air"], dtype=np.float32)
        self.label = np.zeros(self.shape, dtype=np.uint8)

    def jitter(self, centre: Sequence[float], spread: float = 0.03) -> tuple[float, float, float]:
        cu, cv, cw = centre
        return (cu + self.rng.normal(0, spread), cv + self.rng.normal(0, spread), cw + self.rng.normal(0, spread))

    def field(self, index: int, amplitude: float, box: tuple[slice, ...] = ()) -> np.ndarray:
        sign = 1.0 if index % 2 == 0 else -1.0
        return (sign * amplitude) * self.fields[index % len(self.fields)][box]

    def _box(self, lows: Sequence[float], highs: Sequence[float]) -> tuple[slice, ...] | None:
        """Index slices of the voxels whose (x, y, z) mm coordinates lie in [lows, highs]; None if there are none."""
        box = []
        for coords, lo, hi in zip((self.x.ravel(), self.y.ravel(), self.z.ravel()), lows, highs):
            inside = np.nonzero((coords >= lo) & (coords <= hi))[0]
            if inside.size == 0:
                return None
            box.append(slice(int(inside[0]), int(inside[-1]) + 1))
        return tuple(box)

    def _embed(self, box: tuple[slice, ...] | None, values: np.ndarray | None) -> np.ndarray:
        out = np.full(self.shape, np.inf, dtype=np.float32)
        if box is not None and values is not None:
            out[box] = values
        return out

    def ellipsoid(
        self, centre: Sequence[float], axes: Sequence[float], field: int = 0, amplitude: float = 0.15
    ) -> np.ndarray:
        """Normalised radius (<= 1 inside) of a perturbed ellipsoid in (u, v, w) coordinates (inf far outside)."""
        cu, cv, cw = centre
        au, av, aw = axes
        reach = 1.3 * (1.0 + amplitude)
        box = self._box(
            ((cu - reach * au) * self.a, (cv - reach * av) * self.b, (cw - reach * aw) * self.z_extent),
            ((cu + reach * au) * self.a, (cv + reach * av) * self.b, (cw + reach * aw) * self.z_extent),
        )
        if box is None:
            return self._embed(None, None)
        u, v, w = self.u[box[0]], self.v[:, box[1]], self.w[:, :, box[2]]
        q = ((u - cu) / au) ** 2 + ((v - cv) / av) ** 2 + ((w - cw) / aw) ** 2
        return self._embed(box, np.sqrt(q) / (1.0 + self.field(field, amplitude, box)))

    def tube(
        self, points: Sequence[Sequence[float]], radii_mm: Sequence[float], field: int = 1, amplitude: float = 0.12
    ) -> np.ndarray:
        """Normalised distance (<= 1 inside; inf far outside) to a polyline in (u, v, w) with a radius (mm) at each
        point."""
        pts = np.asarray([(p[0] * self.a, p[1] * self.b, p[2] * self.z_extent) for p in points], dtype=np.float32)
        rad = np.asarray(radii_mm, dtype=np.float32)
        reach = 1.3 * (1.0 + amplitude) * float(rad.max())
        box = self._box(pts.min(axis=0) - reach, pts.max(axis=0) + reach)
        if box is None:
            return self._embed(None, None)
        x, y, z = self.x[box[0]], self.y[:, box[1]], self.z[:, :, box[2]]
        best = np.full(tuple(s.stop - s.start for s in box), np.inf, dtype=np.float32)
        for p0, p1, r0, r1 in zip(pts[:-1], pts[1:], rad[:-1], rad[1:]):
            seg = p1 - p0
            length2 = float(seg @ seg) or 1e-6
            t = ((x - p0[0]) * seg[0] + (y - p0[1]) * seg[1] + (z - p0[2]) * seg[2]) / length2
            t = np.clip(t, 0.0, 1.0)
            d2 = (x - p0[0] - t * seg[0]) ** 2 + (y - p0[1] - t * seg[1]) ** 2 + (z - p0[2] - t * seg[2]) ** 2
            np.minimum(best, np.sqrt(d2) / (r0 + t * (r1 - r0)), out=best)
        return self._embed(box, best / (1.0 + self.field(field, amplitude, box)))

    def paint(self, mask: np.ndarray, hu: float | np.ndarray, organ: str | None = None) -> None:
        mask = np.broadcast_to(mask, self.shape)
        self.hu[mask] = hu[mask] if isinstance(hu, np.ndarray) and hu.shape == self.shape else hu
        if organ is not None:
            self.label[mask] = _BTCV_ID[organ]


def _draw_body(c: _Canvas) -> np.ndarray:
    """Skin, fat, muscle wall, cavity content, spine, ribs. Returns the cavity mask (where organs may lie)."""
    outline = c.r <= 1.0 + c.field(3, 0.03)
    c.paint(outline, STRUCTURE_HU["subcutaneous_fat"] + 8.0 * c.fields[2])
    wall = c.r <= 0.86 + c.field(2, 0.02)
    c.paint(wall, STRUCTURE_HU["muscle"] + 5.0 * c.fields[0])
    cavity = np.broadcast_to(c.r <= 0.80 + c.field(1, 0.02), c.shape)
    mix = 1.0 / (1.0 + np.exp(-4.0 * (c.fields[1] + 0.6 * c.fields[3])))
    content = STRUCTURE_HU["cavity_fat"] + (STRUCTURE_HU["bowel"] - STRUCTURE_HU["cavity_fat"]) * mix
    c.paint(cavity, content)
    for _ in range(6):  # bowel gas in the lower, anterior abdomen
        centre = (c.rng.uniform(-0.5, 0.5), c.rng.uniform(-0.6, -0.1), c.rng.uniform(0.05, 0.4))
        size = c.rng.uniform(0.03, 0.06)
        bubble = c.ellipsoid(centre, (size, size * c.a / c.b, size * c.a / c.z_extent), 3, 0.2)
        c.paint(cavity & (bubble <= 1.0), STRUCTURE_HU["bowel_gas"])
    for side in (-1.0, 1.0):  # paraspinal muscles
        c.paint(c.ellipsoid((0.21 * side, 0.70, 0.5), (0.15, 0.15, 10.0), 0, 0.1) <= 1.0, STRUCTURE_HU["muscle"])
    # vertebral column: a body with a cortical shell, discs every ~12% of the height, the arch around the canal
    radius = 0.11 * c.a
    body_y = 0.48 * c.b
    dist_body = np.sqrt(c.x**2 + (c.y - body_y) ** 2)
    period = 0.12 * c.z_extent
    phase = c.rng.uniform(0.0, period)
    disc = np.broadcast_to(((c.z + phase) % period) < 0.22 * period, c.shape)
    vertebra = np.broadcast_to(dist_body <= radius, c.shape)
    cancellous = STRUCTURE_HU["bone_cancellous"] + 40.0 * c.fields[3]
    c.paint(vertebra, cancellous)
    c.paint(vertebra & (dist_body > radius - max(1.2, 0.09 * radius)), STRUCTURE_HU["bone_cortical"])
    c.paint(vertebra & disc, STRUCTURE_HU["disc"])
    canal_y = body_y + 1.55 * radius
    dist_canal = np.sqrt(c.x**2 + (c.y - canal_y) ** 2)
    arch = (dist_canal <= 0.85 * radius) & (c.y >= canal_y - 0.2 * radius)
    spinous = (np.abs(c.x) <= 0.18 * radius) & (c.y >= canal_y) & (c.y <= min(canal_y + 2.0 * radius, 0.84 * c.b))
    c.paint(np.broadcast_to(arch | spinous, c.shape) & ~disc, STRUCTURE_HU["rib"])
    c.paint(np.broadcast_to(dist_canal <= 0.45 * radius, c.shape), STRUCTURE_HU["spinal_canal"])
    # ribs: oblique bands of the outer wall in the upper abdomen, sparing the anterior midline
    angle = np.arctan2(c.v, c.u)  # 0: patient left, +pi/2: posterior, -pi/2: anterior
    band = ((c.z + 0.35 * c.z_extent * (angle / np.pi)) % (0.14 * c.z_extent)) < 0.045 * c.z_extent
    ribs = (c.r > 0.81) & (c.r < 0.855) & (c.w > 0.45) & (np.abs(angle + np.pi / 2) > 0.7) & band
    c.paint(ribs, STRUCTURE_HU["rib"])
    return cavity


def _pancreas_path(c: _Canvas) -> tuple[list[tuple[float, float, float]], list[float]]:
    points = [
        c.jitter((-0.20, -0.04, 0.42), 0.02),  # head, by the duodenum
        c.jitter((0.00, -0.10, 0.47), 0.02),  # neck, in front of the portal confluence
        c.jitter((0.22, 0.00, 0.52), 0.02),  # body
        c.jitter((0.42, 0.13, 0.58), 0.02),  # tail, at the splenic hilum
    ]
    scale = c.a * float(c.rng.uniform(0.9, 1.1))
    return points, [0.13 * scale, 0.09 * scale, 0.085 * scale, 0.065 * scale]


def render_ct_phantom(
    rng: np.random.Generator,
    shape: Sequence[int] = DEFAULT_SHAPE,
    spacing: Sequence[float] = DEFAULT_SPACING,
    *,
    tumour: bool = False,
    noise_std: float = 12.0,
) -> CTPhantom:
    """Draw one abdominal CT phantom (see the module docstring for the anatomy and geometry).

    Args:
        rng: the random generator every choice is drawn from (``numpy.random.default_rng([...])``).
        shape: array shape (I, J, K); each at least 32 in-plane and 16 slices.
        spacing: voxel size in mm along I, J, K.
        tumour: add a hypo-attenuating pancreatic tumour (returned as ``CTPhantom.tumour``; labelled as pancreas
            in ``CTPhantom.label``).
        noise_std: standard deviation of the Gaussian noise, HU (>= 0).

    Returns:
        a :class:`CTPhantom` with all 13 BTCV organs labelled (small ones may vanish on very coarse grids).

    Raises:
        ValueError: for a too small shape, a non-positive spacing or a negative ``noise_std``.
    """
    if len(shape) != 3 or any(int(n) != n for n in shape) or min(shape[:2]) < 32 or shape[2] < 16:
        raise ValueError(f"shape must be three integers, at least (32, 32, 16); got {tuple(shape)}.")
    if len(spacing) != 3 or any(not float(s) > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive numbers (mm), got {tuple(spacing)}.")
    if not float(noise_std) >= 0:
        raise ValueError(f"noise_std must be >= 0, got {noise_std}.")
    c = _Canvas(rng, shape, spacing)
    cavity = _draw_body(c)

    def organ(mask: np.ndarray, hu: float | np.ndarray, name: str) -> None:
        c.paint(cavity & mask, hu, name)

    def jitter_axes(axes: Sequence[float]) -> tuple[float, ...]:
        return tuple(x * float(c.rng.uniform(0.9, 1.1)) for x in axes)

    liver = c.ellipsoid(c.jitter((-0.42, -0.02, 0.72)), jitter_axes((0.40, 0.58, 0.37)), 0)
    organ(liver <= 1.0, STRUCTURE_HU["liver"] + 4.0 * c.fields[1], "liver")
    organ(c.ellipsoid(c.jitter((-0.28, -0.42, 0.46)), jitter_axes((0.10, 0.14, 0.14)), 1) <= 1.0, 10.0, "gallbladder")
    stomach_centre = c.jitter((0.30, -0.35, 0.68))
    stomach_axes = jitter_axes((0.27, 0.27, 0.22))
    stomach = c.ellipsoid(stomach_centre, stomach_axes, 2) <= 1.0
    organ(stomach, STRUCTURE_HU["stomach"], "stomach")
    gas_level = stomach_centre[1] - 0.45 * stomach_axes[1]  # supine: gas rises anteriorly (towards -v)
    c.paint(cavity & stomach & (c.v < gas_level), STRUCTURE_HU["stomach_gas"])
    organ(c.ellipsoid(c.jitter((0.56, 0.30, 0.68)), jitter_axes((0.16, 0.28, 0.20)), 3) <= 1.0, 50.0, "spleen")
    for name, centre in (("kidney_right", (-0.42, 0.42, 0.32)), ("kidney_left", (0.42, 0.45, 0.38))):
        q = c.ellipsoid(c.jitter(centre, 0.02), jitter_axes((0.13, 0.18, 0.20)), 0, 0.08)
        organ(q <= 1.0, STRUCTURE_HU["kidney_cortex"], name)
        c.paint(cavity & (q <= 0.55), STRUCTURE_HU["kidney_medulla"])
    for name, centre in (("adrenal_gland_right", (-0.25, 0.36, 0.56)), ("adrenal_gland_left", (0.21, 0.35, 0.52))):
        organ(c.ellipsoid(c.jitter(centre, 0.015), (0.045, 0.09, 0.08), 1, 0.1) <= 1.0, 30.0, name)
    points, radii = _pancreas_path(c)
    pancreas_q = c.tube(points, radii, 2, 0.15)
    organ(pancreas_q <= 1.0, STRUCTURE_HU["pancreas"] + 6.0 * c.fields[0], "pancreas")
    tumour_mask: np.ndarray | None = None
    if tumour:
        t = float(c.rng.uniform(0.0, 1.6))  # somewhere on the head-neck-body segments
        seg = min(int(t), len(points) - 2)
        frac = t - seg
        centre = tuple(points[seg][d] + frac * (points[seg + 1][d] - points[seg][d]) for d in range(3))
        local = radii[seg] + frac * (radii[seg + 1] - radii[seg])
        size_mm = local * float(c.rng.uniform(0.55, 0.85))
        q = c.tube([centre, centre], [size_mm, size_mm], 3, 0.1)
        tumour_mask = np.broadcast_to(cavity & (q <= 1.0) & (pancreas_q <= 1.25), c.shape).copy()
        c.paint(tumour_mask, STRUCTURE_HU["tumour"], "pancreas")
    # vessels: along the height, with a gentle sway
    aorta_u, aorta_v = 0.07 + c.rng.normal(0, 0.01), 0.22 + c.rng.normal(0, 0.01)
    aorta = [(aorta_u + 0.02 * math.sin(3.0 * s), aorta_v, s) for s in np.linspace(-0.05, 1.05, 5)]
    organ(c.tube(aorta, [0.065 * c.a] * len(aorta), 0, 0.05) <= 1.0, STRUCTURE_HU["aorta"], "aorta")
    ivc = [(-0.15, 0.20, -0.05), (-0.16, 0.18, 0.40), (-0.19, 0.12, 0.74)]
    organ(c.tube(ivc, [0.075 * c.a] * 3, 1, 0.08) <= 1.0, STRUCTURE_HU["inferior_vena_cava"], "inferior_vena_cava")
    behind = [(p[0], p[1] + 0.1, p[2]) for p in points[1:]]
    veins = [(-0.22, -0.08, 0.62), *behind, (0.50, 0.24, 0.62)]
    organ(c.tube(veins, [0.04 * c.a] * len(veins), 3, 0.1) <= 1.0, 160.0, "portal_and_splenic_vein")
    esophagus = [(-0.02, 0.10, 1.05), (0.06, 0.02, 0.90), (0.18, -0.14, 0.78)]
    esophagus_q = c.tube(esophagus, [0.05 * c.a] * 3, 2, 0.05)
    organ(esophagus_q <= 1.0, STRUCTURE_HU["esophagus"], "esophagus")
    c.paint(cavity & (esophagus_q <= 0.3), STRUCTURE_HU["esophagus_gas"])

    hu = ndimage.gaussian_filter(c.hu, sigma=(0.6, 0.6, 0.35), mode="nearest")
    if noise_std > 0:
        hu += c.rng.normal(0.0, float(noise_std), size=c.shape).astype(np.float32)
    image = np.clip(np.rint(hu), _HU_MIN, _HU_MAX).astype(np.int16)
    affine = phantom_affine(
        c.shape,
        spacing,
        tilt_deg=float(c.rng.uniform(2.0, 6.0)),
        yaw_deg=float(c.rng.uniform(-2.0, 2.0)),
        centre_lps=(float(c.rng.uniform(-8, 8)), float(c.rng.uniform(-40, -10)), float(c.rng.uniform(-650, -350))),
    )
    return CTPhantom(image=image, label=c.label, tumour=tumour_mask, affine=affine)
