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
INSTANCE_DIM = 8


def make_settings(path: Path, vector_dim: int = DIM, instance_dim: int = INSTANCE_DIM) -> Settings:
    return Settings(path=path, vector_dim=vector_dim, instance_dim=instance_dim, inference_threads=2)


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "index"


@pytest.fixture(params=["edge", "server"])
async def client(request: pytest.FixtureRequest, store_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    """Every API test runs on both backends: the embedded Qdrant Edge store, and qdrant-client (its
    local mode standing in for a Qdrant server)."""
    async with running_app(build_app(backend_settings(request.param, store_path))) as c:
        yield c


def backend_settings(backend: str, path: Path, **changes: Any) -> Settings:
    """make_settings for the edge store in ``path``, or for the server backend's local mode."""
    settings = make_settings(path, **changes)
    if backend == "server":
        settings = settings.model_copy(update={"qdrant_url": ":memory:"})
    return settings


def axis(i: int, dim: int = DIM) -> list[float]:
    """A unit vector along axis ``i``: products on different axes are orthogonal."""
    vector = np.zeros(dim)
    vector[i] = 1.0
    return vector.tolist()


def point(
    product_id: str, vector: list[float], instance: list[float] | None = None, **attributes: Any
) -> dict[str, Any]:
    product = {
        "product_id": product_id,
        "gender": "Men",
        "category": "topwear",
        "embedding_model": "test-model@1",
        **attributes,
    }
    return {"vector": vector, "instance": instance, "product": product}
