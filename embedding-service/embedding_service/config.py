"""Embedding settings, from EMBEDDING_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.settings import ServiceSettings

PACKAGED_HEAD = Path(__file__).parent / "assets" / "classifier.npz"
PACKAGED_PROJECTION = Path(__file__).parent / "assets" / "projection.npz"
PACKAGED_INSTANCE = Path(__file__).parent / "assets" / "instance.npz"


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="EMBEDDING_", extra="ignore")

    port: int = 8003
    backbone_path: Path = Field(
        default=Path("models/embedding/efficientnet_lite0.onnx"),
        description="ONNX backbone made by `make models` (python -m embedding_service.export)",
    )
    head_path: Path = Field(default=PACKAGED_HEAD, description="Category/article-type head (.npz)")
    projection: str = Field(
        default="packaged",
        description='Retrieval projection: "packaged" (the trained one shipped with the service, if any), '
        '"none" (the raw backbone vector), or the path of a projection .npz',
    )
    instance_projection: str = Field(
        default="packaged",
        description="Projection that makes the instance vectors (finding the very product in a photo of "
        'it): "packaged" (the one shipped with the service, if any), "none" (no instance vectors), or '
        "the path of a projection .npz",
    )
    onnx_threads: int = Field(default=2, ge=1, description="Threads onnxruntime uses inside one batch")
    max_batch: int = Field(default=32, ge=1, description="Crops run through the network at once")
    max_crops: int = Field(default=64, ge=1, description="Most crops accepted in one request")
    max_crop_bytes: int = Field(default=8 * 1024 * 1024, description="Largest accepted crop upload")
    max_crop_pixels: int = Field(default=16_000_000, description="Largest accepted crop area")

    def projection_path(self) -> Path | None:
        return _chosen(self.projection, PACKAGED_PROJECTION)

    def instance_path(self) -> Path | None:
        return _chosen(self.instance_projection, PACKAGED_INSTANCE)


def _chosen(setting: str, packaged: Path) -> Path | None:
    """The projection file a setting names: "none", "packaged" (if shipped) or a path."""
    if setting == "none":
        return None
    if setting == "packaged":
        return packaged if packaged.exists() else None
    return Path(setting)
