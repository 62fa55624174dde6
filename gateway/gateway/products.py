"""The catalog API: add products (an uploaded image with JSON metadata, or a JSONL batch naming
images in the catalog folder or at http(s) URLs), change, delete, get, list and count them. Every
route needs the API key (GATEWAY_API_KEY) in ``X-API-Key`` or ``Authorization: Bearer``.

Images that come with a product (uploads and URLs) are kept under GATEWAY_MEDIA_DIR, named by their
content hash; the payload names them ``media:<path>`` so that /catalog/images serves them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import httpx
from fastapi import (
    APIRouter,
    Depends,
    File,
    Form,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    UploadFile,
)
from fastapi.exceptions import RequestValidationError
from PIL import Image
from pydantic import ValidationError

from gateway.catalog import CatalogRow
from gateway.config import Settings
from gateway.fetch import FetchError, fetch_image
from gateway.ingest import CatalogEmbedder, to_point
from gateway.paths import MEDIA_PREFIX, inside_folder
from gateway.pipeline import Clients
from gateway.schemas import AddReport, BatchLine, ProductIn
from shared.clients import NotFound
from shared.contracts import (
    DeleteResponse,
    FacetCounts,
    ProductPage,
    ProductPayload,
    ProductUpdate,
)
from shared.images import ImageError, decode_image
from shared.service import RustJSONRoute, read_upload

MAX_BATCH_LINES = 1000
FORMAT_SUFFIX = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp", "TIFF": ".tif"}


@dataclass(frozen=True)
class Source:
    """Where a new product's image is: bytes in hand, a file in the catalog folder, or a URL."""

    data: bytes | None = None
    catalog_path: str | None = None
    url: str | None = None


def require_api_key(settings: Settings) -> Callable[..., Awaitable[None]]:
    async def check(
        x_api_key: Annotated[str | None, Header()] = None,
        authorization: Annotated[str | None, Header()] = None,
    ) -> None:
        expected = settings.api_key.get_secret_value() if settings.api_key else None
        if not expected:
            raise HTTPException(401, "the catalog API is disabled: set GATEWAY_API_KEY to enable it")
        given = x_api_key or (authorization or "").removeprefix("Bearer ").strip() or None
        if given is None or not secrets.compare_digest(given.encode(), expected.encode()):
            raise HTTPException(
                401, "a valid API key is required (X-API-Key header)", headers={"WWW-Authenticate": "Bearer"}
            )

    return check


class CatalogWriter:
    """Turns new products into index points, the way `make ingest` does."""

    def __init__(self, settings: Settings, clients: Clients, fetcher: httpx.AsyncClient) -> None:
        self.settings = settings
        self.clients = clients
        self.fetcher = fetcher

    async def add(self, products: Sequence[tuple[ProductIn, Source]]) -> AddReport:
        failed: dict[str, str] = {}
        latest = {product.product_id: (product, source) for product, source in products}
        loaded = await asyncio.gather(
            *(self._image_row(p, s) for p, s in latest.values()), return_exceptions=True
        )
        media_rows: list[CatalogRow] = []
        catalog_rows: list[CatalogRow] = []
        for (product, source), result in zip(latest.values(), loaded, strict=True):
            if isinstance(result, ImageError | FetchError | OSError | LookupError):
                failed[product.product_id] = f"{type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
            else:
                (catalog_rows if source.catalog_path else media_rows).append(result)
        indexed = await self._index(media_rows, self.settings.media_dir, True, failed)
        if catalog_rows and self.settings.catalog_dir is not None:
            indexed += await self._index(catalog_rows, self.settings.catalog_dir, False, failed)
        return AddReport(indexed=indexed, failed=failed)

    async def _image_row(self, product: ProductIn, source: Source) -> CatalogRow:
        if source.catalog_path is not None:
            relative = await asyncio.to_thread(self._catalog_file, source.catalog_path)
            on_disk = await asyncio.to_thread((self._catalog_root() / relative).read_bytes)
            await asyncio.to_thread(self._check_image, on_disk)
            return _row(product, relative)
        if source.data is not None:
            data = source.data
        else:
            assert source.url is not None
            data = await fetch_image(
                self.fetcher, source.url, self.settings.max_upload_bytes, self.settings.fetch_allow_private
            )
        suffix = await asyncio.to_thread(self._check_image, data)
        relative = await asyncio.to_thread(self._store_media, data, suffix)
        return _row(product, relative)

    def _catalog_root(self) -> Path:
        if self.settings.catalog_dir is None:
            raise LookupError("no catalog folder is configured (GATEWAY_CATALOG_DIR); send image_url instead")
        return self.settings.catalog_dir

    def _catalog_file(self, relative: str) -> str:
        if inside_folder(self._catalog_root(), relative) is None:
            raise LookupError(f"{relative!r} is not a file inside the catalog folder")
        return relative

    def _check_image(self, data: bytes) -> str:
        """Decodes with the upload limits (ImageError when it cannot); the file suffix to keep."""
        decode_image(data, max_bytes=self.settings.max_upload_bytes, max_pixels=self.settings.max_pixels)
        with Image.open(io.BytesIO(data)) as image:
            return FORMAT_SUFFIX.get(image.format or "", ".img")

    def _store_media(self, data: bytes, suffix: str) -> str:
        relative = f"products/{hashlib.sha256(data).hexdigest()[:40]}{suffix}"
        path = self.settings.media_dir / relative
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(path.suffix + ".partial")
            partial.write_bytes(data)
            partial.replace(path)
        return relative

    async def _index(
        self, rows: list[CatalogRow], root: Path, media: bool, failed: dict[str, str]
    ) -> list[str]:
        if not rows:
            return []
        embedder = CatalogEmbedder(
            root,
            self.clients.detector,
            self.clients.embedding,
            self.settings,
            keypoints=self.settings.duplicate_inliers > 0,
        )
        indexed: list[str] = []
        for start in range(0, len(rows), 32):
            embedded = await embedder.embed_rows(rows[start : start + 32], failed)
            points = [to_point(product) for product in embedded]
            for point in points:
                if media and point.product.image:
                    point.product.image = MEDIA_PREFIX + point.product.image
            if points:
                await self.clients.index.upsert(points)
                indexed += [p.product.product_id for p in points]
        return indexed


