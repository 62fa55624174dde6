"""Train the category and article-type head on catalog features (tools/catalog_features.py) and,
for the category, on labelled shoppers' photos too (tools/photo_features.py).

Two softmax regressions on the L2-normalised backbone vectors, class-balanced, trained with Adam
on a deterministic 85/15 split by product id; the held-out figures go into a model card. The
photos learnt from are half of their contributors (shared.splits.photo_held_out); how many catalog
crops a photo counts as is chosen by cross-validation among them (PHOTO_COPIES), on the same folds
as how much the catalog's nearest products should count when they vote with the head on a product
photo's category (VOTE_WEIGHTS, the gateway's GATEWAY_VOTE_WEIGHT); the card names the photos
learnt from, so that make eval measures on the others only.

    python -m embedding_service.train_head --features data/cache/myntra.npz \
        --photos data/cache/photo-features-consumer.npz --output embedding_service/assets/classifier.npz
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
from shared.contracts import CATEGORY_VOTE_K, Category
from shared.features import network_of
from shared.splits import photo_held_out

logger = logging.getLogger("embedding-service")
MIN_ARTICLE_EXAMPLES = 15
FEATURE_SCALE = 30.0  # unit vectors have tiny components; scaling keeps the optimisation well posed
# how many catalog crops a shopper's photo may count as (there are some 70 catalog crops and views
# to each photo learnt from): the one that names best the photos of contributors left out of its
# training, folds by contributor among those learnt from (choose_copies)
PHOTO_COPIES = (1, 3, 10, 30)
# five, not two: a fold's head then learns from four fifths of the photos, as the served head learns
# from all of them; with halves the weights' scores differed by two photos in 336 and the choice
# flipped when the distorted views were remade (copies 10 -> 1: held-out photos 0.840 -> 0.793)
CONTRIBUTOR_FOLDS = 5
# how much the catalog's nearest products count against the head when they vote on a product
# photo's category (the gateway's GATEWAY_VOTE_WEIGHT): each is cross-validated on the same folds
VOTE_WEIGHTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)


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
    groups: np.ndarray | None = None  # who made each row (a photo's contributor), for folds

    def select(self, rows: np.ndarray) -> Examples:
        groups = self.groups[rows] if self.groups is not None else None
        return Examples(self.x[rows], self.labels[rows], self.train[rows], groups)


def fit(
    crops: Examples, views: Examples | None, photos: Examples | None = None
) -> tuple[LinearHead, dict[str, object]]:
    names = sorted(set(crops.labels[crops.train]))
    index = {name: i for i, name in enumerate(names)}
    copies, validation, fold_heads = (
        choose_copies(crops, views, photos, index) if photos is not None else (0, {}, [])
    )
    head = _fitted(crops, views, photos, copies, index)
    metrics: dict[str, object] = _held_out_metrics(head, crops, index)
    metrics["per_class_accuracy"] = _held_out_metrics(head, crops, index, per_class=True)
    if views is not None:
        metrics["distorted_views"] = _held_out_metrics(head, views, index)
    if photos is not None:
        metrics["shoppers_photos"] = {
            **_held_out_metrics(head, photos, index),
            "per_class_accuracy": _held_out_metrics(head, photos, index, per_class=True),
            "copies": copies,
            "copies_cross_validated": validation,
            "vote_weights_cross_validated": vote_weights(fold_heads, photos, crops, index),
        }
    return head, metrics


def _fitted(
    crops: Examples, views: Examples | None, photos: Examples | None, copies: int, index: dict[str, int]
) -> LinearHead:
    """The softmax on every learnable row, each photo ``copies`` times."""
    sets = (
        [crops] + ([views] if views is not None else []) + ([photos] * copies if photos is not None else [])
    )
    learn = [(e.x[e.train], e.labels[e.train]) for e in sets]
    x = np.concatenate([x for x, _ in learn])
    y = np.array([index.get(label, -1) for _, labels in learn for label in labels])
    known = y >= 0
    weights, bias = train_softmax(x[known] * FEATURE_SCALE, y[known], len(index))
    return LinearHead(weights * FEATURE_SCALE, bias, sorted(index, key=lambda name: index[name]))


def choose_copies(
    crops: Examples, views: Examples | None, photos: Examples, index: dict[str, int]
) -> tuple[int, dict[int, float], list[LinearHead]]:
    """The weight of a photo (PHOTO_COPIES) whose head names best the learnt photos of the
    contributors it did not learn from: CONTRIBUTOR_FOLDS folds by contributor, the held-out photos
    untouched. Returns it, each weight's accuracy over the learnt photos and its heads (one per fold
    kept out)."""
    fold = contributor_folds(photos)
    accuracy: dict[int, float] = {}
    heads: dict[int, list[LinearHead]] = {}
    for copies in PHOTO_COPIES:
        right = checked = 0
        heads[copies] = []
        for kept_out in range(CONTRIBUTOR_FOLDS):
            learnt = Examples(photos.x, photos.labels, photos.train & (fold != kept_out))
            head = _fitted(crops, views, learnt, copies, index)
            named = photos.select(photos.train & (fold == kept_out))
            truth = np.array([index.get(label, -1) for label in named.labels])
            right += int((head.probabilities(named.x).argmax(axis=1) == truth).sum())
            checked += len(truth)
            heads[copies].append(head)
        accuracy[copies] = round(right / max(checked, 1), 4)
        logger.info("photos counted %d times: cross-validated accuracy %.4f", copies, accuracy[copies])
    best = max(accuracy, key=lambda copies: accuracy[copies])
    return best, accuracy, heads[best]


def contributor_folds(photos: Examples) -> np.ndarray:
    """The fold (0 to CONTRIBUTOR_FOLDS - 1) of each photo, by the hash of its contributor (all of
    theirs in one fold)."""
    groups = photos.groups if photos.groups is not None else np.arange(len(photos.labels)).astype(str)
    return np.array(
        [int(hashlib.sha1(f"fold:{g}".encode()).hexdigest()[:8], 16) % CONTRIBUTOR_FOLDS for g in groups]
    )


def vote_weights(
    fold_heads: list[LinearHead], photos: Examples, catalog: Examples, index: dict[str, int]
) -> dict[str, float]:
    """For each of VOTE_WEIGHTS, the share of the learnt photos that the head of the fold that did
    not learn them names right once the catalog's CATEGORY_VOTE_K nearest crops vote with it at that
    weight, as the gateway's vote does (an argmax of the head's distribution plus the weight times
    the neighbours' shares)."""
    fold = contributor_folds(photos)
    shares = neighbour_shares(photos.x, catalog, index)
    truth = np.array([index.get(label, -1) for label in photos.labels])
    accuracy: dict[str, float] = {}
    for weight in VOTE_WEIGHTS:
        right = checked = 0
        for kept_out, head in enumerate(fold_heads):
            rows = photos.train & (fold == kept_out)
            voted = head.probabilities(photos.x[rows]) + weight * shares[rows]
            right += int((voted.argmax(axis=1) == truth[rows]).sum())
            checked += int(rows.sum())
        accuracy[str(weight)] = round(right / max(checked, 1), 4)
    logger.info("catalog's vote weighed: cross-validated accuracy %s", accuracy)
    return accuracy


