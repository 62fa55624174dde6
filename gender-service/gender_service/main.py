"""gender-service: the faces of one image and the gender of each."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Request, UploadFile

from gender_service.config import Settings
from gender_service.model import GenderModel
from shared.contracts import GenderResponse, HeadsResponse, PersonsRequest, PersonsResponse
from shared.images import decode_picture
from shared.logs import configure_logging
from shared.service import analyse_upload, analyse_uploads, create_pooled_app, require_ready

SERVICE = "gender-service"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    model = GenderModel(settings)
    app = create_pooled_app(
        service=SERVICE,
        settings=settings,
        logger=configure_logging(SERVICE, settings.log_level),
        load=model.load,
        description="Finds faces (BlazeFace) in a photo or in crops around heads, and labels each Men, "
        "Women or unknown (FaceRes); fuses that with each person's appearance.",
    )

    async def model_facts() -> tuple[bool, str, dict[str, Any]]:
        """/readyz tells, once loaded, the version of its models and settings (the gateway keys
        whole answers by it)."""
        return True, "ready", {"model_version": model.version}

    app.state.readiness_check = model_facts

    @app.post(
        "/faces",
        response_model=GenderResponse,
        dependencies=[Depends(require_ready)],
        summary="Faces (normalised boxes) with their gender",
    )
    async def faces(request: Request, image: Annotated[UploadFile, File()]) -> GenderResponse:
        return await analyse_upload(
            request,
            image,
            model.predict,
            decode=decode_picture,
            operation="faces",
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
        )

    @app.post(
        "/heads",
        response_model=HeadsResponse,
        dependencies=[Depends(require_ready)],
        summary="The face in each crop around one person's head (multipart field `images`, repeated)",
    )
    async def heads(request: Request, images: Annotated[list[UploadFile], File()]) -> HeadsResponse:
        return await analyse_uploads(
            request,
            images,
            model.heads,
            decode=decode_picture,
            operation="heads",
            max_count=settings.max_heads,
            max_bytes=settings.max_upload_bytes,
            max_pixels=settings.max_pixels,
        )

    @app.post(
        "/persons",
        response_model=PersonsResponse,
        dependencies=[Depends(require_ready)],
        summary="Each person's gender from their face and their appearance, calibrated and fused",
    )
    async def persons(request: Request, body: PersonsRequest) -> PersonsResponse:
        with app.state.metrics.inference_duration.labels("persons").time():
            try:
                return await request.app.state.pool.run(model.persons, body)  # type: ignore[no-any-return]
            except ValueError as exc:
                raise HTTPException(422, str(exc)) from exc

    return app


app = build_app()
