"""In-process gateway tests: the four downstream services are small ASGI stand-ins that speak the
shared contracts (the real services are exercised by the end-to-end tests in tests/)."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import httpx
import numpy as np
import pytest
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from PIL import Image

from gateway.config import Settings
from gateway.main import build_app
from gateway.pipeline import Clients
from shared.clients import DetectorClient, EmbeddingClient, GenderClient, IndexClient
from shared.contracts import (
    ArticleTypeScore,
    Category,
    CountResponse,
    CropEmbedding,
    DetectBatchResponse,
    DetectResponse,
    DuplicatesRequest,
    EmbedResponse,
    FaceGender,
    HeadsResponse,
    Hit,
    IndexPoint,
    Keypoints,
    KeypointsBatchResponse,
    PersonDetection,
    PersonGender,
    PersonsRequest,
    PersonsResponse,
    ProductPayload,
    RecommendRequest,
    Region,
    RegionDetection,
    SearchFilter,
    SearchRequest,
    SearchResponse,
    UpsertRequest,
    UpsertResponse,
)
from shared.keypoints import pack
from shared.testing import running_app

PRODUCTS = [
    ProductPayload(
        product_id="t1", gender="Women", category=Category.topwear, article_type="Tops", image="t1.jpg"
    ),
    ProductPayload(product_id="t2", gender="Men", category=Category.topwear, article_type="Tshirts"),
    ProductPayload(product_id="b1", gender="Unisex", category=Category.bottomwear, article_type="Jeans"),
    ProductPayload(product_id="d1", gender="Women", category=Category.dress, article_type="Dresses"),
    ProductPayload(product_id="f1", gender="Women", category=Category.footwear, article_type="Heels"),
]


@dataclass
class Downstream:
    """Knobs the tests turn: which services fail, and what the classifier says per region."""

    failing: set[str] = field(default_factory=set)
    gender: str = "Women"
    upper_category: Category = Category.topwear
    searches: list[SearchRequest] = field(default_factory=list)
    recommends: list[RecommendRequest] = field(default_factory=list)
    upserted: dict[str, IndexPoint] = field(default_factory=dict)
    extra_regions: list[RegionDetection] = field(default_factory=list)
    person_vectors: list[list[float] | None] = field(default_factory=list)
    person_vectors_backbone: str = ""  # the network the gateway said the person vectors are of
    detected: list[int] = field(default_factory=list)  # images per /detect or /detect/batch call
    embedded: list[int] = field(default_factory=list)  # crops per /embed call
    embed_colours: list[bool] = field(default_factory=list)  # whether each /embed call asked colours
    embed_instances: list[bool] = field(default_factory=list)  # whether it asked instance vectors
    embed_products: list[list[int]] = field(default_factory=list)  # the crops it said were products
    region_colour: str | None = None  # what the detector stand-in names its person regions' colour
    heads: list[int] = field(default_factory=list)  # head crops per /heads call
    vector_model: str = "stand-in@0"  # what the embedding stand-in says made its vectors
    head: str = "head@0"  # and its categories (its item_model is both)
    detector_version: str = "detector@0"  # the model_version the detector stand-in's /readyz tells
    gender_version: str = "gender@0"  # and the gender stand-in's
    index_dim: int = 8  # what the index stand-in says it stores (the embedding stand-in makes 8)
    instance_dim: int | None = None  # the embedding stand-in makes instance vectors of this size
    exact_match: float | None = 0.8  # and gives this calibration of them (when it makes them)
    index_instance_dim: int = 0  # what the index stand-in says it stores of them
    keypoints_asked: list[int] = field(default_factory=list)  # photos per call that asked keypoints
    own_photos: list[str] = field(default_factory=list)  # products /duplicates finds, in this order
    duplicate_requests: list[DuplicatesRequest] = field(default_factory=list)
    duplicates_status: int | None = None  # /duplicates answers this error instead (409: no keypoints)

    def item_model(self) -> str:
        return f"{self.vector_model}+{self.head}"

    def version_facts(self, service: str, fact: str, version: str) -> dict[str, object]:
        """What the service's /readyz tells of its models; it answers 500 while ``<service>
        readyz`` is failing."""
        self.check(f"{service} readyz")
        return {fact: version}

    def check(self, name: str) -> None:
        if name in self.failing:
            raise HTTPException(500, f"{name} is broken")


def jpeg(width: int = 300, height: int = 400, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), colour, np.uint8)).save(buffer, format="JPEG")
    return buffer.getvalue()


def ready_app(live: Callable[[], dict[str, object]] = dict, **facts: object) -> FastAPI:
    """A stand-in service, ready; its /readyz also tells ``facts`` (as the real ones tell their dim)
    and what ``live`` gives when asked (facts a test changes, as a model version)."""
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, object]:
        return {"ready": True, **facts, **live()}

    return app


def detector_app(state: Downstream) -> FastAPI:
    app = ready_app(lambda: state.version_facts("detector", "model_version", state.detector_version))

    @app.post("/detect")
    async def detect(
        image: Annotated[UploadFile, File()], keypoints: Annotated[bool, Query()] = False
    ) -> DetectResponse:
        state.check("detector")
        state.detected.append(1)
        found = detection(await image.read())
        if keypoints:
            state.keypoints_asked.append(1)
            found.keypoints = photo_keypoints()
        return found

    @app.post("/detect/batch")
    async def detect_batch(images: Annotated[list[UploadFile], File()]) -> DetectBatchResponse:
        state.check("detector")
        state.detected.append(len(images))
        return DetectBatchResponse(items=[detection(await image.read()) for image in images])

    @app.post("/keypoints/batch")
    async def keypoints_batch(images: Annotated[list[UploadFile], File()]) -> KeypointsBatchResponse:
        state.check("detector")
        state.keypoints_asked.append(len(images))
        return KeypointsBatchResponse(items=[photo_keypoints() for _ in images])

    def detection(data: bytes) -> DetectResponse:
        size = Image.open(io.BytesIO(data)).size
        person = PersonDetection(
            box=[0.2, 0.0, 0.8, 1.0],
            face_box=[0.4, 0.02, 0.6, 0.15],
            score=0.9,
            full_shot=True,
            view="front",
            keypoints_visible=33,
        )
        regions = [
            RegionDetection(person=0, region=Region.upper_body, box=[0.25, 0.15, 0.75, 0.5], score=0.9),
            RegionDetection(person=0, region=Region.lower_body, box=[0.3, 0.45, 0.7, 0.85], score=0.9),
            RegionDetection(person=0, region=Region.full, box=[0.25, 0.15, 0.75, 0.85], score=0.9),
            RegionDetection(person=0, region=Region.feet, box=[0.3, 0.85, 0.7, 1.0], score=0.8),
        ]
        for region in regions:
            region.colour = state.region_colour
        regions += state.extra_regions
        return DetectResponse(width=size[0], height=size[1], persons=[person], regions=regions)

    return app


def gender_app(state: Downstream) -> FastAPI:
    app = ready_app(lambda: state.version_facts("gender", "model_version", state.gender_version))

    @app.post("/heads")
    async def heads(images: Annotated[list[UploadFile], File()]) -> HeadsResponse:
        state.check("gender")
        state.heads.append(len(images))
        face = FaceGender(box=[0.3, 0.3, 0.7, 0.7], detection_score=0.9, label=state.gender, score=0.97)  # type: ignore[arg-type]
        return HeadsResponse(faces=[face for _ in images])

    @app.post("/persons")
    async def persons(body: PersonsRequest) -> PersonsResponse:
        state.check("gender")
        state.person_vectors = [p.vector for p in body.persons]
        state.person_vectors_backbone = body.backbone
        return PersonsResponse(
            persons=[
                PersonGender(label=p.face.label, score=p.face.score, source="face+appearance")
                if p.face is not None and p.vector is not None
                else PersonGender(label="unknown", score=0.0, source="none")
                for p in body.persons
            ]
        )

    return app


def embedding_app(state: Downstream) -> FastAPI:
    app = ready_app(
        lambda: state.version_facts("embedding", "item_model", state.item_model()),
        dim=8,
        instance_dim=state.instance_dim,
    )
    calibration = state.exact_match if state.instance_dim else None

    @app.post("/embed")
    async def embed(
        images: Annotated[list[UploadFile], File()],
        colours: bool = True,
        instances: bool = True,
        products: Annotated[list[int] | None, Query()] = None,
    ) -> EmbedResponse:
        state.check("embedding")
        state.embedded.append(len(images))
        state.embed_colours.append(colours)
        state.embed_instances.append(instances)
        state.embed_products.append(products or [])
        items = []
        for index, _ in enumerate(images):
            vector = np.zeros(8)
            vector[index % 8] = 1.0
            scores = {c: 0.02 for c in Category}
            scores[state.upper_category] = 0.9
            items.append(
                CropEmbedding(
                    vector=vector.tolist(),
                    instance=instance_vector(index, state.instance_dim) if instances else None,
                    category_scores=scores,
                    article_types=[ArticleTypeScore(name="Tops", category=Category.topwear, score=0.8)],
                    colour="Red" if colours else None,
                    colour_score=0.8 if colours else None,
                )
            )
        return EmbedResponse(
            model="stand-in",
            vector_model=state.vector_model,
            item_model=state.item_model(),
            backbone="stand-in-net",
            dim=8,
            instance_dim=state.instance_dim,
            exact_match=calibration,
            items=items,
        )

    return app


def instance_vector(index: int, dim: int | None) -> list[float] | None:
    """The stand-in's instance vector of the index-th crop of a batch (none without a size)."""
    if dim is None:
        return None
    vector = np.full(dim, -0.5)
    vector[index % dim] = 1.0
    return vector.tolist()


