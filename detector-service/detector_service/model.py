"""MediaPipe pose + person mask + face detection, turned into persons and garment regions."""

from __future__ import annotations

import queue
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from detector_service.config import Settings
from detector_service.localise import Landmarks, Localiser, PersonLayout, foreground_box
from shared.boxes import box_centre, box_iou, clip_box, contains
from shared.contracts import DetectResponse, PersonDetection, Region, RegionDetection
from shared.images import resize_max_side


@dataclass
class _Engines:
    pose: Any
    faces: Any


@dataclass
class _Face:
    box: list[float]
    score: float


class DetectorModel:
    """Holds one MediaPipe graph set per inference thread (the graphs are not thread-safe)."""

    name = "mediapipe-pose-full+selfie-mask+face-full-range"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: queue.Queue[_Engines] = queue.Queue()

    def load(self) -> None:
        import mediapipe as mp  # heavy import: only when the service loads its model

        for _ in range(self.settings.inference_threads):
            engines = _Engines(
                pose=mp.solutions.pose.Pose(
                    static_image_mode=True,
                    model_complexity=1,
                    enable_segmentation=True,
                    min_detection_confidence=self.settings.min_pose_confidence,
                ),
                faces=mp.solutions.face_detection.FaceDetection(
                    model_selection=1, min_detection_confidence=self.settings.min_face_confidence
                ),
            )
            engines.pose.process(np.zeros((256, 192, 3), dtype=np.uint8))
            self._engines.put(engines)

    @contextmanager
    def _checkout(self) -> Iterator[_Engines]:
        engines = self._engines.get()
        try:
            yield engines
        finally:
            self._engines.put(engines)

    def predict(self, image: np.ndarray) -> DetectResponse:
        height, width = image.shape[:2]
        work = np.ascontiguousarray(resize_max_side(image, self.settings.work_side))
        with self._checkout() as engines:
            faces = self._faces(engines, work)
            layouts = self._people(engines, work, faces)
        layouts = [p for p in layouts if p.box[3] - p.box[1] >= self.settings.min_person_height]
        layouts.sort(key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        layouts = layouts[: self.settings.max_persons]
        persons = [
            PersonDetection(
                box=p.box,
                face_box=p.face_box,
                score=round(p.score, 4),
                full_shot=p.full_shot,
                keypoints_visible=p.keypoints_visible,
            )
            for p in layouts
        ]
        regions = [
            RegionDetection(person=index, region=r.region, box=r.box, score=round(r.score, 4))
            for index, p in enumerate(layouts)
            for r in p.regions
        ]
        if not persons:
            regions = [
                RegionDetection(person=None, region=Region.product, box=foreground_box(work), score=1.0)
            ]
        return DetectResponse(width=width, height=height, persons=persons, regions=regions)

    def _faces(self, engines: _Engines, image: np.ndarray) -> list[_Face]:
        result = engines.faces.process(image)
        faces = []
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            box = clip_box([rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height])
            if box[3] - box[1] >= self.settings.min_person_height / 10:
                faces.append(_Face(box=box, score=float(detection.score[0])))
        return sorted(faces, key=lambda f: -(f.box[3] - f.box[1]))

    def _people(self, engines: _Engines, image: np.ndarray, faces: list[_Face]) -> list[PersonLayout]:
        """Pose on the whole image, then on a window below each face no person has claimed yet."""
        people: list[PersonLayout] = []
        unclaimed = list(faces)
        whole = self._pose(engines, image, [0.0, 0.0, 1.0, 1.0])
        if whole is not None:
            landmarks, mask = whole
            face = _claim_face(unclaimed, landmarks)
            face_box = face.box if face else None
            people.append(Localiser(image, mask, face_box).layout(landmarks, face_box))
        while unclaimed and len(people) < self.settings.max_persons:
            face = unclaimed.pop(0)
            if any(
                contains(p.box, box_centre(face.box)) and p.face_box and box_iou(face.box, p.face_box) > 0.2
                for p in people
            ):
                continue
            seeded = self._pose(engines, image, _window_below_face(face.box, image.shape[1] / image.shape[0]))
            if seeded is None:
                continue
            landmarks, mask = seeded
            if not contains(_grow(face.box, 0.5), landmarks.xy[0]):
                continue  # the pose found someone else in the window
            people.append(Localiser(image, mask, face.box).layout(landmarks, face.box))
        return people

    def _pose(
        self, engines: _Engines, image: np.ndarray, window: list[float]
    ) -> tuple[Landmarks, np.ndarray] | None:
        height, width = image.shape[:2]
        x1, y1 = int(window[0] * width), int(window[1] * height)
        x2, y2 = max(int(window[2] * width), x1 + 1), max(int(window[3] * height), y1 + 1)
        crop = np.ascontiguousarray(image[y1:y2, x1:x2])
        result = engines.pose.process(crop)
        if result.pose_landmarks is None:
            return None
        points = result.pose_landmarks.landmark
        local = np.array([[p.x, p.y] for p in points])
        xy = (local * [x2 - x1, y2 - y1] + [x1, y1]) / [width, height]
        visibility = np.array([p.visibility for p in points])
        mask = np.zeros((height, width), dtype=np.float32)
        if result.segmentation_mask is not None:
            mask[y1:y2, x1:x2] = result.segmentation_mask
        return Landmarks(
            xy=xy, visibility=visibility, min_visibility=self.settings.min_keypoint_visibility
        ), mask


def _grow(box: list[float], fraction: float) -> list[float]:
    dx, dy = (box[2] - box[0]) * fraction, (box[3] - box[1]) * fraction
    return [box[0] - dx, box[1] - dy, box[2] + dx, box[3] + dy]


def _claim_face(faces: list[_Face], landmarks: Landmarks) -> _Face | None:
    """The detected face around this pose's nose, removed from the unclaimed list."""
    for face in faces:
        if contains(_grow(face.box, 0.25), landmarks.xy[0]):
            faces.remove(face)
            return face
    return None


def _window_below_face(face: list[float], aspect: float) -> list[float]:
    """Where the body of the person with this face should be: a generous window under the head.

    ``aspect`` is width / height of the image, so that the window is measured in face sizes.
    """
    size_y = max((face[2] - face[0]) * aspect, face[3] - face[1])
    size_x = size_y / aspect
    cx = (face[0] + face[2]) / 2
    return clip_box([cx - 3.0 * size_x, face[1] - 0.6 * size_y, cx + 3.0 * size_x, face[3] + 8.0 * size_y])
