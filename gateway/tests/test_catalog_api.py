"""The catalog API: API key, adding products (upload, JSONL batch), validation, safe URL fetching."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings
from gateway.fetch import FetchError, fetch_image
from gateway.main import build_app
from shared.testing import running_app
from tests.conftest import Downstream, jpeg, stand_in_clients

KEY = "test-key-123"
AUTH = {"X-API-Key": KEY}


@pytest.fixture
async def api(downstream: Downstream, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    catalog = tmp_path / "catalog"
    (catalog / "img").mkdir(parents=True)
    (catalog / "img" / "a.jpg").write_bytes(jpeg(60, 80))
    (catalog / "img" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "secret.jpg").write_bytes(jpeg(60, 80))
    settings = Settings(catalog_dir=catalog, media_dir=tmp_path / "media", api_key=KEY)  # type: ignore[arg-type]
    async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
        yield client


def metadata(**fields: object) -> dict[str, str]:
    return {"metadata": json.dumps({"product_id": "new-1", "gender": "Women", **fields})}


async def test_every_catalog_route_needs_the_key(api: httpx.AsyncClient) -> None:
    for method, path in [
        ("GET", "/catalog/stats"),
        ("GET", "/catalog/products/t1"),
        ("DELETE", "/catalog/products/t1"),
    ]:
        assert (await api.request(method, path)).status_code == 401
        wrong = await api.request(method, path, headers={"X-API-Key": "nope"})
        assert wrong.status_code == 401 and wrong.json()["error"] == "unauthorized"
    bearer = await api.get("/catalog/products/t1", headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 200 and bearer.json()["product_id"] == "t1"


async def test_catalog_api_is_off_without_a_configured_key(downstream: Downstream) -> None:
    async with running_app(build_app(Settings(), clients=stand_in_clients(downstream))) as client:
        response = await client.get("/catalog/stats", headers={"X-API-Key": ""})
        assert response.status_code == 401 and "GATEWAY_API_KEY" in response.json()["detail"]


async def test_upload_adds_a_product_and_serves_its_image(
    api: httpx.AsyncClient, downstream: Downstream
) -> None:
    response = await api.post(
        "/catalog/products",
        headers=AUTH,
        files={"image": ("p.jpg", jpeg(90, 120))},
        data=metadata(name="Red top"),
    )
    assert response.status_code == 201, response.text
    point = downstream.upserted["new-1"]
    assert point.product.gender == "Women" and point.product.name == "Red top"
    assert point.product.category == "topwear" and point.product.colour == "Red"  # from the classifier
    assert point.product.image and point.product.image.startswith("media:products/")
    assert point.product.embedding_model == downstream.vector_model, "which model made the vector"
    image = await api.get("/catalog/images/new-1")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"


async def test_bad_uploads_say_what_is_wrong(api: httpx.AsyncClient, downstream: Downstream) -> None:
    corrupt = await api.post(
        "/catalog/products", headers=AUTH, files={"image": ("p.jpg", b"garbage")}, data=metadata()
    )
    assert corrupt.status_code == 400 and "new-1" not in downstream.upserted
    bad_gender = await api.post(
        "/catalog/products", headers=AUTH, files={"image": ("p.jpg", jpeg())}, data=metadata(category="hats")
    )
    assert bad_gender.status_code == 422
    assert ["body", "metadata", "category"] in [e["loc"] for e in bad_gender.json()["detail"]]
    extra = await api.post(
        "/catalog/products", headers=AUTH, files={"image": ("p.jpg", jpeg())}, data=metadata(price=3)
    )
    assert extra.status_code == 422 and "price" in extra.text
    not_json = await api.post(
        "/catalog/products", headers=AUTH, files={"image": ("p.jpg", jpeg())}, data={"metadata": "{oops"}
    )
    assert not_json.status_code == 422


async def test_batch_reports_each_failed_row_and_indexes_the_rest(
    api: httpx.AsyncClient, downstream: Downstream
) -> None:
    lines = [
        {"product_id": "b-1", "image": "img/a.jpg", "gender": "Men", "category": "bottomwear"},
        {"product_id": "b-2", "image": "img/broken.jpg"},
        {"product_id": "b-3", "image": "../secret.jpg"},
        {"product_id": "b-4", "image": "img/missing.jpg"},
        {"product_id": "b-5", "image_url": "http://127.0.0.1:9/x.jpg"},
        {
            "product_id": "b-1",
            "image": "img/a.jpg",
            "gender": "Men",
            "category": "bottomwear",
            "usage": "Casual",
        },
    ]
    body = "\n".join(json.dumps(line) for line in lines)
    response = await api.post("/catalog/products/batch", headers=AUTH, content=body)
    assert response.status_code == 200, response.text
    report = response.json()
    assert report["indexed"] == ["b-1"]
    assert set(report["failed"]) == {"b-2", "b-3", "b-4", "b-5"}
    assert "loopback" in report["failed"]["b-5"] or "private" in report["failed"]["b-5"]
    assert downstream.upserted["b-1"].product.usage == "Casual"
    assert downstream.upserted["b-1"].product.image == "img/a.jpg"


async def test_malformed_batch_lines_are_422_naming_line_and_field(api: httpx.AsyncClient) -> None:
    body = "\n".join(
        [
            json.dumps({"product_id": "ok", "image": "img/a.jpg"}),
            json.dumps({"product_id": "x", "image": "img/a.jpg", "category": "hats"}),
            json.dumps({"product_id": "y"}),
            "{not json",
        ]
    )
    response = await api.post("/catalog/products/batch", headers=AUTH, content=body)
    assert response.status_code == 422
    locations = [e["loc"] for e in response.json()["detail"]]
    assert ["body", "line 2", "category"] in locations
    assert any(loc[:2] == ["body", "line 3"] for loc in locations)
    assert any(loc[:2] == ["body", "line 4"] for loc in locations)
    empty = await api.post("/catalog/products/batch", headers=AUTH, content="\n\n")
    assert empty.status_code == 422


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.jpg",
        "http://10.1.2.3/a.jpg",
        "http://192.168.0.1/a.jpg",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.jpg",
        "http://[::ffff:127.0.0.1]/a.jpg",
        "http://0.0.0.0/a.jpg",
        "ftp://8.8.8.8/a.jpg",
        "file:///etc/passwd",
    ],
)
async def test_internal_or_odd_urls_are_refused(url: str) -> None:
    def never(_: httpx.Request) -> httpx.Response:
        raise AssertionError("must not be fetched")

    async with httpx.AsyncClient(transport=httpx.MockTransport(never)) as client:
        with pytest.raises(FetchError):
            await fetch_image(client, url, 1_000_000, allow_private=False)


async def test_fetch_checks_redirects_and_caps_size() -> None:
    image = jpeg(30, 30)

    def site(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/hop":
            return httpx.Response(302, headers={"location": "http://127.0.0.1/admin"})
        if request.url.path == "/big":
            return httpx.Response(200, content=b"x" * 5000)
        return httpx.Response(200, content=image)

    async with httpx.AsyncClient(transport=httpx.MockTransport(site)) as client:
        assert await fetch_image(client, "http://8.8.8.8/a.jpg", 1_000_000, allow_private=False) == image
        with pytest.raises(FetchError, match=r"loopback|private"):
            await fetch_image(client, "http://8.8.8.8/hop", 1_000_000, allow_private=False)
        with pytest.raises(FetchError, match="limit"):
            await fetch_image(client, "http://8.8.8.8/big", 1000, allow_private=False)
        assert await fetch_image(client, "http://127.0.0.1/a.jpg", 1_000_000, allow_private=True) == image
