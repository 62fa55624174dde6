"""gender-service: the faces of one image and the gender of each."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, FastAPI, File, Request, UploadFile

from gender_service.config import Settings
from gender_service.model import GenderModel
from shared.contracts import GenderResponse
from shared.images import decode_image
from shared.logs import configure_logging
from shared.service import InferencePool, create_app, read_upload, require_ready

SERVICE = "gender-service"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = configure_logging(SERVICE, settings.log_level)
    model = GenderModel(settings)

    async def startup(app: FastAPI) -> None:
        app.state.pool = InferencePool(settings.inference_threads, settings.max_waiting, "gender")

    async def load(app: FastAPI) -> None:
        await app.state.pool.run(model.load)

    async def shutdown(app: FastAPI) -> None:
        app.state.pool.shutdown()

    app = create_app(
        service=SERVICE,
        title="gender-service",
        version="0.1.0",
        logger=logger,
        load=load,
        startup=startup,
        shutdown=shutdown,
        description="Finds faces (BlazeFace) and labels each Men, Women or unknown (FaceRes).",
    )

    @app.post(
        "/faces",
        response_model=GenderResponse,
        dependencies=[Depends(require_ready)],
        summary="Faces (normalised boxes) with their gender",
    )
    async def faces(request: Request, image: Annotated[UploadFile, File()]) -> GenderResponse:
        data = await read_upload(image, settings.max_upload_bytes)
        pool: InferencePool = request.app.state.pool
        pixels = await pool.run(
            decode_image, data, max_bytes=settings.max_upload_bytes, max_pixels=settings.max_pixels
        )
        with app.state.metrics.inference_duration.labels("faces").time():
            return await pool.run(model.predict, pixels)

    return app


app = build_app()
