"""Index settings, from INDEX_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings


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
        description="Dimension of the product embeddings; must match the store once it exists",
    )
