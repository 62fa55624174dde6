"""BlazePose landmarks for one person, run directly with LiteRT on the region of interest that the
person detector gives (``pose_landmark_full.tflite`` from the mediapipe wheel).

This is what MediaPipe's pose graph does for the one person it tracks; doing it here lets every
detected person get landmarks and a person mask, and skips the graph's second detection pass.
Geometry follows mediapipe/modules/pose_landmark: the region is a square of 2.5 times the
hip-centre-to-circle distance, turned so that the body is upright, resized to 256x256 in [0, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

INPUT_SIZE = 256
LANDMARKS = 33  # of the 39 outputs, the last 6 are auxiliary (region of interest for tracking)
ROI_SCALE = 1.25  # RectTransformationCalculator scale on twice the circle radius


@dataclass(frozen=True)
class Roi:
    """A rotated square in image pixels."""

    centre_x: float
    centre_y: float
    size: float
    rotation: float  # radians, clockwise, 0 for an upright body

    @classmethod
    def from_circle(cls, hip: tuple[float, float], reach: tuple[float, float]) -> Roi:
        """From the detector's hip centre and full-body circle point (both in pixels)."""
        dx, dy = reach[0] - hip[0], reach[1] - hip[1]
        rotation = math.pi / 2 - math.atan2(-dy, dx)
        rotation = (rotation + math.pi) % (2 * math.pi) - math.pi
        return cls(hip[0], hip[1], 2.0 * math.hypot(dx, dy) * ROI_SCALE, rotation)

    def to_image(self) -> np.ndarray:
        """2x3 affine matrix from model-input pixels (0..256) to image pixels."""
        corners = np.array([[0.0, 0.0], [INPUT_SIZE, 0.0], [0.0, INPUT_SIZE]], dtype=np.float32)
        return cv2.getAffineTransform(corners, self._points(corners / INPUT_SIZE))

    def _points(self, unit: np.ndarray) -> np.ndarray:
        """Image pixels of points given in 0..1 of the region."""
        x, y = (unit[:, 0] - 0.5) * self.size, (unit[:, 1] - 0.5) * self.size
        cos, sin = math.cos(self.rotation), math.sin(self.rotation)
        return np.stack(
            [self.centre_x + cos * x - sin * y, self.centre_y + sin * x + cos * y], axis=1
        ).astype(np.float32)


@dataclass(frozen=True)
class PoseEstimate:
    xy: np.ndarray  # (33, 2) normalised to the image
    visibility: np.ndarray  # (33,)
    mask: np.ndarray  # (H, W) float32, probability of this person
    score: float


class PoseLandmarker:
    def __init__(self, model_path: Path, threads: int = 1, min_presence: float = 0.5) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self._interpreter.get_output_details()}
        self._landmarks, self._presence, self._segmentation = (
            outputs["Identity"],
            outputs["Identity_1"],
            outputs["Identity_2"],
        )
        self.min_presence = min_presence

    def estimate(self, image: np.ndarray, roi: Roi) -> PoseEstimate | None:
        height, width = image.shape[:2]
        to_image = roi.to_image()
        to_input = cv2.invertAffineTransform(to_image)
        crop = cv2.warpAffine(
            image, to_input, (INPUT_SIZE, INPUT_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        self._interpreter.set_tensor(self._input, (crop.astype(np.float32) / 255.0)[None])
        self._interpreter.invoke()
        presence = float(self._interpreter.get_tensor(self._presence).reshape(-1)[0])
        if presence < self.min_presence:
            return None
        raw = self._interpreter.get_tensor(self._landmarks).reshape(-1, 5)[:LANDMARKS]
        points = np.concatenate([raw[:, :2], np.ones((LANDMARKS, 1), np.float32)], axis=1) @ to_image.T
        xy = points / np.array([width, height], dtype=np.float32)
        visibility = _sigmoid(raw[:, 3])
        logits = self._interpreter.get_tensor(self._segmentation)[0, :, :, 0]
        mask = cv2.warpAffine(
            _sigmoid(logits).astype(np.float32),
            to_image,
            (width, height),
            flags=cv2.INTER_LINEAR,
            borderMode=cv2.BORDER_CONSTANT,
            borderValue=(0.0,),
        )
        return PoseEstimate(xy=xy.astype(np.float64), visibility=visibility, mask=mask, score=presence)


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(values.astype(np.float32), -60, 60))))
