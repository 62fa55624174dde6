"""gateway: POST /recommend, catalog images, the storefront page at /, OpenAPI docs at /docs."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from typing import Annotated, Any

import httpx
from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse

from gateway.cache import AnswerCache, CachedEmbeddings, ModelVersions, build_cache
from gateway.config import Settings
from gateway.paths import image_path
from gateway.pipeline import Clients, ColourChoice, GenderChoice, Recommender, Unavailable
from gateway.pipeline import Query as RecommendQuery
from gateway.products import build_router
from gateway.similar import find_similar
from gateway.storefront import add_cors, add_storefront
from shared.clients import (
    DetectorClient,
    DownstreamError,
    EmbeddingClient,
    GenderClient,
    IndexClient,
    NotFound,
)
from shared.contracts import (
    CATEGORIES,
    Category,
    ErrorBody,
    RecommendResponse,
    SimilarRequest,
    SimilarResponse,
)
from shared.logs import configure_logging
from shared.service import InferencePool, create_app, error_response, read_upload

SERVICE = "gateway"
ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Not an image, or a corrupt one"},
    413: {"model": ErrorBody, "description": "Over 20 MB or 40 megapixels"},
    422: {"model": ErrorBody, "description": "A missing field or a bad parameter"},
    503: {"model": ErrorBody, "description": "A service the answer needs is down"},
}


def make_clients(settings: Settings) -> Clients:
    return Clients(
        detector=DetectorClient("detector", settings.detector_url, settings.detector_timeout_s),
        gender=GenderClient("gender", settings.gender_url, settings.gender_timeout_s),
        embedding=EmbeddingClient("embedding", settings.embedding_url, settings.embedding_timeout_s),
        index=IndexClient("index", settings.index_url, settings.index_timeout_s),
    )


def parse_categories(raw: str | None) -> set[Category]:
    if raw is None or not raw.strip():
        return set(CATEGORIES)
    names = [name.strip().lower() for name in raw.split(",") if name.strip()]
    unknown = [n for n in names if n not in Category.__members__]
    if unknown:
        allowed = ", ".join(c.value for c in CATEGORIES)
        raise HTTPException(422, f"unknown categories {unknown}; use a comma list of: {allowed}")
    return {Category(n) for n in names}


def build_app(settings: Settings | None = None, clients: Clients | None = None) -> FastAPI:
    settings = settings or Settings()
    logger = configure_logging(SERVICE, settings.log_level)

    async def startup(app: FastAPI) -> None:
        app.state.pool = InferencePool(settings.inference_threads, settings.max_waiting, "gateway")
        app.state.cache = build_cache(settings, app.state.metrics.registry, logger)
        plain = clients or make_clients(settings)
        cached = CachedEmbeddings(plain.embedding, app.state.cache, settings.embedding_cache_ttl_s)
        app.state.clients = dataclasses.replace(plain, embedding=cached)
        app.state.versions = ModelVersions(app.state.clients, settings.versions_poll_s, logger)
        # before the first answer, so that replicas starting together key their answers alike
        await app.state.versions.refresh()
        app.state.versions_poller = asyncio.create_task(app.state.versions.keep_polling())
        app.state.answers = AnswerCache(app.state.cache, settings, app.state.versions)
        app.state.recommender = Recommender(settings, app.state.clients, app.state.pool)
        app.state.readiness_check = lambda: _readiness(app.state.clients, app.state.versions)
        app.state.fetcher = httpx.AsyncClient(timeout=settings.fetch_timeout_s)

    async def shutdown(app: FastAPI) -> None:
        app.state.versions_poller.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await app.state.versions_poller
        await app.state.clients.aclose()
        await app.state.fetcher.aclose()
        await app.state.cache.aclose()
        app.state.pool.shutdown()

    app = create_app(
        service=SERVICE,
        title="Shop The Look",
        version="0.1.0",
        logger=logger,
        startup=startup,
        shutdown=shutdown,
        description=(
            "Post a photo of a person (or of one product) to /recommend: every item worn is detected, "
            "classified and matched with similar catalog products of the person's gender and the item's "
            "category."
        ),
    )
    add_cors(app, settings.cors_origins)
    add_storefront(app)

    @app.exception_handler(DownstreamError)
    async def on_downstream_error(_: Request, exc: DownstreamError) -> Any:
        return error_response(503, "unavailable", f"{exc.service} service failed: {exc.detail}")

    app.include_router(build_router(settings))

    @app.post(
        "/recommend",
        response_model=RecommendResponse,
        responses=ERRORS,
        summary="Detect the items worn in a photo and recommend similar products for each",
    )
    async def recommend(
        request: Request,
        image: Annotated[UploadFile, File(description="A JPEG, PNG or WebP photo, at most 20 MB")],
        k: Annotated[int, Query(ge=1, le=50, description="Recommendations per item")] = settings.default_k,
        gender: Annotated[GenderChoice, Query(description="auto: read it from the face")] = "auto",
        categories: Annotated[
            str | None, Query(description="Comma list of categories to return; default all")
        ] = None,
        colour: Annotated[
            ColourChoice, Query(description="match: only products of the item's colour family")
        ] = "any",
    ) -> Any:
        wanted = parse_categories(categories)
        data = await read_upload(image, settings.max_upload_bytes)
        query = RecommendQuery(data=data, k=k, gender=gender, categories=wanted, colour=colour)

        def image_url(product_id: str) -> str:
            return str(request.url_for("catalog_image", product_id=product_id))

        no_cache = "no-cache" in request.headers.get("cache-control", "").lower()
        try:
            return await request.app.state.answers.recommend(
                query, image_url, request.app.state.recommender.recommend, no_cache
            )
        except Unavailable as exc:
            return error_response(503, "unavailable", f"{exc.stage} service failed: {exc.detail}")

    @app.post(
        "/similar",
        response_model=SimilarResponse,
        responses={404: {"model": ErrorBody}, 422: ERRORS[422], 503: ERRORS[503]},
        summary="More like these products (and less like those): the storefront's 'more like this'",
    )
    async def similar(request: Request, body: SimilarRequest) -> Any:
        categories = parse_categories(body.categories) if body.categories else None

        def image_url(product_id: str) -> str:
            return str(request.url_for("catalog_image", product_id=product_id))

        try:
            return await find_similar(request.app.state.clients.index, body, categories, image_url)
        except NotFound as exc:
            return error_response(404, "not_found", str(exc))
        except DownstreamError as exc:
            return error_response(503, "unavailable", f"index service failed: {exc.detail}")

    @app.get(
        "/catalog/images/{product_id}",
        name="catalog_image",
        responses={404: {"model": ErrorBody}},
        summary="A catalog product's image",
    )
    async def catalog_image(request: Request, product_id: str) -> FileResponse:
        try:
            product = await request.app.state.clients.index.get(product_id)
        except DownstreamError as exc:
            raise HTTPException(503, f"index service failed: {exc.detail}") from exc
        if product is None or not product.image:
            raise HTTPException(404, f"no product {product_id!r} in the index")
        path = image_path(settings, product.image)
        if path is None:
            raise HTTPException(404, f"the image of product {product_id!r} is not in the catalog folder")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    return app


async def _readiness(clients: Clients, versions: ModelVersions) -> tuple[bool, str, dict[str, Any]]:
    """The downstream services' readiness, and what whole answers are now keyed by (the models'
    versions and the product count, as last told)."""
    ready, reason, details = await _downstream_readiness(clients)
    return ready, reason, {**details, "answers_keyed_by": dict(versions.known)}


async def _downstream_readiness(clients: Clients) -> tuple[bool, str, dict[str, Any]]:
    """Ready when the services an answer cannot do without are, and their vectors have the same
    dimension; the other services only degrade an answer."""
    names = ("detector", "gender", "embedding", "index")
    checks = await asyncio.gather(*(getattr(clients, n).readiness() for n in names))
    services = {n: {"ready": ok, "reason": reason} for n, (ok, reason, _) in zip(names, checks, strict=True)}
    facts = {n: details for n, (_, _, details) in zip(names, checks, strict=True)}
    if not (services["embedding"]["ready"] and services["index"]["ready"]):
        return False, "embedding or index service not ready", {"services": services}
    reason = mismatched_vectors(facts["embedding"], facts["index"])
    if reason:
        return False, reason, {"services": services}
    return True, "ready", {"services": services}


def mismatched_vectors(embedding: dict[str, Any], index: dict[str, Any]) -> str | None:
    """Why the index cannot hold what the embedding service makes (look vectors of another size,
    instance vectors it has no room for or of another size), or None."""
    made, stored = embedding.get("dim"), index.get("dim")
    if made is not None and stored is not None and made != stored:
        return (
            f"the embedding service makes {made}-dimensional vectors but the index stores {stored}: "
            f"set INDEX_VECTOR_DIM={made} on a new store and ingest the catalog again"
        )
    if "instance_dim" not in embedding or "instance_dim" not in index:
        return None  # a service from before instance vectors
    made, stored = embedding["instance_dim"] or 0, index["instance_dim"] or 0
    if made and made != stored:
        return (
            f"the embedding service makes {made}-dimensional instance vectors but the index stores "
            f"{stored or 'none'}: set INDEX_INSTANCE_DIM={made} on a new store and ingest the catalog "
            "again (or EMBEDDING_INSTANCE_PROJECTION=none)"
        )
    return None


app = build_app()