def neighbour_shares(x: np.ndarray, catalog: Examples, index: dict[str, int]) -> np.ndarray:
    """Each row's share of each category among its CATEGORY_VOTE_K nearest catalog crops by cosine
    (every labelled crop, held out or not: the index holds them all)."""
    catalog_unit = catalog.x / np.linalg.norm(catalog.x, axis=1, keepdims=True)
    labels = np.array([index.get(label, -1) for label in catalog.labels])
    shares = np.zeros((len(x), len(index)))
    for start in range(0, len(x), 256):
        part = x[start : start + 256]
        similarity = (part / np.linalg.norm(part, axis=1, keepdims=True)) @ catalog_unit.T
        nearest = labels[np.argsort(-similarity, axis=1)[:, :CATEGORY_VOTE_K]]
        for row, categories in enumerate(nearest, start):
            np.add.at(shares[row], categories[categories >= 0], 1.0 / CATEGORY_VOTE_K)
    return shares


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


def photo_examples(path: Path, backbone: str) -> tuple[Examples, dict[str, object]]:
    """Shoppers' photos (tools/photo_features.py) as category examples, half of the contributors
    held out, and what the card says of them (the images learnt from are named)."""
    data = np.load(path, allow_pickle=False)
    if network_of(data, path) != backbone:
        raise SystemExit(f"{path} was embedded by another network than {backbone}: make it again")
    images = [str(i) for i in data["images"]]
    train = ~np.array(
        [photo_held_out(str(c), i) for c, i in zip(data["contributors"], images, strict=True)], dtype=bool
    )
    contributors = np.array([c or i for c, i in zip(data["contributors"], images, strict=True)])
    photos = Examples(data["vectors"].astype(np.float64), data["categories"], train, contributors)
    facts: dict[str, object] = {
        "features": str(path),
        "folder": str(data["folder"]),
        "learnt_from": int(train.sum()),
        "held_out": int((~train).sum()),
        "images": [image for image, learnt in zip(images, train, strict=True) if learnt],
    }
    return photos, facts


def train(
    features: Path, views_path: Path | None, photos_path: Path | None = None
) -> tuple[ClassifierHead, dict[str, object]]:
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
    photos, photo_facts = photo_examples(photos_path, backbone) if photos_path else (None, None)
    heads = {}
    metrics = {}
    for name, labels in (("category", categories), ("article_type", article_labels)):
        has = labels != ""
        crops = Examples(x[has], labels[has], ~test[has])
        views = None
        if views_x is not None:
            keep = has[view_rows]
            views = Examples(views_x[keep], labels[view_rows][keep], ~test[view_rows][keep])
        # the photos are labelled with a category only
        heads[name], metrics[name] = fit(crops, views, photos if name == "category" else None)
    has_article = article_labels != ""
    article_category = _article_categories(article_labels[has_article], categories[has_article])
    head = ClassifierHead(heads["category"], heads["article_type"], article_category, backbone)
    card: dict[str, object] = {
        "backbone": backbone,
        "features": str(features),
        "views": str(views_path) if views_path else None,
        "photos": photo_facts,
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
    parser.add_argument(
        "--photos", type=Path, default=None, help="labelled shoppers' photos (tools/photo_features.py)"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    head, card = train(args.features, args.views, args.photos)
    head.save(args.output)
    card_path = args.output.with_suffix(".json")
    card_path.write_text(json.dumps(card, indent=2) + "\n")
    logger.info("saved %s and %s", args.output, card_path)
    logger.info(json.dumps({k: card[k] for k in ("category", "article_type")}, indent=1)[:2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
