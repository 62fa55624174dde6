"""How well persons' genders are read: on the labelled persons of a photo folder (labels.json as in
../shared/queries/dev), split into those whose face is visible and those whose is not (the labels'
notes say when the head is cut off by the frame), and on the held-out catalog split (from the
appearance model card). Accuracy is over answered persons; "unknown" is counted separately.

    python -m tools.eval_gender --queries ../shared/queries/dev
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gateway.config import Settings
from gateway.main import make_clients
from gateway.pipeline import Query, Recommender, Timings, for_detector, head_crops
from shared.boxes import box_iou
from shared.clients import DetectorClient, GenderClient
from shared.contracts import CATEGORIES, FaceGender, PersonDetection, PersonEvidence, PersonsRequest
from shared.images import decode_image
from shared.service import InferencePool
from tools.reports import write_report
from tools.stack import ROOT, Stack, free_port, running

SERVICES = ("detector-service", "gender-service", "embedding-service")
CARD = ROOT / "gender-service" / "gender_service" / "assets" / "appearance-card.json"


def face_visible(entry: dict[str, Any]) -> bool:
    notes = str(entry.get("notes", "")).lower()
    return "head cropped" not in notes and "face only visible" not in notes


async def read_persons(stack: Stack, queries: Path) -> list[dict[str, Any]]:
    settings = stack.gateway_settings()
    clients = make_clients(settings)
    recommender = Recommender(settings, clients, InferencePool(2, 64, "eval"))
    rows = []
    try:
        for entry in json.loads((queries / "labels.json").read_text()):
            data = (queries / entry["path"]).read_bytes()
            found = await recommender.analyse(Query(data, 1, "auto", set(CATEGORIES)), Timings(), [])
            boxes = [[p.box[0], p.box[1], p.box[2], p.box[3]] for p in found.persons]
            for label in entry["persons"]:
                overlaps = [(box_iou(label["person_box"], box), i) for i, box in enumerate(boxes)]
                overlap, index = max(overlaps, default=(0.0, -1))
                gender = found.genders[index] if overlap >= 0.3 else None
                rows.append(
                    {
                        "photo": entry["path"],
                        "truth": label["gender"],
                        "face_visible": face_visible(entry),
                        "found": gender is not None,
                        "label": gender.label if gender else "unknown",
                        "score": gender.score if gender else 0.0,
                        "source": gender.source if gender else "none",
                    }
                )
    finally:
        await clients.aclose()
    return rows


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    answered = [r for r in rows if r["label"] != "unknown"]
    right = sum(r["label"] == r["truth"] for r in answered)
    confusion = Counter(f"{r['truth']}->{r['label']}" for r in rows)
    return {
        "persons": len(rows),
        "accuracy_answered": round(right / len(answered), 4) if answered else None,
        "unknown_rate": round(1 - len(answered) / len(rows), 4) if rows else None,
        "accuracy_all": round(right / len(rows), 4) if rows else None,
        "confusion": dict(sorted(confusion.items())),
        "sources": dict(Counter(r["source"] for r in rows)),
    }


def fusion_request(faces: Sequence[FaceGender | None], dim: int = 1280) -> PersonsRequest:
    """A /persons body for timing: one person per head read, with a constant appearance vector
    (the work does not depend on its values)."""
    return PersonsRequest(persons=[PersonEvidence(face=face, vector=[0.028] * dim) for face in faces])


def sent_heads(scaled: np.ndarray, persons: list[PersonDetection]) -> list[bytes]:
    """The head crops the gateway sends the gender service for these persons, found on ``scaled``
    (``for_detector``): one per person whose face the detector placed."""
    return [crop for crop in head_crops(scaled, persons) if crop is not None]


async def timed_gender(gender: GenderClient, heads: list[bytes]) -> tuple[float, float]:
    """Milliseconds of the /heads call for these crops and of the /persons fusion call after it."""
    started = time.perf_counter()
    faces = (await gender.heads(heads)).faces
    read = time.perf_counter()
    await gender.persons(fusion_request(faces))
    return (read - started) * 1000, (time.perf_counter() - read) * 1000


async def latency(stack: Stack, queries: Path, rounds: int = 5) -> dict[str, float]:
    """Gender service time per person: /heads per head crop, and /persons per person."""
    photos = [queries / e["path"] for e in json.loads((queries / "labels.json").read_text())]
    heads_ms: list[float] = []
    persons_ms: list[float] = []
    detector = DetectorClient("detector", stack.url("detector-service"), 60.0)
    gender = GenderClient("gender", stack.url("gender-service"), 60.0)
    try:
        for photo in photos:
            scaled, analysis = for_detector(decode_image(photo.read_bytes()), Settings())
            heads = sent_heads(scaled, (await detector.detect(analysis)).persons)
            if not heads:
                continue
            await timed_gender(gender, heads)
            for _ in range(rounds):
                read_ms, fusion_ms = await timed_gender(gender, heads)
                heads_ms.append(read_ms / len(heads))
                persons_ms.append(fusion_ms / len(heads))
    finally:
        await detector.aclose()
        await gender.aclose()
    return {
        "heads_per_person_p50_ms": round(statistics.median(heads_ms), 1),
        "persons_per_person_p50_ms": round(statistics.median(persons_ms), 1),
        "per_person_p50_ms": round(
            statistics.median(h + p for h, p in zip(heads_ms, persons_ms, strict=True)), 1
        ),
    }


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Gender evaluation",
        "",
        "| set | persons | accuracy (answered) | unknown rate | accuracy (all) |",
        "|---|---|---|---|---|",
    ]
    for name, row in report["dev"].items():
        lines.append(
            f"| dev: {name} | {row['persons']} | {row['accuracy_answered']} | {row['unknown_rate']} | {row['accuracy_all']} |"
        )
    for name, row in report.get("catalog_test", {}).items():
        lines.append(
            f"| catalog test: {name} | {row['persons']} | {row['accuracy_answered']} | {row['unknown_rate']} | {row['accuracy_all']} |"
        )
    lines += ["", "Confusion on the dev persons (truth->answer):", ""]
    for name, row in report["dev"].items():
        lines.append(f"- {name}: {row['confusion']}; decided by {row['sources']}")
    if "quantisation" in report:
        q = report["quantisation"]
        lines += [
            "",
            f"Appearance head: float32 {q['float32']['bytes']} bytes, test accuracy {q['float32']['test_accuracy']}; "
            f"float16 {q['float16']['bytes']} bytes, test accuracy {q['float16']['test_accuracy']} "
            f"(largest probability change {q['max_abs_difference']}).",
        ]
    lines += ["", f"Latency: {report['latency_ms']}", ""]
    return "\n".join(lines) + "\n"


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "gender.json")
    args = parser.parse_args()
    stack = Stack(services=SERVICES, ports={s: free_port() for s in SERVICES})
    with running(stack):
        rows = asyncio.run(read_persons(stack, args.queries))
        timing = asyncio.run(latency(stack, args.queries))
    report: dict[str, Any] = {
        "dev": {
            "face visible": summary([r for r in rows if r["face_visible"]]),
            "face not visible": summary([r for r in rows if not r["face_visible"]]),
            "all": summary(rows),
        },
        "persons": rows,
        "latency_ms": timing,
    }
    if CARD.exists():
        card = json.loads(CARD.read_text())
        report["catalog_test"] = card["test"]
        report["quantisation"] = card["quantisation"]
    write_report(args.output, report, markdown(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
