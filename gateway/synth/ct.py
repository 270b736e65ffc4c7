"""Chest CT phantom (PS3.3 A.3 CT Image): one axial slice at a time, vectorised with numpy.

Static 2D fields (body, lung footprints, diaphragm domes, organs, textures) are built once per
study; each slice only thresholds them against its height, so a slice costs milliseconds and a
series never sits in memory as a whole. Heights are physical (mm below the lung apex level), and
the random anatomy (textures, vessel tracks) is drawn before anything whose size depends on the
matrix, so two phantoms of one study at different matrix sizes show the same anatomy: thin and
thick reconstructions, and the coarse volume MPRs are cut from, agree.
"""

from __future__ import annotations

import numpy as np

from .images import (
    LUNG_BOTTOM,
    LUNG_TOP,
    Habitus,
    patchy,
    side_weight,
    smooth_field,
    zone_weight,
)
from .tables import Finding

CT_SIZE = 512
CHEST_MM = 320.0  # apex to upper abdomen: heights are fractions of this
_GREAT_VESSELS = (("aorta_asc", 0.14, 0.45), ("svc", 0.08, 0.5), ("pa_trunk", 0.36, 0.48),
                  ("aorta_desc", 0.12, 1.0))
AIR_HU, LUNG_HU, FAT_HU, SOFT_HU, MUSCLE_HU = -1000.0, -860.0, -100.0, 40.0, 55.0


def _radius(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float
            ) -> np.ndarray:
    return np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)


