"""/duplicates: the products whose catalog photo is the query photo's own, found by keypoints (on
both backends, through the ``client`` fixture)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from qdrant_edge import EdgeShard

from index_service.main import build_app
from index_service.model import engine_config, verified
from shared.contracts import DuplicatesRequest, Keypoints
from shared.keypoints import pack, unpack
from shared.testing import running_app
from tests.conftest import DIM, axis, backend_settings, make_settings, point

VOCABULARY = "test-words@1"


def keypoints(seed: int, count: int = 200) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0, 448, (count, 2)),
        rng.integers(0, 5000, count),
        rng.integers(0, 256, (count, 32), dtype=np.uint8),
    )


def as_json(
    points: np.ndarray, words: np.ndarray, descriptors: np.ndarray, vocabulary: str = VOCABULARY
) -> dict[str, Any]:
    return {"vocabulary": vocabulary, "count": len(words), "data": pack(points, words, descriptors)}


def shopper_copy(seed: int) -> dict[str, Any]:
    """The photo of product ``seed`` turned 5 degrees, at 0.8 of its size, shifted."""
    points, words, descriptors = keypoints(seed)
    turn = np.radians(5)
    rotation = 0.8 * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return as_json(points @ rotation.T + np.array([20.0, 35.0]), words, descriptors)


def with_photo(product_id: str, seed: int, i: int, **attributes: Any) -> dict[str, Any]:
    return {**point(product_id, axis(i), **attributes), "keypoints": as_json(*keypoints(seed))}


async def fill(client: httpx.AsyncClient) -> None:
    points = [
        with_photo("shirt", 1, 0),
        with_photo("jeans", 2, 1, category="bottomwear"),
        with_photo("other-words", 3, 2),
        point("no-photo", axis(3)),
    ]
    points[2]["keypoints"]["vocabulary"] = "other-words@1"
    assert (await client.post("/points", json={"points": points})).status_code == 200


async def duplicates(
    client: httpx.AsyncClient, query: dict[str, Any], **request: Any
) -> list[dict[str, Any]]:
    response = await client.post("/duplicates", json={"keypoints": query, **request})
    assert response.status_code == 200, response.text
    hits: list[dict[str, Any]] = response.json()["hits"]
    return hits


async def test_a_photo_finds_the_product_whose_photo_it_is_and_no_other(client: httpx.AsyncClient) -> None:
    await fill(client)
    hits = await duplicates(client, shopper_copy(1))
    assert [h["product"]["product_id"] for h in hits] == ["shirt"]
    assert hits[0]["score"] >= 180  # of 200 keypoints
    assert "keypoints" not in hits[0]["product"]
    assert await duplicates(client, as_json(*keypoints(9))) == []  # a photo the catalog lacks


async def test_the_filter_and_the_vocabulary_narrow_the_photos(client: httpx.AsyncClient) -> None:
    await fill(client)
    assert await duplicates(client, shopper_copy(2), filter={"categories": ["topwear"]}) == []
    assert [h["product"]["product_id"] for h in await duplicates(client, shopper_copy(2))] == ["jeans"]
    # words of another vocabulary mean other things: that photo is not compared
    assert await duplicates(client, shopper_copy(3)) == []


async def test_reads_never_return_keypoints_and_changes_keep_them(client: httpx.AsyncClient) -> None:
    await fill(client)
    product = (await client.get("/points/shirt")).json()
    assert set(product) <= {
        "product_id",
        "gender",
        "category",
        "article_type",
        "colour",
        "name",
        "usage",
        "image",
        "embedding_model",
    }
    searched = (await client.post("/search", json={"vector": axis(0), "k": 4})).json()["hits"]
    assert all("keypoints" not in h["product"] for h in searched)
    page = (await client.get("/points")).json()["products"]
    assert all("keypoints" not in p for p in page)
    assert (await client.patch("/points/shirt", json={"colour": "Blue"})).status_code == 200
    hits = await duplicates(client, shopper_copy(1))
    assert [(h["product"]["product_id"], h["product"]["colour"]) for h in hits] == [("shirt", "Blue")]


async def test_keypoints_that_are_not_keypoints_are_refused(client: httpx.AsyncClient) -> None:
    bad = with_photo("shirt", 1, 0)
    bad["keypoints"]["count"] = 3
    response = await client.post("/points", json={"points": [bad]})
    assert response.status_code == 422 and "count says 3" in response.text
    query = {"vocabulary": VOCABULARY, "count": 1, "data": "not base64!"}
    response = await client.post("/duplicates", json={"keypoints": query})
    assert response.status_code == 422 and "base64" in response.text


async def test_a_store_made_before_keypoints_still_serves_and_says_it_keeps_none(tmp_path: Path) -> None:
    path = tmp_path / "old"
    path.mkdir()
    EdgeShard.create(str(path), engine_config(DIM, False, False, 8, keypoints=False)).close()
    async with running_app(build_app(make_settings(path))) as client:
        assert (await client.get("/readyz")).json()["keypoints"] is False
        assert (await client.post("/points", json={"points": [with_photo("shirt", 1, 0)]})).status_code == 200
        hits = (await client.post("/search", json={"vector": axis(0)})).json()["hits"]
        assert [h["product"]["product_id"] for h in hits] == ["shirt"]
        response = await client.post("/duplicates", json={"keypoints": shopper_copy(1)})
        assert response.status_code == 409
        assert "make clean-index ingest" in response.json()["detail"]


@pytest.mark.parametrize("backend", ["edge", "server"])
async def test_a_store_without_instance_vectors_keeps_keypoints_too(backend: str, tmp_path: Path) -> None:
    async with running_app(
        build_app(backend_settings(backend, tmp_path / "index", instance_dim=0))
    ) as client:
        assert (await client.post("/points", json={"points": [with_photo("shirt", 1, 0)]})).status_code == 200
        assert [h["product"]["product_id"] for h in await duplicates(client, shopper_copy(1))] == ["shirt"]
        hits = (await client.post("/search", json={"vector": axis(0)})).json()["hits"]
        assert [h["product"]["product_id"] for h in hits] == ["shirt"]


def test_photos_far_below_the_best_match_are_another_products_in_the_same_pose() -> None:
    """The very photo agrees on all 120 keypoints; another agreeing on 60 of them (the same model,
    pose and jeans, another jacket) passes the threshold but is not the posted photo's."""
    points, words, descriptors = keypoints(3, 120)
    query = unpack(pack(points, words, descriptors))
    very = pack(points * 0.8 + 5, words, descriptors)
    same_pose = pack(points[:60] * 0.8 + 5, words[:60], descriptors[:60])
    stored = [
        SimpleNamespace(payload={"product_id": product, "keypoints": blob})
        for product, blob in (("very", very), ("pose", same_pose))
    ]
    request = DuplicatesRequest(
        keypoints=Keypoints(vocabulary="v", count=120, data=pack(points, words, descriptors))
    )
    assert [hit.product.product_id for hit in verified(request, query, stored)] == ["very"]
    assert [hit.product.product_id for hit in verified(request, query, stored[1:])] == ["pose"]
