"""More like this: products near some catalog products (and away from others), through the index's
recommend query, with the gender and category of the first liked product unless the caller says."""

from __future__ import annotations

import time

from gateway.items import genders_like
from gateway.pipeline import ImageUrl, recommendation_of
from shared.clients import IndexClient, NotFound
from shared.contracts import (
    Category,
    ProductPayload,
    RecommendRequest,
    SearchFilter,
    SimilarRequest,
    SimilarResponse,
)


async def find_similar(
    index: IndexClient, body: SimilarRequest, categories: set[Category] | None, image_url: ImageUrl
) -> SimilarResponse:
    """Raises NotFound when an example product is not in the index."""
    started = time.perf_counter()
    first = await index.get(body.positive[0])
    if first is None:
        raise NotFound(f"not in the index: {body.positive[0]!r}")
    wanted = SearchFilter(genders=genders_like(first, body.gender), categories=_categories(categories, first))
    request = RecommendRequest(positive=body.positive, negative=body.negative, k=body.k, filter=wanted)
    hits = (await index.recommend(request)).hits
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    return SimilarResponse(
        recommendations=[recommendation_of(hit, image_url) for hit in hits],
        timings_ms={"recommend": elapsed, "total": elapsed},
    )


def _categories(categories: set[Category] | None, first: ProductPayload) -> list[Category] | None:
    if categories is not None:
        return sorted(categories)
    return [first.category] if first.category else None
