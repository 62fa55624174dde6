"""The /recommend pipeline: decode once, detect persons and garments, have the gender service read
the face in a crop around each person's head while the garments are cropped, embed every crop in
one batch, search every item concurrently, and say which stage failed instead of failing
silently."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Protocol, TypeVar

import numpy as np

from gateway.config import Settings
from gateway.items import Candidate, ResolvedItem, gender_filter, genders_like, resolve
from shared.clients import DetectorClient, DownstreamError, GenderClient, IndexClient
from shared.contracts import (
    CATEGORY_VOTE_K,
    REGION_CATEGORIES,
    Category,
    CropEmbedding,
    DetectResponse,
    DuplicatesRequest,
    EmbedResponse,
    FaceGender,
    GenderLabel,
    Hit,
    ImageSize,
    Item,
    Person,
    PersonDetection,
    PersonEvidence,
    PersonGender,
    PersonsRequest,
    Recommendation,
    RecommendRequest,
    RecommendResponse,
    Region,
    RegionDetection,
    SearchFilter,
    SearchRequest,
    VectorSpace,
)
from shared.images import crop_normalised, decode_image, encode_jpeg, resize_max_side, to_pixel_box
from shared.logs import request_id_var
from shared.service import InferencePool
from shared.vocabulary import colour_family, colours_of_family

T = TypeVar("T")
logger = logging.getLogger("gateway")
INDEX_MODEL = "index-model"  # degraded: products found were embedded by another model than the query
# The head crop's side in face boxes: the detector's face box comes from pose keypoints, so the
# crop leaves room for the real face around it, and the face still fills much of the crop
HEAD_CROP = 2.5
GenderChoice = Literal["auto", "Men", "Women"]
ColourChoice = Literal["any", "match"]


class Unavailable(Exception):
    """A stage without which no answer can be given failed: the gateway answers 503."""

    def __init__(self, stage: str, detail: str) -> None:
        super().__init__(f"{stage}: {detail}")
        self.stage = stage
        self.detail = detail


class Embedder(Protocol):
    """What the pipeline needs of the embedding service: its client, or the client behind a cache."""

    async def embed(
        self,
        crops: Sequence[bytes],
        colours: bool = True,
        instances: bool = True,
        products: Sequence[int] = (),
    ) -> EmbedResponse: ...

    async def ready(self) -> tuple[bool, str]: ...

    async def readiness(self) -> tuple[bool, str, dict[str, Any]]: ...

    async def aclose(self) -> None: ...


@dataclass
class Clients:
    detector: DetectorClient
    gender: GenderClient
    embedding: Embedder
    index: IndexClient

    async def aclose(self) -> None:
        for client in (self.detector, self.gender, self.embedding, self.index):
            await client.aclose()


@dataclass
class Timings:
    started: float = field(default_factory=time.perf_counter)
    stages: dict[str, float] = field(default_factory=dict)

    async def measure(self, stage: str, awaitable: Awaitable[T]) -> T:
        start = time.perf_counter()
        try:
            return await awaitable
        finally:
            self.stages[stage] = round((time.perf_counter() - start) * 1000, 1)

    def total(self) -> dict[str, float]:
        return {**self.stages, "total": round((time.perf_counter() - self.started) * 1000, 1)}


@dataclass
class Query:
    data: bytes
    k: int
    gender: GenderChoice
    categories: set[Category]
    colour: ColourChoice = "any"


ImageUrl = Callable[[str], str]


@dataclass
class Analysis:
    width: int
    height: int
    persons: list[PersonDetection]
    genders: list[PersonGender]
    items: list[ResolvedItem]
    vector_model: str = ""  # the embedding service's name for what made the items' vectors
    # catalog products whose photo is the posted one's own (found by keypoints), most keypoints first
    duplicates: list[Hit] = field(default_factory=list)
    # those of them of a category no item has: each is shown as an item of its own (photo_items)
    photo_items: list[Hit] = field(default_factory=list)


class Recommender:
    def __init__(self, settings: Settings, clients: Clients, pool: InferencePool) -> None:
        self.settings = settings
        self.clients = clients
        self.pool = pool

    async def analyse(self, query: Query, timings: Timings, degraded: list[str]) -> Analysis:
        """Everything but the search: persons with their gender, and the items they wear."""
        image = await timings.measure("decode", self.pool.run(self._decode, query.data))
        scaled, analysis = await self.pool.run(for_detector, image, self.settings)
        detection = await timings.measure("detect", self._detect(analysis, degraded))
        # the catalog's photos are checked against this one's keypoints while the crops are embedded
        duplicates = asyncio.create_task(
            timings.measure("duplicates", self._duplicates(detection, query, degraded))
        )
        # a stage below that fails (503) leaves the task to finish alone: its outcome is dropped
        duplicates.add_done_callback(lambda task: task.cancelled() or task.exception())
        regions = [r for r in detection.regions if _may_hold(r, query.categories)]
        # whole-person crops ride in the same embedding batch: the gender service reads appearance
        people = detection.persons if query.gender == "auto" else []
        windows = [self._windows(r) for r in regions]
        boxes = [r.box for r in regions] + [p.box for p in people] + [w for ws in windows for w in ws]
        heads = await self.pool.run(head_crops, scaled, people)
        # the heads are read while the garments are cropped, not while they are embedded: on shared
        # cores the two models would slow each other down more than the overlap saves
        crops, faces = await asyncio.gather(
            timings.measure("crop", self.pool.run(self._crops, image, boxes)),
            timings.measure("gender", self._heads(heads, degraded)),
        )
        # the detector names a garment's colour from its mask pixels (preferred, see items._colour);
        # the embedding service is asked only where it did not
        colours = any(r.colour is None for r in regions)
        instances = instances_wanted(regions, self.settings)
        embedded, vector_model, backbone, calibrated = await timings.measure(
            "embed", self._embed(crops, colours, instances, product_crops(regions))
        )
        window_crops = iter(embedded[len(regions) + len(people) :])
        embedded_windows = [[next(window_crops) for _ in ws] for ws in windows]
        candidates = [
            Candidate(
                person=r.person,
                region=r.region,
                box=r.box,
                score=r.score,
                embedding=e,
                category=r.category,
                colour=r.colour,
                views=[w.vector for w in ws],
                instance_views=[w.instance for w in ws if w.instance is not None],
            )
            for r, e, ws in zip(regions, embedded[: len(regions)], embedded_windows, strict=True)
        ]
        person_vectors = [e.backbone or e.vector for e in embedded[len(regions) : len(regions) + len(people)]]
        genders = await timings.measure(
            "gender_fusion",
            self._genders(detection.persons, faces, (person_vectors, backbone), query.gender, degraded),
        )
        neighbours = await self._product_neighbours(candidates, query, timings, degraded)
        labels = [g.label for g in genders]
        exact_match = calibrated if self.settings.exact_match is None else self.settings.exact_match
        own_photos = await duplicates
        resolved = resolve(candidates, labels, neighbours, self.settings.vote_weight)
        items = [
            replace(i, exact_match=exact_match)
            for i in named_by_own_photo(resolved, own_photos, self.settings.duplicate_rename_inliers)
            if i.category in query.categories
        ]
        height, width = image.shape[:2]
        return Analysis(
            width=width,
            height=height,
            persons=detection.persons,
            genders=genders,
            items=items,
            vector_model=vector_model,
            duplicates=own_photos,
            photo_items=unshown_own_photos(items, own_photos, self.settings.duplicate_rename_inliers),
        )

    async def recommend(self, query: Query, image_url: ImageUrl) -> RecommendResponse:
        timings = Timings()
        degraded: list[str] = []
        found = await self.analyse(query, timings, degraded)
        labels = [g.label for g in found.genders]
        searched, like_own = await timings.measure(
            "search",
            asyncio.gather(
                self._search_all(found.items, labels, query, degraded),
                self._like_own_photos(found.photo_items, query, degraded),
            ),
        )
        searched = [
            photo_first(hits, found.duplicates, item, query.k)
            for item, hits in zip(found.items, searched, strict=True)
        ]
        own_photos = {hit.product.product_id for hit in found.duplicates}
        if made_by_other_model(searched, found.vector_model):
            degraded.append(INDEX_MODEL)
        width, height = found.width, found.height
        return RecommendResponse(
            request_id=_request_id(),
            image=ImageSize(width=width, height=height),
            persons=[
                Person(
                    box=_pixels(p.box, width, height),
                    face_box=_pixels(p.face_box, width, height) if p.face_box else None,
                    gender=g,
                    full_shot=p.full_shot,
                    view=p.view,
                )
                for p, g in zip(found.persons, found.genders, strict=True)
            ],
            items=[
                Item(
                    person=item.person,
                    category=item.category,
                    article_type=item.article_type,
                    colour=item.colour,
                    box=_pixels(item.box, width, height),
                    score=item.score,
                    recommendations=[
                        recommendation_of(hit, image_url, photo_match=hit.product.product_id in own_photos)
                        for hit in hits
                    ],
                )
                for item, hits in zip(found.items, searched, strict=True)
            ]
            + [
                photo_item(own, hits, own_photos, len(found.persons), image_url, width, height)
                for own, hits in zip(found.photo_items, like_own, strict=True)
            ],
            timings_ms=timings.total(),
            degraded=degraded,
        )

    # --- stages ------------------------------------------------------------------------------

    def _decode(self, data: bytes) -> np.ndarray:
        return decode_image(
            data, max_bytes=self.settings.max_upload_bytes, max_pixels=self.settings.max_pixels
        )

    async def _detect(self, analysis: bytes, degraded: list[str]) -> DetectResponse:
        try:
            return await self.clients.detector.detect(analysis, keypoints=self.settings.duplicate_inliers > 0)
        except DownstreamError:
            degraded.append("detector")
            # without the detector the whole photo is one item: still an answer, marked degraded
            whole = RegionDetection(person=None, region=Region.product, box=[0.0, 0.0, 1.0, 1.0], score=0.0)
            return DetectResponse(width=0, height=0, persons=[], regions=[whole])

    async def _duplicates(self, detection: DetectResponse, query: Query, degraded: list[str]) -> list[Hit]:
        """The catalog products whose photo is the posted one's own (shared/shared/keypoints.py), of
        the genders and categories the request asks for (what the photo's persons look like does
        not narrow them: the very product is the answer whatever it was taken for). None without
        keypoints; with a store that keeps none (made before them), none and a warning."""
        if detection.keypoints is None or not detection.keypoints.count:
            return []
        wanted = SearchFilter(
            genders=gender_filter(query.gender) if query.gender != "auto" else None,
            categories=sorted(query.categories),
        )
        request = DuplicatesRequest(
            keypoints=detection.keypoints,
            k=DUPLICATES_KEPT,
            filter=wanted,
            candidates=self.settings.duplicate_candidates,
            min_inliers=max(self.settings.duplicate_inliers, 3),
        )
        try:
            return (await self.clients.index.duplicates(request)).hits
        except DownstreamError as exc:
            if exc.status == 409:  # a store made before keypoints: recommendations as before
                logger.warning("index keeps no keypoints", extra={"detail": exc.detail})
            elif "index" not in degraded:
                degraded.append("index")
            return []

    async def _heads(self, heads: list[bytes | None], degraded: list[str]) -> list[FaceGender | None]:
        """Each person's face, read in the crop around their head (None without a crop)."""
        crops = [crop for crop in heads if crop is not None]
        if not crops:
            return [None] * len(heads)
        try:
            read = iter((await self.clients.gender.heads(crops)).faces)
        except DownstreamError:
            degraded.append("gender")
            return [None] * len(heads)
        return [next(read) if crop is not None else None for crop in heads]

    async def _genders(
        self,
        persons: list[PersonDetection],
        faces: list[FaceGender | None],
        appearance: tuple[list[list[float]], str],
        choice: GenderChoice,
        degraded: list[str],
    ) -> list[PersonGender]:
        """The request's gender when given, else each person's face and appearance (the vectors of
        the whole-person crops and the network that made them), fused."""
        if choice != "auto":
            return [PersonGender(label=choice, score=1.0, source="request") for _ in persons]
        if not persons:
            return []
        if "gender" in degraded:
            return [PersonGender(label="unknown", score=0.0, source="none") for _ in persons]
        vectors, backbone = appearance
        evidence = [
            PersonEvidence(
                face=faces[i] if i < len(faces) else None, vector=vectors[i] if i < len(vectors) else None
            )
            for i in range(len(persons))
        ]
        try:
            request = PersonsRequest(persons=evidence, backbone=backbone)
            return (await self.clients.gender.persons(request)).persons
        except DownstreamError:
            degraded.append("gender")
            return [PersonGender(label="unknown", score=0.0, source="none") for _ in persons]

    async def _product_neighbours(
        self, candidates: list[Candidate], query: Query, timings: Timings, degraded: list[str]
    ) -> dict[int, list[Category | None]]:
        """For each product region (no person, category not known from the detector), the categories
        of the catalog's nearest products: they vote on its category with the classifier. Without
        the index the classifier decides alone."""
        products = [i for i, c in enumerate(candidates) if c.person is None and c.category is None]
        if not products:
            return {}
        genders = gender_filter(query.gender if query.gender != "auto" else "unknown")
        found = await timings.measure(
            "vote",
            _from_index(
                [self.neighbour_categories(candidates[i].embedding.vector, genders) for i in products],
                degraded,
            ),
        )
        return {index: result for index, result in zip(products, found, strict=True) if result is not None}

    async def neighbour_categories(
        self, vector: list[float], genders: list[str] | None
    ) -> list[Category | None]:
        """Categories of the catalog's CATEGORY_VOTE_K products nearest to a crop (of these genders)."""
        request = SearchRequest(vector=vector, k=CATEGORY_VOTE_K, filter=SearchFilter(genders=genders))
        return [hit.product.category for hit in (await self.clients.index.search(request)).hits]

    def _windows(self, region: RegionDetection) -> list[list[float]]:
        """Windows of a product photo's region, searched besides the whole (see product_windows)."""
        if region.region != Region.product or not self.settings.product_windows:
            return []
        return product_windows(region.box)

    def _crops(self, image: np.ndarray, boxes: list[list[float]]) -> list[bytes]:
        return [crop_jpeg(image, box, self.settings) for box in boxes]

    async def _embed(
        self, crops: list[bytes], colours: bool, instances: bool, products: list[int]
    ) -> tuple[list[CropEmbedding], str, str, float | None]:
        """The crops' embeddings (with ``colours``, their colours named; with ``instances``, their
        instance vectors made; ``products``: those named by the category tail), the name of the
        model that made their vectors, the network whose features they hold and the exact-match
        threshold of their instance vectors."""
        if not crops:
            return [], "", "", None
        try:
            answer = await self.clients.embedding.embed(crops, colours, instances, products)
            return answer.items, answer.vector_model, answer.backbone, answer.exact_match
        except DownstreamError as exc:
            raise Unavailable("embedding", exc.detail) from exc

    async def _search_all(
        self, items: list[ResolvedItem], labels: list[GenderLabel], query: Query, degraded: list[str]
    ) -> list[list[Hit]]:
        results = await _from_index([self._search(item, labels, query) for item in items], degraded)
        return [hits if hits is not None else [] for hits in results]

    async def _like_own_photos(self, own: list[Hit], query: Query, degraded: list[str]) -> list[list[Hit]]:
        """For each product shown as an item of its own photo (photo_items): the product first, then
        products like it (the index's recommend query) of its category and of the requested gender,
        else its own shopper's."""
        if not own:
            return []
        requests = [
            RecommendRequest(
                positive=[hit.product.product_id],
                k=max(query.k - 1, 1),
                filter=SearchFilter(
                    genders=genders_like(hit.product, query.gender),
                    categories=[hit.product.category] if hit.product.category else None,
                ),
            )
            for hit in own
        ]
        found = await _from_index([self.clients.index.recommend(r) for r in requests], degraded)
        return [
            [Hit(score=1.0, product=hit.product), *(like.hits if like is not None else [])][: query.k]
            for hit, like in zip(own, found, strict=True)
        ]

    async def _search(self, item: ResolvedItem, labels: list[GenderLabel], query: Query) -> list[Hit]:
        """The item's nearest products of the person's gender and the item's category; with
        ``colour=match`` only of its colour family; else reranked towards it when configured; a
        worn garment's very product first when its instance vector finds one (exact_first)."""
        if query.gender != "auto":
            label: GenderLabel = query.gender
        elif item.person is not None:
            label = labels[item.person]
        else:
            label = "unknown"
        wanted = SearchFilter(genders=gender_filter(label), categories=[item.category])
        if query.colour == "match":
            wanted.colours = colours_of_family(item.colour)
        space, vector, views = item.query_vectors(self.settings.instance_search)
        rerank = colour_rerank_of(space, query.colour, self.settings)
        pool = rerank_pool(query.k, self.settings) if rerank else query.k
        searches = [
            self.clients.index.search(
                SearchRequest(vector=vector, views=views, k=pool, filter=wanted, space=space)
            )
        ]
        exact = exact_match_vector(item, self.settings)
        if exact is not None:
            request = SearchRequest(vector=exact, k=1, filter=wanted, space=VectorSpace.instance)
            searches.append(self.clients.index.search(request))
        found = await asyncio.gather(*searches)
        hits = found[0].hits
        if rerank:
            family = colour_family(item.colour)
            hits.sort(key=lambda h: -(h.score + rerank * (colour_family(h.product.colour) == family)))
        if exact is not None:
            hits = exact_first(hits, found[1].hits, item.exact_match)
        return hits[: query.k]


