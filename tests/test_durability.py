"""The index survives SIGKILL in the middle of an ingestion: it opens again, keeps every batch it
acknowledged, holds only whole products (payload and vector), and a re-run completes it."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np

from tools.stack import Stack, free_port, running

DIM = 64
BATCH = 50
PRODUCTS = 1500


def catalog() -> list[dict[str, object]]:
    rng = np.random.default_rng(3)
    vectors = rng.normal(size=(PRODUCTS, DIM))
    return [
        {
            "vector": vectors[i].round(5).tolist(),
            "product": {
                "product_id": f"sku-{i:05d}",
                "gender": ("Men", "Women", "Unisex")[i % 3],
                "category": ("topwear", "bottomwear", "footwear")[i % 3],
                "article_type": f"type-{i % 17}",
                "colour": f"colour-{i % 11}",
                "name": f"Product number {i}",
                "usage": "Casual",
                "image": f"images/{i}.jpg",
                "embedding_model": "test-model@1",
            },
        }
        for i in range(PRODUCTS)
    ]


def index_stack(path: Path) -> Stack:
    return Stack(
        services=("index-service",),
        ports={"index-service": free_port()},
        env={"INDEX_PATH": str(path), "INDEX_VECTOR_DIM": str(DIM)},
        log_dir=path.parent / "logs",
    )


def ingest(url: str, points: list[dict[str, object]], acknowledged: list[int]) -> None:
    """Upsert in batches, noting each acknowledged one, until done or the service is gone."""
    with httpx.Client(timeout=30) as client:
        for start in range(0, len(points), BATCH):
            try:
                response = client.post(f"{url}/points", json={"points": points[start : start + BATCH]})
            except httpx.HTTPError:
                return
            if response.status_code != 200:
                return
            acknowledged.append(start + BATCH)


def stored(url: str) -> dict[str, dict[str, object]]:
    products: dict[str, dict[str, object]] = {}
    offset = None
    with httpx.Client(timeout=30) as client:
        while True:
            params = {"limit": 500, **({"offset": offset} if offset else {})}
            page = client.get(f"{url}/points", params=params).json()
            products.update({p["product_id"]: p for p in page["products"]})
            offset = page["next_offset"]
            if offset is None:
                return products


def test_sigkill_mid_ingestion_loses_nothing_acknowledged_and_rerun_completes(tmp_path: Path) -> None:
    points = catalog()
    expected = {p["product"]["product_id"]: p for p in points}  # type: ignore[index]
    store = tmp_path / "index"
    acknowledged: list[int] = []
    stack = index_stack(store)
    with running(stack, timeout_s=120):
        writer = threading.Thread(target=ingest, args=(stack.url("index-service"), points, acknowledged))
        writer.start()
        while len(acknowledged) < 8 and writer.is_alive():
            threading.Event().wait(0.01)
        stack.processes["index-service"].kill()  # SIGKILL, mid-way
        writer.join(timeout=60)
    assert 8 <= acknowledged[-1] // BATCH < PRODUCTS // BATCH, "the kill must land mid-ingestion"

    reopened = index_stack(store)
    with running(reopened, timeout_s=120):
        url = reopened.url("index-service")
        survivors = stored(url)
        assert len(survivors) >= acknowledged[-1]
        for product_id, product in survivors.items():
            assert product == expected[product_id]["product"], product_id
        with httpx.Client(timeout=30) as client:
            for product_id in list(survivors)[:: max(1, len(survivors) // 25)]:
                vector = expected[product_id]["vector"]
                hit = client.post(f"{url}/search", json={"vector": vector, "k": 1}).json()["hits"][0]
                assert hit["product"]["product_id"] == product_id and hit["score"] > 0.999
        ingest(url, points, [])
        assert httpx.get(f"{url}/count").json() == {"count": PRODUCTS}
