"""Pydantic contracts exchanged between the services and with API clients.

Internal boxes (detector, gender) are normalised ``[x1, y1, x2, y2]`` in 0..1 of the image the
service received; the gateway turns them into pixels of the posted image for its public answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Box = Annotated[list[float], Field(min_length=4, max_length=4, description="[x1, y1, x2, y2]")]


class Category(StrEnum):
    topwear = "topwear"
    bottomwear = "bottomwear"
    footwear = "footwear"
    dress = "dress"
    outerwear = "outerwear"
    accessories = "accessories"


CATEGORIES: tuple[Category, ...] = tuple(Category)

GenderLabel = Literal["Men", "Women", "unknown"]
View = Literal["front", "back", "left", "right"]
GenderSource = Literal["face", "appearance", "face+appearance", "request", "none"]


class VectorSpace(StrEnum):
    """Which of a product's two vectors a search compares."""

    look = "look"  # the embedding service's `vector`: kind, shape and colour (recommendations)
    instance = "instance"  # its `instance` vector: the very product (a product photo's search)


class Region(StrEnum):
    """Where on the body a detector box was taken from; the classifier turns it into a category."""

    upper_body = "upper"  # shoulders to hips: topwear, outerwear or the top of a dress
    lower_body = "lower"  # hips down: bottomwear or the skirt of a dress
    full = "full"  # shoulders to hem: a dress candidate
    inner = "inner"  # down the middle of the chest: the top under an open jacket or coat
    feet = "feet"  # footwear
    product = "product"  # no person: the image's foreground is one product of any category


REGION_CATEGORIES: dict[Region, tuple[Category, ...]] = {
    Region.upper_body: (Category.topwear, Category.outerwear, Category.dress),
    Region.lower_body: (Category.bottomwear, Category.dress),
    Region.full: (Category.dress,),
    Region.inner: (Category.topwear,),
    Region.feet: (Category.footwear,),
    Region.product: CATEGORIES,
}

# how many of the catalog's nearest products vote with the classifier on a product photo's category
# (the gateway asks the index for them; make train-classifier weighs their vote)
CATEGORY_VOTE_K = 10

# Where on a worn body a category is found (accessories: anywhere, as a product).
CATEGORY_REGION: dict[Category, Region] = {
    Category.topwear: Region.upper_body,
    Category.outerwear: Region.upper_body,
    Category.bottomwear: Region.lower_body,
    Category.dress: Region.full,
    Category.footwear: Region.feet,
    Category.accessories: Region.product,
}


# --- detector-service -------------------------------------------------------------------------


class PersonDetection(BaseModel):
    box: Box
    face_box: Box | None = None
    score: float
    full_shot: bool = Field(description="Head and both feet inside the frame")
    view: View = Field(description="Which side faces the camera; left/right: facing that side of the image")
    keypoints_visible: int = Field(description="Body keypoints seen inside the frame (of 33)")


class RegionDetection(BaseModel):
    person: int | None = Field(description="Index into persons, or null when it belongs to no person")
    region: Region
    box: Box
    score: float
    category: Category | None = Field(
        default=None, description="Set when the detector itself knows the category (a YOLO detection)"
    )
    colour: str | None = Field(
        default=None, description="Dominant colour of the garment's own pixels (person mask less skin)"
    )


class Keypoints(BaseModel):
    """A photo's local features: its ORB keypoints, each named by a visual word
    (shared/shared/keypoints.py), by which the index finds the very photo again."""

    vocabulary: str = Field(description="The vocabulary that named the words; others' words differ")
    count: int = Field(ge=0)
    data: str = Field(
        description="base64 of count records: x, y (float32), word (uint32), copy (uint8: the size of "
        "the photo that found it, 0 the largest), descriptor (32 bytes)"
    )


class DetectResponse(BaseModel):
    model: str = Field(default="", description="Which models found the persons and garments")
    width: int = Field(description="Size of the image as analysed (a large JPEG may be decoded smaller)")
    height: int
    persons: list[PersonDetection]
    regions: list[RegionDetection]
    keypoints: Keypoints | None = Field(default=None, description="The photo's keypoints, when asked for")


class DetectBatchResponse(BaseModel):
    items: list[DetectResponse] = Field(description="One per image, in the order they were sent")


class KeypointsBatchResponse(BaseModel):
    items: list[Keypoints] = Field(description="One per image, in the order they were sent")


# --- gender-service ---------------------------------------------------------------------------


class FaceGender(BaseModel):
    box: Box
    detection_score: float
    label: GenderLabel
    score: float = Field(description="Confidence in label, 0.5..1; 0 when unknown")
    p_men: float | None = Field(
        default=None, description="FaceRes probability of Men; null when the face is too small or cut off"
    )


class GenderResponse(BaseModel):
    width: int
    height: int
    faces: list[FaceGender]


