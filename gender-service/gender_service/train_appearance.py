"""Train the appearance gender head, quantise it, and fit the calibration and fusion.

Inputs (made by ``make train-gender`` with tools/catalog_features.py and tools/catalog_faces.py):
whole-person EfficientNet-Lite0 embeddings of the catalog's on-model shots with their Men/Women
labels, and FaceRes's probability for the largest face of each shot (when there is one).

Split by a hash of the product id: 60% train, 10% validation (early stopping), 15% calibration
(Platt scaling and the fusion regression), 15% test (every figure in the model card).

    python -m gender_service.train_appearance --features data/cache/catalog-features.npz \
        --faces data/cache/catalog-faces.npz --out gender_service/assets
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from gender_service.appearance import Fusion, logit
from shared.features import network_of

logger = logging.getLogger("gender-service")
FEATURE_SCALE = 30.0  # unit-length embeddings have small components; scale before the dense layer
DEFAULT_MIN_CONFIDENCE = 0.75


def split_of(product_id: str) -> str:
    bucket = int(hashlib.sha1(f"gender:{product_id}".encode()).hexdigest()[:8], 16) % 100
    return (
        "train" if bucket < 60 else "validation" if bucket < 70 else "calibration" if bucket < 85 else "test"
    )


def load_data(features: Path, faces: Path) -> dict[str, np.ndarray]:
    data = np.load(features, allow_pickle=False)
    backbone = network_of(data, features)
    keep = data["has_person"] & np.isin(data["genders"], ["Men", "Women"])
    ids = data["product_ids"][keep]
    face_table = np.load(faces, allow_pickle=False)
    face_of = dict(zip(face_table["product_ids"], face_table["face_p_men"], strict=True))
    return {
        "x": data["person_vectors"][keep].astype(np.float32),
        "y": (data["genders"][keep] == "Men").astype(np.float32),
        "ids": ids,
        "face": np.array([face_of.get(i, np.nan) for i in ids], dtype=np.float64),
        "split": np.array([split_of(str(i)) for i in ids]),
        "backbone": np.array(backbone),
    }


def build_head(dim: int) -> Any:
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(dim,), name="person_embedding")
    x = tf.keras.layers.Rescaling(FEATURE_SCALE)(inputs)
    x = tf.keras.layers.Dense(256, activation="relu")(x)
    x = tf.keras.layers.Dropout(0.3)(x)
    logits = tf.keras.layers.Dense(1, name="logit")(x)
    return tf.keras.Model(inputs, logits)


def train_head(data: dict[str, np.ndarray]) -> Any:
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    train, val = data["split"] == "train", data["split"] == "validation"
    model = build_head(data["x"].shape[1])
    model.compile(
        optimizer=tf.keras.optimizers.Adam(1e-3),
        loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
        metrics=[tf.keras.metrics.BinaryAccuracy(threshold=0.0)],
    )
    men = float(data["y"][train].mean())
    model.fit(
        data["x"][train],
        data["y"][train],
        validation_data=(data["x"][val], data["y"][val]),
        epochs=60,
        batch_size=64,
        class_weight={0: 0.5 / (1 - men), 1: 0.5 / men},
        callbacks=[tf.keras.callbacks.EarlyStopping(patience=6, restore_best_weights=True)],
        verbose=0,
    )
    return model


def to_tflite(model: Any, float16: bool) -> bytes:
    """The head ending in a sigmoid (p of Men), as TensorFlow Lite; float16 weights if asked."""
    import tensorflow as tf

    serving = tf.keras.Sequential([model, tf.keras.layers.Activation("sigmoid")])
    converter = tf.lite.TFLiteConverter.from_keras_model(serving)
    if float16:
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    return bytes(converter.convert())


def tflite_p_men(blob: bytes, x: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_content=blob)
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    out = np.empty(len(x))
    for i, row in enumerate(x):
        interpreter.set_tensor(input_index, row[None])
        interpreter.invoke()
        out[i] = float(interpreter.get_tensor(output_index).reshape(-1)[0])
    return out


def fit_logistic(
    features: np.ndarray, y: np.ndarray, prior: np.ndarray, strength: float = 5.0, steps: int = 50
) -> np.ndarray:
    """Weights (last one the bias) of a logistic regression, by Newton's method, pulled towards
    ``prior`` (the uncalibrated model: slope 1, bias 0). Without the pull, a calibration set that a
    source separates perfectly sends the slope to infinity and leaves the bias anywhere in the gap."""
    design = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    weights = prior.astype(np.float64).copy()
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-np.clip(design @ weights, -60, 60)))
        gradient = design.T @ (p - y) + strength * (weights - prior)
        hessian = design.T @ (design * (p * (1 - p))[:, None]) + strength * np.eye(len(weights))
        weights -= np.linalg.solve(hessian, gradient)
    return weights


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Over the confidence of the predicted label, equal-width bins from 0.5 to 1."""
    confidence = np.maximum(p, 1 - p)
    correct = (p > 0.5) == (y > 0.5)
    edges = np.linspace(0.5, 1.0, bins + 1)
    error = 0.0
    for low, high in itertools.pairwise(edges):
        in_bin = (confidence >= low) & ((confidence < high) | (high == 1.0))
        if in_bin.any():
            error += in_bin.mean() * abs(confidence[in_bin].mean() - correct[in_bin].mean())
    return round(float(error), 4)


