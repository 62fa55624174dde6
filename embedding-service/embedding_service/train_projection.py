"""Train the retrieval projection: a Siamese (triplet) network in TensorFlow/Keras on top of the
frozen EfficientNet-Lite2 features, as the original blog did with ResNet50, but with positives we
can make offline:

- strong positives: a distorted view of the same product (crop and scale, rotation, perspective,
  JPEG, lighting and colour cast, clutter behind: shared/distortions.py) against its catalog crop;
- weak positives: another product of the same article type and colour (a quarter of the weight);
- negatives: the hardest other product in the batch (batch-hard mining), never one of the same
  article type and colour.

Inputs: the catalog crops that make eval caches (data/cache/crops/<key>/, with manifest.json) and the
catalog features (data/cache/catalog-features.npz: labels and the raw backbone vector of each crop).

    python -m embedding_service.train_projection --crops data/cache/crops/<key> \
        --features data/cache/catalog-features.npz --output models/embedding/projection-candidate.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from embedding_service.config import Settings
from embedding_service.model import EmbeddingModel
from shared.distortions import distort

logger = logging.getLogger("embedding-service")
OUTPUT_DIM = 256
MARGIN = 0.2
WEAK_WEIGHT = 0.25


def held_out(product_id: str) -> bool:
    return int(hashlib.sha1(f"projection:{product_id}".encode()).hexdigest()[:8], 16) % 10 == 0


def distorted_views(crops: Path, manifest: list[str], chosen: list[int], model: EmbeddingModel) -> np.ndarray:
    """Backbone features of one distorted view of each chosen crop (repeatable: seeded by index)."""
    vectors = []
    for start in range(0, len(chosen), 64):
        batch = chosen[start : start + 64]
        views = [np.asarray(distort(Image.open(crops / f"{i}.jpg"), random.Random(i))) for i in batch]
        vectors.append(model.embed(views))
        if start % 1024 == 0:
            logger.info("views %d/%d", start + len(batch), len(chosen))
    return np.concatenate(vectors)


def build_network(dim_in: int) -> Any:
    import tensorflow as tf

    inputs = tf.keras.Input(shape=(dim_in,))
    x = tf.keras.layers.Dense(512, activation="relu")(inputs)
    x = tf.keras.layers.Dense(OUTPUT_DIM)(x)
    outputs = tf.keras.layers.UnitNormalization()(x)
    return tf.keras.Model(inputs, outputs)


def triplet_loss(embeddings: Any, product: Any, group: Any) -> Any:
    """Batch-hard triplet loss on cosine distance, plus a weaker one for same article and colour."""
    import tensorflow as tf

    distance = 1.0 - tf.matmul(embeddings, embeddings, transpose_b=True)
    same_product = tf.equal(product[:, None], product[None, :])
    same_group = tf.equal(group[:, None], group[None, :])
    eye = tf.eye(tf.shape(product)[0], dtype=tf.bool)
    strong = tf.logical_and(same_product, tf.logical_not(eye))
    weak = tf.logical_and(same_group, tf.logical_not(same_product))
    negative = tf.logical_not(same_group)
    big = tf.constant(4.0)
    hardest_negative = tf.reduce_min(tf.where(negative, distance, big), axis=1)
    hardest_strong = tf.reduce_max(tf.where(strong, distance, 0.0), axis=1)
    hardest_weak = tf.reduce_max(tf.where(weak, distance, 0.0), axis=1)
    has_weak = tf.cast(tf.reduce_any(weak, axis=1), tf.float32)
    strong_term = tf.nn.relu(hardest_strong - hardest_negative + MARGIN)
    weak_term = has_weak * tf.nn.relu(hardest_weak - hardest_negative + MARGIN / 2)
    return tf.reduce_mean(strong_term + WEAK_WEIGHT * weak_term)


def train(
    originals: np.ndarray, views: np.ndarray, groups: np.ndarray, epochs: int, batch_products: int
) -> Any:
    """``originals[i]`` and ``views[i]`` are the same product; ``groups`` its article+colour id."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    network = build_network(originals.shape[1])
    optimizer = tf.keras.optimizers.Adam(1e-3)
    count = len(originals)

    @tf.function
    def step(x: Any, product: Any, group: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = triplet_loss(network(x, training=True), product, group)
        optimizer.apply_gradients(
            zip(tape.gradient(loss, network.trainable_variables), network.trainable_variables, strict=True)
        )
        return loss

    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        order = _batches_with_shared_groups(groups, batch_products, rng)
        losses = []
        for batch in order:
            x = np.concatenate([originals[batch], views[batch]]).astype(np.float32)
            ids = np.concatenate([batch, batch]).astype(np.int64)
            group = np.concatenate([groups[batch], groups[batch]]).astype(np.int64)
            losses.append(float(step(x, ids, group)))
        logger.info("epoch %d/%d loss %.4f (%d products)", epoch + 1, epochs, float(np.mean(losses)), count)
    return network


def _batches_with_shared_groups(groups: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches in which products come in pairs of the same group where possible, so that
    weak positives and hard negatives of the same kind appear in every batch."""
    order = rng.permutation(len(groups))
    order = order[np.argsort(groups[order], kind="stable")]  # group neighbours together
    chunks = [order[i : i + 2] for i in range(0, len(order), 2)]
    rng.shuffle(chunks)
    flat = np.concatenate(chunks)
    return [flat[i : i + size] for i in range(0, len(flat), size) if len(flat[i : i + size]) > 1]


def recall_at(queries: np.ndarray, catalog: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Share of queries whose own product is among the k nearest of the whole catalog."""
    scores = queries @ catalog.T
    top = np.argsort(-scores, axis=1)[:, :k]
    return float((top == truth[:, None]).any(axis=1).mean())


def main() -> int:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--crops", type=Path, required=True)
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--products", type=int, default=6000, help="products given a distorted view")
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-products", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    manifest = json.loads((args.crops / "manifest.json").read_text())
    features = np.load(args.features, allow_pickle=False)
    index_of = {str(pid): i for i, pid in enumerate(features["product_ids"])}
    rows = [index_of[pid] for pid in manifest]  # features row of each crop
    originals = features["vectors"][rows].astype(np.float32)
    labelled = [i for i, r in enumerate(rows) if features["categories"][r] != ""]
    rng = random.Random(0)
    chosen = sorted(rng.sample(labelled, min(args.products, len(labelled))))
    model = EmbeddingModel(Settings(projection="none", head_path=Path("/nonexistent")))
    model.load()
    views = distorted_views(args.crops, manifest, chosen, model)
    keys = [f"{features['article_types'][rows[i]]}|{features['colours'][rows[i]]}" for i in chosen]
    group_ids = {key: g for g, key in enumerate(sorted(set(keys)))}
    groups = np.array([group_ids[key] for key in keys])
    test = np.array([held_out(manifest[i]) for i in chosen])
    network = train(originals[chosen][~test], views[~test], groups[~test], args.epochs, args.batch_products)
    dense_in, dense_out = network.layers[1], network.layers[2]
    # the served projection is the network itself, evaluated in NumPy: keep both layers' weights
    hidden_w, hidden_b = (np.asarray(v) for v in dense_in.get_weights())
    out_w, out_b = (np.asarray(v) for v in dense_out.get_weights())
    projected_catalog = np.asarray(network(originals, training=False))
    projected_views = np.asarray(network(views[test], training=False))
    truth = np.array(chosen)[test]
    card = {
        "products_with_views": len(chosen),
        "held_out_views": int(test.sum()),
        "epochs": args.epochs,
        "margin": MARGIN,
        "weak_weight": WEAK_WEIGHT,
        "output_dim": OUTPUT_DIM,
        "held_out_recall@1": {
            "raw": round(recall_at(views[test], originals, truth, 1), 4),
            "projected": round(recall_at(projected_views, projected_catalog, truth, 1), 4),
        },
        "held_out_recall@10": {
            "raw": round(recall_at(views[test], originals, truth, 10), 4),
            "projected": round(recall_at(projected_views, projected_catalog, truth, 10), 4),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.output, hidden_weights=hidden_w, hidden_bias=hidden_b, weights=out_w, bias=out_b)
    args.output.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