WINDOW_SIDE = 0.7  # of the region's width and height
WINDOW_CENTRES = (0.25, 0.5, 0.75)


def product_windows(box: list[float]) -> list[list[float]]:
    """A 3×3 grid of windows over a product region, each 0.7 of its sides. A product photo's box is
    often the whole photo (the product lies on a bed, a floor, clutter); the window that frames the
    product best then matches its catalog shot better than the whole does (distorted-product
    recall, make eval)."""
    x1, y1, x2, y2 = box
    width, height = (x2 - x1) * WINDOW_SIDE, (y2 - y1) * WINDOW_SIDE
    windows = []
    for cy, cx in [(y, x) for y in WINDOW_CENTRES for x in WINDOW_CENTRES]:
        left = min(max(x1 + cx * (x2 - x1) - width / 2, x1), x2 - width)
        top = min(max(y1 + cy * (y2 - y1) - height / 2, y1), y2 - height)
        windows.append([left, top, left + width, top + height])
    return windows


def product_crops(regions: Sequence[RegionDetection]) -> list[int]:
    """The regions (by position; their crops lead the embedding batch) that show a product on its
    own, worn by no one, whose category the embedding service names (``items.choose``): by its
    category tail, trained on such photos, where it has one."""
    return [i for i, r in enumerate(regions) if r.person is None and r.category is None]


