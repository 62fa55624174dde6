from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from shared.logs import configure_logging
from shared.service import Busy, InferencePool, create_app
from shared.testing import load_outcome, running_app, started_app


async def test_pool_refuses_when_full() -> None:
    pool = InferencePool(workers=1, max_waiting=0, name="t")
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow() -> int:
        asyncio.run_coroutine_threadsafe(gate.wait(), loop).result()
        return 1

    first = asyncio.create_task(pool.run(slow))
    await asyncio.sleep(0.05)
    with pytest.raises(Busy):
        await pool.run(lambda: 2)
    gate.set()
    assert await first == 1
    pool.shutdown()


async def test_readyz_waits_for_load_and_reports_failures() -> None:
    logger = configure_logging("test-service")
    release = asyncio.Event()

    async def load(_: FastAPI) -> None:
        await release.wait()

    app = create_app(service="test-service", title="t", version="0", logger=logger, load=load)
    async with started_app(app) as client:
        assert (await client.get("/readyz")).status_code == 503
        assert (await client.get("/healthz")).status_code == 200
        release.set()
        assert (await load_outcome(client)).status_code == 200
        metrics = (await client.get("/metrics")).text
        assert "test_requests_total" in metrics

    async def broken(_: FastAPI) -> None:
        raise RuntimeError("weights missing")

    failing = create_app(service="test-service", title="t", version="0", logger=logger, load=broken)
    with pytest.raises(RuntimeError, match="weights missing"):
        async with running_app(failing, ready_timeout_s=5):
            pass


async def test_answers_carry_their_request_id_and_server_timing() -> None:
    app = create_app(service="test-service", title="t", version="0", logger=configure_logging("test-service"))
    async with running_app(app) as client:
        response = await client.get("/healthz", headers={"X-Request-ID": "abc"})
    assert response.headers["X-Request-ID"] == "abc"
    name, _, duration = response.headers["Server-Timing"].partition(";dur=")
    assert name == "app" and 0 <= float(duration) < 5000


class Vector(BaseModel):
    values: list[float]


def _app_with_a_json_route() -> FastAPI:
    app = create_app(service="test-service", title="t", version="0", logger=configure_logging("test-service"))

    @app.post("/sum")
    async def total(body: Vector) -> dict[str, float]:
        return {"sum": sum(body.values)}

    return app


async def test_json_bodies_are_parsed_validated_and_refused_as_fastapi_does() -> None:
    async with running_app(_app_with_a_json_route()) as client:
        answer = await client.post("/sum", json={"values": [0.25, 1.5, -2.0]})
        broken = await client.post(
            "/sum", content=b'{"values": [1.0,', headers={"Content-Type": "application/json"}
        )
        wrong = await client.post("/sum", json={"values": ["x"]})
        schema = (await client.get("/openapi.json")).json()
    assert answer.status_code == 200 and answer.json() == {"sum": -0.25}
    assert broken.status_code == 422 and broken.json()["detail"][0]["type"] == "json_invalid"
    assert wrong.status_code == 422 and wrong.json()["detail"][0]["loc"] == ["body", "values", 0]
    assert "Vector" in schema["components"]["schemas"]  # the body is still documented


async def test_metrics_count_requests_by_route_and_status() -> None:
    app = _app_with_a_json_route()
    async with running_app(app) as client:
        await client.post("/sum", json={"values": [1.0]})
        await client.post("/sum", json={"values": "no"})
        metrics = (await client.get("/metrics")).text
    assert 'test_requests_total{method="POST",route="/sum",status="200"} 1.0' in metrics
    assert 'test_requests_total{method="POST",route="/sum",status="422"} 1.0' in metrics
