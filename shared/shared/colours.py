"""The catalog's colour vocabulary: naming an RGB colour, and the dominant colour of garment pixels."""

from __future__ import annotations

import numpy as np

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


def name_colour(rgb: np.ndarray) -> str:
    lab = srgb_to_lab(np.asarray(rgb, dtype=np.float64).reshape(1, 3))
    return _NAMES[int(np.argmin(np.linalg.norm(_PALETTE_LAB - lab, axis=1)))]


def dominant_colour(pixels: np.ndarray, clusters: int = 3, iterations: int = 8) -> tuple[str, float]:
    """Largest k-means cluster of (N, 3) RGB garment pixels in Lab, named; with its share."""
    pixels = np.asarray(pixels, dtype=np.float64).reshape(-1, 3)
    if len(pixels) == 0:
        return "Multi", 0.0
    lab = srgb_to_lab(pixels)
    order = np.argsort(lab[:, 0])
    centres = lab[order[np.linspace(0, len(order) - 1, clusters).astype(int)]]
    for _ in range(iterations):
        assignment = np.argmin(((lab[:, None, :] - centres[None]) ** 2).sum(axis=2), axis=1)
        for k in range(clusters):
            members = lab[assignment == k]
            if len(members):
                centres[k] = members.mean(axis=0)
    counts = np.bincount(assignment, minlength=clusters)
    best = int(np.argmax(counts))
    rgb = pixels[assignment == best].mean(axis=0)
    return name_colour(rgb), round(float(counts[best] / len(pixels)), 3)