def _row(product: ProductIn, image: str) -> CatalogRow:
    """The metadata (ProductIn's fields are CatalogRow's, less the image) with where the image is."""
    return CatalogRow(image=image, **product.model_dump(include=set(ProductIn.model_fields)))


def parse_metadata(raw: str) -> ProductIn:
    try:
        return ProductIn.model_validate_json(raw)
    except ValidationError as exc:
        raise RequestValidationError(_located(exc, ("body", "metadata"))) from exc


def parse_batch(text: str) -> list[BatchLine]:
    """Every non-empty line must be a valid product; a 422 names each bad line and field."""
    lines = [(n, line) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    if not lines:
        raise HTTPException(422, "the batch is empty: send one JSON object per line")
    if len(lines) > MAX_BATCH_LINES:
        raise HTTPException(
            422, f"the batch has {len(lines)} lines; send at most {MAX_BATCH_LINES} per request"
        )
    parsed, errors = [], []
    for number, line in lines:
        try:
            parsed.append(BatchLine.model_validate_json(line))
        except ValidationError as exc:
            errors += _located(exc, ("body", f"line {number}"))
    if errors:
        raise RequestValidationError(errors)
    return parsed


def _located(exc: ValidationError, prefix: tuple[str, ...]) -> list[dict[str, object]]:
    return [
        {"loc": [*prefix, *error["loc"]], "msg": error["msg"], "type": error["type"]}
        for error in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def build_router(settings: Settings) -> APIRouter:
    router = APIRouter(
        prefix="/catalog",
        tags=["catalog"],
        dependencies=[Depends(require_api_key(settings))],
        route_class=RustJSONRoute,
    )

    def writer(request: Request) -> CatalogWriter:
        return CatalogWriter(settings, request.app.state.clients, request.app.state.fetcher)

    async def changed(request: Request) -> None:
        """Cached answers made before this write no longer count."""
        await request.app.state.answers.catalog_changed()

    @router.post(
        "/products", status_code=201, response_model=ProductPayload, summary="Add or replace a product"
    )
    async def add_product(
        request: Request,
        image: Annotated[UploadFile, File(description="The product photo")],
        metadata: Annotated[str, Form(description='JSON: {"product_id": ..., "gender": ..., ...}')],
    ) -> ProductPayload:
        product = parse_metadata(metadata)
        data = await read_upload(image, settings.max_upload_bytes)
        report = await writer(request).add([(product, Source(data=data))])
        await changed(request)
        if product.product_id in report.failed:
            raise HTTPException(400, report.failed[product.product_id])
        stored = await request.app.state.clients.index.get(product.product_id)
        if stored is None:
            raise HTTPException(503, "the index did not keep the product")
        return stored

    @router.post(
        "/products/batch",
        response_model=AddReport,
        summary="Add or replace products from JSONL: one object per line with image or image_url",
    )
    async def add_batch(request: Request) -> AddReport:
        text = (await request.body()).decode("utf-8", errors="replace")
        lines = parse_batch(text)
        sources = [
            (
                line,
                Source(catalog_path=line.image, url=line.image_url),
            )
            for line in lines
        ]
        report = await writer(request).add(sources)
        await changed(request)
        return report

    @router.get("/products", response_model=ProductPage, summary="Products a page at a time")
    async def list_products(
        request: Request,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[str | None, Query(max_length=64)] = None,
    ) -> ProductPage:
        return await request.app.state.clients.index.page(limit, offset)

    @router.get("/products/{product_id}", response_model=ProductPayload, summary="One product")
    async def get_product(request: Request, product_id: str) -> ProductPayload:
        product = await request.app.state.clients.index.get(product_id)
        if product is None:
            raise HTTPException(404, f"no product {product_id!r} in the index")
        return product

    @router.patch(
        "/products/{product_id}", response_model=ProductPayload, summary="Change a product's metadata"
    )
    async def update_product(request: Request, product_id: str, changes: ProductUpdate) -> ProductPayload:
        try:
            updated: ProductPayload = await request.app.state.clients.index.update(product_id, changes)
        except NotFound as exc:
            raise HTTPException(404, str(exc)) from exc
        await changed(request)
        return updated

    @router.delete("/products/{product_id}", status_code=204, summary="Remove a product")
    async def delete_product(request: Request, product_id: str) -> Response:
        result: DeleteResponse = await request.app.state.clients.index.delete([product_id])
        await changed(request)
        if result.missing:
            raise HTTPException(404, f"no product {product_id!r} in the index")
        return Response(status_code=204)

    @router.get("/stats", response_model=FacetCounts, summary="Products by gender, category, article type...")
    async def stats(request: Request) -> FacetCounts:
        return await request.app.state.clients.index.facets()

    return router
