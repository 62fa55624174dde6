from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from index_service.main import build_app
from shared.testing import load_outcome, running_app, started_app
from tests.conftest import DIM, INSTANCE_DIM, axis, make_settings, point

CATALOG = [
    point("10000", axis(0), gender="Men", category="topwear", article_type="Tshirts", colour="Blue"),
    point("10001", axis(1), gender="Women", category="topwear", article_type="Tops", colour="Red"),
    point("10002", axis(2), gender="Men", category="bottomwear", article_type="Jeans", colour="Blue"),
    point("10003", axis(3), gender="Women", category="bottomwear", article_type="Skirts", colour="White"),
    point("10004", axis(4), gender="Women", category="footwear", article_type="Heels", colour="Black"),
]


def near(i: int) -> list[float]:
    """Closest to axis i, then to axis i + 1, and so on: a known ranking over the catalog."""
    weights = np.array([0.5 ** ((j - i) % DIM) for j in range(DIM)])
    return weights.tolist()


async def search(client: httpx.AsyncClient, vector: list[float], k: int = 10, **filters: Any) -> list[str]:
    response = await client.post("/search", json={"vector": vector, "k": k, "filter": filters})
    assert response.status_code == 200, response.text
    return [hit["product"]["product_id"] for hit in response.json()["hits"]]


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["dim"] == DIM, (
        "the gateway compares it with the embeddings'"
    )
    assert ready.json()["instance_dim"] == INSTANCE_DIM, "and this with the instance vectors'"
    await client.post("/points", json={"points": CATALOG})
    await client.post("/search", json={"vector": near(0)})
    metrics = (await client.get("/metrics")).text
    assert "index_request_duration_seconds" in metrics
    assert 'index_inference_duration_seconds_count{operation="upsert"} 1.0' in metrics
    assert 'index_inference_duration_seconds_count{operation="search"} 1.0' in metrics


async def test_empty_index_search_has_no_hits(client: httpx.AsyncClient) -> None:
    assert (await client.get("/count")).json() == {"count": 0}
    assert await search(client, near(0)) == []


async def test_search_ranks_nearest_first_with_payload(client: httpx.AsyncClient) -> None:
    response = await client.post("/points", json={"points": CATALOG})
    assert response.json() == {"upserted": 5}
    body = (await client.post("/search", json={"vector": near(2), "k": 3})).json()
    assert [h["product"]["product_id"] for h in body["hits"]] == ["10002", "10003", "10004"]
    scores = [h["score"] for h in body["hits"]]
    assert scores == sorted(scores, reverse=True) and 0.0 < scores[-1] < scores[0] <= 1.0 + 1e-6
    assert body["hits"][0]["product"] == {**CATALOG[2]["product"], "name": None, "usage": None, "image": None}


