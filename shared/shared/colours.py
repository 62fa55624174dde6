"""The catalog's colour vocabulary: naming an RGB colour, and the dominant colour of garment pixels."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from shared.boxes import border_pixels
from shared.vocabulary import colour_family

# Reference sRGB values for the catalog's baseColour names.
PALETTE: dict[str, tuple[int, int, int]] = {
    "Black": (25, 25, 28),
    "Charcoal": (60, 62, 66),
    "Grey": (128, 128, 130),
    "Grey Melange": (165, 165, 168),
    "Silver": (192, 192, 196),
    "White": (246, 246, 244),
    "Off White": (236, 230, 216),
    "Cream": (240, 228, 196),
    "Beige": (214, 192, 160),
    "Khaki": (189, 170, 125),
    "Tan": (196, 150, 105),
    "Brown": (115, 74, 45),
    "Coffee Brown": (78, 56, 42),
    "Rust": (176, 72, 36),
    "Orange": (240, 128, 40),
    "Peach": (250, 190, 160),
    "Mustard": (208, 165, 40),
    "Yellow": (244, 214, 56),
    "Gold": (200, 164, 70),
    "Olive": (100, 104, 50),
    "Green": (40, 128, 64),
    "Sea Green": (60, 160, 120),
    "Teal": (20, 120, 128),
    "Turquoise Blue": (64, 196, 208),
    "Blue": (50, 100, 185),
    "Navy Blue": (32, 40, 72),
    "Lavender": (184, 164, 216),
    "Purple": (112, 58, 140),
    "Magenta": (196, 40, 140),
    "Pink": (236, 150, 180),
    "Red": (196, 30, 40),
    "Maroon": (112, 26, 40),
    "Burgundy": (128, 20, 50),
}
_NAMES = list(PALETTE)


def srgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(N, 3) sRGB 0..255 to CIE Lab (D65)."""
    c = rgb.astype(np.float64) / 255.0
    c = np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)
    xyz = c @ np.array([[0.4124, 0.2126, 0.0193], [0.3576, 0.7152, 0.1192], [0.1805, 0.0722, 0.9505]])
    xyz /= np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > 0.008856, np.cbrt(xyz), 7.787 * xyz + 16 / 116)
    return np.stack([116 * f[:, 1] - 16, 500 * (f[:, 0] - f[:, 1]), 200 * (f[:, 1] - f[:, 2])], axis=1)


_PALETTE_LAB = srgb_to_lab(np.array(list(PALETTE.values())))
NEIGHBOURS_ASSET = Path(__file__).parent / "assets" / "colour-neighbours.npz"
NEIGHBOURS_K = 15


@dataclass(frozen=True)
class ColourNeighbours:
    """Dominant garment colours of labelled catalog products (Lab) with their baseColour: a colour is
    named by its nearest neighbours, so the names follow how the catalog itself uses them (a photo's
    "Navy Blue" is darker and greyer than any reference swatch)."""

    lab: np.ndarray  # (N, 3)
    names: np.ndarray  # (N,) index into vocabulary
    vocabulary: tuple[str, ...]

    @classmethod
    def load(cls, path: Path) -> ColourNeighbours:
        with np.load(path, allow_pickle=False) as data:
            return cls(
                data["lab"].astype(np.float64),
                data["names"].astype(np.int64),
                tuple(str(v) for v in data["vocabulary"]),
            )

    def name(self, lab: np.ndarray) -> str:
        """The most common name of the winning colour family among the K nearest products."""
        distances = np.linalg.norm(self.lab - lab.reshape(1, 3), axis=1)
        candidates = np.argpartition(distances, min(NEIGHBOURS_K, len(distances) - 1))[:NEIGHBOURS_K]
        nearest = candidates[np.argsort(distances[candidates])]  # nearest first: it breaks ties
        names = [self.vocabulary[i] for i in self.names[nearest]]
        family = Counter(colour_family(n) for n in names).most_common(1)[0][0]
        return Counter(n for n in names if colour_family(n) == family).most_common(1)[0][0]


