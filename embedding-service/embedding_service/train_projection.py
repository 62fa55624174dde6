"""Train the retrieval projection: a Siamese (triplet) network in TensorFlow/Keras on top of the
frozen EfficientNet-Lite0 features, as the original blog did with ResNet50, but with positives we
can make offline:

- strong positives: a distorted view of the same product (crop and scale, rotation, perspective,
  JPEG, lighting and colour cast, clutter behind: shared/distortions.py) against its catalog crop;
- weak positives: another product of the same article type and colour (a quarter of the weight);
- negatives: the hardest other product in the batch (batch-hard mining), never one of the same
  article type and colour.

Inputs: the catalog features (data/cache/catalog-features.npz: labels and the raw backbone vector of
each product crop) and the distorted views of the crops (data/cache/catalog-views.npz,
embedding_service.views). A tenth of the products (shared.splits) is held out entirely.

    python -m embedding_service.train_projection --features data/cache/catalog-features.npz \
        --views data/cache/catalog-views.npz --output models/embedding/projection-candidate.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from shared.splits import retrieval_held_out

logger = logging.getLogger("embedding-service")
OUTPUT_DIM = 256
MARGIN = 0.2
WEAK_WEIGHT = 0.25


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
    vectors: np.ndarray, products: np.ndarray, groups: np.ndarray, epochs: int, batch_products: int
) -> Any:
    """``vectors``: originals and views; ``products`` which product each is; ``groups`` its
    article type and colour."""
    import tensorflow as tf

    tf.keras.utils.set_random_seed(0)
    network = build_network(vectors.shape[1])
    optimizer = tf.keras.optimizers.Adam(1e-3)
    samples_of: dict[int, list[int]] = {}
    for index, product in enumerate(products):
        samples_of.setdefault(int(product), []).append(index)
    product_ids = np.array(sorted(samples_of))
    product_groups = np.array([groups[samples_of[p][0]] for p in product_ids])

    @tf.function
    def step(x: Any, product: Any, group: Any) -> Any:
        with tf.GradientTape() as tape:
            loss = triplet_loss(network(x, training=True), product, group)
        gradients = tape.gradient(loss, network.trainable_variables)
        optimizer.apply_gradients(zip(gradients, network.trainable_variables, strict=True))
        return loss

    rng = np.random.default_rng(0)
    for epoch in range(epochs):
        losses = []
        for batch in _batches_with_shared_groups(product_groups, batch_products, rng):
            rows = [i for p in product_ids[batch] for i in samples_of[int(p)]]
            losses.append(
                float(step(vectors[rows], products[rows].astype(np.int64), groups[rows].astype(np.int64)))
            )
        logger.info("epoch %d/%d loss %.4f", epoch + 1, epochs, float(np.mean(losses)))
    return network


def _batches_with_shared_groups(groups: np.ndarray, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffled batches of product positions in which products come in pairs of the same group where
    possible, so that weak positives and hard negatives of the same kind are in every batch."""
    order = rng.permutation(len(groups))
    order = order[np.argsort(groups[order], kind="stable")]
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
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--views", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=25)
    parser.add_argument("--batch-products", type=int, default=128)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    features = np.load(args.features, allow_pickle=False)
    views = np.load(args.views, allow_pickle=False)
    ids = [str(p) for p in features["product_ids"]]
    row_of = {pid: i for i, pid in enumerate(ids)}
    originals = features["vectors"].astype(np.float32)
    labelled = features["categories"] != ""
    view_rows = np.array([row_of[str(p)] for p in views["product_ids"]])
    keep_views = labelled[view_rows]
    view_rows, view_vectors = view_rows[keep_views], views["vectors"][keep_views].astype(np.float32)
    group_of = {
        key: g
        for g, key in enumerate(
            sorted({f"{a}|{c}" for a, c in zip(features["article_types"], features["colours"], strict=True)})
        )
    }
    groups_all = np.array(
        [group_of[f"{a}|{c}"] for a, c in zip(features["article_types"], features["colours"], strict=True)]
    )
    test_product = np.array([retrieval_held_out(pid) for pid in ids])
    train_originals = np.flatnonzero(labelled & ~test_product)
    train_views = ~test_product[view_rows]
    vectors = np.concatenate([originals[train_originals], view_vectors[train_views]])
    products = np.concatenate([train_originals, view_rows[train_views]])
    network = train(vectors, products, groups_all[products], args.epochs, args.batch_products)
    dense_in, dense_out = network.layers[1], network.layers[2]
    hidden_w, hidden_b = (np.asarray(v) for v in dense_in.get_weights())
    out_w, out_b = (np.asarray(v) for v in dense_out.get_weights())
    queries, truth = view_vectors[~train_views], view_rows[~train_views]
    projected_catalog = np.asarray(network(originals, training=False))
    projected_queries = np.asarray(network(queries, training=False))
    card = {
        "train_products": len(train_originals),
        "train_views": int(train_views.sum()),
        "held_out_views": len(queries),
        "epochs": args.epochs,
        "margin": MARGIN,
        "weak_weight": WEAK_WEIGHT,
        "output_dim": OUTPUT_DIM,
        "held_out_recall@1": {
            "raw": round(recall_at(queries, originals, truth, 1), 4),
            "projected": round(recall_at(projected_queries, projected_catalog, truth, 1), 4),
        },
        "held_out_recall@10": {
            "raw": round(recall_at(queries, originals, truth, 10), 4),
            "projected": round(recall_at(projected_queries, projected_catalog, truth, 10), 4),
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
