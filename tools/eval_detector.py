"""How well the detection pipeline finds persons and the garments they wear, against labelled photos.

The items are those the gateway would answer with (detector regions, classified by the embedding
service's head, resolved into items), so the figures are the product's, not one model's in isolation.
For each labelled photo folder (labels.json as in ../shared/queries/dev):

- per category: recall at IoU 0.5 (all garments, and fully visible ones: visible_fraction >= 0.9),
  precision at IoU 0.5, category precision (of the items that overlap a labelled garment at IoU 0.5,
  the share with that garment's category), average precision at IoU 0.5 and their mean (mAP@0.5);
- persons: recall (IoU 0.3 with the labelled person box), full-shot and view accuracy;
- detector latency per photo (p50), and for multi-person collages made from the single-person photos.

    python -m tools.eval_detector --queries ../shared/queries/dev [--yolo weights.pt]
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gateway.config import Settings
from gateway.main import make_clients
from gateway.pipeline import Query, Recommender, Timings, analysis_copy
from shared.boxes import box_iou
from shared.contracts import CATEGORIES, Category
from shared.images import decode_image
from shared.service import InferencePool
from tools.reports import write_report
from tools.stack import ROOT, Stack, free_port, running

IOU = 0.5
FULLY_VISIBLE = 0.9
SERVICES = ("detector-service", "gender-service", "embedding-service")


@dataclass
class Photo:
    name: str
    data: bytes
    width: int
    height: int
    persons: list[dict[str, Any]]


@dataclass
class Prediction:
    category: str
    box: list[float]  # normalised
    score: float


@dataclass
class Tally:
    """Counts over a set of photos, per category."""

    labelled: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    found: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    labelled_full: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    found_full: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    predicted: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    correct: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    overlapping: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    right_category: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    scored: dict[str, list[tuple[float, bool]]] = field(default_factory=lambda: defaultdict(list))
    persons_labelled: int = 0
    persons_found: int = 0
    full_shot_right: int = 0
    view_right: int = 0
    misses: list[str] = field(default_factory=list)
    latency_ms: list[float] = field(default_factory=list)


def load_photos(folder: Path) -> list[Photo]:
    labels = json.loads((folder / "labels.json").read_text())
    return [
        Photo(
            str(e["path"]),
            (folder / e["path"]).read_bytes(),
            int(e["width"]),
            int(e["height"]),
            list(e["persons"]),
        )
        for e in labels
    ]


def collages(photos: list[Photo], sizes: tuple[int, ...] = (2, 3, 4)) -> Iterator[Photo]:
    """Single-person photos side by side (same height): several people with known labels."""
    single = [p for p in photos if len(p.persons) == 1 and p.height >= p.width]
    for size in sizes:
        for start in range(0, len(single) - size + 1, size):
            yield _collage(single[start : start + size])


def _collage(parts: list[Photo]) -> Photo:
    height = 800
    images = [Image.open(io.BytesIO(p.data)).convert("RGB") for p in parts]
    widths = [round(img.width * height / img.height) for img in images]
    canvas = Image.new("RGB", (sum(widths), height), "white")
    persons, x = [], 0
    for part, image, width in zip(parts, images, widths, strict=True):
        canvas.paste(image.resize((width, height)), (x, 0))
        for person in part.persons:
            persons.append(_shift_person(person, x / sum(widths), width / sum(widths)))
        x += width
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=92)
    name = "+".join(p.name.rsplit(".", 1)[0] for p in parts)
    return Photo(f"collage:{name}", buffer.getvalue(), canvas.width, canvas.height, persons)


def _shift_person(person: dict[str, Any], offset: float, scale: float) -> dict[str, Any]:
    def shift(box: list[float]) -> list[float]:
        return [offset + box[0] * scale, box[1], offset + box[2] * scale, box[3]]

    return {
        **person,
        "person_box": shift(person["person_box"]),
        "garments": [{**g, "box": shift(g["box"])} for g in person["garments"]],
    }


async def predict(recommender: Recommender, photo: Photo) -> tuple[list[Prediction], list[Any], float]:
    timings = Timings()
    query = Query(data=photo.data, k=1, gender="auto", categories=set(CATEGORIES))
    found = await recommender.analyse(query, timings, [])
    items = [Prediction(i.category.value, i.box, i.score) for i in found.items]
    return items, found.persons, timings.stages["detect"]


def score_photo(photo: Photo, items: list[Prediction], persons: list[Any], tally: Tally) -> None:
    garments = [g for p in photo.persons for g in p["garments"]]
    for garment in garments:
        category = garment["category"]
        best = max((box_iou(garment["box"], i.box) for i in items if i.category == category), default=0.0)
        full = garment["visible_fraction"] >= FULLY_VISIBLE
        tally.labelled[category] += 1
        tally.found[category] += best >= IOU
        if full:
            tally.labelled_full[category] += 1
            tally.found_full[category] += best >= IOU
            if best < IOU:
                tally.misses.append(f"{photo.name}: {category} (best IoU {best:.2f})")
    for item in sorted(items, key=lambda i: -i.score):
        tally.predicted[item.category] += 1
        same = [box_iou(g["box"], item.box) for g in garments if g["category"] == item.category]
        hit = max(same, default=0.0) >= IOU
        tally.correct[item.category] += hit
        tally.scored[item.category].append((item.score, hit))
        overlaps = [(box_iou(g["box"], item.box), g["category"]) for g in garments]
        best_overlap = max(overlaps, default=(0.0, ""))
        if best_overlap[0] >= IOU:
            tally.overlapping[item.category] += 1
            tally.right_category[item.category] += best_overlap[1] == item.category
    _score_persons(photo, persons, tally)


def _score_persons(photo: Photo, persons: list[Any], tally: Tally) -> None:
    boxes = [p.box for p in persons]
    used: set[int] = set()
    for label in photo.persons:
        tally.persons_labelled += 1
        candidates = [(box_iou(label["person_box"], box), i) for i, box in enumerate(boxes) if i not in used]
        overlap, index = max(candidates, default=(0.0, -1))
        if overlap < 0.3:
            tally.misses.append(f"{photo.name}: person not found")
            continue
        used.add(index)
        tally.persons_found += 1
        tally.full_shot_right += persons[index].full_shot == label["full_shot"]
        tally.view_right += persons[index].view == label["view"]


def average_precision(scored: list[tuple[float, bool]], positives: int) -> float | None:
    """VOC all-point interpolated AP; None without labelled positives."""
    if positives == 0:
        return None
    ranked = sorted(scored, key=lambda s: -s[0])
    hits = np.cumsum([hit for _, hit in ranked]) if ranked else np.array([])
    precision = hits / np.arange(1, len(ranked) + 1) if ranked else np.array([])
    recall = hits / positives if ranked else np.array([])
    envelope = np.maximum.accumulate(precision[::-1])[::-1] if ranked else np.array([])
    ap, previous = 0.0, 0.0
    for r, p in zip(recall, envelope, strict=True):
        ap += (r - previous) * p
        previous = r
    return round(float(ap), 4)


def _ratio(numerator: int, denominator: int) -> float | None:
    return round(numerator / denominator, 4) if denominator else None


def summarise(tally: Tally) -> dict[str, Any]:
    per_category: dict[str, dict[str, Any]] = {}
    for category in [c.value for c in Category]:
        if not (tally.labelled[category] or tally.predicted[category]):
            continue
        per_category[category] = {
            "labelled": tally.labelled[category],
            "recall": _ratio(tally.found[category], tally.labelled[category]),
            "recall_fully_visible": _ratio(tally.found_full[category], tally.labelled_full[category]),
            "predicted": tally.predicted[category],
            "precision": _ratio(tally.correct[category], tally.predicted[category]),
            "category_precision": _ratio(tally.right_category[category], tally.overlapping[category]),
            "ap50": average_precision(tally.scored[category], tally.labelled[category]),
        }
    aps = [float(row["ap50"]) for row in per_category.values() if row["ap50"] is not None]
    return {
        "per_category": per_category,
        "overall": {
            "recall_fully_visible": _ratio(sum(tally.found_full.values()), sum(tally.labelled_full.values())),
            "recall": _ratio(sum(tally.found.values()), sum(tally.labelled.values())),
            "precision": _ratio(sum(tally.correct.values()), sum(tally.predicted.values())),
            "category_precision": _ratio(sum(tally.right_category.values()), sum(tally.overlapping.values())),
            "map50": round(float(np.mean(aps)), 4) if aps else None,
            "person_recall": _ratio(tally.persons_found, tally.persons_labelled),
            "full_shot_accuracy": _ratio(tally.full_shot_right, tally.persons_found),
            "view_accuracy": _ratio(tally.view_right, tally.persons_found),
            "detect_p50_ms": round(statistics.median(tally.latency_ms), 1) if tally.latency_ms else None,
        },
        "misses": tally.misses,
    }


async def evaluate(stack: Stack, sets: dict[str, list[Photo]]) -> dict[str, Any]:
    settings = stack.gateway_settings()
    clients = make_clients(settings)
    recommender = Recommender(settings, clients, InferencePool(2, 64, "eval"))
    results = {}
    try:
        for name, photos in sets.items():
            tally = Tally()
            await predict(recommender, photos[0])  # warm-up
            for photo in photos:
                items, persons, detect_ms = await predict(recommender, photo)
                tally.latency_ms.append(detect_ms)
                score_photo(photo, items, persons, tally)
            results[name] = {"photos": len(photos), **summarise(tally)}
    finally:
        await clients.aclose()
    return results


def detector_latency(stack: Stack, photo_path: Path, persons: int, rounds: int = 50) -> float:
    """p50 of the detector service alone on one photo, sent as the gateway sends it (a JPEG of at
    most 1024 px), decoding and HTTP included, over loopback."""
    import httpx

    image = decode_image(photo_path.read_bytes())
    data = analysis_copy(image, Settings())
    url = f"{stack.url('detector-service')}/detect"
    times = []
    with httpx.Client(timeout=30) as client:
        client.post(url, files={"image": ("p.jpg", data)})
        for _ in range(rounds):
            started = time.perf_counter()
            body = client.post(url, files={"image": ("p.jpg", data)}).json()
            times.append((time.perf_counter() - started) * 1000)
    if len(body["persons"]) != persons:
        sys.stderr.write(f"note: {photo_path.name} gave {len(body['persons'])} persons, expected {persons}\n")
    return round(statistics.median(times), 1)


def markdown(report: dict[str, Any]) -> str:
    lines = ["# Detector evaluation", ""]
    for backend, sets in report["backends"].items():
        for name, result in sets.items():
            overall = result["overall"]
            lines += [
                f"## {backend} — {name} ({result['photos']} photos)",
                "",
                "| category | labelled | recall@0.5 | recall (fully visible) | precision@0.5 | category precision | AP@0.5 |",
                "|---|---|---|---|---|---|---|",
            ]
            for category, row in result["per_category"].items():
                lines.append(
                    f"| {category} | {row['labelled']} | {row['recall']} | {row['recall_fully_visible']} | "
                    f"{row['precision']} | {row['category_precision']} | {row['ap50']} |"
                )
            lines += [
                f"| **all** | | {overall['recall']} | {overall['recall_fully_visible']} | {overall['precision']} | "
                f"{overall['category_precision']} | mAP {overall['map50']} |",
                "",
                f"Persons found {overall['person_recall']}, full-shot accuracy {overall['full_shot_accuracy']}, "
                f"view accuracy {overall['view_accuracy']}, detect stage p50 {overall['detect_p50_ms']} ms.",
                "",
            ]
            if result["misses"]:
                lines += (
                    ["Missed (fully visible garments, persons):", ""]
                    + [f"- {m}" for m in result["misses"]]
                    + [""]
                )
    lines += ["## Detector latency (service alone, decode included, p50)", ""]
    for name, ms in report["latency_ms"].items():
        lines.append(f"- {name}: {ms} ms")
    return "\n".join(lines) + "\n"


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--yolo", type=Path, default=None, help="also evaluate these YOLO weights")
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "detector.json")
    args = parser.parse_args()
    photos = load_photos(args.queries)
    sets = {"photos": photos, "collages": list(collages(photos))}
    backends: dict[str, dict[str, str]] = {"keypoints": {}}
    if args.yolo:
        weights = str(args.yolo.resolve())
        backends["yolo"] = {"DETECTOR_YOLO_WEIGHTS": weights, "DETECTOR_BACKEND": "yolo"}
        backends["keypoints+yolo"] = {"DETECTOR_YOLO_WEIGHTS": weights, "DETECTOR_BACKEND": "merged"}
    report: dict[str, Any] = {"queries": str(args.queries), "backends": {}, "latency_ms": {}}
    for backend, env in backends.items():
        stack = Stack(services=SERVICES, ports={s: free_port() for s in SERVICES}, env=env)
        with running(stack):
            report["backends"][backend] = asyncio.run(evaluate(stack, sets))
            if backend == "keypoints":
                report["latency_ms"] = _latencies(stack, args.queries)
    report["machine"] = f"{os.cpu_count()} CPUs"
    write_report(args.output, report, markdown(report))
    return 0


def _latencies(stack: Stack, queries: Path) -> dict[str, float]:
    """One person at 768x1024, and a 4-person collage of the same size class."""
    single = queries / "ootd_model_model_8.png"
    result = {}
    if single.exists():
        result["one person, 768x1024"] = detector_latency(stack, single, 1)
        photos = [p for p in load_photos(queries) if len(p.persons) == 1 and p.height >= p.width][:4]
        if len(photos) == 4:
            group = _collage(photos)
            path = ROOT / "data" / "cache" / "four-persons.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(group.data)
            result[f"four persons, {group.width}x{group.height}"] = detector_latency(stack, path, 4)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
