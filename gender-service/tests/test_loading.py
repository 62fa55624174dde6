from __future__ import annotations

from pathlib import Path

from gender_service.config import Settings
from gender_service.main import build_app
from shared.testing import load_outcome, started_app


async def test_missing_models_leave_the_service_alive_but_unready(tmp_path: Path) -> None:
    app = build_app(Settings(model_dir=str(tmp_path), inference_threads=1))
    async with started_app(app) as client:
        ready = await load_outcome(client)
        assert ready.status_code == 503
        assert ready.json()["reason"].startswith("loading failed")
        assert "face_detection_full_range.tflite" in ready.json()["reason"]
        assert (await client.get("/healthz")).status_code == 200
        refused = await client.post("/faces", files={"image": ("a.jpg", b"\xff\xd8")})
        assert refused.status_code == 503 and refused.json()["error"] == "unavailable"
