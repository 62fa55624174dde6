from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fastapi import FastAPI

from index_service.config import Settings
from index_service.main import build_app
from shared.testing import running_app

DIM = 16


def make_settings(path: Path, vector_dim: int = DIM) -> Settings:
    return Settings(path=path, vector_dim=vector_dim, inference_threads=2)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture
async def client(store_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(make_settings(store_path))) as c:
        yield c


@asynccontextmanager
async def started_app(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """Run the lifespan without waiting for readiness: for apps whose load is expected to fail."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


async def load_outcome(client: httpx.AsyncClient, timeout_s: float = 30.0) -> httpx.Response:
    """The /readyz answer once loading has finished, one way or the other."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        response = await client.get("/readyz")
        if response.json()["reason"] != "loading" or asyncio.get_running_loop().time() > deadline:
            return response
        await asyncio.sleep(0.05)


def axis(i: int, dim: int = DIM) -> list[float]:
    """A unit vector along axis ``i``: products on different axes are orthogonal."""
    vector = np.zeros(dim)
    vector[i] = 1.0
    return vector.tolist()


def point(product_id: str, vector: list[float], **attributes: Any) -> dict[str, Any]:
    product = {"product_id": product_id, "gender": "Men", "category": "topwear", **attributes}
    return {"vector": vector, "product": product}
