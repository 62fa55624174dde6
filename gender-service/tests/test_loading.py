from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from gender_service.config import Settings
from gender_service.main import build_app


async def _wait_until_loading_ends(client: httpx.AsyncClient) -> httpx.Response:
    for _ in range(200):
        response = await client.get("/readyz")
        if response.json()["reason"] != "loading":
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("loading did not end")


async def test_missing_models_leave_the_service_alive_but_unready(tmp_path: Path) -> None:
    app = build_app(Settings(model_dir=str(tmp_path), inference_threads=1))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            ready = await _wait_until_loading_ends(client)
            assert ready.status_code == 503
            assert ready.json()["reason"].startswith("loading failed")
            assert "blazeface.json" in ready.json()["reason"]
            assert (await client.get("/healthz")).status_code == 200
            refused = await client.post("/faces", files={"image": ("a.jpg", b"\xff\xd8")})
            assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