@functools.cache
def _neighbours() -> ColourNeighbours | None:
    return ColourNeighbours.load(NEIGHBOURS_ASSET) if NEIGHBOURS_ASSET.exists() else None


def name_colour(rgb: np.ndarray) -> str:
    """The catalog's name for an sRGB colour: by the catalog's own products when the packaged
    neighbours exist (tools/train_colours.py), else by the nearest reference swatch."""
    lab = srgb_to_lab(np.asarray(rgb, dtype=np.float64).reshape(1, 3))
    neighbours = _neighbours()
    if neighbours is not None:
        return neighbours.name(lab)
    return swatch_name(lab)


def swatch_name(lab: np.ndarray) -> str:
    return _NAMES[int(np.argmin(np.linalg.norm(_PALETTE_LAB - lab.reshape(1, 3), axis=1)))]


def dominant_rgb(
    pixels: np.ndarray, clusters: int = 3, iterations: int = 8
) -> tuple[np.ndarray, float] | None:
    """Mean sRGB of the largest k-means cluster (in Lab) of (N, 3) RGB pixels, with its share."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    if len(pixels) == 0:
        return None
    lab = srgb_to_lab(pixels)
    # start from the pixels at evenly spaced ranks of lightness (a partial sort finds them)
    ranks = np.linspace(0, len(lab) - 1, clusters).astype(int)
    centres = lab[np.argpartition(lab[:, 0], ranks)[ranks]]
    squared_norms = (lab**2).sum(axis=1)[:, None]
    assignment = np.zeros(len(lab), dtype=np.int64)
    for iteration in range(iterations):
        distances = squared_norms - 2.0 * lab @ centres.T + (centres**2).sum(axis=1)[None]
        nearest = np.argmin(distances, axis=1)
        if iteration and np.array_equal(nearest, assignment):
            break  # converged: the centres would not move again
        assignment = nearest
        counts = np.bincount(assignment, minlength=clusters)
        sums = np.stack([np.bincount(assignment, lab[:, j], clusters) for j in range(3)], axis=1)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    counts = np.bincount(assignment, minlength=clusters)
    best = int(np.argmax(counts))
    return pixels[assignment == best].mean(axis=0), round(float(counts[best] / len(pixels)), 3)


def dominant_colour(pixels: np.ndarray, clusters: int = 3, iterations: int = 8) -> tuple[str, float]:
    """Largest k-means cluster of (N, 3) RGB garment pixels in Lab, named; with its share."""
    found = dominant_rgb(pixels, clusters, iterations)
    if found is None:
        return "Multi", 0.0
    rgb, share = found
    return name_colour(rgb), share


def _skin(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    cr = 128 + 0.5 * r - 0.4187 * g - 0.0813 * b
    cb = 128 - 0.1687 * r - 0.3313 * g + 0.5 * b
    return (cr >= 138) & (cr <= 175) & (cb >= 80) & (cb <= 125)


def garment_pixels(crop: np.ndarray) -> np.ndarray:
    """RGB pixels of a garment crop likely to be garment: the centre, less skin and the plain
    background (when the border is uniform)."""
    small = np.asarray(Image.fromarray(crop).resize((48, 48), Image.Resampling.BOX), dtype=np.float64)
    border = border_pixels(small, 1)
    background = np.median(border, axis=0)
    uniform_border = np.median(np.linalg.norm(border - background, axis=1)) < 18
    centre = small[7:41, 7:41].reshape(-1, 3)
    keep = ~_skin(centre)
    if uniform_border:
        keep &= np.linalg.norm(centre - background, axis=1) > 30
    chosen = centre[keep]
    return chosen if len(chosen) >= 0.1 * len(centre) else centre


def crop_colour(crop: np.ndarray) -> tuple[str, float]:
    """The dominant colour of a garment crop (RGB uint8), named; with its share of the garment."""
    return dominant_colour(garment_pixels(crop))