class ChestPhantom:
    """Axial chest CT phantom; ``depth`` is mm below the top of the chest scan (apex level).

    ``hu(depth)`` is a pure function of the depth: all randomness is drawn up front, so slices
    can be rendered in any order (or twice) with the same result. Depths beyond the chest
    (CHEST_MM) show the upper abdomen (liver, stomach, spine).
    """

    def __init__(self, size: int, pixel_mm: float, finding: Finding, habitus: Habitus,
                 rng: np.random.Generator) -> None:
        self.size, self.finding, self.pixel_mm = size, finding, pixel_mm
        axis = (np.arange(size, dtype=np.float32) - (size - 1) / 2) * pixel_mm
        self.x, self.y = axis[None, :], axis[:, None]  # LPS: +x patient left, +y posterior
        self.a, self.b = 155.0 * habitus.scale, 108.0 * (0.75 + 0.25 * habitus.scale)
        self.rb = _radius(self.x, self.y, 0.0, 8.0, self.a, self.b)
        self.fat_edge = 1.0 - habitus.fat_mm / self.a
        self.rl = [_radius(self.x, self.y, c * 0.49 * self.a, 10.0, 0.36 * self.a, 0.72 * self.b)
                   for c in (-1.0, 1.0)]
        self.dome = [base - 0.20 * np.clip(1.0 - r * r, 0.0, 1.0)
                     for base, r in zip((0.86, 0.90), self.rl, strict=False)]
        self.rheart = _radius(self.x, self.y, 0.16 * self.a, -0.18 * self.b, 0.40 * self.a,
                              0.46 * self.b)
        self.theta = np.arctan2(self.y - 8.0, self.x)
        self.textures = (smooth_field(rng, (size, size), 14), smooth_field(rng, (size, size), 14))
        self.vessels = self._vessel_tracks(rng, pixel_mm)
        self.noise = [rng.standard_normal((size, size), dtype=np.float32) * 9.0
                      for _ in range(2)]
        self.masks = self._static_masks()
        rows, cols = np.nonzero(self.masks["rib_ring"] & (self.y > -0.6 * self.b))
        self._ring = (rows, cols, self.theta[rows, cols])
        self._bases: dict[tuple, np.ndarray] = {}
        self.offsets = {r: [(dy, dx) for dy in range(-r, r + 1) for dx in range(-r, r + 1)
                            if dy * dy + dx * dx <= r * r] for r in range(1, 8)}

    def _vessel_tracks(self, rng: np.random.Generator, pixel_mm: float) -> np.ndarray:
        """Pulmonary vessels as straight 3D tracks: x, y (mm) at the top, drift/mm, radius (px).

        Tracks cluster towards the hila and are thicker there, thinning to the periphery."""
        n = 90
        side = np.where(rng.random(n) < 0.5, -1.0, 1.0)
        ang, rad = rng.uniform(0, 2 * np.pi, n), rng.random(n) ** 0.8 * 0.9
        hilum_x = side * 0.30 * self.a
        cx = hilum_x + side * np.abs(np.cos(ang)) * rad * 0.50 * self.a
        cy = 10.0 + np.sin(ang) * rad * 0.72 * self.b
        drift = rng.normal(0.0, 0.10, (n, 2))
        radius = np.clip(np.rint((4.2 - 3.4 * rad) / pixel_mm), 1, 6)
        return np.column_stack([cx, cy, drift, radius]).astype(np.float32)

    def lung_mask_at(self, depth: float) -> np.ndarray:
        """Where the lungs are at this depth (used for drawing and by tests)."""
        zf = depth / CHEST_MM
        size = np.sqrt(np.clip((zf - LUNG_TOP) / 0.28, 0.0, 1.0))
        heart = self.rheart < np.sqrt(np.clip(1.0 - ((zf - 0.70) / 0.22) ** 2, 0.0, 1.0))
        lungs = np.zeros(self.rb.shape, bool)
        for r, dome in zip(self.rl, self.dome, strict=False):
            lungs |= (r < size) & (zf < dome)
        return lungs & ~heart

    def hu_at(self, depth: float, noise_key: int | None = None, noise: bool = True
              ) -> np.ndarray:
        """Hounsfield units of the axial slice at ``depth`` mm (float32); ``noise_key`` picks
        another noise pattern for a repeated level (bolus tracking)."""
        zf = depth / CHEST_MM
        img = self._soft_tissue(zf, depth)
        lungs = self.lung_mask_at(depth)
        parenchyma = LUNG_HU + 50.0 * np.clip(self.y / self.b, -1.0, 1.0) + self._opacity(zf)
        img = np.where(lungs, parenchyma, img)
        img = np.where(lungs & self._vessel_map(depth), 35.0, img)
        self._airways(img, zf)
        if not noise:
            return img
        k = int(round(depth * 8.0)) if noise_key is None else noise_key
        img += np.roll(self.noise[k % 2], ((k * 7919) % self.size, (k * 104729) % self.size),
                       axis=(0, 1))
        return img


    def _static_masks(self) -> dict[str, np.ndarray]:
        """Organs whose cross-section does not change with height (spine, great vessels, table)."""
        x, y, a, b = self.x, self.y, self.a, self.b
        back = 8.0 + b

        def disc(cx: float, cy: float, r: float) -> np.ndarray:
            return (x - cx) ** 2 + (y - cy) ** 2 < r * r

        cortex, canal = disc(0.0, back - 38.0, 19.0), disc(0.0, back - 15.0, 7.5)
        spinous = _radius(x, y, 0.0, back - 2.0, 5.0, 10.0) < 1.0
        inner = self.rb < self.fat_edge - 0.07
        nearest_lung = np.minimum(*self.rl)
        return {
            "vertebra": disc(0.0, back - 38.0, 17.0), "cortex": cortex, "canal": canal,
            "spinous": spinous,
            "aorta_desc": disc(22.0, back - 52.0, 12.0), "aorta_asc": disc(8.0, -0.25 * b, 15.0),
            "svc": disc(-22.0, -0.22 * b, 9.0), "pa_trunk": disc(24.0, -0.32 * b, 13.0),
            "sternum": _radius(x, y, 0.0, 8.0 - 0.86 * b, 14.0, 6.0) < 1.0,
            "table": (y > back + 14.0) & (y < back + 22.0) & (np.abs(x) < 0.9 * a),
            "rib_ring": (nearest_lung > 1.04) & (nearest_lung < 1.16)
            & (self.rb < self.fat_edge - 0.04) & (self.rb > 0.6),
            "mediastinum": _radius(x, y, 0.0, -0.15 * b, 0.27 * a, 0.62 * b) < 1.0,
            "stomach": disc(0.38 * a, -0.28 * b, 30.0),
            "inner": inner,
            "liver_zone": inner & (self.rl[0] < 1.25) & ~(cortex | canal | spinous),
        }

    def _base(self, zf: float, zmm: float) -> np.ndarray:
        """Body wall, mediastinum, great vessels, spine, sternum and table: a few variants per
        series, cached by which structures this height shows."""
        vessels = tuple(lo <= zf <= hi for _, lo, hi in _GREAT_VESSELS)
        key = (zf < 0.9, vessels, (zmm % 26.0) < 5.0, 0.10 < zf < 0.62, zf > 0.80)
        if key not in self._bases:
            self._bases[key] = self._draw_base(*key)
        return self._bases[key].copy()

    def _draw_base(self, mediastinum: bool, vessels: tuple[bool, ...], disc: bool,
                   sternum: bool, stomach: bool) -> np.ndarray:
        m, rb, fe = self.masks, self.rb, self.fat_edge
        img = np.where(rb < 1.0, np.where(rb > fe, FAT_HU, SOFT_HU), AIR_HU).astype(np.float32)
        img[(rb > fe - 0.07) & (rb <= fe)] = MUSCLE_HU
        if mediastinum:
            img[m["inner"] & m["mediastinum"]] = -80.0
        for (name, _, _), shown in zip(_GREAT_VESSELS, vessels, strict=False):
            if shown:
                img[m[name]] = 40.0
        if stomach:  # under the left dome: fluid below, air above (patient supine)
            img[m["stomach"]] = 30.0
            img[m["stomach"] & (self.y < 8.0 - 0.36 * self.b)] = -950.0
        img[m["cortex"]] = 650.0
        img[m["vertebra"]] = 180.0 if disc else 260.0  # intervertebral discs every ~26 mm
        img[m["canal"]] = 15.0
        img[m["spinous"]] = 420.0
        if sternum:
            img[m["sternum"]] = 380.0
        img[m["table"]] = 120.0
        return img

    def _soft_tissue(self, zf: float, zmm: float) -> np.ndarray:
        """The cached base plus what moves with height: heart, liver, ribs."""
        img = self._base(zf, zmm)
        img[self.rheart < np.sqrt(max(1.0 - ((zf - 0.70) / 0.22) ** 2, 0.0))] = 42.0
        img[self.masks["liver_zone"] & (zf > self.dome[0])] = 62.0  # liver under right dome
        rows, cols, theta = self._ring
        on = ((theta * (12.0 / (2 * np.pi)) + zmm / 40.0) % 1.0) < 0.16
        img[rows[on], cols[on]] = 700.0
        return img

    def _opacity(self, zf: float) -> np.ndarray | float:
        """HU added to the parenchyma where the finding says (ground glass ≈ +260 HU)."""
        f = self.finding
        t = np.float32((zf - LUNG_TOP) / (LUNG_BOTTOM - LUNG_TOP))
        zw = float(zone_weight(np.array([t]), f.zones)[0]) if f.sides and f.density > 0 else 0.0
        if zw == 0.0:
            return 0.0
        phase = float(np.cos(zf * np.pi * 4.0) ** 2)
        field = self.textures[0] * phase + self.textures[1] * (1.0 - phase)
        w = zw * side_weight(self.x, f.sides, 20.0) * patchy(field, f.density)
        if f.peripheral:
            w = w * np.clip((np.minimum(self.rl[0], self.rl[1]) - 0.45) / 0.35, 0.15, 1.0)
        return w * (f.density * 880.0)

    def _vessel_map(self, zmm: float) -> np.ndarray:
        """Vessel cross-sections at this height: one disc stamp per track, radius by radius."""
        out = np.zeros(self.rb.shape, bool)
        half, n = (self.size - 1) / 2, self.size
        v = self.vessels
        cols = np.rint((v[:, 0] + v[:, 2] * zmm) / self.pixel_mm + half).astype(int)
        rows = np.rint((v[:, 1] + v[:, 3] * zmm) / self.pixel_mm + half).astype(int)
        for ri in np.unique(v[:, 4]).astype(int):
            keep = (v[:, 4] == ri) & (rows >= ri) & (rows < n - ri) & (cols >= ri) & \
                (cols < n - ri)
            r, c = rows[keep], cols[keep]
            for dy, dx in self.offsets[ri]:
                out[r + dy, c + dx] = True
        return out

    def _airways(self, img: np.ndarray, zf: float) -> None:
        """Trachea, then the two main bronchi below the carina (air with a soft-tissue wall)."""
        if zf < 0.36:
            centres = [(0.0, -0.22 * self.b)]
        elif zf < 0.47:
            spread = 14.0 + (zf - 0.36) * 320.0
            centres = [(-spread, -0.15 * self.b), (spread, -0.15 * self.b)]
        else:
            return
        radius = 8.5 if len(centres) == 1 else 6.0
        for cx, cy in centres:
            d2 = (self.x - cx) ** 2 + (self.y - cy) ** 2
            img[d2 < (radius + 1.8) ** 2] = 30.0
            img[d2 < radius * radius] = -990.0


class ChestCT(ChestPhantom):
    """The phantom sampled as ``slices`` contiguous axial slices of ``spacing_mm``, apex first."""

    def __init__(self, slices: int, spacing_mm: float, pixel_mm: float, finding: Finding,
                 habitus: Habitus, rng: np.random.Generator, size: int = CT_SIZE) -> None:
        super().__init__(size, pixel_mm, finding, habitus, rng)
        self.slices, self.spacing = slices, spacing_mm

    def depth(self, index: int) -> float:
        return (index + 0.5) * self.spacing

    def lung_mask(self, index: int) -> np.ndarray:
        return self.lung_mask_at(self.depth(index))

    def hu(self, index: int) -> np.ndarray:
        return self.hu_at(self.depth(index))

    def stored(self, index: int) -> np.ndarray:
        """Stored values for RescaleIntercept -1024, slope 1 (int16)."""
        return np.clip(np.rint(self.hu(index)) + 1024.0, 0, 4095).astype(np.int16)
