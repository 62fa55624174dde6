from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gender_service.config import Settings
from gender_service.main import build_app
from gender_service.tflite import FACE_DETECTOR_FILE, HEAD_DETECTOR_FILE
from shared.testing import running_app

REPO = Path(__file__).resolve().parents[2]
MODEL_DIR = REPO / "models" / "gender"
DEV = REPO.parent / "shared" / "queries" / "dev"


@pytest.fixture(scope="session")
def settings() -> Settings:
    if not all(
        (MODEL_DIR / name).exists() for name in ("faceres.tflite", FACE_DETECTOR_FILE, HEAD_DETECTOR_FILE)
    ):
        pytest.skip(f"face models are not in {MODEL_DIR} (run: make models)")
    return Settings(model_dir=str(MODEL_DIR), inference_threads=1)


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(settings)) as c:
        yield c


def dev_photo(name: str) -> bytes:
    path = DEV / name
    if not path.exists():
        pytest.skip(f"dev photo {path} is not available")
    return path.read_bytes()
