"""Helpers for in-process service tests: run an app's lifespan and talk to it over ASGITransport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI


@asynccontextmanager
async def started_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run ``app``'s lifespan and yield a client at once, without waiting for readiness."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as client,
    ):
        yield client


@asynccontextmanager
async def running_app(app: FastAPI, ready_timeout_s: float = 120.0) -> AsyncIterator[httpx.AsyncClient]:
    """Start ``app``'s lifespan, wait until /readyz answers 200 (or fail), and yield a client."""
    async with started_app(app) as client:
        await wait_ready(client, ready_timeout_s)
        yield client


async def load_outcome(client: httpx.AsyncClient, timeout_s: float = 30.0) -> httpx.Response:
    """The /readyz answer once loading has finished, one way or the other."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.json().get("reason") != "loading" or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.05)


async def wait_ready(client: httpx.AsyncClient, timeout_s: float) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.status_code == 200:
            return
        body = response.json()
        if str(body.get("reason", "")).startswith("loading failed"):
            raise RuntimeError(f"service failed to load: {body}")
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"service not ready after {timeout_s}s: {body}")
        await asyncio.sleep(0.1)
