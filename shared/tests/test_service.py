from __future__ import annotations

import asyncio

import pytest
from fastapi import FastAPI

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
