"""Fit the learned whitening: a linear Siamese projection of the backbone's descriptor (multi-stage
GeM pooling, embedding_service.export), solved in closed form from matching pairs instead of by
gradient descent (Radenović, Tolias and Chum, "Fine-tuning CNN image retrieval with no human
annotation", 2018), beside the average-pooled features; served when make train-embedding adopts it
(it wins most of make eval's deciding measures against the raw features).

A matching pair is a catalog crop and a distorted view of it (shared/distortions.py: what a
shopper's photo does to a product). The whitening first divides out what differs between the two
views of one product (so that a crop, a rotation, a colour cast or clutter behind count little),
then keeps the directions along which the catalog's products differ most. That finds the very
product far better, but on its own it also weighs details over kind (a worn shirt's nearest
products are less often shirts), so the served vector is two halves of equal weight: the
average-pooled features rotated onto their main RAW_DIM axes (their cosine kept: what kind of
garment) and the whitened descriptor (which garment). Products held out by shared.splits are never
used, so make eval measures it on products it never saw.

    python -m embedding_service.fit_whitening --views data/cache/catalog-views.npz \
        --output models/embedding/projection-whitened.npz
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np

from embedding_service.head import Projection, unit_rows
from embedding_service.train_projection import recall_at
from shared.splits import retrieval_held_out

logger = logging.getLogger("embedding-service")
# make eval measured 768 as good as 1280 (512 lost about 0.01 on several measures); the index takes
# 1.7 times less memory and time per vector
OUTPUT_DIM = 768
RAW_DIM = 384  # of OUTPUT_DIM, given to the average-pooled features
SOURCE = "features+descriptor"  # the backbone outputs read (export.OUTPUTS), side by side
SHRINK = 0.3  # towards a multiple of the identity: 1712 dimensions from ~17,000 pairs


def fit(
    catalog: np.ndarray,
    views: np.ndarray,
    originals: np.ndarray,
    dim: int,
    shrink: float = SHRINK,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (D, dim) and bias (dim,) of x -> (x - mean) W. ``views[i]`` is a view of
    ``catalog[originals[i]]``; the catalog's mean and spread come from all of ``catalog``."""
    if not 0 < dim <= catalog.shape[1]:
        raise ValueError(f"dim must be in 1..{catalog.shape[1]}, got {dim}")
    differences = views - catalog[originals]
    within = differences.T @ differences / len(differences)
    within = (1 - shrink) * within + shrink * np.trace(within) / len(within) * np.eye(len(within))
    spread, axes = np.linalg.eigh(within)
    whiten = axes / np.sqrt(np.maximum(spread, 1e-12))[None, :]
    mean = catalog.mean(axis=0)
    whitened = (catalog - mean) @ whiten
    _, _, components = np.linalg.svd(whitened - whitened.mean(axis=0), full_matrices=False)
    weights = whiten @ components[:dim].T
    return weights.astype(np.float32), (-mean @ weights).astype(np.float32)


def fit_joint(
    features: np.ndarray,
    catalog: np.ndarray,
    views: np.ndarray,
    originals: np.ndarray,
    dim: int = OUTPUT_DIM,
    raw_dim: int = RAW_DIM,
) -> tuple[np.ndarray, np.ndarray]:
    """Weights (F + D, dim) and bias of [features, descriptor] -> the two halves side by side:
    ``features`` (catalog, F) rotated onto their first ``raw_dim`` principal axes (uncentred, so
    their cosine is kept), and the whitening of the descriptor (``fit``) scaled to the same typical
    length, so that each half weighs equally in the cosine."""
    if not 0 <= raw_dim < dim:
        raise ValueError(f"raw_dim must be in 0..{dim - 1}, got {raw_dim}")
    _, _, axes = np.linalg.svd(features, full_matrices=False)
    whiten, shift = fit(catalog, views, originals, dim - raw_dim)
    scale = 1.0 / float(np.median(np.linalg.norm(catalog @ whiten + shift, axis=1)))
    weights = np.zeros((features.shape[1] + catalog.shape[1], dim), np.float32)
    weights[: features.shape[1], :raw_dim] = axes[:raw_dim].T
    weights[features.shape[1] :, raw_dim:] = whiten * scale
    bias = np.concatenate([np.zeros(raw_dim), shift * scale]).astype(np.float32)
    return weights, bias


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--views", type=Path, required=True, help="from embedding_service.views")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--dim", type=int, default=OUTPUT_DIM)
    parser.add_argument("--raw-dim", type=int, default=RAW_DIM)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    with np.load(args.views, allow_pickle=False) as data:
        features = unit_rows(data["catalog_features"].astype(np.float64))
        catalog = unit_rows(data["catalog_descriptors"].astype(np.float64))
        catalog_ids = [str(p) for p in data["catalog_ids"]]
        view_features = unit_rows(data["vectors"].astype(np.float64))
        views = unit_rows(data["descriptors"].astype(np.float64))
        view_ids = [str(p) for p in data["product_ids"]]
    row_of = {pid: i for i, pid in enumerate(catalog_ids)}
    originals = np.array([row_of[pid] for pid in view_ids])
    test = np.array([retrieval_held_out(pid) for pid in view_ids])
    weights, bias = fit_joint(features, catalog, views[~test], originals[~test], args.dim, args.raw_dim)
    served = Projection(weights, bias, source=SOURCE)  # as the service applies it
    gallery = served.apply(np.concatenate([features, catalog], axis=1))
    queries = served.apply(np.concatenate([view_features, views], axis=1)[test])
    truth = originals[test]
    card = {
        "kind": "average-pooled features beside the learned whitening of the descriptor",
        "source": SOURCE,
        "input_dim": weights.shape[0],
        "dim": args.dim,
        "raw_dim": args.raw_dim,
        "shrink": SHRINK,
        "train_pairs": int((~test).sum()),
        "held_out_views": int(test.sum()),
        "held_out_recall@1": {
            "features": round(recall_at(view_features[test], features, truth, 1), 4),
            "served": round(recall_at(queries, gallery, truth, 1), 4),
        },
        "held_out_recall@10": {
            "features": round(recall_at(view_features[test], features, truth, 10), 4),
            "served": round(recall_at(queries, gallery, truth, 10), 4),
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    # float16, compressed (half the matrix is zeros): small enough to ship with the service
    np.savez_compressed(args.output, weights=weights.astype(np.float16), bias=bias, source=np.array(SOURCE))
    args.output.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info(json.dumps(card, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
