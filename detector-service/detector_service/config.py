"""Detector settings, from DETECTOR_* environment variables."""

from __future__ import annotations

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
        description="Threads each LiteRT interpreter uses (one request at a time gets them all)",
    )
    work_side: int = Field(default=640, ge=128, description="Longer side the image is resized to for pose")
    min_person_height: float = Field(
        default=0.25, gt=0, le=1, description="Smallest person to report, as a fraction of image height"
    )
    max_persons: int = Field(default=4, ge=1, le=16, description="Most persons reported per image")
    min_pose_confidence: float = Field(default=0.5, ge=0, le=1, description="Pose detector threshold")
    min_person_confidence: float = Field(
        default=0.5, ge=0, le=1, description="Person detector threshold (each person found gets a pose pass)"
    )
    min_face_confidence: float = Field(default=0.6, ge=0, le=1, description="Face detector threshold")
    min_keypoint_visibility: float = Field(
        default=0.5, ge=0, le=1, description="A keypoint counts as seen above this visibility"
    )
    max_upload_bytes: int = Field(default=DEFAULT_MAX_BYTES, description="Largest accepted upload")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, description="Largest accepted image area")
