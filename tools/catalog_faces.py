"""FaceRes's probability of Men for the face of the person in each catalog shot, read as the gateway
reads it (the detector places the head, the gender service reads the crop around it), for
calibrating the face answer and fitting its fusion with the appearance answer.

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
from gateway.pipeline import for_detector
from shared.clients import DetectorClient, GenderClient
from shared.images import decode_image
from tools.eval_gender import sent_heads
from tools.stack import Stack, free_port, running

logger = logging.getLogger("stack")
SERVICES = ("detector-service", "gender-service")


async def read_faces(catalog: Path, product_ids: list[str], stack: Stack) -> np.ndarray:
    """Per product, p(Men) of the face of the shot's main person (the largest, as ingestion takes
    it); NaN when there is no person, no head or no usable face."""
    rows = {row.product_id: row for row in read_catalog(catalog)}
    detector = DetectorClient("detector", stack.url("detector-service"), 60.0)
    gender = GenderClient("gender", stack.url("gender-service"), 60.0)
    settings = Settings()
    slots = asyncio.Semaphore(4)

    async def one(product_id: str) -> float:
        async with slots:
            scaled, analysis = for_detector(
                decode_image((catalog / rows[product_id].image).read_bytes()), settings
            )
            heads = sent_heads(scaled, (await detector.detect(analysis)).persons[:1])
            if not heads:
                return float("nan")
            face = (await gender.heads(heads)).faces[0]
            return float(face.p_men) if face is not None and face.p_men is not None else float("nan")

    results = []
    try:
        with tqdm(total=len(product_ids), unit="img", desc="reading catalog faces") as bar:
            for start in range(0, len(product_ids), 64):
                chunk = product_ids[start : start + 64]
                results += await asyncio.gather(*(one(pid) for pid in chunk))
                bar.update(len(chunk))
    finally:
        await detector.aclose()
        await gender.aclose()
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
    stack = Stack(services=SERVICES, ports={name: free_port() for name in SERVICES})
    with running(stack):
        p_men = asyncio.run(read_faces(args.catalog.resolve(), product_ids, stack))
    np.savez_compressed(args.output, product_ids=np.array(product_ids), face_p_men=p_men)
    logger.info(
        "catalog faces read", extra={"shots": len(product_ids), "with_face": int((~np.isnan(p_men)).sum())}
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
