"""embedding-service: vectors, category, article type and colour for a batch of crops."""

from __future__ import annotations

import functools
from typing import Annotated, Any

from fastapi import Depends, FastAPI, File, HTTPException, Query, Request, UploadFile

from embedding_service.config import Settings
from embedding_service.model import EmbeddingModel
from shared.contracts import EmbedResponse
from shared.images import decode_image
from shared.logs import configure_logging
from shared.service import ColoursQuery, analyse_uploads, create_pooled_app, require_ready

SERVICE = "embedding-service"
InstancesQuery = Annotated[
    bool,
    Query(
        description="Make each crop's instance vector (when the service has an instance projection); "
        "false skips it (a photo of persons: its worn garments are searched by their look)"
    ),
]
ProductsQuery = Annotated[
    list[int],
    Query(
        description="Positions (from 0, repeated) of the crops that show a product on its own, not "
        "worn (a product photo, a catalog image without a category): their category is named by the "
        "service's category tail, trained on such photos, when it has one; the other crops' by the "
        "classifier head"
    ),
]


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

    async def model_facts() -> tuple[bool, str, dict[str, Any]]:
        """/readyz tells, once loaded, what the vectors are (the gateway checks the index's dims)."""
        return (
            True,
            "ready",
            {
                "dim": model.dim,
                "instance_dim": model.instance_dim,
                "exact_match": model.exact_match,
                "vector_model": model.vector_model,
                "item_model": model.item_model,
                "backbone": model.backbone,
            },
        )

    app.state.readiness_check = model_facts

    @app.post(
        "/embed",
        response_model=EmbedResponse,
        dependencies=[Depends(require_ready)],
        summary="Embed a batch of crops (multipart field `images`, repeated)",
    )
    async def embed(
        request: Request,
        images: Annotated[list[UploadFile], File()],
        colours: ColoursQuery = True,
        instances: InstancesQuery = True,
        products: ProductsQuery = [],  # noqa: B006 (FastAPI copies a query default per request)
    ) -> EmbedResponse:
        outside = [i for i in products if not 0 <= i < len(images)]
        if outside:
            raise HTTPException(422, f"products names crop {outside[0]}; the request holds {len(images)}")
        items = await analyse_uploads(
            request,
            images,
            functools.partial(model.predict, colours=colours, instances=instances, products=products),
            decode=decode_image,
            operation="embed",
            max_count=settings.max_crops,
            max_bytes=settings.max_crop_bytes,
            max_pixels=settings.max_crop_pixels,
        )
        return EmbedResponse(
            model=model.name,
            vector_model=model.vector_model,
            item_model=model.item_model,
            backbone=model.backbone,
            dim=model.dim,
            instance_dim=model.instance_dim,
            exact_match=model.exact_match,
            items=items,
        )

    return app


app = build_app()
