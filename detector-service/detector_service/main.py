"""detector-service: persons, faces and garment regions of one image."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, File, Request, UploadFile

from detector_service.config import Settings
from detector_service.model import DetectorModel
from shared.contracts import DetectResponse
from shared.images import decode_image
from shared.logs import configure_logging
from shared.service import InferencePool, create_app, read_upload, require_ready

SERVICE = "detector-service"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = configure_logging(SERVICE, settings.log_level)
    model = DetectorModel(settings)

    async def startup(app: FastAPI) -> None:
        app.state.pool = InferencePool(settings.inference_threads, settings.max_waiting, "detector")

    async def load(app: FastAPI) -> None:
        await app.state.pool.run(model.load)

    async def shutdown(app: FastAPI) -> None:
        app.state.pool.shutdown()

    app = create_app(
        service=SERVICE,
        title="detector-service",
        version="0.1.0",
        logger=logger,
        load=load,
        startup=startup,
        shutdown=shutdown,
        description="Finds persons (pose keypoints, person mask, face) and the garment regions they wear.",
    )

    @app.post(
        "/detect",
        response_model=DetectResponse,
        dependencies=[Depends(require_ready)],
        summary="Persons and garment regions (normalised boxes)",
    )
    async def detect(request: Request, image: Annotated[UploadFile, File()]) -> DetectResponse:
        data = await read_upload(image, settings.max_upload_bytes)
        pool: InferencePool = request.app.state.pool
        pixels = await pool.run(
            decode_image, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels
        )
        with app.state.metrics.inference_duration.labels("detect").time():
            return await pool.run(model.predict, pixels)

    return app


app = build_app()
