"""Gender settings, from GENDER_* environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from shared.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS
from shared.settings import ServiceSettings


class Settings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GENDER_", extra="ignore")

    port: int = 8002
    model_dir: str = Field(
        default="models/gender",
        description="Folder with faceres.tflite and the face detectors face_detection_full_range.tflite and face_detection_short_range.tflite, made by `make models` (relative to the working directory)",
    )
    model_threads: int = Field(
        default=2,
        ge=1,
        description="Threads of each TFLite interpreter (one request at a time gets them all)",
    )
    min_face_score: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Face detection threshold (BlazeFace score, 0..1; MediaPipe's default for this model)",
    )
    min_face_px: int = Field(
        default=32,
        ge=1,
        description="Faces whose box is smaller than this, in pixels of the posted image, are 'unknown'",
    )
    max_face_outside: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="Faces with more than this fraction of their box outside the image (cut by the frame) are 'unknown'",
    )
    min_gender_confidence: float = Field(
        default=0.6, ge=0.5, le=1, description="Gender confidence below which the label is 'unknown'"
    )
    face_margin: float = Field(
        default=0.2, ge=0, le=1, description="Margin added around the face box on each side before gender"
    )
    max_heads: int = Field(
        default=32, ge=1, le=64, description="Most head crops accepted by one /heads request"
    )
    max_faces: int = Field(
        default=8, ge=1, le=64, description="Most faces reported per image (largest first)"
    )
    appearance_model: Path = Field(
        default=Path(__file__).parent / "assets" / "appearance.tflite",
        description="TFLite appearance head (make train-gender); without it persons are judged by face only",
    )
    fusion: Path = Field(
        default=Path(__file__).parent / "assets" / "fusion.json",
        description="Calibration and fusion parameters fitted with the appearance head",
    )
    men_share: float = Field(
        default=0.5,
        gt=0,
        lt=1,
        description="Share of men expected among the persons of the photos: the calibration was fitted on "
        "the catalog's own share (fusion.json prior, 0.71 in the demo catalog), which would otherwise "
        "lean every unsure answer towards its majority",
    )
    min_person_confidence: float = Field(
        default=0.75,
        ge=0.5,
        le=1,
        description="Calibrated probability below which a person's gender is 'unknown'",
    )
    max_upload_bytes: int = Field(default=DEFAULT_MAX_BYTES, description="Largest accepted upload")
    max_pixels: int = Field(default=DEFAULT_MAX_PIXELS, description="Largest accepted image area")
