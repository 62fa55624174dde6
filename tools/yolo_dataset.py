"""A YOLO-format garment dataset from person photos, labelled by the keypoint pipeline.

Each photo is analysed the way /recommend analyses it (detector regions, classified and resolved
into items); the items become YOLO boxes of our six categories. Photos that come with hand labels
(``<folder>/labels/<photo stem>.txt`` in YOLO format, classes in the order of ``CATEGORIES``) keep
them instead. Photos where nothing was found are left out. Train/val split by a hash of the name.

    python -m tools.yolo_dataset --photos some/folder --catalog ../shared/catalog/myntra \
        --limit 400 --out data/yolo/dataset
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from gateway.catalog import read_catalog
from gateway.main import make_clients
from gateway.pipeline import Query, Recommender, Timings
from shared.contracts import CATEGORIES, Category
from shared.images import decode_image, encode_jpeg
from shared.service import InferencePool
from tools.stack import Stack, free_port, running

logger = logging.getLogger("stack")
SERVICES = ("detector-service", "gender-service", "embedding-service")
PHOTO_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}
ON_MODEL = {Category.topwear, Category.bottomwear, Category.dress, Category.outerwear}


@dataclass(frozen=True)
class Source:
    name: str
    path: Path
    hand_labels: Path | None


def photo_sources(folder: Path) -> list[Source]:
    labels = folder / "labels"
    return [
        Source(
            f"{folder.name}-{p.stem}",
            p,
            labels / f"{p.stem}.txt" if (labels / f"{p.stem}.txt").exists() else None,
        )
        for p in sorted(folder.iterdir())
        if p.suffix.lower() in PHOTO_SUFFIXES
    ]


def catalog_sources(catalog: Path) -> list[Source]:
    """Catalog shots of worn apparel (the ones that show a model)."""
    return [
        Source(f"catalog-{row.product_id}", catalog / row.image, None)
        for row in read_catalog(catalog)
        if row.category in ON_MODEL
    ]


def spread(sources: list[Source]) -> list[Source]:
    """A deterministic shuffle, so that the first N are a spread rather than the catalog's first rows."""
    return sorted(sources, key=lambda s: hashlib.sha1(s.name.encode()).hexdigest())


def split_of(name: str, val_fraction: float) -> str:
    bucket = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) % 1000
    return "val" if bucket < val_fraction * 1000 else "train"


def yolo_lines(items: Iterable[tuple[Category, list[float]]]) -> list[str]:
    lines = []
    for category, (x1, y1, x2, y2) in items:
        lines.append(
            f"{CATEGORIES.index(category)} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
        )
    return lines


async def label(sources: list[Source], stack: Stack, out: Path, val_fraction: float) -> Counter[str]:
    settings = stack.gateway_settings()
    clients = make_clients(settings)
    recommender = Recommender(settings, clients, InferencePool(2, 64, "label"))
    counts: Counter[str] = Counter()
    try:
        for source in sources:
            data = source.path.read_bytes()
            if source.hand_labels is not None:
                lines = [line for line in source.hand_labels.read_text().splitlines() if line.strip()]
                counts["hand_labelled"] += 1
            else:
                query = Query(data=data, k=1, gender="auto", categories=set(CATEGORIES))
                found = await recommender.analyse(query, Timings(), [])
                lines = yolo_lines(
                    (item.category, item.box) for item in found.items if item.person is not None
                )
            if not lines:
                counts["skipped_nothing_found"] += 1
                continue
            split = split_of(source.name, val_fraction)
            (out / "images" / split / f"{source.name}.jpg").write_bytes(encode_jpeg(decode_image(data), 92))
            (out / "labels" / split / f"{source.name}.txt").write_text("\n".join(lines) + "\n")
            counts[split] += 1
            for line in lines:
                counts[f"boxes_{CATEGORIES[int(line.split()[0])].value}"] += 1
    finally:
        await clients.aclose()
    return counts


def write_data_yaml(out: Path) -> Path:
    names = "\n".join(f"  {i}: {c.value}" for i, c in enumerate(CATEGORIES))
    path = out / "data.yaml"
    path.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return path


def build(sources: list[Source], out: Path, val_fraction: float) -> dict[str, int]:
    for stale in ("images", "labels"):
        shutil.rmtree(out / stale, ignore_errors=True)
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    stack = Stack(services=SERVICES, ports={s: free_port() for s in SERVICES})
    with running(stack):
        counts = asyncio.run(label(sources, stack, out, val_fraction))
    write_data_yaml(out)
    summary = dict(sorted(counts.items()))
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=Path, action="append", default=[], help="folder of person photos")
    parser.add_argument("--catalog", type=Path, default=None, help="catalog folder: its on-model shots")
    parser.add_argument("--limit", type=int, default=None, help="at most this many photos in all")
    parser.add_argument("--val", type=float, default=0.2, help="share of photos held out for validation")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    sources = [s for folder in args.photos for s in photo_sources(folder)]
    if args.catalog:
        sources += catalog_sources(args.catalog)
    sources = spread(sources)[: args.limit]
    if not sources:
        parser.error("no photos: give --photos and/or --catalog")
    summary = build(sources, args.out, args.val)
    logger.info("dataset written", extra={"path": str(args.out), **summary})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
