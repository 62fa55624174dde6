"""Index settings, from INDEX_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

RESCORE_OVERSAMPLING = 2.0  # int8: this many times k candidates are rescored with the originals


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INDEX_", extra="ignore")

    port: int = 8004
    path: Path = Field(
        default=Path("data/index"),
        description="Folder of the vector store; a relative path is taken from the working directory "
        "(the repository root when run with make). Created on first start.",
    )
    vector_dim: int = Field(
        default=1280,
        ge=1,
        le=65536,
        description="Dimension of the product embeddings (the embedding service's `dim`: 1280, the "
        "backbone's features, or the projection's when one is packaged, 768 for make train-embedding's); "
        "must match the store once it exists",
    )
    instance_dim: int = Field(
        default=768,
        ge=0,
        le=65536,
        description="Dimension of the products' instance vectors, a second vector per product that finds "
        "the very product (the embedding service's `instance_dim`: 768 for its packaged instance "
        "projection); 0: the store keeps none. Must match the store once it exists",
    )
    qdrant_url: str | None = Field(
        default=None,
        description="Qdrant server or cluster URL (http://qdrant:6333); unset: the embedded Qdrant Edge store "
        "in INDEX_PATH. `:memory:` or a folder runs qdrant-client's local mode (tests)",
    )
    qdrant_api_key: SecretStr | None = Field(default=None, description="API key of the Qdrant server")
    qdrant_collection: str = Field(default="products", description="Collection of the products on the server")
    qdrant_shards: int = Field(
        default=1, ge=1, description="Shards of the collection when this service creates it"
    )
    qdrant_replication_factor: int = Field(
        default=1,
        ge=1,
        description="Copies of each shard when this service creates the collection (cluster: 2)",
    )
    qdrant_timeout_s: float = Field(default=10.0, gt=0, description="Timeout of one Qdrant server call")
    hnsw: bool = Field(
        default=False,
        description="Build an HNSW graph (at start-up and on POST /optimize): for 100k products and more; "
        "below that the exact scan is as fast",
    )
    hnsw_ef: int = Field(
        default=128,
        ge=8,
        description="HNSW search breadth: higher is slower and more exact (make bench-index, 1M products, "
        "int8, filtered on gender and category, new queries: recall@10 0.977 with 128 at p99 8.4 ms, "
        "0.964 with 64 at 7.9 ms, 0.993 with 256 at 11.8 ms)",
    )
    int8_rescore: float = Field(
        default=RESCORE_OVERSAMPLING,
        ge=0,
        description="int8: the best k times this many candidates by their int8 vectors are rescored with "
        "the original vectors, each a random read from disk unless cached; 0: the int8 scores are final "
        "(make bench-index, 1M products, new queries, ef 128: rescored p99 7.6 ms, recall@10 0.984; "
        "not rescored p99 2.9 ms, recall@10 0.952)",
    )
    read_only: bool = Field(default=False, description="Refuse writes: a replica serving a copy of the store")
    restore_snapshot: Path | None = Field(
        default=None, description="A tar made by POST /snapshot to unpack into INDEX_PATH when it is empty"
    )
    snapshot_dir: Path = Field(default=Path("data/snapshots"), description="Where POST /snapshot writes")
    quantization: Literal["none", "int8"] = Field(
        default="none",
        description="int8: scalar-quantised vectors in RAM (originals on disk, rescored), 4x less memory; "
        "the edge store applies it on the next optimise, a Qdrant server when this service creates the collection",
    )

    @field_validator("int8_rescore")
    @classmethod
    def _whole_candidate_lists(cls, value: float) -> float:
        if 0 < value < 1:
            raise ValueError("must be 0 (no rescoring) or at least 1 (k candidates or more)")
        return value
