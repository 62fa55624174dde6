"""The storefront page and its assets are served by the gateway itself, and CORS is off unless set."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import httpx
import pytest

from gateway.config import Settings
from gateway.main import build_app
from shared.testing import running_app
from tests.conftest import Downstream, stand_in_clients

ORIGIN = "https://shop.example.com"


class Assets(HTMLParser):
    """Every URL the page loads by itself (scripts, styles, icons, images)."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag in ("script", "img") and values.get("src"):
            self.urls.append(str(values["src"]))
        if tag == "link" and values.get("href"):
            self.urls.append(str(values["href"]))


async def test_root_serves_the_page_and_every_asset_it_loads(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    parser = Assets()
    parser.feed(page.text)
    assert {"/static/storefront.js", "/static/storefront.css", "/static/icon.svg"} <= set(parser.urls)
    kinds = {".js": "javascript", ".css": "text/css", ".svg": "image/svg+xml"}
    for url in parser.urls:
        assert url.startswith("/static/"), f"{url}: everything must be served by the gateway"
        asset = await client.get(url)
        assert asset.status_code == 200, url
        assert kinds[url[url.rindex(".") :]] in asset.headers["content-type"], url


async def test_page_and_assets_reference_nothing_outside_the_gateway(client: httpx.AsyncClient) -> None:
    texts = [(await client.get(u)).text for u in ("/", "/static/storefront.js", "/static/storefront.css")]
    for text in texts:
        external = re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, flags=re.IGNORECASE)
        assert external == [], external


async def test_page_calls_the_api_routes_it_needs(client: httpx.AsyncClient) -> None:
    script = (await client.get("/static/storefront.js")).text
    assert "/recommend?" in script and '"/similar"' in script


async def test_no_cors_headers_by_default(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize("configured", [ORIGIN, f"https://other.example, {ORIGIN}/"])
async def test_cors_allows_the_configured_storefront_origin(
    configured: str, monkeypatch: pytest.MonkeyPatch, downstream: Downstream
) -> None:
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", configured)
    settings = Settings()
    assert ORIGIN in settings.cors_origins
    app = build_app(settings, clients=stand_in_clients(downstream))
    async with running_app(app) as client:
        preflight = await client.options(
            "/recommend",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        plain = await client.get("/healthz", headers={"Origin": ORIGIN})
        assert plain.headers["access-control-allow-origin"] == ORIGIN
        assert "X-Request-ID" in plain.headers["access-control-expose-headers"]
        stranger = await client.get("/healthz", headers={"Origin": "https://evil.example"})
        assert "access-control-allow-origin" not in stranger.headers


def test_cors_setting_is_empty_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GATEWAY_CORS_ORIGINS", raising=False)
    assert Settings().cors_origins == []
    monkeypatch.setenv("GATEWAY_CORS_ORIGINS", " ")
    assert Settings().cors_origins == []
