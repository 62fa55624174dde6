"""Embed labelled product photos (a folder with ``labels.csv``: image, label, category and, when
known, contributor: the format of ``../shared/queries/consumer``) the way a query photo is cut (the
detector's product region, cropped as the gateway crops it) and save their backbone features with
their categories, for the classifier head (``embedding_service.train_head --photos``).

Shoppers' photos of a garment laid on a bed, hung on a door or held up differ from the catalog's
studio shots; a head that learnt only from the catalog names many of them wrongly (README, make
eval). Which photos the head may learn from is decided by contributor (``shared.splits``), so that
make eval measures it on people whose photos it never saw.

    python -m tools.photo_features --photos ../shared/queries/consumer --output data/cache/photo-features-consumer.npz
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gateway.config import Settings
from gateway.pipeline import crop_jpeg, for_detector
from shared.clients import DetectorClient, EmbeddingClient
from shared.contracts import Category, Region
from shared.images import decode_image
from shared.splits import photo_held_out
from tools.catalog_features import save_features
from tools.stack import Stack

logger = logging.getLogger("stack")
CATEGORY_ALIASES = {"outwear": "outerwear"}  # the consumer set's spelling


@dataclass(frozen=True)
class LabelledPhoto:
    image: str  # as labels.csv names it, relative to the folder
    label: str  # the garment's kind in the set's own words (T-Shirt, Blazer, ...)
    category: Category
    contributor: str  # who took it ("" when unknown)


def labelled_photos(folder: Path) -> list[LabelledPhoto]:
    """The photos of ``labels.csv``, categories in the project's vocabulary."""
    with (folder / "labels.csv").open(newline="") as handle:
        return [
            LabelledPhoto(
                image=row["image"],
                label=row["label"],
                category=Category(CATEGORY_ALIASES.get(row["category"], row["category"])),
                contributor=row.get("contributor") or "",
            )
            for row in csv.DictReader(handle)
        ]


async def product_crop(photo: bytes, detector: DetectorClient, settings: Settings) -> bytes | None:
    """The crop a query photo's product region is embedded from; None when the detector saw a person
    (the photo is then a look, not a product shot)."""
    image = decode_image(photo)
    detection = await detector.detect(for_detector(image, settings)[1], colours=False)
    products = [r for r in detection.regions if r.region == Region.product]
    return crop_jpeg(image, products[0].box, settings) if products and not detection.persons else None


def save_crops(crops: list[bytes], photos: list[LabelledPhoto], folder: Path, output: Path) -> None:
    """The crops as ``<n>.jpg`` with ``labels.json`` (the photos' folder and, per photo, its image,
    category, contributor and whether it may be learnt from: shared.splits), for
    embedding_service.train_category."""
    output.mkdir(parents=True, exist_ok=True)
    for number, crop in enumerate(crops):
        (output / f"{number}.jpg").write_bytes(crop)
    labels = [
        {
            "image": p.image,
            "category": p.category.value,
            "contributor": p.contributor,
            "learnt": not photo_held_out(p.contributor, p.image),
        }
        for p in photos
    ]
    (output / "labels.json").write_text(
        json.dumps({"folder": folder.name, "photos": labels}, indent=1) + "\n"
    )


async def extract(folder: Path, stack: Stack, crops_output: Path | None = None) -> dict[str, np.ndarray]:
    photos = labelled_photos(folder)
    settings = Settings()
    detector = DetectorClient("detector", stack.url("detector-service"), 60.0)
    embedding = EmbeddingClient("embedding", stack.url("embedding-service"), 120.0)
    crops: list[bytes | None] = [None] * len(photos)
    slots = asyncio.Semaphore(4)

    async def cut(index: int) -> None:
        async with slots:
            crops[index] = await product_crop((folder / photos[index].image).read_bytes(), detector, settings)

    try:
        await asyncio.gather(*(cut(i) for i in range(len(photos))))
        kept = [i for i, crop in enumerate(crops) if crop is not None]
        if crops_output is not None:
            save_crops([c for c in crops if c is not None], [photos[i] for i in kept], folder, crops_output)
        vectors: list[list[float]] = []
        for start in range(0, len(kept), 32):
            batch = [crops[i] for i in kept[start : start + 32]]
            answer = await embedding.embed([c for c in batch if c is not None], colours=False)
            vectors += [
                item.backbone or item.vector for item in answer.items
            ]  # heads learn backbone features
            sys.stderr.write(f"\rembedding photos {min(start + 32, len(kept))}/{len(kept)}")
        sys.stderr.write("\n")
    finally:
        await detector.aclose()
        await embedding.aclose()
    if len(kept) < len(photos):
        logger.info("photos showing a person left out", extra={"count": len(photos) - len(kept)})
    return {
        "vectors": np.asarray(vectors, dtype=np.float32),
        "images": np.array([photos[i].image for i in kept]),
        "categories": np.array([photos[i].category.value for i in kept]),
        "contributors": np.array([photos[i].contributor for i in kept]),
        "folder": np.array(folder.name),
    }


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, required=True, help="folder with labels.csv")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--crops", type=Path, help="also save the crops here (make train-category)")
    args = parser.parse_args()
    folder = args.photos.resolve()
    data = save_features(lambda stack: extract(folder, stack, args.crops), args.output)
    logger.info("saved photo features", extra={"path": str(args.output), "photos": len(data["vectors"])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
