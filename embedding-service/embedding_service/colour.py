"""The dominant colour of a garment crop (when the detector gave none from the person mask)."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.colours import dominant_colour


def _skin(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    cr = 128 + 0.5 * r - 0.4187 * g - 0.0813 * b
    cb = 128 - 0.1687 * r - 0.3313 * g + 0.5 * b
    return (cr >= 138) & (cr <= 175) & (cb >= 80) & (cb <= 125)


def garment_pixels(crop: np.ndarray) -> np.ndarray:
    """RGB pixels likely to be garment: the crop's centre, less skin and the plain background."""
    small = np.asarray(Image.fromarray(crop).resize((48, 48), Image.Resampling.BOX), dtype=np.float64)
    border = np.concatenate([small[0], small[-1], small[:, 0], small[:, -1]])
    background = np.median(border, axis=0)
    uniform_border = np.median(np.linalg.norm(border - background, axis=1)) < 18
    centre = small[7:41, 7:41].reshape(-1, 3)
    keep = ~_skin(centre)
    if uniform_border:
        keep &= np.linalg.norm(centre - background, axis=1) > 30
    chosen = centre[keep]
    return chosen if len(chosen) >= 0.1 * len(centre) else centre


def crop_colour(crop: np.ndarray) -> tuple[str, float]:
    return dominant_colour(garment_pixels(crop))