class HeadsResponse(BaseModel):
    faces: list[FaceGender | None] = Field(
        description="Per crop, in order: its face (box normalised to the crop), or null when none was found"
    )


class PersonGender(BaseModel):
    label: GenderLabel
    score: float = Field(description="Calibrated probability of the label (0 when unknown)")
    source: GenderSource = Field(description="What decided: the face, the appearance, both, or the request")


class PersonEvidence(BaseModel):
    face: FaceGender | None = Field(
        default=None, description="The person's face, as /heads or /faces read it"
    )
    vector: list[float] | None = Field(default=None, description="Embedding of the whole-person crop")


class PersonsRequest(BaseModel):
    persons: list[PersonEvidence] = Field(max_length=64)
    backbone: str = Field(
        default="",
        description="The network whose features the person vectors are (EmbedResponse.backbone); an "
        "appearance model fitted on another network's refuses them",
    )


class PersonsResponse(BaseModel):
    persons: list[PersonGender]


# --- embedding-service ------------------------------------------------------------------------


class ArticleTypeScore(BaseModel):
    name: str
    category: Category
    score: float


class CropEmbedding(BaseModel):
    vector: list[float] = Field(description="The retrieval vector (projected when a projection is served)")
    backbone: list[float] | None = Field(
        default=None,
        description="The backbone features the vector was projected from; only when a projection is "
        "served (the gender appearance head reads backbone features)",
    )
    instance: list[float] | None = Field(
        default=None,
        description="The vector that finds the very product (a learned whitening of the backbone's "
        "descriptor, robust to a photo's background, framing and light); only when the service has an "
        "instance projection",
    )
    category_scores: dict[Category, float] = Field(description="Empty when no classifier head is loaded")
    article_types: list[ArticleTypeScore] = Field(description="Most likely article types, best first")
    colour: str | None = Field(description="Dominant colour; null when the caller asked for none")
    colour_score: float | None = Field(description="Share of garment pixels of that colour")


class EmbedResponse(BaseModel):
    model: str
    vector_model: str = Field(
        description="What made the vectors and instance vectors, with digests of the weights: vectors "
        "of different vector_model are not comparable (the index keeps it per product as embedding_model)"
    )
    item_model: str = Field(
        default="",
        description="What made the whole items, with digests of every file they depend on: vector_model "
        "plus the classifier head, the category tail's graph and the colour table. A cache may reuse "
        "an item only under an equal item_model; empty from a service that does not say",
    )
    backbone: str = Field(
        default="",
        description="The network whose features `backbone` holds, e.g. efficientnet-lite0-imagenet",
    )
    dim: int
    instance_dim: int | None = Field(
        default=None,
        description="Dimension of the instance vectors the service makes (the items carry them unless "
        "the request said instances=false); null when it makes none",
    )
    exact_match: float | None = Field(
        default=None,
        description="Instance cosine from which a crop's nearest product by instance vector is taken "
        "for the very product: the calibration of the instance projection (its card; make "
        "train-embedding measures it on photos of products the catalog does not hold); null when the "
        "service makes no instance vectors or its projection is not calibrated",
    )
    items: list[CropEmbedding]


# --- index-service ----------------------------------------------------------------------------


class ProductPayload(BaseModel):
    product_id: str
    gender: str | None = None
    category: Category | None = None
    article_type: str | None = None
    colour: str | None = None
    name: str | None = None
    usage: str | None = None
    image: str | None = Field(default=None, description="Image path relative to the catalog folder")
    embedding_model: str | None = Field(
        default=None, description="vector_model of the embedding service that made the product's vector"
    )


class IndexPoint(BaseModel):
    vector: list[float]
    instance: list[float] | None = Field(
        default=None, description="The product's instance vector (CropEmbedding.instance), if made"
    )
    keypoints: Keypoints | None = Field(
        default=None, description="Its catalog photo's keypoints, by which the photo is found again"
    )
    product: ProductPayload


class UpsertRequest(BaseModel):
    points: list[IndexPoint] = Field(min_length=1)


class UpsertResponse(BaseModel):
    upserted: int


class SearchFilter(BaseModel):
    genders: list[str] | None = Field(default=None, description="Any of these genders; null: any")
    categories: list[Category] | None = None
    article_types: list[str] | None = None
    colours: list[str] | None = None


MAX_VIEWS = 16


class SearchRequest(BaseModel):
    vector: list[float]
    views: list[list[float]] = Field(
        default_factory=list,
        max_length=MAX_VIEWS,
        description="More vectors of the same item (windows of a product photo): a product scores its "
        "best similarity to the vector or any view",
    )
    k: int = Field(default=6, ge=1, le=100)
    filter: SearchFilter = Field(default_factory=SearchFilter)
    space: VectorSpace = Field(
        default=VectorSpace.look,
        description="Which of the products' vectors `vector` and `views` are compared with: their look "
        "vectors, or their instance vectors (products stored without one are not found)",
    )


