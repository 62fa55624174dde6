"""detector-service: persons, faces and garment regions of one image."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, Query, Request, UploadFile

from detector_service.config import Settings
from detector_service.model import DetectorModel
from shared.contracts import DetectBatchResponse, DetectResponse, KeypointsBatchResponse
from shared.images import decode_image
from shared.logs import configure_logging
from shared.service import ColoursQuery, analyse_upload, analyse_uploads, create_pooled_app, require_ready

SERVICE = "detector-service"
KeypointsQuery = Annotated[
    bool,
    Query(description="Also find the photo's keypoints (by which the index finds the very photo again)"),
]


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    model = DetectorModel(settings)
    app = create_pooled_app(
        service=SERVICE,
        settings=settings,
        logger=configure_logging(SERVICE, settings.log_level),
        load=model.load,
        description="Finds persons (pose keypoints, person mask, face) and the garment regions they wear.",
    )

    async def model_facts() -> tuple[bool, str, dict[str, Any]]:
        """/readyz tells, once loaded, which vocabulary names the photos' keypoints (an index filled
        with another's finds no photo by them: make run ingests the catalog again), and the version
        of its models and settings (the gateway keys whole answers by it)."""
        vocabulary = model.keypoints.vocabulary
        facts = {"vocabulary": vocabulary.name if vocabulary else None, "model_version": model.version}
        return True, "ready", facts

    app.state.readiness_check = model_facts

    @app.post(
        "/detect",
        response_model=DetectResponse,
        dependencies=[Depends(require_ready)],
        summary="Persons and garment regions (normalised boxes)",
    )
    async def detect(
        request: Request,
        image: Annotated[UploadFile, File()],
        colours: ColoursQuery = True,
        keypoints: KeypointsQuery = False,
    ) -> DetectResponse:
        return await analyse_upload(
            request,
            image,
            functools.partial(model.predict, colours=colours, keypoints=keypoints),
            decode=decode_image,
            operation="detect",
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            at_least=settings.work_side,
        )

    @app.post(
        "/detect/batch",
        response_model=DetectBatchResponse,
        dependencies=[Depends(require_ready)],
        summary="/detect for several images in one request (multipart field `images`, repeated)",
    )
    async def detect_batch(
        request: Request,
        images: Annotated[list[UploadFile], File()],
        colours: ColoursQuery = True,
        keypoints: KeypointsQuery = False,
    ) -> DetectBatchResponse:
        items = await analyse_uploads(
            request,
            images,
            functools.partial(model.predict_many, colours=colours, keypoints=keypoints),
            decode=decode_image,
            operation="detect",
            max_count=settings.max_batch,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
            at_least=settings.work_side,
        )
        return DetectBatchResponse(items=items)

    @app.post(
        "/keypoints/batch",
        response_model=KeypointsBatchResponse,
        dependencies=[Depends(require_ready)],
        summary="The keypoints alone of several images (multipart field `images`, repeated): catalog photos",
    )
    async def keypoints_batch(
        request: Request, images: Annotated[list[UploadFile], File()]
    ) -> KeypointsBatchResponse:
        items = await analyse_uploads(
            request,
            images,
            lambda decoded: [model.keypoints.predict(image, catalog=True) for image in decoded],
            decode=decode_image,
            operation="keypoints",
            max_count=settings.max_batch,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
        )
        return KeypointsBatchResponse(items=items)

    return app


app = build_app()
