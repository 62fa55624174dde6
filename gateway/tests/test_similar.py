"""POST /similar: "more like this" through the index's recommend query."""

from __future__ import annotations

import httpx

from tests.conftest import Downstream


async def test_similar_defaults_to_the_liked_products_gender_and_category(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    response = await client.post("/similar", json={"positive": ["t1"], "k": 3})
    assert response.status_code == 200, response.text
    body = response.json()
    sent = downstream.recommends[-1]
    assert sent.positive == ["t1"] and sent.k == 3
    assert sent.filter.genders == ["Women", "Unisex"] and sent.filter.categories == ["topwear"]
    assert all(r["product_id"] != "t1" for r in body["recommendations"])
    assert body["timings_ms"]["total"] >= 0


async def test_similar_takes_gender_categories_and_negatives(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    response = await client.post(
        "/similar",
        json={"positive": ["t1"], "negative": ["t2"], "gender": "Men", "categories": "topwear,bottomwear"},
    )
    assert response.status_code == 200, response.text
    sent = downstream.recommends[-1]
    assert sent.negative == ["t2"] and sent.filter.genders == ["Men", "Unisex"]
    assert sorted(sent.filter.categories or []) == ["bottomwear", "topwear"]
    ids = [r["product_id"] for r in response.json()["recommendations"]]
    assert "b1" in ids and "t2" not in ids
    jeans = response.json()["recommendations"][ids.index("b1")]
    assert jeans["image_url"].endswith("/catalog/images/b1") and jeans["category"] == "bottomwear"


async def test_unisex_product_searches_every_gender(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    assert (await client.post("/similar", json={"positive": ["b1"]})).status_code == 200
    assert downstream.recommends[-1].filter.genders is None


async def test_similar_errors_are_clear(client: httpx.AsyncClient, downstream: Downstream) -> None:
    unknown = await client.post("/similar", json={"positive": ["nope"]})
    assert unknown.status_code == 404 and "nope" in unknown.json()["detail"]
    unknown_negative = await client.post("/similar", json={"positive": ["t1"], "negative": ["ghost"]})
    assert unknown_negative.status_code == 404 and "ghost" in unknown_negative.json()["detail"]
    assert (await client.post("/similar", json={"positive": []})).status_code == 422
    bad_category = await client.post("/similar", json={"positive": ["t1"], "categories": "hats"})
    assert bad_category.status_code == 422 and "hats" in bad_category.json()["detail"]
    downstream.failing.add("index")
    down = await client.post("/similar", json={"positive": ["t1"]})
    assert down.status_code == 503 and down.json()["error"] == "unavailable"
