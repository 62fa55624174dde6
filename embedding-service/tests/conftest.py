from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from embedding_service.config import Settings
from embedding_service.main import build_app
from shared.testing import running_app

ROOT = Path(__file__).resolve().parents[2]
BACKBONE = ROOT / "models" / "embedding" / "efficientnet_lite0.onnx"
CATALOG = ROOT.parent / "shared" / "catalog" / "myntra"
TAIL = ROOT / "embedding-service" / "embedding_service" / "assets" / "backbone-tail.npz"


@pytest.fixture
async def client() -> AsyncIterator[httpx.AsyncClient]:
    if not BACKBONE.exists():
        pytest.skip("the ONNX backbone is not built (make models)")
    async with running_app(build_app(Settings(backbone_path=BACKBONE, max_crops=8))) as c:
        yield c
