"""Typed async clients for the services. One ``httpx.AsyncClient`` per downstream, made by the caller's
lifespan; every call has a timeout and turns transport failures into ``DownstreamError``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from shared.contracts import (
    CountResponse,
    DeleteRequest,
    DeleteResponse,
    DetectBatchResponse,
    DetectResponse,
    DuplicatesRequest,
    EmbedResponse,
    FacetCounts,
    HeadsResponse,
    IndexPoint,
    Keypoints,
    KeypointsBatchResponse,
    PersonsRequest,
    PersonsResponse,
    ProductPage,
    ProductPayload,
    ProductUpdate,
    RecommendRequest,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from shared.logs import request_id_var
from shared.service import REQUEST_ID_HEADER

M = TypeVar("M", bound=BaseModel)
JSON_HEADERS = {"Content-Type": "application/json"}


def _colours_params(colours: bool) -> dict[str, str]:
    """The query of a /detect or /embed call: the services name colours unless told not to."""
    return {} if colours else {"colours": "false"}


class NotFound(LookupError):
    """The downstream answered 404: what was asked for does not exist (the detail says what)."""


class DownstreamError(Exception):
    """A downstream service failed, timed out, was unreachable or refused the request."""

    def __init__(self, service: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{service}: {detail}")
        self.service = service
        self.detail = detail
        self.status = status


class ServiceClient:
    def __init__(
        self,
        name: str,
        base_url: str,
        timeout_s: float,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 32,
    ) -> None:
        self.name = name
        self.base_url = base_url.rstrip("/")
        self._client = httpx.AsyncClient(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)),
            transport=transport,
            limits=httpx.Limits(max_connections=max_connections),
        )

    async def aclose(self) -> None:
        await self._client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        request_id = request_id_var.get()
        if request_id:
            headers[REQUEST_ID_HEADER] = request_id
        try:
            response = await self._client.request(method, path, headers=headers, **kwargs)
        except httpx.TimeoutException as exc:
            raise DownstreamError(self.name, f"timed out calling {path}") from exc
        except httpx.HTTPError as exc:
            raise DownstreamError(self.name, f"unreachable ({type(exc).__name__}: {exc})") from exc
        if response.status_code >= 400 and response.status_code != 404:
            raise DownstreamError(self.name, _error_text(response), status=response.status_code)
        return response

    async def _parse(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = await self.request(method, path, **kwargs)
        if response.status_code == 404:
            raise DownstreamError(self.name, f"{path} not found", status=404)
        return await self._validated(model, path, response)

    async def _validated(self, model: type[M], path: str, response: httpx.Response) -> M:
        try:
            return model.model_validate_json(response.content)
        except ValueError as exc:
            raise DownstreamError(self.name, f"answered {path} with an unexpected body: {exc}") from exc

    async def ready(self) -> tuple[bool, str]:
        ready, reason, _ = await self.readiness()
        return ready, reason

    async def readiness(self) -> tuple[bool, str, dict[str, Any]]:
        """Whether the service is ready, why not, and what its /readyz tells besides (a service's
        model facts, e.g. the dimension of its vectors)."""
        try:
            response = await self._client.get("/readyz", timeout=2.0)
        except httpx.HTTPError as exc:
            return False, f"unreachable ({type(exc).__name__})", {}
        if response.status_code == 200:
            try:
                body = response.json()
            except ValueError:
                body = {}
            return True, "ready", body if isinstance(body, dict) else {}
        return False, _error_text(response), {}


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    if isinstance(body, dict):
        return f"HTTP {response.status_code}: {body.get('detail') or body.get('reason') or body}"
    return f"HTTP {response.status_code}: {body}"


class DetectorClient(ServiceClient):
    async def detect(self, image: bytes, colours: bool = True, keypoints: bool = False) -> DetectResponse:
        """``colours=False``: the regions come without their colour names (cheaper);
        ``keypoints=True``: with the photo's keypoints."""
        files = {"image": ("image.jpg", image, "image/jpeg")}
        params = {**_colours_params(colours), **({"keypoints": "true"} if keypoints else {})}
        return await self._parse(DetectResponse, "POST", "/detect", files=files, params=params)

    async def keypoints_many(self, images: Sequence[bytes]) -> list[Keypoints]:
        """The keypoints alone of several images, in the same order."""
        files = [("images", (f"image{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
        answer = await self._parse(KeypointsBatchResponse, "POST", "/keypoints/batch", files=files)
        if len(answer.items) != len(images):
            raise DownstreamError(self.name, f"answered {len(answer.items)} of {len(images)} images")
        return answer.items

    async def detect_many(self, images: Sequence[bytes], colours: bool = True) -> list[DetectResponse]:
        """``detect`` for several images in one request, answers in the same order."""
        files = [("images", (f"image{i}.jpg", image, "image/jpeg")) for i, image in enumerate(images)]
        answer = await self._parse(
            DetectBatchResponse, "POST", "/detect/batch", files=files, params=_colours_params(colours)
        )
        if len(answer.items) != len(images):
            raise DownstreamError(self.name, f"answered {len(answer.items)} of {len(images)} images")
        return answer.items


class GenderClient(ServiceClient):
    async def heads(self, crops: Sequence[bytes]) -> HeadsResponse:
        files = [("images", (f"head{i}.jpg", crop, "image/jpeg")) for i, crop in enumerate(crops)]
        return await self._parse(HeadsResponse, "POST", "/heads", files=files)

    async def persons(self, request: PersonsRequest) -> PersonsResponse:
        body = request.model_dump_json()
        return await self._parse(PersonsResponse, "POST", "/persons", content=body, headers=JSON_HEADERS)


class EmbeddingClient(ServiceClient):
    async def embed(
        self,
        crops: Sequence[bytes],
        colours: bool = True,
        instances: bool = True,
        products: Sequence[int] = (),
    ) -> EmbedResponse:
        """``colours=False``: the items come without their colour names (cheaper);
        ``instances=False``: without their instance vectors (cheaper); ``products``: the crops (by
        position) that show a product on its own, not worn, named by the category tail."""
        files = [("images", (f"crop{i}.jpg", crop, "image/jpeg")) for i, crop in enumerate(crops)]
        params: dict[str, str | list[int]] = {
            **_colours_params(colours),
            **({} if instances else {"instances": "false"}),
            **({"products": list(products)} if products else {}),
        }
        return await self._parse(EmbedResponse, "POST", "/embed", files=files, params=params)


class IndexClient(ServiceClient):
    async def upsert(self, points: Sequence[IndexPoint]) -> UpsertResponse:
        body = UpsertRequest(points=list(points)).model_dump_json()
        return await self._parse(UpsertResponse, "POST", "/points", content=body, headers=JSON_HEADERS)

    async def search(self, request: SearchRequest) -> SearchResponse:
        body = request.model_dump_json()
        return await self._parse(SearchResponse, "POST", "/search", content=body, headers=JSON_HEADERS)

    async def duplicates(self, request: DuplicatesRequest) -> SearchResponse:
        body = request.model_dump_json()
        return await self._parse(SearchResponse, "POST", "/duplicates", content=body, headers=JSON_HEADERS)

    async def get(self, product_id: str) -> ProductPayload | None:
        response = await self.request("GET", f"/points/{quote(product_id, safe='')}")
        if response.status_code == 404:
            return None
        return ProductPayload.model_validate_json(response.content)

    async def count(self) -> int:
        return (await self._parse(CountResponse, "GET", "/count")).count

    async def delete(self, product_ids: Sequence[str]) -> DeleteResponse:
        body = DeleteRequest(product_ids=list(product_ids)).model_dump_json()
        return await self._parse(DeleteResponse, "POST", "/points/delete", content=body, headers=JSON_HEADERS)

    async def update(self, product_id: str, changes: ProductUpdate) -> ProductPayload:
        """Raises NotFound when the product is not indexed."""
        body = changes.model_dump_json(exclude_unset=True)
        path = f"/points/{quote(product_id, safe='')}"
        return await self._parse_found(ProductPayload, "PATCH", path, content=body, headers=JSON_HEADERS)

    async def page(self, limit: int, offset: str | None = None) -> ProductPage:
        params: dict[str, str | int] = {"limit": limit, **({"offset": offset} if offset else {})}
        return await self._parse(ProductPage, "GET", "/points", params=params)

    async def recommend(self, request: RecommendRequest) -> SearchResponse:
        """Raises NotFound naming the example products that are not indexed."""
        body = request.model_dump_json()
        return await self._parse_found(
            SearchResponse, "POST", "/recommend", content=body, headers=JSON_HEADERS
        )

    async def facets(self) -> FacetCounts:
        return await self._parse(FacetCounts, "GET", "/facets")

    async def _parse_found(self, model: type[M], method: str, path: str, **kwargs: Any) -> M:
        response = await self.request(method, path, **kwargs)
        if response.status_code == 404:
            raise NotFound(_error_text(response).removeprefix("HTTP 404: "))
        return await self._validated(model, path, response)
