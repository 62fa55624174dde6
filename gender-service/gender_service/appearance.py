"""Gender from appearance, and its fusion with the face.

Appearance: a dense head (Keras, exported to TensorFlow Lite with float16 weights) on the frozen
EfficientNet-Lite features of the whole-person crop, which the embedding service computes (the
network is named beside the calibration: features of another network are refused).
Trained on the catalog's Men and Women on-model shots (``python -m gender_service.train_appearance``).

Fusion: both answers are logits; each is calibrated by Platt scaling on a held-out calibration split
of the catalog. A person with both gets the two calibrated log-odds added, less the prior log-odds
that each already holds (naive Bayes: the face and the clothes are taken as independent evidence).
A calibrated probability below ``min_confidence`` for either label is "unknown".
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from gender_service.tflite import TFLiteModel
from shared.contracts import PersonGender

ASSETS = Path(__file__).parent / "assets"


def logit(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(min(x, 60.0), -60.0)))


@dataclass(frozen=True)
class Fusion:
    """p(Men) from logits: face alone, appearance alone, or both."""

    face: tuple[float, float]  # Platt (a, b) on the FaceRes logit
    appearance: tuple[float, float]  # Platt (a, b) on the appearance head logit
    prior: float  # share of Men in the calibration data, held by both calibrated answers

    @classmethod
    def load(cls, path: Path) -> Fusion:
        data = json.loads(path.read_text())
        face, appearance = data["face"], data["appearance"]
        return cls(
            (float(face[0]), float(face[1])),
            (float(appearance[0]), float(appearance[1])),
            float(data["prior"]),
        )

    def save(self, path: Path, extra: dict[str, object] | None = None) -> None:
        body = {"face": list(self.face), "appearance": list(self.appearance), "prior": self.prior}
        path.write_text(json.dumps({**body, **(extra or {})}, indent=2) + "\n")

    def face_logit(self, p: float) -> float:
        return self.face[0] * logit(p) + self.face[1]

    def appearance_logit(self, p: float) -> float:
        return self.appearance[0] * logit(p) + self.appearance[1]

    def p_men(self, face_p: float | None, appearance_p: float | None) -> tuple[float, str] | None:
        """Calibrated probability of Men and what decided it; None with no evidence at all."""
        if face_p is not None and appearance_p is not None:
            fused = self.face_logit(face_p) + self.appearance_logit(appearance_p) - logit(self.prior)
            return sigmoid(fused), "face+appearance"
        if face_p is not None:
            return sigmoid(self.face_logit(face_p)), "face"
        if appearance_p is not None:
            return sigmoid(self.appearance_logit(appearance_p)), "appearance"
        return None


def with_prior(p_men: tuple[float, str] | None, fitted: float, wanted: float) -> tuple[float, str] | None:
    """A probability calibrated where a share ``fitted`` of the persons were men, for persons of
    whom a share ``wanted`` are men (Bayes: the prior's log-odds swapped)."""
    if p_men is None:
        return None
    p, source = p_men
    return sigmoid(logit(p) - logit(fitted) + logit(wanted)), source


def fitted_backbone(fusion: Path) -> str:
    """The network whose features the appearance head was fitted on ("" if the file predates it)."""
    return str(json.loads(fusion.read_text()).get("backbone", ""))


def decide(p_men: tuple[float, str] | None, min_confidence: float) -> PersonGender:
    if p_men is None:
        return PersonGender(label="unknown", score=0.0, source="none")
    p, source = p_men
    confidence = max(p, 1.0 - p)
    if confidence < min_confidence:
        return PersonGender(label="unknown", score=0.0, source="none")
    return PersonGender(label="Men" if p > 0.5 else "Women", score=round(confidence, 4), source=source)  # type: ignore[arg-type]


class AppearanceModel:
    """The TFLite head: (N, dim) person embeddings to p(Men); thread-safe once loaded."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._model = TFLiteModel(path)
        self.dim = 0

    def load(self) -> None:
        if not self.path.exists():
            raise FileNotFoundError(f"{self.path} is missing: run `make train-gender`")
        self._model.load()
        self.dim = self._model.input_shape()[-1]

    def p_men(self, vectors: np.ndarray) -> np.ndarray:
        return np.array([float(self._model.run(vector[None])[0].reshape(-1)[0]) for vector in vectors])
