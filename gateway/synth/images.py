"""Pixel data: chest radiograph and chest CT phantoms, vectorised with numpy.

Both phantoms draw opacities exactly where the study's ``Finding`` puts them (side, lung-height
thirds, periphery, density), so a viewer — or a test — sees what the radiologist's text says.
Everything is float32 and derived from the RNG handed in, so the same seed gives the same pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .tables import Finding

LUNG_TOP, LUNG_BOTTOM = 0.04, 0.90  # CT: lung apex and deepest base, fractions of the scan
XR_LUNG_TOP, XR_LUNG_BOTTOM = 0.10, 0.74  # radiograph rows spanned by the lungs


@dataclass(frozen=True)
class Habitus:
    """Body build from the clinical row, so a BMI 45 patient looks wider than a BMI 20 one."""

    scale: float  # body width relative to an average adult
    fat_mm: float  # subcutaneous fat thickness

    @classmethod
    def of(cls, bmi: float | None, sex: str) -> Habitus:
        b = 30.0 if bmi is None else bmi
        base = 1.0 if sex == "M" else 0.94
        return cls(base * float(np.clip(0.80 + 0.0085 * b, 0.9, 1.25)),
                   float(np.clip(4.0 + 1.1 * (b - 18.0), 3.0, 45.0)))


def smooth_field(rng: np.random.Generator, shape: tuple[int, int], cells: int = 12) -> np.ndarray:
    """A smooth random field in [0, 1]: coarse noise upsampled bicubically (patchy opacities)."""
    coarse = rng.random((cells, max(2, round(cells * shape[1] / shape[0]))), dtype=np.float32)
    img = Image.fromarray(coarse).resize((shape[1], shape[0]), Image.Resampling.BICUBIC)
    field = np.asarray(img, dtype=np.float32)
    lo, hi = float(field.min()), float(field.max())
    return (field - lo) / max(hi - lo, 1e-6)


def zone_weight(t: np.ndarray, zones: tuple[str, ...]) -> np.ndarray:
    """Weight of the named lung thirds at relative height t (0 apex … 1 base), soft edges."""
    centres = {"upper": 1 / 6, "mid": 1 / 2, "lower": 5 / 6}
    w = np.zeros_like(t, dtype=np.float32)
    for zone in zones:
        w = np.maximum(w, np.clip(1.0 - (np.abs(t - centres[zone]) - 1 / 6) / 0.08, 0.0, 1.0))
    return w * ((t >= -0.05) & (t <= 1.05))


def side_weight(x: np.ndarray, sides: str, soft: float) -> np.ndarray:
    """1 on the affected side(s); x < 0 is the patient's right (LPS / radiological display)."""
    w = np.zeros_like(x, dtype=np.float32)
    if "R" in sides:
        w = np.maximum(w, np.clip(-x / soft + 0.5, 0.0, 1.0))
    if "L" in sides:
        w = np.maximum(w, np.clip(x / soft + 0.5, 0.0, 1.0))
    return w


def patchy(field: np.ndarray, density: float) -> np.ndarray:
    """Turn a smooth field into patches; denser findings fill more of the zone."""
    cut = 0.55 - 0.35 * density
    return np.clip((field - cut) / 0.25, 0.0, 1.0) ** 1.5


# ---------------------------------------------------------------- radiographs (PS3.3 A.2 / A.26)


def _ellipse(u: np.ndarray, v: np.ndarray, cu: float, cv: float, au: float, av: float
             ) -> np.ndarray:
    """Thickness profile of an ellipsoid seen in projection: 1 at the centre, 0 at the rim."""
    return np.sqrt(np.clip(1.0 - ((u - cu) / au) ** 2 - ((v - cv) / av) ** 2, 0.0, 1.0))


def _torso_halfwidth(v: np.ndarray, width: float) -> np.ndarray:
    shoulders = np.clip((v - 0.05) / 0.11, 0.0, 1.0)
    shoulders = shoulders * shoulders * (3 - 2 * shoulders)
    return 0.17 + (width - 0.17) * shoulders - 0.04 * np.clip(v - 0.3, 0, 1)