def instances_wanted(regions: Sequence[RegionDetection], settings: Settings) -> bool:
    """Whether a photo's crops need their instance vectors: items worn by no one are searched by
    them (ResolvedItem.query_vectors), worn ones look for their very product by them
    (exact_first)."""
    exact = settings.exact_match is None or settings.exact_match < 1  # unset: as the service calibrated
    return settings.instance_search and (exact or any(r.person is None for r in regions))


def exact_match_vector(item: ResolvedItem, settings: Settings) -> list[float] | None:
    """The instance vector by which a worn garment (searched by its look) also looks for its very
    product (exact_first); None for an item searched by its instance vector already, one without
    an instance vector, or without an exact-match threshold below 1."""
    space, _, _ = item.query_vectors(settings.instance_search)
    threshold = item.exact_match
    return item.instance if space == VectorSpace.look and threshold is not None and threshold < 1 else None


DUPLICATES_KEPT = 5  # a photo is rarely the own photo of more products than this (several in one shot)


def named_by_own_photo(items: list[ResolvedItem], duplicates: list[Hit], inliers: int) -> list[ResolvedItem]:
    """A product photo's one item (worn by no one) takes the category and article type of the
    product whose catalog photo the posted photo is, on at least ``inliers`` agreeing keypoints,
    when no item has that category: the very photo is better evidence of what the product is than
    the classifier and the catalog's vote (make eval: 5 of 300 distorted products were found by
    their photo, on 22 to 33 keypoints, but named another category)."""
    unworn = [i for i, item in enumerate(items) if item.person is None]
    named = {item.category for item in items}
    sure = [d for d in duplicates if d.score >= inliers]
    own = next((d.product for d in sure if d.product.category is not None), None)
    category = own.category if own is not None else None
    if own is None or category is None or category in named or len(unworn) != 1:
        return items
    renamed = replace(items[unworn[0]], category=category, article_type=own.article_type)
    return [renamed if i == unworn[0] else item for i, item in enumerate(items)]


