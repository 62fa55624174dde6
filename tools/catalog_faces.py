"""FaceRes's probability of Men for the largest usable face of each catalog shot of a person,
for calibrating the face answer and fitting its fusion with the appearance answer.

    python -m tools.catalog_faces --catalog ../shared/catalog/myntra \
        --features data/cache/catalog-features.npz --output data/cache/catalog-faces.npz
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gateway.catalog import read_catalog
from gateway.config import Settings
from gateway.pipeline import analysis_copy
from shared.clients import GenderClient
from shared.contracts import GenderResponse
from shared.images import decode_image
from tools.stack import Stack, free_port, running

logger = logging.getLogger("stack")


def largest_face_p_men(answer: GenderResponse) -> float:
    usable = [f for f in answer.faces if f.p_men is not None]
    if not usable:
        return float("nan")
    face = max(usable, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    return float(face.p_men) if face.p_men is not None else float("nan")


async def read_faces(catalog: Path, product_ids: list[str], url: str) -> np.ndarray:
    rows = {row.product_id: row for row in read_catalog(catalog)}
    client = GenderClient("gender", url, 60.0)
    settings = Settings()
    slots = asyncio.Semaphore(4)

    async def one(product_id: str) -> float:
        async with slots:
            image = decode_image((catalog / rows[product_id].image).read_bytes())
            return largest_face_p_men(await client.faces(analysis_copy(image, settings)))

    results = []
    try:
        with tqdm(total=len(product_ids), unit="img", desc="reading catalog faces") as bar:
            for start in range(0, len(product_ids), 64):
                chunk = product_ids[start : start + 64]
                results += await asyncio.gather(*(one(pid) for pid in chunk))
                bar.update(len(chunk))
    finally:
        await client.aclose()
    return np.array(results, dtype=np.float64)


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True, help="from tools.catalog_features")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    features = np.load(args.features, allow_pickle=False)
    people = features["has_person"] & np.isin(features["genders"], ["Men", "Women"])
    product_ids = [str(pid) for pid in features["product_ids"][people]]
    stack = Stack(services=("gender-service",), ports={"gender-service": free_port()})
    with running(stack):
        p_men = asyncio.run(read_faces(args.catalog.resolve(), product_ids, stack.url("gender-service")))
    np.savez_compressed(args.output, product_ids=np.array(product_ids), face_p_men=p_men)
    logger.info(
        "catalog faces read", extra={"shots": len(product_ids), "with_face": int((~np.isnan(p_men)).sum())}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
