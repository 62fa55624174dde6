"""Persons and garment regions: BlazePose person detection, landmarks and person mask for every
person found (the models of the mediapipe wheel, run with LiteRT), then the keypoint localiser."""

from __future__ import annotations

import importlib.util
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from threadpoolctl import threadpool_limits

from detector_service.blazepose import PoseLandmarker
from detector_service.config import Settings
from detector_service.keypoints import KeypointFinder
from detector_service.localise import Landmarks, Localiser, PersonLayout
from detector_service.persons import BodyDetection, PersonDetector
from detector_service.yolo import YoloGarments
from shared.boxes import box_iou, foreground_box
from shared.contracts import (
    CATEGORY_REGION,
    REGION_CATEGORIES,
    DetectResponse,
    PersonDetection,
    Region,
    RegionDetection,
)

MIN_TILE_SIDE = 96


def mediapipe_modules() -> Path:
    """Where the mediapipe wheel keeps its .tflite models (found without importing mediapipe)."""
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the mediapipe package (0.10.21) is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "modules"


def pose_models() -> tuple[Path, Path]:
    """The person detector's and the landmark model's files in the mediapipe wheel."""
    modules = mediapipe_modules()
    return (
        modules / "pose_detection" / "pose_detection.tflite",
        modules / "pose_landmark" / "pose_landmark_full.tflite",
    )


@dataclass
class _Engines:
    bodies: PersonDetector
    landmarks: PoseLandmarker


