"""Crop to model input: pad to a square (keeps the garment's shape), resize, scale to [-1, 1]."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.images import rgb_pixels

LEGACY_INPUT_SIZE = 260  # of an export whose graph does not fix its size (EfficientNet-Lite2's)
PAD_COLOUR = (255, 255, 255)  # catalog product shots are on white


def to_square(image: np.ndarray) -> Image.Image:
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = Image.new("RGB", (side, side), PAD_COLOUR)
    canvas.paste(Image.fromarray(image), ((side - width) // 2, (side - height) // 2))
    return canvas


def to_input(image: np.ndarray, size: int) -> np.ndarray:
    """(3, size, size) float32 in [-1, 1], channels first."""
    square = to_square(image).resize((size, size), Image.Resampling.BILINEAR)
    scaled = rgb_pixels(square).astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def to_batch(images: list[np.ndarray], size: int) -> np.ndarray:
    return np.stack([to_input(image, size) for image in images])
