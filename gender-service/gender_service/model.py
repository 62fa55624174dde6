"""Faces found by MediaPipe's full-range BlazeFace, each labelled Men or Women by FaceRes (from
@vladmandic/human)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
from PIL import Image

from gender_service.appearance import AppearanceModel, Fusion, decide, fitted_backbone, with_prior
from gender_service.blazeface import FULL_RANGE, SHORT_RANGE, Face, FaceDetector
from gender_service.config import Settings
from gender_service.tflite import FACE_DETECTOR_FILE, HEAD_DETECTOR_FILE, TFLiteModel
from shared.contracts import (
    FaceGender,
    GenderLabel,
    GenderResponse,
    HeadsResponse,
    PersonsRequest,
    PersonsResponse,
)
from shared.images import rgb_pixels

logger = logging.getLogger(__name__)

FACERES_SIZE = 224
FACE_ONLY = Fusion(face=(1.0, 0.0), appearance=(0.0, 0.0), prior=0.5)  # before any calibration


class GenderClassifier:
    """FaceRes: 224×224 RGB face crops in 0..255 → probability of male; thread-safe once loaded."""

    def __init__(self, model_path: Path, threads: int = 1) -> None:
        self.model_path = model_path
        self._model = TFLiteModel(model_path, threads)

    def load(self) -> None:
        self._model.load()

    def male_probabilities(self, crops: np.ndarray) -> np.ndarray:
        """(N,) probabilities for a (N, 224, 224, 3) batch of face crops."""
        return np.array([float(self._model.run(crop[None])[0].reshape(-1)[0]) for crop in crops])


def face_square(face: Face, margin: float) -> tuple[int, int, int, int]:
    """Square pixel box around the face centre, ``margin`` of the face size added on each side."""
    centre_x, centre_y = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    side = max(face.width, face.height, 1.0) * (1.0 + 2.0 * margin)
    left, top = round(centre_x - side / 2), round(centre_y - side / 2)
    size = max(1, round(side))
    return left, top, left + size, top + size


def face_crop(picture: Image.Image, face: Face, margin: float) -> np.ndarray:
    """224×224 float32 RGB crop in 0..255; parts of the square outside the image are black."""
    square = picture.crop(face_square(face, margin))  # PIL fills what lies outside with black
    return rgb_pixels(square.resize((FACERES_SIZE, FACERES_SIZE), Image.Resampling.BILINEAR)).astype(
        np.float32
    )


def _distance_to_centre(face: Face, width: int, height: int) -> float:
    centre_x, centre_y = (face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2
    return float(np.hypot(centre_x - width / 2, centre_y - height / 2))


def face_size_px(face: Face) -> float:
    return max(face.width, face.height)


def fraction_outside(face: Face, width: int, height: int) -> float:
    """Share of the face box that lies outside the image: a face cut by the frame."""
    x1, y1, x2, y2 = face.box
    inside_w = max(0.0, min(x2, width) - max(x1, 0.0))
    inside_h = max(0.0, min(y2, height) - max(y1, 0.0))
    area = face.width * face.height
    return 1.0 - inside_w * inside_h / area if area > 0 else 1.0


def normalised_box(face: Face, width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = face.box
    return [
        round(min(max(x1 / width, 0.0), 1.0), 4),
        round(min(max(y1 / height, 0.0), 1.0), 4),
        round(min(max(x2 / width, 0.0), 1.0), 4),
        round(min(max(y2 / height, 0.0), 1.0), 4),
    ]


def gender_label(male_probability: float, min_confidence: float) -> tuple[GenderLabel, float]:
    """Men above 0.5, Women below; 'unknown' with score 0 when the confidence is too low."""
    confidence = max(male_probability, 1.0 - male_probability)
    if confidence < min_confidence:
        return "unknown", 0.0
    return ("Men" if male_probability > 0.5 else "Women"), round(confidence, 4)


class GenderModel:
    """Face detection on the whole image, then the gender of every large enough face (MediaPipe's
    TensorFlow Lite face detector, and FaceRes converted from TF.js by ``make models``)."""

    name = "blazeface-full-range/short-range+faceres (TFLite)"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        model_dir = Path(settings.model_dir)
        self.detector = FaceDetector(model_dir / FACE_DETECTOR_FILE, FULL_RANGE, settings.model_threads)
        self.head_detector = FaceDetector(model_dir / HEAD_DETECTOR_FILE, SHORT_RANGE, settings.model_threads)
        self.classifier = GenderClassifier(model_dir / "faceres.tflite", settings.model_threads)
        self.appearance: AppearanceModel | None = None
        self.fusion = FACE_ONLY
        self.appearance_backbone = ""  # the network whose features the appearance head reads
        self.version = ""  # once loaded: settings.model_version of the model files read

    def load(self) -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter
        self.detector.load()
        self.head_detector.load()
        self.classifier.load()
        if self.settings.appearance_model.exists() and self.settings.fusion.exists():
            appearance = AppearanceModel(self.settings.appearance_model)
            appearance.load()
            self.appearance, self.fusion = appearance, Fusion.load(self.settings.fusion)
            self.appearance_backbone = fitted_backbone(self.settings.fusion)
        else:
            logger.warning("no appearance model: persons without a usable face stay unknown")
        self._warm_up()
        self.version = self.settings.model_version(self._model_files())
        logger.info("models loaded", extra={"model": self.name, "model_dir": self.settings.model_dir})

    def _model_files(self) -> list[Path]:
        files = [self.detector.model_path, self.head_detector.model_path, self.classifier.model_path]
        return files + ([self.settings.appearance_model, self.settings.fusion] if self.appearance else [])

    def _warm_up(self) -> None:
        """The first call of each graph is slow (graph optimisation); make it here, not in a request."""
        self.detector.detect(Image.new("RGB", (320, 240)), self.settings.min_face_score)
        self.head_detector.detect(Image.new("RGB", (120, 120)), self.settings.min_face_score)
        self.classifier.male_probabilities(np.zeros((1, FACERES_SIZE, FACERES_SIZE, 3), np.float32))

    def persons(self, request: PersonsRequest) -> PersonsResponse:
        """Each person's gender from the face read by /faces and the whole-person embedding, fused."""
        vectors = [p.vector for p in request.persons]
        usable = [i for i, v in enumerate(vectors) if v is not None and self.appearance is not None]
        appearance: dict[int, float] = {}
        if usable and self.appearance is not None:
            self._check_backbone(request.backbone)
            batch = np.array([vectors[i] for i in usable], dtype=np.float32)
            if batch.shape[1] != self.appearance.dim:
                raise ValueError(
                    f"person vectors have {batch.shape[1]} values; the model takes {self.appearance.dim}"
                )
            appearance = dict(zip(usable, self.appearance.p_men(batch), strict=True))
        genders = []
        for index, person in enumerate(request.persons):
            face_p = person.face.p_men if person.face is not None else None
            evidence = self.fusion.p_men(face_p, appearance.get(index))
            evidence = with_prior(evidence, self.fusion.prior, self.settings.men_share)
            genders.append(decide(evidence, self.settings.min_person_confidence))
        return PersonsResponse(persons=genders)

    def _check_backbone(self, backbone: str) -> None:
        """Features of another network than the head's have the same size but mean nothing to it."""
        if backbone and self.appearance_backbone and backbone != self.appearance_backbone:
            raise ValueError(
                f"person vectors are {backbone} features; the appearance model reads "
                f"{self.appearance_backbone} features: run `make train-gender`"
            )

    def predict(self, picture: Image.Image) -> GenderResponse:
        """Faces of an RGB image (``shared.images.decode_picture``), largest first, with their gender."""
        width, height = picture.size
        faces = self.detector.detect(picture, self.settings.min_face_score)
        faces = sorted(faces, key=lambda f: -f.width * f.height)[: self.settings.max_faces]
        probabilities = self._male_probabilities(picture, faces)
        results = [
            self._face_gender(face, probability, width, height)
            for face, probability in zip(faces, probabilities, strict=True)
        ]
        return GenderResponse(width=width, height=height, faces=results)

    def heads(self, pictures: list[Image.Image]) -> HeadsResponse:
        """The face in each crop around one person's head, with its gender: the short-range model,
        made for a face that fills much of the picture, and of the faces it finds the one nearest
        the crop's centre (a neighbour's head may show at an edge)."""
        return HeadsResponse(faces=[self._head_face(picture) for picture in pictures])

    def _head_face(self, picture: Image.Image) -> FaceGender | None:
        width, height = picture.size
        faces = self.head_detector.detect(picture, self.settings.min_face_score)
        if not faces:
            return None
        face = min(faces, key=lambda f: _distance_to_centre(f, width, height))
        probability = self._male_probabilities(picture, [face])[0]
        return self._face_gender(face, probability, width, height)

    def _male_probabilities(self, picture: Image.Image, faces: list[Face]) -> list[float | None]:
        """Probability of male for each face, None for faces too small or too cut; one batch."""
        judged = [i for i, face in enumerate(faces) if self._judgeable(face, *picture.size)]
        probabilities: list[float | None] = [None] * len(faces)
        if not judged:
            return probabilities
        crops = np.stack([face_crop(picture, faces[i], self.settings.face_margin) for i in judged])
        for i, probability in zip(judged, self.classifier.male_probabilities(crops), strict=True):
            probabilities[i] = float(probability)
        return probabilities

    def _judgeable(self, face: Face, width: int, height: int) -> bool:
        """Large enough, and not cut by the frame, for its gender to mean something."""
        return (
            face_size_px(face) >= self.settings.min_face_px
            and fraction_outside(face, width, height) <= self.settings.max_face_outside
        )

    def _face_gender(self, face: Face, male_probability: float | None, width: int, height: int) -> FaceGender:
        label: GenderLabel = "unknown"
        score = 0.0
        if male_probability is not None:
            label, score = gender_label(male_probability, self.settings.min_gender_confidence)
        return FaceGender(
            box=normalised_box(face, width, height),
            detection_score=round(face.score, 4),
            label=label,
            score=score,
            p_men=round(male_probability, 4) if male_probability is not None else None,
        )