async def test_views_score_each_product_by_its_best_match(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    body = (await client.post("/search", json={"vector": near(0), "views": [axis(3)], "k": 3})).json()
    found = [(h["product"]["product_id"], round(h["score"], 4)) for h in body["hits"]]
    assert found[0] == ("10003", 1.0), "the view lies on product 10003: its best match wins"
    assert [f[0] for f in found[1:]] == ["10000", "10001"], "then the vector's own nearest, once each"
    assert await search(client, near(0), k=2, categories=["footwear"]) == ["10004"]
    filtered = await client.post(
        "/search", json={"vector": near(0), "views": [axis(3)], "filter": {"categories": ["footwear"]}}
    )
    assert [h["product"]["product_id"] for h in filtered.json()["hits"]] == ["10004"], "views keep the filter"
    bad = await client.post("/search", json={"vector": near(0), "views": [axis(0), [1.0, 2.0]]})
    assert bad.status_code == 422 and "views[1] has 2 values" in bad.json()["detail"]


async def test_filters_are_any_of_and_combine(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    assert await search(client, near(0), genders=["Women"]) == ["10001", "10003", "10004"]
    assert await search(client, near(0), categories=["bottomwear"]) == ["10002", "10003"]
    assert await search(client, near(0), categories=["topwear", "footwear"]) == ["10000", "10001", "10004"]
    both = await search(client, near(0), genders=["Women"], categories=["bottomwear", "footwear"])
    assert both == ["10003", "10004"]
    assert await search(client, near(0), colours=["Blue"], article_types=["Jeans", "Tops"]) == ["10002"]
    assert await search(client, near(0), genders=["Boys"]) == []
    assert await search(client, near(0), genders=[]) == []  # any of nothing: nothing matches


async def test_upsert_is_idempotent_and_replaces(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    await client.post("/points", json={"points": CATALOG})
    assert (await client.get("/count")).json() == {"count": 5}
    moved = point("10000", axis(3), gender="Women", category="dress", name="Renamed")
    assert (await client.post("/points", json={"points": [moved, moved]})).json() == {"upserted": 1}
    assert (await client.get("/count")).json() == {"count": 5}
    stored = (await client.get("/points/10000")).json()
    assert stored["category"] == "dress" and stored["name"] == "Renamed" and stored["article_type"] is None
    assert set(await search(client, axis(3), k=2)) == {"10000", "10003"}  # both lie on axis 3


async def test_get_known_and_unknown(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": [*CATALOG, point("a/b c", axis(5))]})
    assert (await client.get("/points/10004")).json()["article_type"] == "Heels"
    assert (await client.get("/points/a%2Fb%20c")).json()["product_id"] == "a/b c"
    missing = await client.get("/points/99999")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found", "detail": "product '99999' is not in the index"}


async def test_bad_vectors_are_422_with_a_clear_message(client: httpx.AsyncClient) -> None:
    short = await client.post("/search", json={"vector": [1.0, 2.0, 3.0]})
    assert short.status_code == 422
    assert short.json() == {
        "error": "validation_error",
        "detail": f"vector has 3 values; this index stores {DIM}-dimensional vectors",
    }
    bad_batch = {"points": [CATALOG[0], point("x", [1.0] * (DIM + 1))]}
    response = await client.post("/points", json=bad_batch)
    assert response.status_code == 422 and "points[1].vector has 17 values" in response.json()["detail"]
    assert (await client.get("/count")).json() == {"count": 0}  # nothing of a rejected batch is stored
    zero = await client.post("/points", json={"points": [point("z", [0.0] * DIM)]})
    assert zero.status_code == 422 and "all zeros" in zero.json()["detail"]
    empty_id = await client.post("/points", json={"points": [point(" ", axis(0))]})
    assert empty_id.status_code == 422 and "product_id is empty" in empty_id.json()["detail"]
    too_many = await client.post("/search", json={"vector": axis(0), "k": 101})
    assert too_many.status_code == 422 and too_many.json()["error"] == "validation_error"


async def test_concurrent_upserts_and_searches(client: httpx.AsyncClient) -> None:
    rng = np.random.default_rng(0)
    batches = [[point(f"{b}-{i}", rng.standard_normal(DIM).tolist()) for i in range(20)] for b in range(10)]
    calls = [client.post("/points", json={"points": batch}) for batch in batches]
    calls += [client.post("/search", json={"vector": near(i % DIM)}) for i in range(30)]
    responses = await asyncio.gather(*calls)
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses if r.status_code != 200]
    assert (await client.get("/count")).json() == {"count": 200}


async def test_data_survives_a_restart(store_path: Path) -> None:
    async with running_app(build_app(make_settings(store_path))) as first:
        await first.post("/points", json={"points": CATALOG})
    async with running_app(build_app(make_settings(store_path))) as second:
        assert (await second.get("/count")).json() == {"count": 5}
        assert (await second.get("/points/10003")).json()["article_type"] == "Skirts"
        assert await search(second, near(1), k=2, genders=["Women"]) == ["10001", "10003"]


async def test_reopening_with_another_dimension_fails_with_the_reason(store_path: Path) -> None:
    async with running_app(build_app(make_settings(store_path))) as first:
        await first.post("/points", json={"points": CATALOG})
    async with started_app(build_app(make_settings(store_path, vector_dim=32))) as second:
        ready = await load_outcome(second)
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert reason.startswith("loading failed") and "dimension" in reason
        assert f"holds {DIM}-dimensional vectors" in reason and "INDEX_VECTOR_DIM is 32" in reason
        refused = await second.post("/search", json={"vector": axis(0, 32)})
        assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
    async with running_app(build_app(make_settings(store_path))) as third:  # the store is untouched
        assert (await third.get("/count")).json() == {"count": 5}


async def test_a_store_in_use_is_refused_with_the_reason(store_path: Path) -> None:
    async with running_app(build_app(make_settings(store_path))) as first:
        async with started_app(build_app(make_settings(store_path))) as second:
            ready = await load_outcome(second)
            assert ready.status_code == 503
            assert "already in use" in ready.json()["reason"]
        assert (await first.get("/count")).status_code == 200
