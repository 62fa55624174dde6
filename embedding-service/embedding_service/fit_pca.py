"""Fit a whitened PCA of the catalog's backbone features: a linear projection to fewer dimensions
that keeps nearest neighbours (the classic compression of CNN retrieval features), written in the
format of the trained projection so the service applies it the same way (EMBEDDING_PROJECTION).

Unsupervised: it uses the product crops' features only, no labels and no query photos. Whitening
divides each component by its spread (relative to the first), so the weak components that tell
look-alikes apart count as much as the dominant ones.

    python -m embedding_service.fit_pca --features data/cache/catalog-features.npz \
        --dim 256 --output models/embedding/projection-pca.npz
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger("embedding-service")


def fit(features: np.ndarray, dim: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights (D, dim) and bias (dim,) of x -> (x - mean) W, and the share of variance kept."""
    if not 0 < dim <= min(features.shape):
        raise ValueError(f"dim must be in 1..{min(features.shape)}, got {dim}")
    mean = features.mean(axis=0)
    _, spread, components = np.linalg.svd(features - mean, full_matrices=False)
    weights = components[:dim].T * (spread[0] / np.maximum(spread[:dim], 1e-12))
    kept = float(np.sum(spread[:dim] ** 2) / np.sum(spread**2))
    return weights.astype(np.float32), (-mean @ weights).astype(np.float32), kept


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=Path, required=True, help="catalog-features.npz (vectors)")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with np.load(args.features, allow_pickle=False) as data:
        features = data["vectors"].astype(np.float64)
    weights, bias, kept = fit(features, args.dim)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    np.savez(args.output, weights=weights, bias=bias)
    card = {
        "kind": "whitened PCA",
        "input_dim": features.shape[1],
        "dim": args.dim,
        "products": len(features),
        "variance_kept": round(kept, 4),
    }
    args.output.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    logger.info("whitened PCA %d -> %d keeps %.1f%% of the variance", features.shape[1], args.dim, 100 * kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
