"""make train-colours: name garment colours the way the catalog does.

The dominant colour of every labelled catalog crop (the same garment pixels and k-means as a query
crop) is kept in Lab with the product's baseColour; a colour is then named by its 15 nearest catalog
products (shared/colours.py). A fifth of the products (by a hash of the id) is held out to compare
with the reference swatches; the card beside the asset has both accuracies.

    python -m tools.train_colours --catalog ../shared/catalog/myntra --crops data/cache/crops/<key>
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from pathlib import Path

import numpy as np
from PIL import Image

from gateway.catalog import read_catalog
from shared.colours import (
    NEIGHBOURS_ASSET,
    PALETTE,
    ColourNeighbours,
    dominant_rgb,
    garment_pixels,
    srgb_to_lab,
    swatch_name,
)
from shared.vocabulary import colour_family

logger = logging.getLogger("train-colours")


def held_out(product_id: str) -> bool:
    return int(hashlib.sha1(f"colour:{product_id}".encode()).hexdigest()[:8], 16) % 5 == 0


def crop_labs(crops: Path, count: int) -> np.ndarray:
    """Lab of the dominant garment colour of each cached crop (NaN when it has none)."""
    labs = np.full((count, 3), np.nan)
    for position in range(count):
        path = crops / f"{position}.jpg"
        if path.exists():
            found = dominant_rgb(garment_pixels(np.asarray(Image.open(path).convert("RGB"))))
            if found is not None:
                labs[position] = srgb_to_lab(found[0].reshape(1, 3))[0]
    return labs


def neighbours_of(labs: np.ndarray, names: list[str], rows: list[int]) -> ColourNeighbours:
    vocabulary = tuple(sorted(set(names)))
    return ColourNeighbours(labs[rows], np.array([vocabulary.index(n) for n in names]), vocabulary)


def family_accuracy(predicted: list[str], truth: list[str]) -> float:
    right = [colour_family(p) == colour_family(t) for p, t in zip(predicted, truth, strict=True)]
    return round(float(np.mean(right)), 4)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument(
        "--crops", type=Path, required=True, help="catalog crops made by make eval (manifest.json)"
    )
    parser.add_argument("--output", type=Path, default=NEIGHBOURS_ASSET)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    product_ids = [str(p) for p in json.loads((args.crops / "manifest.json").read_text())]
    colours = {row.product_id: row.colour for row in read_catalog(args.catalog)}
    labs = crop_labs(args.crops, len(product_ids))
    usable = [
        i for i, p in enumerate(product_ids) if colours.get(p) in PALETTE and np.isfinite(labs[i]).all()
    ]
    name_of = {i: str(colours[product_ids[i]]) for i in usable}
    train = [i for i in usable if not held_out(product_ids[i])]
    test = [i for i in usable if held_out(product_ids[i])]
    trial = neighbours_of(labs, [name_of[i] for i in train], train)
    truth = [name_of[i] for i in test]
    card = {
        "products": len(usable),
        "held_out": len(test),
        "k": 15,
        "held_out_family_accuracy": {
            "reference swatches": family_accuracy([swatch_name(labs[i]) for i in test], truth),
            "catalog neighbours": family_accuracy([trial.name(labs[i]) for i in test], truth),
        },
    }
    final = neighbours_of(labs, [name_of[i] for i in usable], usable)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        args.output,
        lab=final.lab.astype(np.float16),
        names=final.names.astype(np.int16),
        vocabulary=np.array(final.vocabulary),
    )
    args.output.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info(json.dumps(card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
