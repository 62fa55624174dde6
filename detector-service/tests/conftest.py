from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from detector_service.config import Settings
from detector_service.main import build_app
from shared.testing import running_app

DEV = Path(__file__).resolve().parents[2].parent / "shared" / "queries" / "dev"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(Settings(inference_threads=1))) as c:
        yield c


def dev_photo(name: str) -> bytes:
    path = DEV / name
    if not path.exists():
        pytest.skip(f"dev photo {path} is not available")
    return path.read_bytes()
