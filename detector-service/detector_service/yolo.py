"""The optional YOLO backend: a garment detector trained with ultralytics (make train-detector, or a
store's own) and exported to ONNX, served here with onnxruntime.

The class names come from the ONNX metadata ultralytics writes; each must be one of our categories
or be mapped to one by ``DETECTOR_YOLO_CLASS_MAP`` (JSON, e.g. {"shirt": "topwear"}); classes
mapped to nothing are ignored (and said so at load).
"""

from __future__ import annotations

import ast
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from shared.boxes import box_iou, clip_box
from shared.contracts import Category

logger = logging.getLogger("detector-service")
LETTERBOX_GREY = 114


@dataclass(frozen=True)
class GarmentDetection:
    category: Category
    box: list[float]  # normalised to the image
    score: float


def class_categories(names: dict[int, str], class_map: dict[str, str]) -> dict[int, Category]:
    """Which of the model's classes are which category; unknown ones are dropped with a warning."""
    mapping: dict[int, Category] = {}
    for index, name in names.items():
        target = class_map.get(name, name).strip().lower()
        if target in Category.__members__:
            mapping[index] = Category(target)
        else:
            logger.warning("YOLO class ignored: not a category", extra={"yolo_class": name})
    if not mapping:
        raise ValueError(f"none of the YOLO classes {sorted(names.values())} maps to a category")
    return mapping


class YoloGarments:
    def __init__(self, weights: Path, class_map_json: str, min_score: float, threads: int) -> None:
        import onnxruntime

        if weights.suffix != ".onnx":
            raise ValueError(f"{weights}: serve the ONNX export (make train-detector writes one)")
        if not weights.exists():
            raise FileNotFoundError(f"YOLO weights {weights} do not exist")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        self._session = onnxruntime.InferenceSession(
            str(weights), options, providers=["CPUExecutionProvider"]
        )
        metadata = self._session.get_modelmeta().custom_metadata_map
        names = ast.literal_eval(metadata.get("names", "{}"))
        self.categories = class_categories(names, json.loads(class_map_json or "{}"))
        shape = self._session.get_inputs()[0].shape
        self.size = (
            int(shape[2]) if isinstance(shape[2], int) else int(ast.literal_eval(metadata["imgsz"])[0])
        )
        self.min_score = min_score

    def detect(self, image: np.ndarray) -> list[GarmentDetection]:
        height, width = image.shape[:2]
        scale = self.size / max(height, width)
        resized = cv2.resize(image, (max(1, round(width * scale)), max(1, round(height * scale))))
        canvas = np.full((self.size, self.size, 3), LETTERBOX_GREY, np.uint8)
        pad_x, pad_y = (self.size - resized.shape[1]) // 2, (self.size - resized.shape[0]) // 2
        canvas[pad_y : pad_y + resized.shape[0], pad_x : pad_x + resized.shape[1]] = resized
        batch = (canvas.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        output = self._session.run(None, {self._session.get_inputs()[0].name: batch})[0][
            0
        ]  # (4 + classes, N)
        boxes, scores = output[:4].T, output[4:].T
        classes = scores.argmax(axis=1)
        best = scores[np.arange(len(classes)), classes]
        keep = (best >= self.min_score) & np.isin(classes, list(self.categories))
        found = []
        for (cx, cy, w, h), cls, score in zip(boxes[keep], classes[keep], best[keep], strict=True):
            corners = [
                (cx - w / 2 - pad_x) / scale / width,
                (cy - h / 2 - pad_y) / scale / height,
                (cx + w / 2 - pad_x) / scale / width,
                (cy + h / 2 - pad_y) / scale / height,
            ]
            found.append(GarmentDetection(self.categories[int(cls)], clip_box(corners), float(score)))
        return non_maximum_suppression(found)


def non_maximum_suppression(found: list[GarmentDetection], threshold: float = 0.5) -> list[GarmentDetection]:
    """Per category, best first, dropping boxes that overlap a kept one."""
    kept: list[GarmentDetection] = []
    for detection in sorted(found, key=lambda d: -d.score):
        if all(k.category != detection.category or box_iou(k.box, detection.box) < threshold for k in kept):
            kept.append(detection)
    return kept