def photo_keypoints() -> Keypoints:
    """One keypoint, as the detector packs them (the stand-in index does not read them)."""
    data = pack(np.array([[10.0, 20.0]]), np.array([7]), np.zeros((1, 32), np.uint8))
    return Keypoints(vocabulary="stand-in", count=1, data=data)


def index_app(state: Downstream) -> FastAPI:
    app = ready_app(dim=state.index_dim, instance_dim=state.index_instance_dim)

    @app.post("/duplicates")
    async def duplicates(request: DuplicatesRequest) -> SearchResponse:
        state.check("index")
        state.duplicate_requests.append(request)
        if state.duplicates_status is not None:
            raise HTTPException(state.duplicates_status, "the store keeps no keypoints")
        allowed = {h.product.product_id: h.product for h in _ranked(request.filter)}
        own = [Hit(score=40 - i, product=allowed[p]) for i, p in enumerate(state.own_photos) if p in allowed]
        return SearchResponse(hits=own[: request.k])

    @app.post("/search")
    async def search(request: SearchRequest) -> SearchResponse:
        state.check("index")
        state.searches.append(request)
        return SearchResponse(hits=_ranked(request.filter)[: request.k])

    @app.post("/recommend")
    async def recommend(request: RecommendRequest) -> SearchResponse:
        state.check("index")
        state.check("index-recommend")
        state.recommends.append(request)
        known = {p.product_id for p in PRODUCTS}
        unknown = [p for p in [*request.positive, *request.negative] if p not in known]
        if unknown:
            raise HTTPException(404, f"not in the index: {unknown}")
        examples = {*request.positive, *request.negative}
        return SearchResponse(
            hits=[h for h in _ranked(request.filter) if h.product.product_id not in examples]
        )

    @app.post("/points")
    async def upsert(body: UpsertRequest) -> UpsertResponse:
        state.check("index")
        state.upserted.update({p.product.product_id: p for p in body.points})
        return UpsertResponse(upserted=len(body.points))

    @app.get("/points/{product_id}")
    async def get(product_id: str) -> ProductPayload:
        if product_id in state.upserted:
            return state.upserted[product_id].product
        for product in PRODUCTS:
            if product.product_id == product_id:
                return product
        raise HTTPException(404, "unknown")

    @app.get("/count")
    async def count() -> CountResponse:
        state.check("index")
        return CountResponse(count=len(PRODUCTS) + len(state.upserted))

    return app


