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
from pathlib import Path
from typing import Any

import httpx

from gateway.config import Settings
from gateway.main import make_clients
from gateway.pipeline import Query, Recommender, Timings, analysis_copy
from shared.boxes import box_iou
from shared.clients import JSON_HEADERS
from shared.contracts import CATEGORIES, FaceGender, PersonEvidence, PersonsRequest
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


def fusion_request(faces: list[FaceGender], dim: int = 1280) -> PersonsRequest:
    """A /persons body for timing: one person per face found, with a constant appearance vector
    (the work does not depend on its values)."""
    return PersonsRequest(persons=[PersonEvidence(face=face, vector=[0.028] * dim) for face in faces])


def latency(stack: Stack, queries: Path, rounds: int = 5) -> dict[str, float]:
    """Gender service time per person: /faces per face found, and /persons per person."""
    photos = [queries / e["path"] for e in json.loads((queries / "labels.json").read_text())]
    faces_ms: list[float] = []
    persons_ms: list[float] = []
    url = stack.url("gender-service")
    with httpx.Client(timeout=60) as client:
        for photo in photos:
            data = analysis_copy(decode_image(photo.read_bytes()), Settings())
            client.post(f"{url}/faces", files={"image": ("p.jpg", data)})
            for _ in range(rounds):
                started = time.perf_counter()
                body = client.post(f"{url}/faces", files={"image": ("p.jpg", data)}).json()
                elapsed = (time.perf_counter() - started) * 1000
                faces_ms.append(elapsed / max(1, len(body["faces"])))
                evidence = fusion_request([FaceGender.model_validate(face) for face in body["faces"]])
                if evidence.persons:
                    started = time.perf_counter()
                    client.post(f"{url}/persons", content=evidence.model_dump_json(), headers=JSON_HEADERS)
                    persons_ms.append((time.perf_counter() - started) * 1000 / len(evidence.persons))
    return {
        "faces_per_face_p50_ms": round(statistics.median(faces_ms), 1),
        "persons_per_person_p50_ms": round(statistics.median(persons_ms), 1) if persons_ms else 0.0,
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
        timing = latency(stack, args.queries)
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
