"""embedding-service: vectors, category, article type and colour for a batch of crops."""

from __future__ import annotations

from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile

from embedding_service.config import Settings
from embedding_service.model import EmbeddingModel
from shared.contracts import CropEmbedding, EmbedResponse
from shared.images import ImageError, decode_image
from shared.logs import configure_logging
from shared.service import InferencePool, create_pooled_app, read_upload, require_ready

SERVICE = "embedding-service"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    model = EmbeddingModel(settings)
    app = create_pooled_app(
        service=SERVICE,
        settings=settings,
        logger=configure_logging(SERVICE, settings.log_level),
        load=model.load,
        description="Embeds garment crops (batch in, batch out) and names their category and colour.",
    )

    def decode_all(blobs: list[bytes]) -> list[np.ndarray]:
        crops = []
        for index, blob in enumerate(blobs):
            try:
                crops.append(
                    decode_image(blob, max_bytes=settings.max_crop_bytes, max_pixels=settings.max_crop_pixels)
                )
            except ImageError as exc:
                raise type(exc)(f"crop {index}: {exc}") from exc
        return crops

    def decode_and_embed(blobs: list[bytes]) -> list[CropEmbedding]:
        """One pool job per request, as analyse_upload does for one image; the metric times the
        model alone."""
        crops = decode_all(blobs)
        with app.state.metrics.inference_duration.labels("embed").time():
            return model.predict(crops)

    @app.post(
        "/embed",
        response_model=EmbedResponse,
        dependencies=[Depends(require_ready)],
        summary="Embed a batch of crops (multipart field `images`, repeated)",
    )
    async def embed(request: Request, images: Annotated[list[UploadFile], File()]) -> EmbedResponse:
        if len(images) > settings.max_crops:
            raise HTTPException(413, f"{len(images)} crops in one request; the limit is {settings.max_crops}")
        blobs = [await read_upload(image, settings.max_crop_bytes) for image in images]
        pool: InferencePool = request.app.state.pool
        items = await pool.run(decode_and_embed, blobs)
        return EmbedResponse(model=model.name, dim=model.dim, items=items)

    return app


app = build_app()