def _frontal_lungs(u: np.ndarray, v: np.ndarray, s: float) -> tuple[np.ndarray, np.ndarray]:
    """Projected thickness of both lungs (narrow apex, wide base, domed floor) and, for each
    pixel, its distance from the lung's midline relative to the lung's half-width (0 … 1)."""
    total = np.zeros(np.broadcast_shapes(u.shape, v.shape), np.float32)
    rel = np.zeros_like(total)
    down = np.clip((v - XR_LUNG_TOP) / 0.50, 0.0, 1.0)
    for sign, base in ((-1.0, 0.67), (1.0, 0.70)):
        lateral = (0.30 + 0.46 * np.sqrt(down)) * s
        medial = (0.30 - 0.22 * np.sqrt(np.clip(down * 2.0, 0.0, 1.0))) * s
        mid, half = (lateral + medial) / 2, np.maximum((lateral - medial) / 2, 1e-3)
        du = (sign * u - mid) / half
        floor = base + 0.09 * du * du + 0.03 * np.clip(du, 0, None)
        lung = np.sqrt(np.clip(1.0 - du * du, 0.0, 1.0)) * np.clip((floor - v) / 0.025, 0.0, 1.0)
        lung = lung * np.clip((v - XR_LUNG_TOP) / 0.02, 0.0, 1.0)
        total = np.maximum(total, lung)
        rel = np.where(lung > 0, np.abs(du), rel)
    return total, rel


def _frontal_bones(u: np.ndarray, v: np.ndarray, s: float, halfwidth: np.ndarray) -> np.ndarray:
    spine = np.clip(1.0 - np.abs(u) / 0.065, 0.0, 1.0) ** 0.5
    spine = spine * (0.85 + 0.15 * np.cos(2 * np.pi * v / 0.045)) * (v > 0.02)
    cage = (np.abs(u) < 0.97 * halfwidth) & (np.abs(u) > 0.07) & (v > 0.10) & (v < 0.80)
    posterior = np.exp(-(((v - 0.11 - 0.22 * (u / s) ** 2) / 0.052) % 1.0 - 0.5) ** 2 / 0.012)
    anterior = np.exp(-(((v - 0.20 + 0.10 * (u / s) ** 2) / 0.068) % 1.0 - 0.5) ** 2 / 0.015)
    ribs = cage * (0.45 * posterior + 0.2 * anterior)
    au = np.abs(u)
    centre = 0.145 - 0.08 * au + 0.06 * au * au
    clavicles = (au > 0.05) & (au < 0.58 * s) & (np.abs(v - centre) < 0.013)
    return 0.9 * spine + ribs + 0.9 * clavicles


def _opacity(finding: Finding, side: np.ndarray | float, t: np.ndarray, rel: np.ndarray,
             field: np.ndarray) -> np.ndarray:
    """Opacity weight × density where the finding puts it (side, thirds, periphery)."""
    if not finding.sides or finding.density <= 0:
        return np.zeros_like(field)
    w = zone_weight(t, finding.zones) * side * patchy(field, finding.density)
    if finding.peripheral:
        w = w * np.clip((rel - 0.25) / 0.45, 0.15, 1.0)
    return w * finding.density


def _lung_markings(u: np.ndarray, v: np.ndarray, fine: np.ndarray, s: float) -> np.ndarray:
    """Vascular markings: streaks radiating from both hila, fading to the periphery."""
    out = np.zeros_like(fine)
    for hu in (-0.17 * s, 0.17 * s):
        du, dv = u - hu, v - 0.42
        r = np.sqrt(du * du + dv * dv)
        streak = np.clip(np.cos(np.arctan2(dv, du) * 38.0 + 6.0 * fine), 0.0, 1.0) ** 6
        out += streak * np.exp(-r / 0.22) + 0.6 * np.exp(-(r / 0.07) ** 2)
    return out


def _frontal_density(rows: int, cols: int, finding: Finding, habitus: Habitus, female: bool,
                     rng: np.random.Generator) -> np.ndarray:
    v = ((np.arange(rows, dtype=np.float32) + 0.5) / rows)[:, None]
    u = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2)[None, :] / (cols / 2)
    s = habitus.scale
    hw = _torso_halfwidth(v, min(0.93 * s, 1.02))
    body = np.sqrt(np.clip(1.0 - (u / hw) ** 2, 0.0, 1.0))
    lungs, rel = _frontal_lungs(u, v, s)
    heart = _ellipse(u, v, 0.10 * s, 0.59, 0.25 * s, 0.13)
    lungs = lungs * (1.0 - 0.85 * heart)
    fine = smooth_field(rng, (rows, cols), 48)
    t = (v - XR_LUNG_TOP) / (XR_LUNG_BOTTOM - XR_LUNG_TOP)
    side = side_weight(u, finding.sides, 0.08)
    opacity = _opacity(finding, side, t, rel, smooth_field(rng, (rows, cols), 10)) * lungs
    d = 0.55 * body + 0.06 * habitus.fat_mm / 20.0 * body - 0.40 * lungs * (1 - 0.08 * fine)
    d += 0.20 * _frontal_bones(u, v, s, hw) * body + 0.05 * heart
    d += 0.08 * _ellipse(u, v, 0.12 * s, 0.30, 0.06, 0.04) + 0.05 * lungs * _lung_markings(
        u, v, fine, s)
    d -= 0.12 * _ellipse(u, v, 0.36 * s, 0.79, 0.08, 0.035)  # gastric air bubble
    if female:
        d += 0.08 * (_ellipse(u, v, -0.45 * s, 0.70, 0.30, 0.12)
                     + _ellipse(u, v, 0.45 * s, 0.70, 0.30, 0.12))
    return d + 0.6 * opacity


