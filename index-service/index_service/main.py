"""index-service: stores product embeddings and answers filtered nearest-neighbour searches."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

from index_service.config import Settings
from index_service.model import (
    IndexUnavailable,
    InvalidInput,
    NoKeypoints,
    ReadOnly,
    UnknownProducts,
    VectorIndex,
)
from index_service.server import ServerIndex
from shared.contracts import (
    CountResponse,
    DeleteRequest,
    DeleteResponse,
    DuplicatesRequest,
    FacetCounts,
    OptimizeResponse,
    ProductPage,
    ProductPayload,
    ProductUpdate,
    RecommendRequest,
    SearchRequest,
    SearchResponse,
    SnapshotInfo,
    UpsertRequest,
    UpsertResponse,
)
from shared.logs import configure_logging
from shared.service import InferencePool, create_pooled_app, error_response, require_ready

SERVICE = "index-service"


def build_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = configure_logging(SERVICE, settings.log_level)
    index: VectorIndex | ServerIndex = ServerIndex(settings) if settings.qdrant_url else VectorIndex(settings)

    def open_index() -> None:
        index.load()
        logger.info(
            "index open",
            extra={
                "store": settings.qdrant_url or str(settings.path.resolve()),
                "dim": settings.vector_dim,
                "instance_dim": settings.instance_dim,
                "points": index.count(),
            },
        )

    # close waits (on the index lock) for a call or a load still running
    app = create_pooled_app(
        service=SERVICE,
        settings=settings,
        logger=logger,
        load=open_index,
        close=index.close,
        keep_freed_buffers=False,  # its memory is the catalog's; no photos pass through it
        description="Product embeddings with their catalog attributes; filtered nearest-neighbour search.",
    )
    _add_index_error_handlers(app)

    async def store_facts() -> tuple[bool, str, dict[str, Any]]:
        """/readyz tells the dimensions of the stored vectors and instance vectors (0: none stored),
        which the gateway checks the embeddings' against, and whether photos' keypoints are kept."""
        facts = {
            "dim": settings.vector_dim,
            "instance_dim": settings.instance_dim,
            "keypoints": index.keypoints,
        }
        return True, "ready", facts

    app.state.readiness_check = store_facts

    @app.post(
        "/points",
        response_model=UpsertResponse,
        dependencies=[Depends(require_ready)],
        summary="Insert or replace products (one point per product_id; flushed to disk before answering)",
    )
    async def upsert(request: Request, body: UpsertRequest) -> UpsertResponse:
        pool: InferencePool = request.app.state.pool
        with app.state.metrics.inference_duration.labels("upsert").time():
            upserted = await pool.run(index.upsert, body.points)
        return UpsertResponse(upserted=upserted)

    @app.post(
        "/search",
        response_model=SearchResponse,
        dependencies=[Depends(require_ready)],
        summary="Nearest products by cosine similarity among those the filter allows, best first",
    )
    async def search(request: Request, body: SearchRequest) -> SearchResponse:
        pool: InferencePool = request.app.state.pool
        with app.state.metrics.inference_duration.labels("search").time():
            hits = await pool.run(index.search, body)
        return SearchResponse(hits=hits)

    @app.post(
        "/duplicates",
        response_model=SearchResponse,
        dependencies=[Depends(require_ready)],
        summary="Products whose catalog photo is the query photo's own (cropped, turned, lit or compressed "
        "differently), found by keypoints; score: keypoints that agree, most first",
    )
    async def duplicates(request: Request, body: DuplicatesRequest) -> SearchResponse:
        pool: InferencePool = request.app.state.pool
        with app.state.metrics.inference_duration.labels("duplicates").time():
            hits = await pool.run(index.duplicates, body)
        return SearchResponse(hits=hits)

    @app.get(
        "/points/{product_id:path}",
        response_model=ProductPayload,
        dependencies=[Depends(require_ready)],
        summary="The stored attributes of one product (404 when it is not indexed)",
    )
    async def get_point(request: Request, product_id: str) -> ProductPayload:
        pool: InferencePool = request.app.state.pool
        product = await pool.run(index.get, product_id)
        if product is None:
            raise HTTPException(status_code=404, detail=f"product {product_id!r} is not in the index")
        return product

    @app.get(
        "/count",
        response_model=CountResponse,
        dependencies=[Depends(require_ready)],
        summary="Number of indexed products",
    )
    async def count(request: Request) -> CountResponse:
        pool: InferencePool = request.app.state.pool
        return CountResponse(count=await pool.run(index.count))

    @app.post(
        "/points/delete",
        response_model=DeleteResponse,
        dependencies=[Depends(require_ready)],
        summary="Remove products by id (flushed to disk before answering); unknown ids are listed",
    )
    async def delete(request: Request, body: DeleteRequest) -> DeleteResponse:
        pool: InferencePool = request.app.state.pool
        deleted, missing = await pool.run(index.delete, body.product_ids)
        return DeleteResponse(deleted=deleted, missing=missing)

    @app.patch(
        "/points/{product_id:path}",
        response_model=ProductPayload,
        dependencies=[Depends(require_ready)],
        summary="Change some attributes of a product, keeping its vectors (404 when it is not indexed)",
    )
    async def update(request: Request, product_id: str, body: ProductUpdate) -> ProductPayload:
        pool: InferencePool = request.app.state.pool
        return await pool.run(index.update, product_id, body)

    @app.get(
        "/points",
        response_model=ProductPage,
        dependencies=[Depends(require_ready)],
        summary="Products a page at a time, in a stable order; pass next_offset back as offset",
    )
    async def page(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[str | None, Query(max_length=64)] = None,
    ) -> ProductPage:
        pool: InferencePool = request.app.state.pool
        return await pool.run(index.page, limit, offset)

    @app.post(
        "/recommend",
        response_model=SearchResponse,
        dependencies=[Depends(require_ready)],
        summary="More like the positive products, less like the negative ones (examples excluded)",
    )
    async def recommend(request: Request, body: RecommendRequest) -> SearchResponse:
        pool: InferencePool = request.app.state.pool
        with app.state.metrics.inference_duration.labels("recommend").time():
            hits = await pool.run(index.recommend, body)
        return SearchResponse(hits=hits)

    @app.get(
        "/facets",
        response_model=FacetCounts,
        dependencies=[Depends(require_ready)],
        summary="Products per gender, category, article type, usage and colour",
    )
    async def facets(request: Request) -> FacetCounts:
        pool: InferencePool = request.app.state.pool
        return await pool.run(index.facets)

    @app.post(
        "/optimize",
        response_model=OptimizeResponse,
        dependencies=[Depends(require_ready)],
        summary="Build the HNSW graphs for what was written since (after an ingestion); blocks meanwhile. "
        "Answers the vectors in them, look and instance vectors together",
    )
    async def optimize(request: Request) -> OptimizeResponse:
        pool: InferencePool = request.app.state.pool
        return OptimizeResponse(indexed_vectors=await pool.run(index.optimize))

    @app.post(
        "/snapshot",
        response_model=SnapshotInfo,
        dependencies=[Depends(require_ready)],
        summary="A consistent copy of the store, for read-only replicas and backups",
    )
    async def snapshot(request: Request) -> SnapshotInfo:
        pool: InferencePool = request.app.state.pool
        return await pool.run(index.snapshot)

    return app


def _add_index_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(InvalidInput)
    async def on_invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return error_response(422, "validation_error", str(exc))

    @app.exception_handler(ReadOnly)
    async def on_read_only(_: Request, exc: ReadOnly) -> JSONResponse:
        return error_response(403, "read_only", str(exc))

    @app.exception_handler(NoKeypoints)
    async def on_no_keypoints(_: Request, exc: NoKeypoints) -> JSONResponse:
        return error_response(409, "no_keypoints", str(exc))

    @app.exception_handler(UnknownProducts)
    async def on_unknown(_: Request, exc: UnknownProducts) -> JSONResponse:
        return error_response(404, "not_found", str(exc))

    @app.exception_handler(IndexUnavailable)
    async def on_unavailable(_: Request, exc: IndexUnavailable) -> JSONResponse:
        response = error_response(503, "unavailable", str(exc))
        response.headers["Retry-After"] = "1"
        return response


app = build_app()
