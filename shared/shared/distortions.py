"""Realistic photo distortions of a product image: what a shopper's photo does to a catalog shot.

Used to test that a product finds itself (make eval) and to make training positives (make
train-embedding). Every distortion is drawn from ``random.Random(seed)``, so a view is repeatable.
"""

from __future__ import annotations

import io
import random

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter

from shared.boxes import border_pixels


def distort(image: Image.Image, rng: random.Random) -> Image.Image:
    """One distorted view: clutter behind, a crop and rescale, a small rotation and perspective,
    lighting and a colour cast, and JPEG compression."""
    image = image.convert("RGB")
    if rng.random() < 0.6:
        image = on_clutter(image, rng)
    image = crop_and_scale(image, rng)
    image = rotate(image, rng, max_degrees=10)
    if rng.random() < 0.5:
        image = perspective(image, rng, strength=0.08)
    image = lighting(image, rng)
    return jpeg(image, rng.randint(30, 75))


def crop_and_scale(image: Image.Image, rng: random.Random) -> Image.Image:
    width, height = image.size
    keep = rng.uniform(0.7, 1.0)
    crop_w = min(width, max(8, int(width * keep)))  # a sliver of a crop is kept whole
    crop_h = min(height, max(8, int(height * rng.uniform(keep, 1.0))))
    left, top = rng.randint(0, width - crop_w), rng.randint(0, height - crop_h)
    cropped = image.crop((left, top, left + crop_w, top + crop_h))
    scale = rng.uniform(0.6, 1.6)
    return cropped.resize(
        (max(16, int(crop_w * scale)), max(16, int(crop_h * scale))), Image.Resampling.BILINEAR
    )


def rotate(image: Image.Image, rng: random.Random, max_degrees: float) -> Image.Image:
    fill = tuple(int(v) for v in np.asarray(image).reshape(-1, 3)[0])
    return image.rotate(
        rng.uniform(-max_degrees, max_degrees), resample=Image.Resampling.BILINEAR, fillcolor=fill
    )


def perspective(image: Image.Image, rng: random.Random, strength: float) -> Image.Image:
    """Move the four corners inwards by up to ``strength`` of the size: a photo taken at an angle."""
    width, height = image.size
    dx, dy = strength * width, strength * height
    quad = (
        rng.uniform(0, dx),
        rng.uniform(0, dy),
        rng.uniform(0, dx),
        height - rng.uniform(0, dy),
        width - rng.uniform(0, dx),
        height - rng.uniform(0, dy),
        width - rng.uniform(0, dx),
        rng.uniform(0, dy),
    )
    return image.transform((width, height), Image.Transform.QUAD, quad, resample=Image.Resampling.BILINEAR)


def lighting(image: Image.Image, rng: random.Random) -> Image.Image:
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.7, 1.3))
    image = ImageEnhance.Contrast(image).enhance(rng.uniform(0.75, 1.25))
    cast = np.array([rng.uniform(0.85, 1.15) for _ in range(3)])
    tinted = np.clip(np.asarray(image, dtype=np.float32) * cast, 0, 255).astype(np.uint8)
    image = Image.fromarray(tinted)
    if rng.random() < 0.3:
        image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def clutter(width: int, height: int, rng: random.Random) -> Image.Image:
    """A busy background: a coloured ground with random shapes and noise (a floor, a bed, a shop)."""
    ground = tuple(rng.randint(40, 230) for _ in range(3))
    canvas = Image.new("RGB", (width, height), ground)
    draw = ImageDraw.Draw(canvas)
    for _ in range(rng.randint(8, 24)):
        x1, y1 = rng.randint(0, width), rng.randint(0, height)
        x2, y2 = x1 + rng.randint(width // 12, width // 2), y1 + rng.randint(height // 12, height // 2)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        (draw.rectangle if rng.random() < 0.5 else draw.ellipse)((x1, y1, x2, y2), fill=colour)
    noise = np.random.default_rng(rng.randint(0, 2**31)).normal(0, 10, (height, width, 3))
    return Image.fromarray(np.clip(np.asarray(canvas, dtype=np.float32) + noise, 0, 255).astype(np.uint8))


def on_clutter(image: Image.Image, rng: random.Random) -> Image.Image:
    """The product pasted onto clutter: all but the plain ground (the colour of the border) that
    reaches the edge, so a white shirt keeps its own white inside its outline."""
    # smoothed, so that JPEG ringing around the product does not leave specks of the old ground
    pixels = np.asarray(image.filter(ImageFilter.BoxBlur(2)), dtype=np.int16)
    border = border_pixels(pixels, 1)
    background = np.median(border, axis=0)
    plain = np.abs(pixels - background).sum(axis=2) <= 12
    mask = (~(plain & reaches_border(plain))).astype(np.uint8) * 255
    if mask.mean() < 0.05 * 255:
        return image
    width, height = image.size
    scale = rng.uniform(1.2, 1.8)
    canvas = clutter(int(width * scale), int(height * scale), rng)
    offset = (rng.randint(0, canvas.width - width), rng.randint(0, canvas.height - height))
    soft = Image.fromarray(mask).filter(ImageFilter.GaussianBlur(1.0))
    canvas.paste(image, offset, soft)
    return canvas


def reaches_border(plain: np.ndarray, side: int = 192) -> np.ndarray:
    """Where ``plain`` (a boolean background mask) is joined to the image's edge through plain
    pixels: the background around a product, not a white shirt's own pixels inside its outline.
    Grown from the edge on a copy at most ``side`` pixels wide, so it takes milliseconds."""
    height, width = plain.shape
    scale = min(1.0, side / max(height, width))
    small_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(plain).resize(small_size, Image.Resampling.NEAREST))
    reached = np.zeros_like(small)
    reached[[0, -1], :] = small[[0, -1], :]
    reached[:, [0, -1]] |= small[:, [0, -1]]
    while True:
        grown = reached.copy()
        grown[1:] |= reached[:-1]
        grown[:-1] |= reached[1:]
        grown[:, 1:] |= reached[:, :-1]
        grown[:, :-1] |= reached[:, 1:]
        grown &= small
        if np.array_equal(grown, reached):
            break
        reached = grown
    return np.asarray(Image.fromarray(reached).resize((width, height), Image.Resampling.NEAREST))
