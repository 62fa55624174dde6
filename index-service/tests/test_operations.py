"""Catalog operations on the index: delete, update, paging, recommend, facets."""

from __future__ import annotations

import httpx

from tests.conftest import axis, point
from tests.test_api import CATALOG, near


async def ids_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [hit["product"]["product_id"] for hit in response.json()["hits"]]


async def test_delete_removes_and_lists_unknown_ids(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    response = await client.post("/points/delete", json={"product_ids": ["10000", "10001", "nope", "10000"]})
    assert response.json() == {"deleted": 2, "missing": ["nope"]}
    assert (await client.get("/count")).json() == {"count": 3}
    assert (await client.get("/points/10000")).status_code == 404
    assert (await client.post("/points/delete", json={"product_ids": []})).status_code == 422


async def test_update_changes_only_the_given_fields_and_keeps_the_vector(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    response = await client.patch("/points/10002", json={"colour": "Black", "name": "Slim jeans"})
    assert response.status_code == 200, response.text
    assert response.json()["colour"] == "Black" and response.json()["article_type"] == "Jeans"
    assert (await client.get("/points/10002")).json()["name"] == "Slim jeans"
    hits = (await client.post("/search", json={"vector": near(2), "k": 1})).json()["hits"]
    assert hits[0]["product"]["product_id"] == "10002" and hits[0]["product"]["colour"] == "Black"
    assert (await client.patch("/points/unknown", json={"colour": "Red"})).status_code == 404
    bad = await client.patch("/points/10002", json={"colour": "Red", "price": 3})
    assert bad.status_code == 422 and "price" in bad.text
    bad_category = await client.patch("/points/10002", json={"category": "hats"})
    assert bad_category.status_code == 422 and "category" in bad_category.text


async def test_paging_visits_every_product_once(client: httpx.AsyncClient) -> None:
    many = [point(f"p{i:03d}", axis(i % 5), gender="Men", category="topwear") for i in range(23)]
    await client.post("/points", json={"points": many})
    seen: list[str] = []
    offset = None
    while True:
        params = {"limit": 5, **({"offset": offset} if offset else {})}
        page = (await client.get("/points", params=params)).json()
        seen += [p["product_id"] for p in page["products"]]
        offset = page["next_offset"]
        if offset is None:
            break
    assert sorted(seen) == sorted(p["product"]["product_id"] for p in many)
    assert (await client.get("/points", params={"offset": "not-an-offset"})).status_code == 422
    assert (await client.get("/points", params={"limit": 0})).status_code == 422


async def test_recommend_moves_towards_positives_and_excludes_the_examples(client: httpx.AsyncClient) -> None:
    lookalike = point("20002", near(2), gender="Men", category="bottomwear")
    await client.post("/points", json={"points": [*CATALOG, lookalike]})
    liked = await client.post("/recommend", json={"positive": ["10002"], "k": 2})
    assert (await ids_of(liked))[0] == "20002"
    assert "10002" not in await ids_of(liked)
    filtered = await client.post(
        "/recommend", json={"positive": ["10002"], "k": 5, "filter": {"genders": ["Women"]}}
    )
    assert set(await ids_of(filtered)) <= {"10001", "10003", "10004"}
    disliked = await client.post("/recommend", json={"positive": ["10002"], "negative": ["10003"], "k": 5})
    assert "10003" not in await ids_of(disliked) and "10002" not in await ids_of(disliked)
    unknown = await client.post("/recommend", json={"positive": ["10002", "ghost"]})
    assert unknown.status_code == 404 and "ghost" in unknown.json()["detail"]


async def test_facets_count_products_per_attribute(client: httpx.AsyncClient) -> None:
    await client.post("/points", json={"points": CATALOG})
    body = (await client.get("/facets")).json()
    assert body["total"] == 5
    assert body["counts"]["gender"] == {"Men": 2, "Women": 3}
    assert body["counts"]["category"] == {"topwear": 2, "bottomwear": 2, "footwear": 1}
    assert body["counts"]["usage"] == {}
    assert body["counts"]["embedding_model"] == {"test-model@1": 5}, "which model made the vectors"


async def test_changing_gender_or_category_moves_the_product_between_filtered_searches(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/points", json={"points": [point("10000", axis(0), gender="Men", category="topwear")]})

    async def found(gender: str, category: str) -> list[str]:
        body = {"vector": axis(0), "k": 5, "filter": {"genders": [gender], "categories": [category]}}
        return [h["product"]["product_id"] for h in (await client.post("/search", json=body)).json()["hits"]]

    assert await found("Men", "topwear") == ["10000"]
    await client.patch("/points/10000", json={"gender": "Women", "category": "dress"})
    assert await found("Men", "topwear") == []
    assert await found("Women", "topwear") == []
    assert await found("Women", "dress") == ["10000"]