def unshown_own_photos(items: list[ResolvedItem], duplicates: list[Hit], inliers: int) -> list[Hit]:
    """The products whose catalog photo is the posted one's own, on at least ``inliers`` agreeing
    keypoints, of a category no item has (the first of each category): each is shown as an item of
    its own. A model shot's garment the detector named otherwise (a jacket taken for a top, a top
    worn long for a dress) or did not cut out is still the photo's product (make eval: 7 of 300
    distorted products found by their photo had no item of their category; 4 worn by a model)."""
    named = {item.category for item in items}
    shown: list[Hit] = []
    for hit in duplicates:
        category = hit.product.category
        if hit.score >= inliers and category is not None and category not in named:
            shown.append(hit)
            named.add(category)
    return shown


def photo_item(
    own: Hit,
    hits: list[Hit],
    own_photos: set[str],
    persons: int,
    image_url: ImageUrl,
    width: int,
    height: int,
) -> Item:
    """An item of the posted photo's own catalog photo (unshown_own_photos): the whole photo, worn by
    its one person when it shows one, the product first (``photo_match``) and then products like it."""
    product = own.product
    assert product.category is not None  # unshown_own_photos keeps products of a category only
    return Item(
        person=0 if persons == 1 else None,
        category=product.category,
        article_type=product.article_type,
        colour=product.colour or "",
        box=_pixels([0.0, 0.0, 1.0, 1.0], width, height),
        score=1.0,
        recommendations=[
            recommendation_of(hit, image_url, photo_match=hit.product.product_id in own_photos)
            for hit in hits
        ],
    )


