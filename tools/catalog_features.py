"""Embed a whole catalog the way ingestion does (crop to the product's own garment, embed) and
save the vectors with their labels, for training the classifier head; the person wearing each
product (when the photo shows one) is embedded too, for the gender appearance model.

    python -m tools.catalog_features --catalog ../shared/catalog/myntra --output data/cache/myntra.npz
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from gateway.catalog import read_catalog
from gateway.config import Settings
from gateway.ingest import CatalogEmbedder
from shared.clients import DetectorClient, EmbeddingClient
from tools.stack import Stack, free_port, running

logger = logging.getLogger("stack")


async def extract(catalog: Path, stack: Stack, limit: int | None) -> dict[str, np.ndarray]:
    rows = read_catalog(catalog)[:limit]
    detector = DetectorClient("detector", stack.url("detector-service"), 60.0)
    embedding = EmbeddingClient("embedding", stack.url("embedding-service"), 120.0)
    failed: dict[str, str] = {}
    vectors, ids, on_model, person_vectors, has_person = [], [], [], [], []
    try:
        embedder = CatalogEmbedder(catalog, detector, embedding, Settings(), person_crops=True)
        async for batch in embedder.embed_catalog(rows, failed):
            for product in batch:
                features = (
                    product.embedding.backbone or product.embedding.vector
                )  # heads learn backbone features
                vectors.append(features)
                ids.append(product.row.product_id)
                on_model.append(product.on_model)
                has_person.append(product.person is not None)
                person_vectors.append(
                    (product.person.backbone or product.person.vector)
                    if product.person
                    else [0.0] * len(features)
                )
    finally:
        await detector.aclose()
        await embedding.aclose()
    if failed:
        logger.warning("products skipped", extra={"count": len(failed), "examples": list(failed.items())[:5]})
    by_id = {row.product_id: row for row in rows}
    kept = [by_id[i] for i in ids]
    return {
        "vectors": np.asarray(vectors, dtype=np.float32),
        "product_ids": np.array(ids),
        "categories": np.array([r.category.value if r.category else "" for r in kept]),
        "article_types": np.array([r.article_type or "" for r in kept]),
        "genders": np.array([r.gender or "" for r in kept]),
        "colours": np.array([r.colour or "" for r in kept]),
        "on_model": np.array(on_model, dtype=bool),
        "person_vectors": np.asarray(person_vectors, dtype=np.float32),
        "has_person": np.array(has_person, dtype=bool),
    }


def save_features(
    extract: Callable[[Stack], Coroutine[Any, Any, dict[str, np.ndarray]]], output: Path
) -> dict[str, np.ndarray]:
    """``extract``'s arrays, made with a detector and an embedding service started for it, saved to
    ``output`` with the name of the network the vectors come from (which heads trained on them must
    name)."""
    services = ("embedding-service", "detector-service")
    stack = Stack(services=services, ports={name: free_port() for name in services})
    with running(stack):
        data = asyncio.run(extract(stack))
        data["backbone"] = np.array(httpx.get(f"{stack.url('embedding-service')}/readyz").json()["backbone"])
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **data)  # type: ignore[arg-type]
    return data


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    catalog = args.catalog.resolve()
    data = save_features(lambda stack: extract(catalog, stack, args.limit), args.output)
    logger.info("saved catalog features", extra={"path": str(args.output), "products": len(data["vectors"])})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