def _lateral_density(rows: int, cols: int, finding: Finding, habitus: Habitus,
                     rng: np.random.Generator) -> np.ndarray:
    """Left lateral: anterior to the image left, spine to the right, both lungs superimposed."""
    v = ((np.arange(rows, dtype=np.float32) + 0.5) / rows)[:, None]
    u = (np.arange(cols, dtype=np.float32) - (cols - 1) / 2)[None, :] / (cols / 2)
    s = habitus.scale
    depth = 0.30 + (0.80 * s - 0.30) * np.clip((v - 0.04) / 0.12, 0.0, 1.0)
    body = np.sqrt(np.clip(1.0 - ((u - 0.02) / depth) ** 2, 0.0, 1.0))
    rise = np.sqrt(np.clip((v - XR_LUNG_TOP) / 0.16, 0.0, 1.0))
    hw = np.maximum(0.62 * s * rise, 1e-3)
    floor = 0.67 + 0.05 * ((u - 0.05) / 0.5) ** 2 + 0.05 * u
    lungs = np.sqrt(np.clip(1.0 - ((u - 0.05) / hw) ** 2, 0.0, 1.0))
    lungs = lungs * np.clip((floor - v) / 0.03, 0.0, 1.0) * (v > XR_LUNG_TOP)
    heart = _ellipse(u, v, -0.33 * s, 0.60, 0.32 * s, 0.16)
    lungs = lungs * (1.0 - 0.8 * heart)
    vertebrae = (u > 0.50 * s) & (u < 0.66 * s) & (((v / 0.05) % 1.0) > 0.18) & (v > 0.03)
    sternum = (u > -0.70 * s) & (u < -0.66 * s) & (v > 0.16) & (v < 0.56)
    fine = smooth_field(rng, (rows, cols), 48)
    t = (v - XR_LUNG_TOP) / (XR_LUNG_BOTTOM - XR_LUNG_TOP)
    rel = np.abs(u - 0.05) / (0.62 * s)
    side = 1.0 if len(finding.sides) == 2 else 0.6  # both lungs superimposed
    opacity = _opacity(finding, side, t, rel, smooth_field(rng, (rows, cols), 10))
    d = 0.62 * body - 0.46 * lungs * (1 - 0.08 * fine) + (0.15 * vertebrae + 0.1 * sternum) * body
    return d + 0.06 * heart + 0.35 * opacity * lungs


def radiograph(view: str, rows: int, cols: int, finding: Finding, habitus: Habitus, sex: str,
               rng: np.random.Generator, bits: int = 12) -> np.ndarray:
    """A chest radiograph (uint16, ``bits`` stored, MONOCHROME2 sense: bright = attenuating).

    Anatomy is smooth, so it is computed at half resolution and upsampled bicubically; only the
    quantum noise is drawn at full resolution (a 1024 px image costs ~40 ms instead of ~130)."""
    step = 2 if rows >= 512 else 1
    h, w = -(-rows // step), -(-cols // step)
    if view == "LL":
        d = _lateral_density(h, w, finding, habitus, rng)
    else:
        d = _frontal_density(h, w, finding, habitus, sex == "F", rng)
    signal = 0.03 + 0.92 * np.clip(d, 0.0, 1.1) ** 0.9
    if step > 1:
        signal = np.asarray(Image.fromarray(signal.astype(np.float32)).resize(
            (cols, rows), Image.Resampling.BICUBIC), dtype=np.float32)
    top = (1 << bits) - 1
    noise = rng.standard_normal((rows, cols), dtype=np.float32) * 0.006
    return np.clip(np.rint((signal + noise) * top), 0, top).astype(np.uint16)


def xr_window(pixels: np.ndarray) -> tuple[int, int]:
    """Window centre/width spanning the body's intensities (1st-99.5th percentile)."""
    sample = pixels[::4, ::4]
    body = sample[sample > np.percentile(sample, 10)]
    lo, hi = np.percentile(body, [1.0, 99.5])
    return int(np.rint((lo + hi) / 2)), max(int(np.rint(hi - lo)), 2)