class DetectorModel:
    """One single-threaded interpreter pair per inference thread (a LiteRT interpreter is not
    thread-safe), and one pair with ``model_threads`` threads for a request that has the service to
    itself: with others running beside it, more threads per request only contend for the cores
    (measured: 33 ms of CPU per catalog image with one thread, 44 ms with two)."""

    name = "blazepose-detector+landmark-full (LiteRT)"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engines: queue.Queue[_Engines] = queue.Queue()
        self._alone: _Engines | None = None  # the multi-threaded pair
        self._running = 0
        self._lock = threading.Lock()
        self.yolo: YoloGarments | None = None
        self.keypoints = KeypointFinder(settings.vocabulary)
        self.version = ""  # once loaded: settings.model_version of the model files below

    def load(self) -> None:
        # requests run in parallel on the inference threads, so OpenCV's and BLAS's own threads only
        # contend with them: the keypoints cost 14 ms of CPU per catalog photo with them, 7.8 without
        cv2.setNumThreads(1)
        threadpool_limits(1)
        self.keypoints.load()
        backend = self.settings.garment_backend()
        if backend != "keypoints":
            if self.settings.yolo_weights is None:
                raise ValueError(f"DETECTOR_BACKEND={backend} needs DETECTOR_YOLO_WEIGHTS")
            self.yolo = YoloGarments(
                self.settings.yolo_weights,
                self.settings.yolo_class_map,
                self.settings.yolo_min_score,
                self.settings.model_threads,
            )
        for _ in range(self.settings.inference_threads):
            self._engines.put(self._new_engines(threads=1))
        if self.settings.model_threads > 1:
            self._alone = self._new_engines(self.settings.model_threads)
        self.version = self.settings.model_version(self._model_files())

    def _model_files(self) -> list[Path]:
        files = [*pose_models(), self.settings.vocabulary]
        return files + ([self.settings.yolo_weights] if self.yolo and self.settings.yolo_weights else [])

    def _new_engines(self, threads: int) -> _Engines:
        detector, landmarker = pose_models()
        engines = _Engines(
            bodies=PersonDetector(
                detector,
                threads=threads,
                min_score=self.settings.min_person_confidence,
            ),
            landmarks=PoseLandmarker(
                landmarker,
                threads=threads,
                min_presence=self.settings.min_pose_confidence,
            ),
        )
        engines.bodies.detect(np.zeros((256, 192, 3), dtype=np.uint8))
        return engines

    def description(self) -> str:
        backend = self.settings.garment_backend()
        garments = {"keypoints": "keypoint regions", "yolo": "YOLO", "merged": "keypoint regions + YOLO"}[
            backend
        ]
        return f"{self.name}; garments: {garments}"

    @contextmanager
    def _checkout(self) -> Iterator[_Engines]:
        """The multi-threaded pair when no other request is running (then nobody holds it),
        else a single-threaded one."""
        with self._lock:
            self._running += 1
            alone = self._alone if self._running == 1 else None
        engines = alone or self._engines.get()
        try:
            yield engines
        finally:
            if alone is None:
                self._engines.put(engines)
            with self._lock:
                self._running -= 1

    def predict(self, image: np.ndarray, colours: bool = True, keypoints: bool = False) -> DetectResponse:
        """Persons and regions; with ``keypoints``, the photo's keypoints too."""
        height, width = image.shape[:2]
        work = _work_copy(image, self.settings.work_side)
        with self._checkout() as engines:
            bodies = self._bodies(engines, work)
            layouts = self._people(engines, work, bodies, colours)
        layouts = [p for p in layouts if self._is_person(p)]
        layouts.sort(key=lambda p: -(p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        layouts = layouts[: self.settings.max_persons]
        persons = [
            PersonDetection(
                box=p.box,
                face_box=p.face_box,
                score=round(p.score, 4),
                full_shot=p.full_shot,
                view=p.view,
                keypoints_visible=p.keypoints_visible,
            )
            for p in layouts
        ]
        regions = self._regions(work, layouts)
        return DetectResponse(
            model=self.description(),
            width=width,
            height=height,
            persons=persons,
            regions=regions,
            keypoints=self.keypoints.predict(image) if keypoints else None,
        )

    def _is_person(self, layout: PersonLayout) -> bool:
        tall_enough = layout.box[3] - layout.box[1] >= self.settings.min_person_height
        return tall_enough and layout.bare_skin >= self.settings.min_bare_skin

    def predict_many(
        self, images: list[np.ndarray], colours: bool = True, keypoints: bool = False
    ) -> list[DetectResponse]:
        return [self.predict(image, colours, keypoints) for image in images]

    def _regions(self, image: np.ndarray, layouts: list[PersonLayout]) -> list[RegionDetection]:
        """Garment regions from the keypoints, from YOLO, or both (YOLO adding what the keypoints
        did not cover); a photo with neither is one product."""
        backend = self.settings.garment_backend()
        regions = []
        if backend != "yolo":
            regions = [
                RegionDetection(
                    person=index, region=r.region, box=r.box, score=round(r.score, 4), colour=r.colour
                )
                for index, p in enumerate(layouts)
                for r in p.regions
            ]
        if self.yolo is not None:
            for garment in self.yolo.detect(image):
                region = CATEGORY_REGION[garment.category]
                if backend == "merged" and any(
                    garment.category in REGION_CATEGORIES[r.region] and box_iou(r.box, garment.box) >= 0.5
                    for r in regions
                ):
                    continue  # the keypoints already have it
                regions.append(
                    RegionDetection(
                        person=_owner(garment.box, layouts),
                        region=region,
                        box=garment.box,
                        score=round(garment.score, 4),
                        category=garment.category,
                    )
                )
        if not regions and not layouts:
            regions = [
                RegionDetection(person=None, region=Region.product, box=foreground_box(image), score=1.0)
            ]
        return regions

    def _bodies(self, engines: _Engines, image: np.ndarray) -> list[BodyDetection]:
        """People found on the whole image and, for a wide photo, on overlapping square tiles across
        it (small or partly hidden people stand out there); one detection per face."""
        found = engines.bodies.detect(image)
        for tile in _square_tiles(image.shape[1], image.shape[0]):
            found += [_from_tile(body, tile) for body in engines.bodies.detect(_crop(image, tile))]
        found.sort(key=lambda b: -b.score)
        kept: list[BodyDetection] = []
        for body in found:
            if all(box_iou(body.face, other.face) < 0.3 for other in kept):
                kept.append(body)
        return kept[: 2 * self.settings.max_persons]

    def _people(
        self, engines: _Engines, image: np.ndarray, bodies: list[BodyDetection], colours: bool
    ) -> list[PersonLayout]:
        height, width = image.shape[:2]
        people: list[PersonLayout] = []
        for body in bodies:
            if len(people) >= self.settings.max_persons:
                break
            pose = engines.landmarks.estimate(image, body.roi(width, height))
            if pose is None:
                continue
            landmarks = Landmarks(
                pose.xy, pose.visibility, min_visibility=self.settings.min_keypoint_visibility
            )
            layout = Localiser(image, pose.mask).layout(landmarks, colours)
            if all(box_iou(layout.box, p.box) < 0.6 for p in people):
                people.append(layout)
        return people


def _owner(box: list[float], layouts: list[PersonLayout]) -> int | None:
    """The person whose box holds the centre of this one (the smallest such), if any."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    holders = [
        (index, (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        for index, p in enumerate(layouts)
        if p.box[0] <= cx <= p.box[2] and p.box[1] <= cy <= p.box[3]
    ]
    return min(holders, key=lambda h: h[1])[0] if holders else None


def _work_copy(image: np.ndarray, side: int) -> np.ndarray:
    height, width = image.shape[:2]
    scale = side / max(height, width)
    if scale >= 1.0:
        return np.ascontiguousarray(image)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    # area averaging only pays for a large reduction; bilinear is several times faster
    interpolation = cv2.INTER_AREA if scale < 0.5 else cv2.INTER_LINEAR
    return np.ascontiguousarray(cv2.resize(image, size, interpolation=interpolation))


def _crop(image: np.ndarray, box: list[float]) -> np.ndarray:
    height, width = image.shape[:2]
    x1, y1, x2, y2 = int(box[0] * width), int(box[1] * height), int(box[2] * width), int(box[3] * height)
    return np.ascontiguousarray(image[y1:y2, x1:x2])


def _square_tiles(width: int, height: int, min_ratio: float = 1.3, most: int = 5) -> list[list[float]]:
    """Overlapping square windows (normalised) across a wide image, where people stand side by side
    and may be small; a tall photo is not cut, that would halve the people in it. A strip too thin
    to hold a person gets none."""
    if width < min_ratio * height or height < MIN_TILE_SIDE:
        return []
    count = min(int(np.ceil(2 * width / height)) - 1, most)
    size = height / width
    return [[float(s), 0.0, float(s + size), 1.0] for s in np.linspace(0.0, 1.0 - size, count)]


def _from_tile(body: BodyDetection, tile: list[float]) -> BodyDetection:
    """A detection made on a tile, in the coordinates of the whole image."""
    x0, y0 = tile[0], tile[1]
    sx, sy = tile[2] - tile[0], tile[3] - tile[1]
    face = body.face
    return BodyDetection(
        score=body.score,
        face=(x0 + face[0] * sx, y0 + face[1] * sy, x0 + face[2] * sx, y0 + face[3] * sy),
        hip=(x0 + body.hip[0] * sx, y0 + body.hip[1] * sy),
        reach=(x0 + body.reach[0] * sx, y0 + body.reach[1] * sy),
    )
