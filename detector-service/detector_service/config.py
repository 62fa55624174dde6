"""Detector settings, from DETECTOR_* environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DETECTOR_", extra="ignore")

    port: int = 8001
    model_threads: int = Field(
        default=2,
        ge=1,
        description="Threads of the LiteRT interpreters that serve a request running alone; "
        "requests running at the same time get one thread each",
    )
    work_side: int = Field(default=640, ge=128, description="Longer side the image is resized to for pose")
    min_person_height: float = Field(
        default=0.25, gt=0, le=1, description="Smallest person to report, as a fraction of image height"
    )
    min_bare_skin: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="A person shows at least this share of skin around a face or hand keypoint; a garment "
        "laid flat, hung or on a ghost mannequin that the pose model takes for a person shows fabric "
        "there and is answered as a product (0: every pose is a person)",
    )
    max_persons: int = Field(default=4, ge=1, le=16, description="Most persons reported per image")
    min_pose_confidence: float = Field(
        default=0.9,
        ge=0,
        le=1,
        description="Landmark model's person-presence threshold (garments laid flat can pass below it)",
    )
    min_person_confidence: float = Field(
        default=0.6, ge=0, le=1, description="Person detector threshold (each person found gets a pose pass)"
    )
    min_keypoint_visibility: float = Field(
        default=0.5, ge=0, le=1, description="A keypoint counts as seen above this visibility"
    )
    yolo_weights: Path | None = Field(
        default=None, description="ONNX export of a YOLO garment detector (make train-detector); optional"
    )
    backend: Literal["keypoints", "yolo", "merged"] | None = Field(
        default=None,
        description="Where garment boxes come from; default: merged when YOLO weights are set, else keypoints",
    )
    yolo_min_score: float = Field(default=0.25, ge=0, le=1, description="YOLO detection threshold")
    yolo_class_map: str = Field(
        default="{}", description='JSON map from YOLO class names to categories, e.g. {"shirt": "topwear"}'
    )
    vocabulary: Path = Field(
        default=Path(__file__).parent / "assets" / "vocabulary.npz",
        description="The visual words that name a photo's keypoints (make train-keypoints)",
    )
    max_batch: int = Field(default=32, ge=1, description="Most images in one /detect/batch request")
    max_upload_bytes: int = Field(default=DEFAULT_MAX_BYTES, description="Largest accepted upload")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, description="Largest accepted image area")

    def garment_backend(self) -> str:
        if self.backend is not None:
            return self.backend
        return "merged" if self.yolo_weights else "keypoints"
