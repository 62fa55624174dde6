"""Backbone outputs of distorted views of every catalog crop (shared/distortions.py), cached for the
trainings: strong positives for the triplet projection and the learned whitening, augmentation for
the classifier head. The crops' own outputs are kept beside them (the whitening's gallery).

    python -m embedding_service.views --crops data/cache/crops/<key> --output data/cache/catalog-views.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from embedding_service.config import Settings
from embedding_service.model import EmbeddingModel
from shared.distortions import distort

logger = logging.getLogger("embedding-service")


def view_features(
    crops: Path, count: int, views: int, model: EmbeddingModel
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(index of the crop, outputs by name) for ``views`` distorted views of each of the first
    ``count`` crops; view v of crop i is drawn from seed i * 16 + v, so it is the same on every run."""
    wanted = [(i, v) for i in range(count) for v in range(views)]
    outputs = outputs_in_batches(wanted, lambda i, v: view_pixels(crops, i, v), model)
    return np.array([i for i, _ in wanted]), outputs


def crop_outputs(crops: Path, count: int, model: EmbeddingModel) -> dict[str, np.ndarray]:
    """The backbone outputs of the first ``count`` crops themselves."""
    return outputs_in_batches([(i, -1) for i in range(count)], lambda i, v: view_pixels(crops, i, v), model)


def view_pixels(crops: Path, crop: int, view: int, first_seed: int = 0) -> np.ndarray:
    """RGB pixels of view ``view`` of crop ``crop``: -1 is the crop itself, view v is distorted
    from seed ``first_seed + crop * 16 + v``."""
    image = Image.open(crops / f"{crop}.jpg").convert("RGB")
    if view < 0:
        return np.asarray(image)
    return np.asarray(distort(image, random.Random(first_seed + crop * 16 + view)))


def outputs_in_batches(
    wanted: list[tuple[int, int]], image_of: Callable[[int, int], np.ndarray], model: EmbeddingModel
) -> dict[str, np.ndarray]:
    """The backbone outputs of ``image_of(crop, view)`` for each of ``wanted``, 64 images at a time."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, len(wanted), 64):
        images = [image_of(i, v) for i, v in wanted[start : start + 64]]
        for name, value in model.embed_outputs(images).items():
            parts.setdefault(name, []).append(value)
        if start % 2048 == 0:
            logger.info("images %d/%d", start + len(images), len(wanted))
    return {name: np.concatenate(values) for name, values in parts.items()}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--views", type=int, default=2, help="distorted views per product")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    manifest = json.loads((args.crops / "manifest.json").read_text())
    model = EmbeddingModel(Settings(projection="none", head_path=Path("/nonexistent")))
    model.load()
    indices, outputs = view_features(args.crops, len(manifest), args.views, model)
    originals = crop_outputs(args.crops, len(manifest), model)
    np.savez(
        args.output,
        product_ids=np.array([manifest[i] for i in indices]),
        vectors=outputs["features"].astype(np.float32),
        descriptors=outputs["descriptor"].astype(np.float16),
        catalog_ids=np.array(manifest),
        catalog_features=originals["features"].astype(np.float16),
        catalog_descriptors=originals["descriptor"].astype(np.float16),
    )
    logger.info("saved %d views of %d products to %s", len(indices), len(manifest), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
