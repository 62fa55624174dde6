"""Gateway settings, from GATEWAY_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import NoDecode, SettingsConfigDict

from shared.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", populate_by_name=True)

    port: int = 8000
    detector_url: str = Field(default="http://127.0.0.1:8001", description="detector-service base URL")
    gender_url: str = Field(default="http://127.0.0.1:8002", description="gender-service base URL")
    embedding_url: str = Field(default="http://127.0.0.1:8003", description="embedding-service base URL")
    index_url: str = Field(default="http://127.0.0.1:8004", description="index-service base URL")
    detector_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one detector call")
    gender_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one gender call")
    embedding_timeout_s: float = Field(default=20.0, gt=0, description="Timeout of one embedding call")
    index_timeout_s: float = Field(default=5.0, gt=0, description="Timeout of one index call")
    max_upload_bytes: int = Field(
        default=DEFAULT_MAX_BYTES, description="Largest accepted upload (413 above)"
    )
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, description="Largest accepted image area (413 above)")
    analysis_side: int = Field(
        default=1024,
        ge=256,
        description="Longer side of the copy sent to the detector (head crops for the gender service are cut from it)",
    )
    crop_side: int = Field(default=384, ge=64, description="Longer side of each crop sent for embedding")
    catalog_dir: Path | None = Field(
        default=None, description="Folder whose images the index payloads name (served at /catalog/images)"
    )
    colour_rerank: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Cosine bonus for recommendations of the item's colour family among the "
        "colour_rerank_pool nearest (0: order by look alone; make eval measures 0.05, 0.1, 0.2)",
    )
    colour_rerank_pool: int = Field(
        default=100,
        ge=1,
        le=100,
        description="Nearest products the colour rerank reorders (at least k): the deeper, the more "
        "of the item's colour it finds and the further from its look it may go",
    )
    product_windows: bool = Field(
        default=True,
        description="Also search a 3×3 grid of windows of a product photo (no person), each product "
        "scored by its best match: finds a product on a cluttered photo (9 more crops to embed)",
    )
    vote_weight: float = Field(
        default=0.5,
        ge=0,
        description="Weight of the catalog's nearest products against the classifier's when they "
        "vote on a product photo's category (0: the classifier alone; 1: equal)",
    )
    instance_search: bool = Field(
        default=True,
        description="Search a product photo's item (worn by no one) by its instance vector, which finds "
        "the very product through background, framing and light (make eval: distorted products), when "
        "the embedding service makes them; off: every item by its look vector alone (and no exact match)",
    )
    exact_match: float | None = Field(
        default=None,
        ge=0,
        le=1,
        description="Instance cosine from which a worn garment's nearest product by instance vector is "
        "taken for the very product and put first (a store's own model shot finds what the model wears; "
        "the look and the colour rerank order the rest). Unset: the embedding service's, the "
        "calibration of its instance projection (0.77 for the packaged one: reached by at most 2 of "
        "564 shoppers' photos of products the catalog does not hold; none for an uncalibrated one); "
        "1: never",
    )
    duplicate_inliers: int = Field(
        default=25,
        ge=0,
        description="Keypoints of the photo that one affine map must carry onto a catalog photo for that "
        "photo to count as the posted photo's own (cropped, turned, lit or compressed differently): its "
        "product is put first in the item of its category. 0: photos are not matched by keypoints",
    )
    duplicate_rename_inliers: int = Field(
        default=28,
        ge=0,
        description="Agreeing keypoints from which the posted photo's own catalog photo's product, when no "
        "item has its category, names a product photo's one item, or else is shown as an item of its own "
        "(stronger evidence than putting the product first: of 920 photos of products the catalog lacks, "
        "posted keypoints at two sizes, 3 reach 22 on some catalog photo, 1 reaches 24, none 25)",
    )
    duplicate_candidates: int = Field(
        default=30,
        ge=1,
        le=200,
        description="Catalog photos sharing the most visual words with the posted one that are checked",
    )
    default_k: int = Field(default=6, ge=1, le=50, description="Recommendations per item when k is not given")
    api_key: SecretStr | None = Field(
        default=None, description="Key of the catalog API (X-API-Key header); unset: the catalog API is off"
    )
    media_dir: Path = Field(
        default=Path("data/media"), description="Folder for images of products added through the catalog API"
    )
    fetch_allow_private: bool = Field(
        default=False,
        description="Let the catalog API fetch image URLs on private, loopback or link-local hosts",
    )
    fetch_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one image URL fetch")

    # caches of whole answers and per-crop embeddings (gateway/cache.py)
    redis_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("GATEWAY_REDIS_URL", "REDIS_URL"),
        description="Redis for the caches, e.g. redis://redis:6379/0 (also read from REDIS_URL); "
        "unset: an in-process LRU",
    )
    cache_ttl_s: int = Field(default=600, ge=1, description="Seconds a whole /recommend answer is cached")
    versions_poll_s: float = Field(
        default=10.0,
        gt=0,
        description="Seconds between asking the services' /readyz for their model versions, which key "
        "whole answers: a changed model answers afresh within this time",
    )
    embedding_cache_ttl_s: int = Field(
        default=86400, ge=1, description="Seconds a crop's embedding is cached"
    )
    cache_lru_size: int = Field(
        default=2048, ge=0, description="Entries of the in-process cache used without Redis (0: no cache)"
    )
    cache_timeout_s: float = Field(
        default=0.1, gt=0, description="Socket timeout of each Redis call; a slower Redis counts as down"
    )
    cache_retry_s: float = Field(
        default=5.0, ge=0, description="After a Redis failure, requests skip the cache this many seconds"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma list of browser origins (a storefront's) allowed to call the API; none by default",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip().rstrip("/") for origin in value.split(",") if origin.strip()]
        return value