def photo_first(hits: list[Hit], duplicates: list[Hit], item: ResolvedItem, k: int) -> list[Hit]:
    """``hits`` with the products whose catalog photo is the posted one's own (``duplicates``) of the
    item's category first, most keypoints first, scored 1; at most ``k``."""
    own = [Hit(score=1.0, product=d.product) for d in duplicates if d.product.category == item.category]
    if not own:
        return hits
    first = {h.product.product_id for h in own}
    return [*own, *(h for h in hits if h.product.product_id not in first)][:k]


def exact_first(hits: list[Hit], instance_hits: list[Hit], threshold: float | None) -> list[Hit]:
    """``hits`` with the best instance match first when its cosine reaches ``threshold`` (None:
    never): the very product a worn garment is (a store's own model shot). The look finds such
    products too but the colour rerank, reading a colour under the photo's light, can push them
    down (make eval: distorted products worn by a model found 59 of 125, 76 with this)."""
    best = instance_hits[0] if instance_hits else None
    if best is None or threshold is None or best.score < threshold:
        return hits
    others = [h for h in hits if h.product.product_id != best.product.product_id]
    return [best, *others]


def colour_rerank_of(space: VectorSpace, colour: ColourChoice, settings: Settings) -> float:
    """The colour rerank's weight for a search: the configured one for a look search that no
    colour filter narrows; none for an instance search, which looks for the very product: its
    colour is in its instance vector already, and a colour named from pixels under a photo's light
    only pushes it down (make eval, distorted products reranked at 0.2: recall@10 0.707 -> 0.627,
    recall@1 0.52 -> 0.343; consumer family P@10 0.613 -> 0.594)."""
    if space == VectorSpace.instance or colour != "any":
        return 0.0
    return settings.colour_rerank


