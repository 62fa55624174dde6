"""Train the YOLO garment detector with ultralytics on a dataset from tools.yolo_dataset, evaluate it
on its validation split, export it to ONNX for the detector service, and write a model card.

Runs in its own environment (.venv/yolo: ultralytics, torch, torchvision); imports nothing else of
the project. Offline: the network starts from its architecture file (no pretrained download),
plots and the AMP check (which would download weights) are off.

    .venv/yolo/bin/python -m tools.train_yolo --data data/yolo/dataset/data.yaml --out models/detector
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path
from typing import Any


def train(args: argparse.Namespace) -> dict[str, Any]:
    import torch
    import ultralytics
    from ultralytics import YOLO

    started = time.perf_counter()
    model = YOLO(args.model)
    model.train(
        data=str(args.data),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        workers=0,
        device="cpu",
        project=str(args.out / "runs"),
        name="train",
        exist_ok=True,
        pretrained=False,
        amp=False,
        plots=False,
        seed=0,
        deterministic=True,
        verbose=False,
    )
    trained_seconds = time.perf_counter() - started
    metrics = model.val(
        data=str(args.data), imgsz=args.imgsz, batch=args.batch, workers=0, device="cpu", plots=False
    )
    exported = Path(model.export(format="onnx", imgsz=args.imgsz, opset=17, simplify=False, dynamic=False))
    args.out.mkdir(parents=True, exist_ok=True)
    onnx_path = args.out / "yolo-garments.onnx"
    shutil.copy(exported, onnx_path)
    best = Path(model.trainer.best) if getattr(model, "trainer", None) else None
    if best and best.exists():
        shutil.copy(best, args.out / "yolo-garments.pt")
    names = model.names
    per_class = {
        names[int(c)]: round(float(ap), 4)
        for c, ap in zip(metrics.box.ap_class_index, metrics.box.ap50, strict=True)
    }
    return {
        "weights": str(onnx_path),
        "architecture": args.model,
        "data": str(args.data),
        "epochs": args.epochs,
        "imgsz": args.imgsz,
        "batch": args.batch,
        "train_seconds": round(trained_seconds, 1),
        "validation": {
            "map50": round(float(metrics.box.map50), 4),
            "map50_95": round(float(metrics.box.map), 4),
            "precision": round(float(metrics.box.mp), 4),
            "recall": round(float(metrics.box.mr), 4),
            "ap50_per_class": per_class,
        },
        "classes": {int(k): v for k, v in names.items()},
        "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "machine": f"{platform.machine()}, CPU",
        "labels": "pseudo-labels from the keypoint localiser (tools.yolo_dataset) unless hand labels were given",
    }


def card_markdown(card: dict[str, Any]) -> str:
    validation = card["validation"]
    rows = "\n".join(f"| {name} | {ap} |" for name, ap in validation["ap50_per_class"].items())
    return f"""# YOLO garment detector — model card

- Weights: `{card["weights"]}` (ONNX, served by detector-service with `DETECTOR_YOLO_WEIGHTS`)
- Architecture: `{card["architecture"]}`, trained from scratch (no pretrained weights exist offline)
- Data: `{card["data"]}`; labels: {card["labels"]}
- Training: {card["epochs"]} epochs at {card["imgsz"]} px, batch {card["batch"]}, {card["train_seconds"]} s on {card["machine"]}
- Versions: {card["versions"]}

Validation split: mAP@0.5 {validation["map50"]}, mAP@0.5:0.95 {validation["map50_95"]},
precision {validation["precision"]}, recall {validation["recall"]}.

| class | AP@0.5 |
|---|---|
{rows}

Compare with the keypoint localiser on hand-labelled photos: `make eval-detector YOLO={card["weights"]}`.
"""


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--data", type=Path, required=True, help="data.yaml written by tools.yolo_dataset")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--model", default="yolov8n.yaml", help="architecture file, or a .pt to fine-tune")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--imgsz", type=int, default=416)
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    card = train(args)
    (args.out / "model-card.json").write_text(json.dumps(card, indent=2) + "\n")
    (args.out / "model-card.md").write_text(card_markdown(card))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
