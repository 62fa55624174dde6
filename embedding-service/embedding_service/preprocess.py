"""Crop to model input: pad to a square (keeps the garment's shape), resize, scale to [-1, 1]."""

from __future__ import annotations

import numpy as np
from PIL import Image

from shared.images import rgb_pixels

INPUT_SIZE = 260
PAD_COLOUR = (255, 255, 255)  # catalog product shots are on white


def to_square(image: np.ndarray) -> Image.Image:
    height, width = image.shape[:2]
    side = max(height, width)
    canvas = Image.new("RGB", (side, side), PAD_COLOUR)
    canvas.paste(Image.fromarray(image), ((side - width) // 2, (side - height) // 2))
    return canvas


def to_input(image: np.ndarray) -> np.ndarray:
    """(3, INPUT_SIZE, INPUT_SIZE) float32 in [-1, 1], channels first."""
    square = to_square(image).resize((INPUT_SIZE, INPUT_SIZE), Image.Resampling.BILINEAR)
    scaled = rgb_pixels(square).astype(np.float32) / 127.5 - 1.0
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def to_batch(images: list[np.ndarray]) -> np.ndarray:
    return np.stack([to_input(image) for image in images])