def _ranked(wanted: SearchFilter) -> list[Hit]:
    return [
        Hit(score=0.9 - i * 0.1, product=p)
        for i, p in enumerate(PRODUCTS)
        if (wanted.categories is None or p.category in wanted.categories)
        and (wanted.genders is None or p.gender in wanted.genders)
    ]


def stand_in_clients(state: Downstream) -> Clients:
    def transport(app: FastAPI) -> httpx.ASGITransport:
        return httpx.ASGITransport(app=app)

    return Clients(
        detector=DetectorClient("detector", "http://detector", 5, transport=transport(detector_app(state))),
        gender=GenderClient("gender", "http://gender", 5, transport=transport(gender_app(state))),
        embedding=EmbeddingClient(
            "embedding", "http://embedding", 5, transport=transport(embedding_app(state))
        ),
        index=IndexClient("index", "http://index", 5, transport=transport(index_app(state))),
    )


@pytest.fixture
def downstream() -> Downstream:
    return Downstream()


@pytest.fixture
async def client(downstream: Downstream, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    (tmp_path / "t1.jpg").write_bytes(jpeg(20, 20))
    settings = Settings(catalog_dir=tmp_path, max_upload_bytes=2_000_000, max_pixels=5_000_000)
    app = build_app(settings, clients=stand_in_clients(downstream))
    async with running_app(app) as c:
        yield c