class DuplicatesRequest(BaseModel):
    keypoints: Keypoints
    k: int = Field(default=6, ge=1, le=100)
    filter: SearchFilter = Field(default_factory=SearchFilter)
    candidates: int = Field(
        default=30, ge=1, le=200, description="Photos sharing the most words that are checked geometrically"
    )
    min_inliers: int = Field(
        default=25, ge=3, description="Keypoints one affine map must carry onto a photo for it to count"
    )


class Hit(BaseModel):
    score: float
    product: ProductPayload


class SearchResponse(BaseModel):
    hits: list[Hit]


class CountResponse(BaseModel):
    count: int


class ProductUpdate(BaseModel):
    """Attributes to change on a stored product; a field left out keeps its value."""

    model_config = ConfigDict(extra="forbid")

    gender: str | None = None
    category: Category | None = None
    article_type: str | None = None
    colour: str | None = None
    name: str | None = None
    usage: str | None = None
    image: str | None = None


class DeleteRequest(BaseModel):
    product_ids: list[str] = Field(min_length=1, max_length=10_000)


class DeleteResponse(BaseModel):
    deleted: int = Field(description="How many of the ids were in the index (and are now gone)")
    missing: list[str] = Field(description="Ids that were not in the index")


class ProductPage(BaseModel):
    products: list[ProductPayload]
    next_offset: str | None = Field(description="Pass as `offset` for the next page; null: last page")


class RecommendRequest(BaseModel):
    """More like the positive products and less like the negative ones (Qdrant's recommend query,
    best-score strategy); the examples themselves are never returned."""

    positive: list[str] = Field(min_length=1, max_length=32)
    negative: list[str] = Field(default_factory=list, max_length=32)
    k: int = Field(default=6, ge=1, le=100)
    filter: SearchFilter = Field(default_factory=SearchFilter)


class SnapshotInfo(BaseModel):
    path: str = Field(description="The tar on the index service's disk (INDEX_SNAPSHOT_DIR)")
    bytes: int
    points: int


class OptimizeResponse(BaseModel):
    indexed_vectors: int = Field(description="Vectors in the HNSW graphs, look and instance vectors together")


FACET_FIELDS = (
    "gender",
    "category",
    "article_type",
    "usage",
    "colour",
    "embedding_model",
    "keypoint_vocabulary",
)


class FacetCounts(BaseModel):
    """Products per value of each catalog attribute (values missing on a product are not counted)."""

    total: int
    counts: dict[str, dict[str, int]]


# --- gateway (public API) ---------------------------------------------------------------------


class ImageSize(BaseModel):
    width: int
    height: int


class Person(BaseModel):
    box: Box
    face_box: Box | None
    gender: PersonGender
    full_shot: bool = Field(description="Head and both feet inside the frame")
    view: View = Field(description="front, back, or left/right: facing that side of the image")


class Recommendation(BaseModel):
    product_id: str
    score: float = Field(description="Cosine similarity to the item; 1 for the posted photo's own product")
    photo_match: bool = Field(
        default=False,
        description="Its catalog photo is the posted photo (cropped, turned, lit or compressed differently): "
        "the very product, found by keypoints and put first",
    )
    name: str | None
    image_url: str
    gender: str | None
    category: Category | None
    article_type: str | None
    colour: str | None


class Item(BaseModel):
    person: int | None
    category: Category
    article_type: str | None
    colour: str
    box: Box
    score: float
    recommendations: list[Recommendation]


class RecommendResponse(BaseModel):
    request_id: str
    image: ImageSize
    persons: list[Person]
    items: list[Item]
    timings_ms: dict[str, float]
    degraded: list[str] = Field(
        description="What the answer had to do without: a failed stage (detector, gender, index), or "
        "index-model when products found were embedded by another model than the photo (re-ingest)"
    )
    cached: bool = Field(
        default=False, description="Answered from the gateway's cache (timings_ms then has only the lookup)"
    )


class SimilarRequest(BaseModel):
    """More like these products (and less like those): the storefront's "more like this"."""

    positive: list[str] = Field(min_length=1, max_length=32, description="Product ids to look like")
    negative: list[str] = Field(default_factory=list, max_length=32, description="Product ids to avoid")
    k: int = Field(default=6, ge=1, le=50)
    gender: Literal["auto", "Men", "Women"] = Field(
        default="auto", description="auto: the gender of the first positive product (any when Unisex)"
    )
    categories: str | None = Field(
        default=None, description="Comma list of categories; default: the first positive product's"
    )


class SimilarResponse(BaseModel):
    recommendations: list[Recommendation]
    timings_ms: dict[str, float]


class ErrorBody(BaseModel):
    error: str
    detail: str | list[dict[str, object]]
