"""The category and article-type head: softmax regressions on the L2-normalised backbone features.

Trained by ``make train-classifier`` (tools/train_classifier.py) on catalog crops made the same
way as query crops; stored as a small .npz beside this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shared.contracts import ArticleTypeScore, Category


@dataclass(frozen=True)
class LinearHead:
    weights: np.ndarray  # (D, C)
    bias: np.ndarray  # (C,)
    labels: list[str]

    def probabilities(self, features: np.ndarray) -> np.ndarray:
        logits = features @ self.weights + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return np.asarray(exp / exp.sum(axis=1, keepdims=True))


@dataclass(frozen=True)
class ClassifierHead:
    category: LinearHead
    article: LinearHead
    article_category: dict[str, Category]
    backbone: str

    @classmethod
    def load(cls, path: Path) -> ClassifierHead:
        with np.load(path, allow_pickle=False) as data:
            category = LinearHead(
                data["category_weights"], data["category_bias"], [str(x) for x in data["category_labels"]]
            )
            article = LinearHead(
                data["article_weights"], data["article_bias"], [str(x) for x in data["article_labels"]]
            )
            article_category = {
                str(a): Category(str(c))
                for a, c in zip(data["article_labels"], data["article_categories"], strict=True)
            }
            backbone = str(data["backbone"])
        return cls(category, article, article_category, backbone)

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            category_weights=self.category.weights.astype(np.float32),
            category_bias=self.category.bias.astype(np.float32),
            category_labels=np.array(self.category.labels),
            article_weights=self.article.weights.astype(np.float32),
            article_bias=self.article.bias.astype(np.float32),
            article_labels=np.array(self.article.labels),
            article_categories=np.array([self.article_category[a].value for a in self.article.labels]),
            backbone=np.array(self.backbone),
        )

    def classify(
        self, features: np.ndarray, tail: TailCategories | None = None, top_articles: int = 8
    ) -> list[tuple[dict[Category, float], list[ArticleTypeScore]]]:
        """Per crop: probability of every category (the ``tail``'s for its rows, else this
        head's), and the most likely article types."""
        category_p = self.category.probabilities(features)
        categories = [_named(self.category.labels, row) for row in category_p]
        if tail is not None:
            for row, probabilities in zip(tail.rows, tail.probabilities, strict=True):
                categories[row] = _named(tail.labels, probabilities)
        article_p = self.article.probabilities(features)
        results = []
        for categories_of_crop, art_row in zip(categories, article_p, strict=True):
            articles = [
                ArticleTypeScore(
                    name=self.article.labels[i],
                    category=self.article_category[self.article.labels[i]],
                    score=round(float(art_row[i]), 4),
                )
                for i in np.argsort(-art_row)[:top_articles]
            ]
            results.append((categories_of_crop, articles))
        return results


def _named(labels: Sequence[str], probabilities: np.ndarray) -> dict[Category, float]:
    return {Category(label): round(float(p), 4) for label, p in zip(labels, probabilities, strict=True)}


@dataclass(frozen=True)
class TailCategories:
    """A category tail's probabilities (make train-category) for some crops of a batch."""

    rows: list[int]  # the crops', by their place in the batch
    probabilities: np.ndarray  # (len(rows), len(labels))
    labels: list[str]


@dataclass(frozen=True)
class Projection:
    """The retrieval projection of the backbone's ``source`` output ("features", the average-pooled
    vector, or "descriptor", the multi-stage GeM one: export.OUTPUTS; or several joined by "+"):
    ReLU(x W1 + b1) W2 + b2, unit length (W1 absent: linear). Trained with a triplet loss
    (train_projection), fitted as a learned whitening (fit_whitening) or a whitened PCA (fit_pca)."""

    weights: np.ndarray  # (D_hidden or D_in, D_out)
    bias: np.ndarray  # (D_out,)
    hidden_weights: np.ndarray | None = None  # (D_in, D_hidden)
    hidden_bias: np.ndarray | None = None
    source: str = "features"

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    @property
    def sources(self) -> list[str]:
        return self.source.split("+")

    def input_of(self, outputs: dict[str, np.ndarray]) -> np.ndarray:
        """The backbone outputs this projection reads, side by side."""
        return np.concatenate([outputs[name] for name in self.sources], axis=1)

    @property
    def input_dim(self) -> int:
        first = self.hidden_weights if self.hidden_weights is not None else self.weights
        return int(first.shape[0])

    @classmethod
    def load(cls, path: Path) -> Projection:
        with np.load(path, allow_pickle=False) as data:
            hidden = "hidden_weights" in data
            return cls(
                data["weights"].astype(np.float32),
                data["bias"].astype(np.float32),
                data["hidden_weights"].astype(np.float32) if hidden else None,
                data["hidden_bias"].astype(np.float32) if hidden else None,
                str(data["source"]) if "source" in data else "features",
            )

    def apply(self, features: np.ndarray) -> np.ndarray:
        x = features
        if self.hidden_weights is not None and self.hidden_bias is not None:
            x = np.maximum(x @ self.hidden_weights + self.hidden_bias, 0.0)
        return unit_rows(x @ self.weights + self.bias)


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to unit length (an all-zero row stays zero)."""
    return np.asarray(vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12))
