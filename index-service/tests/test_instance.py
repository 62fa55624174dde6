"""Instance vectors: a second vector per product, searched on its own (SearchRequest.space)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from index_service.config import Settings
from index_service.main import build_app
from index_service.model import IndexLoadError
from index_service.server import ServerIndex
from shared.testing import load_outcome, running_app, started_app
from tests.conftest import DIM, INSTANCE_DIM, axis, backend_settings, make_settings, point


def toward(i: int, dim: int) -> list[float]:
    """Closest to axis i, then to axis i + 1, and so on: a known ranking."""
    return [0.5 ** ((j - i) % dim) for j in range(dim)]


def instance_axis(i: int) -> list[float]:
    return axis(i, INSTANCE_DIM)


# the instance vectors rank the products the other way round from the look vectors; 30003 has none
CATALOG = [
    point("30000", axis(0), instance_axis(2), gender="Men", category="topwear"),
    point("30001", axis(1), instance_axis(1), gender="Women", category="topwear"),
    point("30002", axis(2), instance_axis(0), gender="Men", category="bottomwear"),
    point("30003", axis(3), gender="Women", category="bottomwear"),
]


# instance dimension the store was made with, the one it is opened with, what the refusal says it holds
MISMATCHES = [
    (0, INSTANCE_DIM, "no instance vectors"),
    (INSTANCE_DIM, 0, f"{INSTANCE_DIM}-dimensional instance vectors"),
    (INSTANCE_DIM, 4, f"{INSTANCE_DIM}-dimensional instance vectors"),
]


async def found(client: httpx.AsyncClient, space: str, vector: list[float], **body: Any) -> list[str]:
    response = await client.post("/search", json={"vector": vector, "space": space, "k": 10, **body})
    assert response.status_code == 200, response.text
    return [hit["product"]["product_id"] for hit in response.json()["hits"]]


async def test_each_space_ranks_by_its_own_vectors(client: httpx.AsyncClient) -> None:
    assert (await client.post("/points", json={"points": CATALOG})).json() == {"upserted": 4}
    assert await found(client, "look", toward(0, DIM)) == ["30000", "30001", "30002", "30003"]
    assert await found(client, "instance", toward(0, INSTANCE_DIM)) == ["30002", "30001", "30000"]
    default = await client.post("/search", json={"vector": toward(0, DIM), "k": 10})
    assert default.json()["hits"][0]["product"]["product_id"] == "30000", "the look space by default"
    with_view = await client.post(
        "/search",
        json={"vector": toward(0, INSTANCE_DIM), "views": [instance_axis(2)], "space": "instance", "k": 2},
    )
    best = [(h["product"]["product_id"], round(h["score"], 4)) for h in with_view.json()["hits"]]
    assert best[0] == ("30000", 1.0) and best[1][0] == "30002", "the view's exact match wins"
    assert await found(client, "instance", toward(0, INSTANCE_DIM), filter={"genders": ["Men"]}) == [
        "30002",
        "30000",
    ]


async def test_a_product_without_an_instance_vector_is_found_by_its_look_only(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/points", json={"points": CATALOG})
    assert "30003" not in await found(client, "instance", toward(3, INSTANCE_DIM))
    assert (await found(client, "look", axis(3)))[0] == "30003"
    assert (await client.get("/points/30003")).json()["product_id"] == "30003"


async def test_bad_instance_vectors_are_422_naming_the_field(client: httpx.AsyncClient) -> None:
    wrong = point("x", axis(4), [1.0, 2.0, 3.0])
    response = await client.post("/points", json={"points": [CATALOG[0], wrong]})
    assert response.status_code == 422
    assert response.json()["detail"] == (
        f"points[1].instance has 3 values; this index stores {INSTANCE_DIM}-dimensional instance vectors"
    )
    zero = await client.post("/points", json={"points": [point("z", axis(4), [0.0] * INSTANCE_DIM)]})
    assert zero.status_code == 422 and "points[0].instance is all zeros" in zero.json()["detail"]
    assert (await client.get("/count")).json() == {"count": 0}, "nothing of a rejected batch is stored"
    look_sized = await client.post("/search", json={"vector": axis(0), "space": "instance"})
    assert look_sized.status_code == 422
    assert look_sized.json()["detail"] == (
        f"vector has {DIM} values; this index stores {INSTANCE_DIM}-dimensional instance vectors"
    )
    bad_view = await client.post(
        "/search", json={"vector": instance_axis(0), "views": [axis(0)], "space": "instance"}
    )
    assert bad_view.status_code == 422 and "views[0] has 16 values" in bad_view.json()["detail"]
    unknown = await client.post("/search", json={"vector": axis(0), "space": "colour"})
    assert unknown.status_code == 422


@pytest.mark.parametrize("backend", ["edge", "server"])
async def test_an_index_without_instance_vectors_refuses_them(backend: str, store_path: Path) -> None:
    async with running_app(build_app(backend_settings(backend, store_path, instance_dim=0))) as client:
        assert (await client.get("/readyz")).json()["instance_dim"] == 0
        given = await client.post("/points", json={"points": [point("1", axis(0), instance_axis(0))]})
        assert given.status_code == 422
        assert given.json()["detail"] == (
            "points[0].instance is given: this index stores no instance vectors (INDEX_INSTANCE_DIM=0)"
        )
        asked = await client.post("/search", json={"vector": instance_axis(0), "space": "instance"})
        assert asked.status_code == 422
        assert "this index stores no instance vectors (INDEX_INSTANCE_DIM=0)" in asked.json()["detail"]
        catalog = [point("1", axis(0)), point("2", toward(0, DIM))]
        assert (await client.post("/points", json={"points": catalog})).status_code == 200
        assert await found(client, "look", axis(0)) == ["1", "2"]
        liked = await client.post("/recommend", json={"positive": ["1"]})
        assert [hit["product"]["product_id"] for hit in liked.json()["hits"]] == ["2"]


@pytest.mark.parametrize(("made", "opened", "held"), MISMATCHES)
async def test_reopening_with_other_instance_vectors_fails_with_the_reason(
    store_path: Path, made: int, opened: int, held: str
) -> None:
    async with running_app(build_app(make_settings(store_path, instance_dim=made))) as first:
        await first.post("/points", json={"points": [point("1", axis(0))]})
    async with started_app(build_app(make_settings(store_path, instance_dim=opened))) as second:
        ready = await load_outcome(second)
        assert ready.status_code == 503
        reason = ready.json()["reason"]
        assert reason.startswith("loading failed") and "instance vector mismatch" in reason
        assert f"holds {held} but INDEX_INSTANCE_DIM is {opened}" in reason
        assert f"set INDEX_INSTANCE_DIM={made}" in reason and "make clean-index" in reason
    async with running_app(build_app(make_settings(store_path, instance_dim=made))) as third:
        assert (await third.get("/count")).json() == {"count": 1}, "the store is untouched"


@pytest.mark.parametrize(("made", "opened", "held"), MISMATCHES)
def test_the_server_backend_refuses_a_collection_of_other_instance_vectors(
    tmp_path: Path, made: int, opened: int, held: str
) -> None:
    def server_index(instance_dim: int) -> ServerIndex:
        folder = str(tmp_path / "qdrant")  # qdrant-client's local mode, kept on disk
        return ServerIndex(Settings(qdrant_url=folder, vector_dim=DIM, instance_dim=instance_dim))

    for instance_dim in (made, made):  # created, then opened again as made
        index = server_index(instance_dim)
        index.load()
        index.close()
    expected = f"'products' holds {held} but INDEX_INSTANCE_DIM is {opened}; set INDEX_INSTANCE_DIM={made},"
    with pytest.raises(IndexLoadError, match=expected):
        server_index(opened).load()


async def test_update_keeps_the_instance_vector(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    changed = await client.patch("/points/30002", json={"colour": "Black"})
    assert changed.status_code == 200, changed.text
    body = {"vector": instance_axis(0), "space": "instance", "k": 1}
    hit = (await client.post("/search", json=body)).json()["hits"][0]
    assert hit["product"]["product_id"] == "30002" and hit["product"]["colour"] == "Black"
    assert hit["score"] == pytest.approx(1.0, abs=1e-5)
    assert (await found(client, "look", axis(2)))[0] == "30002"


async def test_recommend_compares_the_look_vectors(client: httpx.AsyncClient) -> None:
    """Of two products, one looks like 30000 and the other has an instance vector near 30000's:
    more like 30000 is the first."""
    lookalike = point("30004", toward(0, DIM), instance_axis(7))
    same_instance = point("30005", axis(9), toward(2, INSTANCE_DIM))
    await client.post("/points", json={"points": [*CATALOG, lookalike, same_instance]})
    response = await client.post("/recommend", json={"positive": ["30000"], "k": 1})
    assert response.status_code == 200, response.text
    assert [hit["product"]["product_id"] for hit in response.json()["hits"]] == ["30004"]
    assert (await found(client, "instance", instance_axis(2)))[:2] == ["30000", "30005"], "by instance"


def test_an_instance_search_sees_no_look_vector() -> None:
    """A guard for the tests above: the two spaces rank the catalog differently."""
    look = np.array([p["vector"] for p in CATALOG[:3]]) @ np.array(toward(0, DIM))
    instance = np.array([p["instance"] for p in CATALOG[:3]]) @ np.array(toward(0, INSTANCE_DIM))
    assert list(np.argsort(-look)) == list(reversed(np.argsort(-instance)))
