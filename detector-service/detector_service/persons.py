"""Every person in the photo: BlazePose's own person detector (the ``pose_detection.tflite`` that ships
in the mediapipe wheel) run directly with LiteRT, so that all its detections are kept, not only
the best one the pose solution tracks.

Each detection gives a face box, the hip centre and a radius that circumscribes the whole body;
the pose landmarker is then run on a square window around each body.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from detector_service.blazepose import Roi
from shared.boxes import box_iou

INPUT_SIZE = 224
# SsdAnchorsCalculator options of mediapipe/modules/pose_detection/pose_detection_cpu.pbtxt
STRIDES = (8, 16, 32, 32, 32)
ANCHORS_PER_LAYER = 2  # aspect ratio 1.0 plus the interpolated scale, fixed anchor size
SCORE_CLIP = 100.0


@dataclass(frozen=True)
class BodyDetection:
    """Normalised to the image: the ``face`` box, the ``hip`` centre and ``reach``, a point on the
    circle around the whole body (the detector's two alignment keypoints)."""

    score: float
    face: tuple[float, float, float, float]
    hip: tuple[float, float]
    reach: tuple[float, float]

    def roi(self, width: int, height: int) -> Roi:
        return Roi.from_circle(
            (self.hip[0] * width, self.hip[1] * height), (self.reach[0] * width, self.reach[1] * height)
        )


def ssd_anchors() -> np.ndarray:
    """(2254, 2) anchor centres in 0..1 for the 224x224 input."""
    centres = []
    layer = 0
    while layer < len(STRIDES):
        stride = STRIDES[layer]
        repeats = 0
        while layer < len(STRIDES) and STRIDES[layer] == stride:
            repeats += ANCHORS_PER_LAYER
            layer += 1
        cells = int(np.ceil(INPUT_SIZE / stride))
        for y in range(cells):
            for x in range(cells):
                centres.extend([((x + 0.5) / cells, (y + 0.5) / cells)] * repeats)
    return np.asarray(centres, dtype=np.float32)


class PersonDetector:
    def __init__(self, model_path: Path, threads: int = 1, min_score: float = 0.5) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model_path), num_threads=threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {o["name"]: o["index"] for o in self._interpreter.get_output_details()}
        self._boxes, self._scores = outputs["Identity"], outputs["Identity_1"]
        self._anchors = ssd_anchors()
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[BodyDetection]:
        height, width = image.shape[:2]
        side = max(height, width)
        scale = INPUT_SIZE / side
        resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
        canvas = np.zeros((INPUT_SIZE, INPUT_SIZE, 3), np.float32)  # letterbox, zero border as mediapipe
        pad_x, pad_y = (INPUT_SIZE - resized.shape[1]) // 2, (INPUT_SIZE - resized.shape[0]) // 2
        canvas[pad_y : pad_y + resized.shape[0], pad_x : pad_x + resized.shape[1]] = resized / 127.5 - 1.0
        self._interpreter.set_tensor(self._input, canvas[None])
        self._interpreter.invoke()
        raw = self._interpreter.get_tensor(self._boxes)[0]
        logits = np.clip(
            self._interpreter.get_tensor(self._scores)[0, :, 0].astype(np.float64), -SCORE_CLIP, SCORE_CLIP
        )
        scores = 1.0 / (1.0 + np.exp(-logits))
        keep = np.flatnonzero(scores >= self.min_score)
        if keep.size == 0:
            return []
        decoded = self._decode(raw[keep], self._anchors[keep])
        # back from the letterboxed square to the image: x' = (x * 224 - pad_x) / (width * scale)
        offset = np.array([pad_x, pad_y]) / INPUT_SIZE
        extent = np.array([width, height]) * scale / INPUT_SIZE
        detections = []
        for index in _weighted_nms(decoded["box"], scores[keep]):
            box = decoded["box"][index]
            centre = (box[:2] - offset) / extent
            size = box[2:] / extent
            hip = (decoded["points"][index][0] - offset) / extent
            reach = (decoded["points"][index][1] - offset) / extent
            detections.append(
                BodyDetection(
                    score=float(scores[keep][index]),
                    face=(
                        float(centre[0] - size[0] / 2),
                        float(centre[1] - size[1] / 2),
                        float(centre[0] + size[0] / 2),
                        float(centre[1] + size[1] / 2),
                    ),
                    hip=(float(hip[0]), float(hip[1])),
                    reach=(float(reach[0]), float(reach[1])),
                )
            )
        return detections

    @staticmethod
    def _decode(raw: np.ndarray, anchors: np.ndarray) -> dict[str, np.ndarray]:
        """Boxes as (cx, cy, w, h) and 4 keypoints, in 0..1 of the letterboxed input."""
        centre = raw[:, :2] / INPUT_SIZE + anchors
        size = raw[:, 2:4] / INPUT_SIZE
        points = raw[:, 4:12].reshape(-1, 4, 2) / INPUT_SIZE + anchors[:, None, :]
        return {"box": np.concatenate([centre, size], axis=1), "points": points}


def _weighted_nms(boxes: np.ndarray, scores: np.ndarray, threshold: float = 0.3) -> list[int]:
    """Indices of the kept detections, best first (the best of each overlapping group)."""
    corners = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    order = list(np.argsort(-scores))
    kept = []
    while order:
        best = order.pop(0)
        kept.append(int(best))
        order = [i for i in order if box_iou(corners[best], corners[i]) <= threshold]
    return kept