def rerank_pool(k: int, settings: Settings) -> int:
    """How many nearest products the colour rerank reorders to return ``k``."""
    return max(k, settings.colour_rerank_pool)


def made_by_other_model(searched: list[list[Hit]], vector_model: str) -> bool:
    """Whether some products found were embedded by another model than the query (an index not
    yet re-ingested after a model change: their similarity means little). Products stored before
    the index kept the model name are not counted."""
    stored = {hit.product.embedding_model for hits in searched for hit in hits}
    stale = stored - {None, vector_model}
    if stale and vector_model:
        logger.warning(
            "index holds vectors of another embedding model: re-ingest the catalog",
            extra={"query_model": vector_model, "index_models": sorted(str(m) for m in stale)},
        )
        return True
    return False


async def _from_index(calls: list[Awaitable[T]], degraded: list[str]) -> list[T | None]:
    """The index calls run concurrently; one the index could not answer gives None and marks the
    answer degraded, any other error is raised."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    settled: list[T | None] = []
    for result in results:
        if isinstance(result, DownstreamError):
            if "index" not in degraded:
                degraded.append("index")
            settled.append(None)
        elif isinstance(result, BaseException):
            raise result
        else:
            settled.append(result)
    return settled


def for_detector(image: np.ndarray, settings: Settings) -> tuple[np.ndarray, bytes]:
    """The photo as the detector sees it (at most ``analysis_side`` pixels on its longer side), and
    the JPEG of it that the detector is sent."""
    scaled = resize_max_side(image, settings.analysis_side)
    return scaled, encode_jpeg(scaled, quality=90)


def crop_jpeg(image: np.ndarray, box: list[float], settings: Settings) -> bytes:
    """What the embedding service is sent for a box: cut from the photo, at most ``crop_side``
    pixels on its longer side."""
    return encode_jpeg(resize_max_side(crop_normalised(image, box), settings.crop_side), quality=90)


def analysis_copy(image: np.ndarray, settings: Settings) -> bytes:
    """What the detector is sent (see ``for_detector``)."""
    return for_detector(image, settings)[1]


def head_crops(scaled: np.ndarray, persons: list[PersonDetection]) -> list[bytes | None]:
    """A JPEG of the square around each person's head, cut from the photo as the detector saw it
    (``for_detector``: the gender service's size limits are in its pixels); None for a person whose
    face the detector did not place."""
    height, width = scaled.shape[:2]
    return [
        encode_jpeg(crop_normalised(scaled, head_box(p.face_box, width, height)), quality=90)
        if p.face_box is not None
        else None
        for p in persons
    ]


def head_box(face_box: list[float], width: int, height: int) -> list[float]:
    """A square around a face box (normalised), ``HEAD_CROP`` times its longer side, clipped to the
    photo (a face cut by the frame stays cut, so the gender service can tell), normalised."""
    x1, y1, x2, y2 = face_box[0] * width, face_box[1] * height, face_box[2] * width, face_box[3] * height
    half = max(x2 - x1, y2 - y1) * HEAD_CROP / 2
    centre_x, centre_y = (x1 + x2) / 2, (y1 + y2) / 2
    return [
        max(0.0, (centre_x - half) / width),
        max(0.0, (centre_y - half) / height),
        min(1.0, (centre_x + half) / width),
        min(1.0, (centre_y + half) / height),
    ]


def _may_hold(region: RegionDetection, wanted: set[Category]) -> bool:
    """Whether a region can turn out to be one of the wanted categories (worth embedding)."""
    if region.category is not None:
        return region.category in wanted
    return bool(set(REGION_CATEGORIES[region.region]) & wanted)


def _pixels(box: list[float], width: int, height: int) -> list[float]:
    return [float(v) for v in to_pixel_box(box, width, height)]


def recommendation_of(hit: Hit, image_url: ImageUrl, photo_match: bool = False) -> Recommendation:
    product = hit.product
    return Recommendation(
        product_id=product.product_id,
        score=round(hit.score, 4),
        photo_match=photo_match,
        name=product.name,
        image_url=image_url(product.product_id),
        gender=product.gender,
        category=product.category,
        article_type=product.article_type,
        colour=product.colour,
    )


def _request_id() -> str:
    return request_id_var.get() or uuid.uuid4().hex
