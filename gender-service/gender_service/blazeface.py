"""Face detection with MediaPipe's BlazeFace models (TensorFlow Lite files of the PyPI ``mediapipe``
wheel): full range for whole photos, short range for a crop around one head.

The image is letterboxed (scaled so its longer side is the model's input side, padded with black
at the right or bottom) so faces keep their shape. Full range (192×192) scores 2304 anchors, one
per cell of a 48×48 grid with stride 4: fine enough for the small faces of full-body shots (faces
up to 5 m away). Short range (128×128, about four times cheaper) scores 896: 2 per cell of a 16×16
grid, then 6 per cell of an 8×8 grid; it wants a face that fills much of the picture. Each
regressor is ``[dx, dy, w, h, 6 × (x, y) keypoints]`` in input pixels, relative to the anchor
centre. Overlapping detections are merged by weighted non-maximum suppression, as MediaPipe does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from gender_service.tflite import TFLiteModel
from shared.images import rgb_pixels

LOGIT_CLIP = 100.0
NMS_IOU = 0.3
KEYPOINT_NAMES = ("right_eye", "left_eye", "nose", "mouth", "right_ear", "left_ear")


@dataclass(frozen=True)
class DetectorSpec:
    """A BlazeFace model's input side and its anchor grids, (stride, anchors per cell) in the order
    of the model's outputs."""

    input_size: int
    anchor_layers: tuple[tuple[int, int], ...]


FULL_RANGE = DetectorSpec(192, ((4, 1),))
SHORT_RANGE = DetectorSpec(128, ((8, 2), (16, 6)))


@dataclass(frozen=True)
class Face:
    """One detected face in pixels of the original image (the box may extend past its edges)."""

    box: tuple[float, float, float, float]  # x1, y1, x2, y2
    score: float
    keypoints: np.ndarray  # (6, 2) x, y; see KEYPOINT_NAMES

    @property
    def width(self) -> float:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> float:
        return self.box[3] - self.box[1]


@dataclass(frozen=True)
class Letterbox:
    """The model input and the factor that maps its pixels back to the original image."""

    pixels: np.ndarray  # (side, side, 3) uint8, image at the top left, black elsewhere
    scale: float  # input pixels per original pixel


def anchor_centres(spec: DetectorSpec) -> np.ndarray:
    """(N, 2) anchor centres in input pixels, in the order of the model's outputs."""
    layers = []
    for stride, per_cell in spec.anchor_layers:
        cells = spec.input_size // stride
        rows, cols = np.meshgrid(np.arange(cells), np.arange(cells), indexing="ij")
        centres = np.stack([(cols + 0.5) * stride, (rows + 0.5) * stride], axis=-1).reshape(-1, 2)
        layers.append(np.repeat(centres, per_cell, axis=0))
    return np.concatenate(layers).astype(np.float32)


def letterbox(picture: Image.Image, side: int) -> Letterbox:
    width, height = picture.size
    scale = side / max(height, width)
    size = (min(side, max(1, round(width * scale))), min(side, max(1, round(height * scale))))
    factor = int(max(height, width) // side)
    if factor >= 2:  # a box filter by a whole factor first: several times faster than resizing it all
        picture = picture.reduce(factor)
    if picture.size != size:
        picture = picture.resize(size, Image.Resampling.BILINEAR)
    resized = rgb_pixels(picture)
    canvas = np.zeros((side, side, 3), dtype=np.uint8)
    canvas[: size[1], : size[0]] = resized
    return Letterbox(pixels=canvas, scale=scale)


def to_original(box: np.ndarray, scale: float) -> tuple[float, float, float, float]:
    """A box in model-input pixels, in pixels of the original image (the padding is right/bottom)."""
    x1, y1, x2, y2 = (float(v) / scale for v in box)
    return x1, y1, x2, y2


def decode(logits: np.ndarray, regressors: np.ndarray, anchors: np.ndarray) -> tuple[np.ndarray, ...]:
    """Scores (N,), boxes (N, 4) x1 y1 x2 y2 and keypoints (N, 6, 2), all in input pixels."""
    scores = 1.0 / (1.0 + np.exp(-np.clip(logits.astype(np.float64), -LOGIT_CLIP, LOGIT_CLIP)))
    centres = anchors + regressors[:, 0:2]
    half_sizes = regressors[:, 2:4] / 2.0
    boxes = np.concatenate([centres - half_sizes, centres + half_sizes], axis=1)
    keypoints = regressors[:, 4:16].reshape(-1, 6, 2) + anchors[:, None, :]
    return scores, boxes, keypoints


def iou_with(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=1)
    area = np.prod(np.clip(box[2:] - box[:2], 0.0, None))
    areas = np.prod(np.clip(boxes[:, 2:] - boxes[:, :2], 0.0, None), axis=1)
    union = area + areas - intersection
    return np.where(union > 0, intersection / np.maximum(union, 1e-9), 0.0)


def weighted_nms(
    scores: np.ndarray, boxes: np.ndarray, keypoints: np.ndarray, iou_threshold: float = NMS_IOU
) -> list[tuple[float, np.ndarray, np.ndarray]]:
    """MediaPipe's weighted NMS: each cluster of overlapping detections becomes one detection
    whose box and keypoints are the score-weighted mean of the cluster, scored by its best member."""
    order = np.argsort(-scores)
    scores, boxes, keypoints = scores[order], boxes[order], keypoints[order]
    merged = []
    remaining = np.arange(len(scores))
    while remaining.size:
        best = remaining[0]
        cluster = remaining[iou_with(boxes[best], boxes[remaining]) > iou_threshold]
        cluster = cluster if cluster.size else remaining[:1]
        weights = scores[cluster][:, None]
        box = (boxes[cluster] * weights).sum(axis=0) / weights.sum()
        points = (keypoints[cluster] * weights[:, :, None]).sum(axis=0) / weights.sum()
        merged.append((float(scores[best]), box, points))
        remaining = np.setdiff1d(remaining, cluster, assume_unique=True)  # still best first
    return merged


class FaceDetector:
    """A BlazeFace model on a whole image; thread-safe once loaded."""

    def __init__(self, model_path: Path, spec: DetectorSpec, threads: int = 1) -> None:
        self.model_path = model_path
        self.spec = spec
        self._anchors = anchor_centres(spec)
        self._model = TFLiteModel(model_path, threads)
        self._loaded = False

    def load(self) -> None:
        self._model.load()
        self._loaded = True

    def detect(self, picture: Image.Image, min_score: float) -> list[Face]:
        """Faces scoring at least ``min_score``, best first, in pixels of ``picture`` (RGB)."""
        if not self._loaded:
            raise RuntimeError("the face detector is not loaded")
        boxed = letterbox(picture, self.spec.input_size)
        logits, regressors = self._infer(boxed.pixels)
        scores, boxes, keypoints = decode(logits, regressors, self._anchors)
        keep = scores >= min_score
        if not keep.any():
            return []
        detections = weighted_nms(scores[keep], boxes[keep], keypoints[keep])
        return [
            Face(box=to_original(box, boxed.scale), score=score, keypoints=points / boxed.scale)
            for score, box, points in detections
        ]

    def _infer(self, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Score logits (N,) and regressors (N, 16) for one letterboxed image."""
        outputs = self._model.run(pixels[None].astype(np.float32) / 127.5 - 1.0)
        # two outputs over all anchors: scores (1, N, 1) and regressors (1, N, 16)
        by_width = {o.shape[-1]: o[0] for o in outputs}
        return by_width[1][:, 0], by_width[16]
