"""Backbone outputs of distorted views of every catalog crop (shared/distortions.py), cached for the
trainings: strong positives for the triplet projection and the learned whitening, augmentation for
the classifier head. The crops' own descriptors are kept beside them (the whitening's gallery).

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
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(index of the crop, outputs by name) for ``views`` distorted views of each of the first
    ``count`` crops; view v of crop i is drawn from seed i * 16 + v, so it is the same on every run."""
    wanted = [(i, v) for i in range(count) for v in range(views)]
    indices, outputs = [], []
    for start in range(0, len(wanted), 64):
        batch = wanted[start : start + 64]
        images = [
            np.asarray(distort(Image.open(crops / f"{i}.jpg"), random.Random(i * 16 + v))) for i, v in batch
        ]
        outputs.append(model.embed_outputs(images))
        indices += [i for i, _ in batch]
        if start % 2048 == 0:
            logger.info("views %d/%d", start + len(batch), len(wanted))
    return np.array(indices), {name: np.concatenate([o[name] for o in outputs]) for name in outputs[0]}


def crop_outputs(crops: Path, count: int, model: EmbeddingModel) -> dict[str, np.ndarray]:
    """The backbone outputs of the first ``count`` crops themselves."""
    parts: dict[str, list[np.ndarray]] = {}
    for start in range(0, count, 64):
        images = [
            np.asarray(Image.open(crops / f"{i}.jpg").convert("RGB"))
            for i in range(start, min(start + 64, count))
        ]
        for name, value in model.embed_outputs(images).items():
            parts.setdefault(name, []).append(value)
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
