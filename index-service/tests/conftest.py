from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from index_service.config import Settings
from index_service.main import build_app
from shared.testing import running_app

DIM = 16


def make_settings(path: Path, vector_dim: int = DIM) -> Settings:
    return Settings(path=path, vector_dim=vector_dim, inference_threads=2)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture(params=["edge", "server"])
async def client(request: pytest.FixtureRequest, store_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Every API test runs on both backends: the embedded Qdrant Edge store, and qdrant-client (its
    local mode standing in for a Qdrant server)."""
    settings = make_settings(store_path)
    if request.param == "server":
        settings = settings.model_copy(update={"qdrant_url": ":memory:"})
    async with running_app(build_app(settings)) as c:
        yield c


def axis(i: int, dim: int = DIM) -> list[float]:
    """A unit vector along axis ``i``: products on different axes are orthogonal."""
    vector = np.zeros(dim)
    vector[i] = 1.0
    return vector.tolist()


def point(product_id: str, vector: list[float], **attributes: Any) -> dict[str, Any]:
    product = {
        "product_id": product_id,
        "gender": "Men",
        "category": "topwear",
        "embedding_model": "test-model@1",
        **attributes,
    }
    return {"vector": vector, "product": product}
