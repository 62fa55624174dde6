"""Backbone features of distorted views of every catalog crop (shared/distortions.py), cached for the
trainings: strong positives for the triplet projection, augmentation for the classifier head.

    python -m embedding_service.views --crops data/cache/crops/<key> --output data/cache/catalog-views.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import random
from pathlib import Path

import numpy as np
from PIL import Image

from embedding_service.config import Settings
from embedding_service.model import EmbeddingModel
from shared.distortions import distort

logger = logging.getLogger("embedding-service")


def view_features(
    crops: Path, count: int, views: int, model: EmbeddingModel
) -> tuple[np.ndarray, np.ndarray]:
    """(index of the crop, features) for ``views`` distorted views of each of the first ``count``
    crops; view v of crop i is drawn from seed i * 16 + v, so it is the same on every run."""
    wanted = [(i, v) for i in range(count) for v in range(views)]
    indices, vectors = [], []
    for start in range(0, len(wanted), 64):
        batch = wanted[start : start + 64]
        images = [
            np.asarray(distort(Image.open(crops / f"{i}.jpg"), random.Random(i * 16 + v))) for i, v in batch
        ]
        vectors.append(model.embed(images))
        indices += [i for i, _ in batch]
        if start % 2048 == 0:
            logger.info("views %d/%d", start + len(batch), len(wanted))
    return np.array(indices), np.concatenate(vectors)


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
    indices, vectors = view_features(args.crops, len(manifest), args.views, model)
    product_ids = np.array([manifest[i] for i in indices])
    np.savez_compressed(args.output, product_ids=product_ids, vectors=vectors.astype(np.float32))
    logger.info("saved %d views of %d products to %s", len(indices), len(manifest), args.output)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
