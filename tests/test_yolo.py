"""The YOLO path stays alive: a tiny dataset pseudo-labelled by the keypoint pipeline, one epoch of
ultralytics training at a small size, the ONNX export served by a detector, a photo end to end.
(Real training runs on a bigger machine: make train-detector.)"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEV, E2E, ROOT
from tools.yolo_dataset import catalog_sources, label, spread, write_data_yaml

YOLO_PYTHON = ROOT / ".venv" / "yolo" / "bin" / "python"


def test_train_serve_and_answer_with_a_yolo_detector(e2e: E2E, tmp_path: Path) -> None:
    if not YOLO_PYTHON.exists():
        pytest.skip("the YOLO training environment is missing (make .venv/yolo/.installed)")
    dataset = tmp_path / "dataset"
    for split in ("train", "val"):
        (dataset / "images" / split).mkdir(parents=True)
        (dataset / "labels" / split).mkdir(parents=True)
    sources = spread(catalog_sources(e2e.catalog))[:16]
    counts = asyncio.run(label(sources, e2e.stack, dataset, val_fraction=0.3))
    assert counts["train"] > 0 and counts["val"] > 0, counts
    data = write_data_yaml(dataset)
    out = tmp_path / "yolo"
    subprocess.run(
        [
            str(YOLO_PYTHON),
            "-m",
            "tools.train_yolo",
            "--data",
            str(data),
            "--out",
            str(out),
            "--epochs",
            "1",
            "--imgsz",
            "160",
            "--batch",
            "4",
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=900,
    )
    weights = out / "yolo-garments.onnx"
    assert weights.exists() and (out / "model-card.json").exists()
    env = {"DETECTOR_YOLO_WEIGHTS": str(weights), "DETECTOR_BACKEND": "merged"}
    with e2e.variant(("detector-service", "gateway"), env) as variant:
        photo = (DEV / "ootd_model_model_8.png").read_bytes()
        detected = httpx.post(
            f"{variant.url('detector-service')}/detect", files={"image": ("p.png", photo)}, timeout=60
        )
        assert detected.status_code == 200 and "YOLO" in detected.json()["model"]
        answer = e2e.recommend(DEV / "ootd_model_model_8.png", gateway=variant.url("gateway"))
        assert answer.status_code == 200, answer.text
        assert answer.json()["items"], "the keypoint regions are still there in merged mode"
