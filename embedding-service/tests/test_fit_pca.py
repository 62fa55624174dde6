"""The whitened PCA projection: shapes, centring, whitening, and neighbours kept."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_service.fit_pca import fit
from embedding_service.head import Projection


def clustered(rng: np.random.Generator, n: int = 400, dim: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors around 20 centres, with the centre each belongs to."""
    centres = rng.normal(size=(20, dim))
    labels = rng.integers(0, 20, n)
    points = centres[labels] + 0.1 * rng.normal(size=(n, dim))
    return points / np.linalg.norm(points, axis=1, keepdims=True), labels


def test_projects_to_centred_whitened_components() -> None:
    features, _ = clustered(np.random.default_rng(0))
    weights, bias, kept = fit(features, 8)
    assert weights.shape == (64, 8) and bias.shape == (8,)
    projected = features @ weights + bias
    assert np.allclose(projected.mean(axis=0), 0.0, atol=1e-4)
    spreads = projected.std(axis=0)
    assert np.allclose(spreads, spreads[0], rtol=1e-3)  # every component scaled to the first's spread
    assert 0.5 < kept <= 1.0


def test_neighbours_stay_in_their_group() -> None:
    """Fewer dimensions, but a photo's nearest product is still one of its own kind."""
    rng = np.random.default_rng(1)
    features, labels = clustered(rng)
    weights, bias, _ = fit(features, 24)
    projection = Projection(weights, bias)
    queries = features[:100] + 0.05 * rng.normal(size=(100, 64))
    projected = projection.apply(features)
    similarities = projection.apply(queries) @ projected.T
    similarities[np.arange(100), np.arange(100)] = -np.inf  # not the product it was made from
    assert np.mean(labels[np.argmax(similarities, axis=1)] == labels[:100]) >= 0.95


def test_rejects_a_dimension_it_cannot_give() -> None:
    with pytest.raises(ValueError, match="dim must be"):
        fit(np.zeros((10, 4)), 5)
