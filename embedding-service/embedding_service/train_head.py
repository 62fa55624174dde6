"""Train the category and article-type head on catalog features (tools/catalog_features.py).

Two softmax regressions on the L2-normalised backbone vectors, class-balanced, trained with Adam
on a deterministic 85/15 split by product id; the held-out figures go into a model card.

    python -m embedding_service.train_head --features data/cache/myntra.npz \
        --output embedding_service/assets/classifier.npz
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from embedding_service.head import ClassifierHead, LinearHead
from shared.contracts import Category
from shared.features import network_of

logger = logging.getLogger("embedding-service")
MIN_ARTICLE_EXAMPLES = 15
FEATURE_SCALE = 30.0  # unit vectors have tiny components; scaling keeps the optimisation well posed


def held_out(product_ids: np.ndarray, fraction: float = 0.15) -> np.ndarray:
    """Deterministic split: a product is held out by the hash of its id, on every machine."""
    buckets = [int(hashlib.sha1(str(pid).encode()).hexdigest()[:8], 16) % 1000 for pid in product_ids]
    return np.array(buckets) < fraction * 1000


def train_softmax(
    x: np.ndarray, y: np.ndarray, classes: int, steps: int = 400, lr: float = 0.05, l2: float = 1e-3
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced multinomial logistic regression, full-batch Adam. Returns (weights, bias)."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.01, (x.shape[1], classes)).astype(np.float64)
    bias = np.zeros(classes)
    counts = np.bincount(y, minlength=classes).astype(np.float64)
    sample_weight = (1.0 / np.sqrt(np.maximum(counts, 1)))[y]
    sample_weight /= sample_weight.sum()
    onehot = np.eye(classes)[y]
    moments = [np.zeros_like(weights), np.zeros_like(bias)]
    squares = [np.zeros_like(weights), np.zeros_like(bias)]
    for step in range(1, steps + 1):
        logits = x @ weights + bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        error = (p - onehot) * sample_weight[:, None]
        grads = [x.T @ error + l2 * weights, error.sum(axis=0)]
        for i, (param, grad) in enumerate(zip((weights, bias), grads, strict=True)):
            moments[i] = 0.9 * moments[i] + 0.1 * grad
            squares[i] = 0.999 * squares[i] + 0.001 * grad**2
            m_hat = moments[i] / (1 - 0.9**step)
            v_hat = squares[i] / (1 - 0.999**step)
            param -= lr * m_hat / (np.sqrt(v_hat) + 1e-8)
    return weights, bias


@dataclass(frozen=True)
class Examples:
    """Labelled feature rows: the catalog crops, and optionally distorted views of them."""

    x: np.ndarray
    labels: np.ndarray
    train: np.ndarray  # which rows may be learnt from (the others are held out)

    def select(self, rows: np.ndarray) -> Examples:
        return Examples(self.x[rows], self.labels[rows], self.train[rows])


def fit(crops: Examples, views: Examples | None) -> tuple[LinearHead, dict[str, object]]:
    names = sorted(set(crops.labels[crops.train]))
    index = {name: i for i, name in enumerate(names)}
    sets = [crops] + ([views] if views is not None else [])
    learn = [(e.x[e.train], e.labels[e.train]) for e in sets]
    x = np.concatenate([x for x, _ in learn])
    y = np.array([index.get(label, -1) for _, labels in learn for label in labels])
    known = y >= 0
    weights, bias = train_softmax(x[known] * FEATURE_SCALE, y[known], len(names))
    head = LinearHead(weights * FEATURE_SCALE, bias, names)
    metrics: dict[str, object] = _held_out_metrics(head, crops, index)
    metrics["per_class_accuracy"] = _held_out_metrics(head, crops, index, per_class=True)
    if views is not None:
        metrics["distorted_views"] = _held_out_metrics(head, views, index)
    return head, metrics


def _held_out_metrics(
    head: LinearHead, examples: Examples, index: dict[str, int], per_class: bool = False
) -> dict[str, object]:
    truth = np.array([index.get(label, -1) for label in examples.labels])
    test = ~examples.train & (truth >= 0)
    top = np.argsort(-head.probabilities(examples.x[test]), axis=1)
    truth = truth[test]
    if per_class:
        return {
            name: round(float((top[truth == i, 0] == i).mean()), 4)
            for name, i in index.items()
            if (truth == i).any()
        }
    return {
        "held_out": int(test.sum()),
        "top1_accuracy": round(float((top[:, 0] == truth).mean()), 4),
        "top3_accuracy": round(float((top[:, :3] == truth[:, None]).any(axis=1).mean()), 4),
    }


def train(features: Path, views_path: Path | None) -> tuple[ClassifierHead, dict[str, object]]:
    """A head for the features' network (named in the file; the service checks the name)."""
    data = np.load(features, allow_pickle=False)
    backbone = network_of(data, features)
    labelled = data["categories"] != ""
    ids = data["product_ids"][labelled]
    test = held_out(ids)
    x = data["vectors"][labelled].astype(np.float64)
    categories, articles = data["categories"][labelled], data["article_types"][labelled]
    views_x, view_rows = _views(views_path, ids)
    article_counts = {a: int(((articles == a) & ~test).sum()) for a in set(articles) if a}
    frequent = {a for a, n in article_counts.items() if n >= MIN_ARTICLE_EXAMPLES}
    article_labels = np.where(np.isin(articles, list(frequent)), articles, "")
    heads = {}
    metrics = {}
    for name, labels in (("category", categories), ("article_type", article_labels)):
        has = labels != ""
        crops = Examples(x[has], labels[has], ~test[has])
        views = None
        if views_x is not None:
            keep = has[view_rows]
            views = Examples(views_x[keep], labels[view_rows][keep], ~test[view_rows][keep])
        heads[name], metrics[name] = fit(crops, views)
    has_article = article_labels != ""
    article_category = _article_categories(article_labels[has_article], categories[has_article])
    head = ClassifierHead(heads["category"], heads["article_type"], article_category, backbone)
    card: dict[str, object] = {
        "backbone": backbone,
        "features": str(features),
        "views": str(views_path) if views_path else None,
        "train_products": int((~test).sum()),
        "held_out_products": int(test.sum()),
        "category": metrics["category"],
        "article_type": {**metrics["article_type"], "classes": len(heads["article_type"].labels)},
        "min_article_examples": MIN_ARTICLE_EXAMPLES,
    }
    return head, card


def _views(path: Path | None, ids: np.ndarray) -> tuple[np.ndarray | None, np.ndarray]:
    """Distorted-view features and, for each, the row of its product among ``ids``."""
    if path is None:
        return None, np.array([], dtype=int)
    views = np.load(path, allow_pickle=False)
    row_of = {str(pid): i for i, pid in enumerate(ids)}
    rows = np.array([row_of.get(str(pid), -1) for pid in views["product_ids"]])
    keep = rows >= 0
    return views["vectors"][keep].astype(np.float64), rows[keep]


def _article_categories(articles: np.ndarray, categories: np.ndarray) -> dict[str, Category]:
    """Each article type's category: the one most of its products are filed under."""
    mapping = {}
    for article in sorted(set(articles)):
        values, counts = np.unique(categories[articles == article], return_counts=True)
        mapping[str(article)] = Category(str(values[np.argmax(counts)]))
    return mapping


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--features", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--views", type=Path, default=None, help="distorted views to learn from as well")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    head, card = train(args.features, args.views)
    head.save(args.output)
    card_path = args.output.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    logger.info("saved %s and %s", args.output, card_path)
    logger.info(json.dumps({k: card[k] for k in ("category", "article_type")}, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