def fit_fusion(data: dict[str, np.ndarray], appearance: np.ndarray) -> Fusion:
    """Platt scaling of each source on the calibration split (pulled towards no change)."""
    calibration = data["split"] == "calibration"
    has_face = ~np.isnan(data["face"])
    y = data["y"]
    face_logit = np.array([logit(p) if not np.isnan(p) else 0.0 for p in data["face"]])
    appearance_logit = np.array([logit(p) for p in appearance])
    rows = calibration & has_face
    identity = np.array([1.0, 0.0])
    face = fit_logistic(face_logit[rows, None], y[rows], identity)
    app = fit_logistic(appearance_logit[calibration, None], y[calibration], identity)
    return Fusion(
        (float(face[0]), float(face[1])), (float(app[0]), float(app[1])), float(y[calibration].mean())
    )


def evaluate(
    data: dict[str, np.ndarray], appearance: np.ndarray, fusion: Fusion, threshold: float
) -> dict[str, Any]:
    test = data["split"] == "test"
    report: dict[str, Any] = {}

    def face_of(i: int) -> float | None:
        return None if np.isnan(data["face"][i]) else float(data["face"][i])

    sources = {
        "face only": lambda i: fusion.p_men(face_of(i), None),
        "appearance only": lambda i: fusion.p_men(None, float(appearance[i])),
        "fused": lambda i: fusion.p_men(face_of(i), float(appearance[i])),
    }
    for name, predict in sources.items():
        rows = [i for i in np.flatnonzero(test) if name != "face only" or not np.isnan(data["face"][i])]
        p = np.array([predict(i)[0] for i in rows])  # type: ignore[index]
        y = data["y"][rows]
        answered = np.maximum(p, 1 - p) >= threshold
        report[name] = {
            "persons": len(rows),
            "accuracy_all": round(float(((p > 0.5) == (y > 0.5)).mean()), 4),
            "unknown_rate": round(float(1 - answered.mean()), 4),
            "accuracy_answered": round(float(((p > 0.5) == (y > 0.5))[answered].mean()), 4)
            if answered.any()
            else None,
            "ece": expected_calibration_error(p, y),
            "raw_ece": expected_calibration_error(
                np.array([data["face"][i] for i in rows]) if name == "face only" else appearance[rows], y
            ),
        }
    return report


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--faces", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--threshold", type=float, default=DEFAULT_MIN_CONFIDENCE)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    data = load_data(args.features, args.faces)
    model = train_head(data)
    float32, float16 = to_tflite(model, float16=False), to_tflite(model, float16=True)
    test = data["split"] == "test"
    p32, p16 = tflite_p_men(float32, data["x"][test]), tflite_p_men(float16, data["x"][test])
    appearance = tflite_p_men(float16, data["x"])  # the served model's answers drive the calibration
    fusion = fit_fusion(data, appearance)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "appearance.tflite").write_bytes(float16)
    backbone = str(data["backbone"])  # the service refuses person vectors of another network
    fusion.save(args.out / "fusion.json", {"min_confidence": args.threshold, "backbone": backbone})
    y_test = data["y"][test]
    card = {
        "backbone": f"{backbone} (frozen; the embedding service's vector of the person crop)",
        "head": "Rescaling(30) > Dense(256, relu) > Dropout(0.3) > Dense(1); Adam, class-balanced, early stopping",
        "data": {s: int((data["split"] == s).sum()) for s in ("train", "validation", "calibration", "test")},
        "men_share": round(float(data["y"].mean()), 4),
        "faces_in_test": int((~np.isnan(data["face"]) & test).sum()),
        "quantisation": {
            "float32": {
                "bytes": len(float32),
                "test_accuracy": round(float(((p32 > 0.5) == (y_test > 0.5)).mean()), 4),
            },
            "float16": {
                "bytes": len(float16),
                "test_accuracy": round(float(((p16 > 0.5) == (y_test > 0.5)).mean()), 4),
            },
            "max_abs_difference": round(float(np.abs(p32 - p16).max()), 6),
        },
        "calibration": "Platt scaling per source on the calibration split; both: calibrated log-odds added, less the prior's (naive Bayes)",
        "fusion": json.loads((args.out / "fusion.json").read_text()),
        "test": evaluate(data, appearance, fusion, args.threshold),
        "threshold": args.threshold,
        "seconds": round(time.perf_counter() - started, 1),
    }
    (args.out / "appearance-card.json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
