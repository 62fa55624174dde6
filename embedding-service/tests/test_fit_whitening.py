"""The learned whitening: what differs between two views of one product stops counting."""

from __future__ import annotations

import numpy as np
import pytest

from embedding_service.fit_whitening import fit, fit_joint
from embedding_service.head import Projection, unit_rows


def products_and_views(
    rng: np.random.Generator, products: int = 300, dim: int = 32
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Products that differ a little in every direction, and views of them shaken hard along a few
    nuisance directions (as a colour cast or a crop shakes a descriptor)."""
    catalog = rng.normal(size=(products, dim))
    nuisance = rng.normal(size=(3, dim)) * 3.0
    originals = np.repeat(np.arange(products), 2)
    views = catalog[originals] + rng.normal(size=(len(originals), 3)) @ nuisance
    views += 0.05 * rng.normal(size=views.shape)
    return catalog, views, originals


def nearest_is_own(catalog: np.ndarray, views: np.ndarray, originals: np.ndarray) -> float:
    return float(np.mean(np.argmax(views @ catalog.T, axis=1) == originals))


def test_views_find_their_product_after_whitening_not_before() -> None:
    rng = np.random.default_rng(0)
    catalog, views, originals = products_and_views(rng)
    weights, bias = fit(catalog, views[:400], originals[:400], dim=32)
    before = nearest_is_own(unit_rows(catalog), unit_rows(views[400:]), originals[400:])
    after = nearest_is_own(
        Projection(weights, bias).apply(catalog),
        Projection(weights, bias).apply(views[400:]),
        originals[400:],
    )
    assert before < 0.6 and after > 0.95


def test_shapes_and_centring() -> None:
    catalog, views, originals = products_and_views(np.random.default_rng(1))
    weights, bias = fit(catalog, views, originals, dim=8)
    assert weights.shape == (32, 8) and bias.shape == (8,)
    assert np.allclose((catalog @ weights + bias).mean(axis=0), 0.0, atol=1e-3)


def test_rejects_a_dimension_it_cannot_give() -> None:
    with pytest.raises(ValueError, match="dim must be"):
        fit(np.zeros((10, 4)), np.zeros((5, 4)), np.zeros(5, int), dim=5)


def test_the_joint_projection_keeps_the_features_cosine_in_its_first_half() -> None:
    """The average-pooled half is a rotation (cosine kept when few axes are dropped); the whitened
    half weighs as much in the served cosine."""
    rng = np.random.default_rng(2)
    catalog, views, originals = products_and_views(rng)
    features = unit_rows(rng.normal(size=(len(catalog), 16)))
    weights, bias = fit_joint(features, unit_rows(catalog), unit_rows(views), originals, dim=32, raw_dim=16)
    assert weights.shape == (16 + 32, 32) and bias.shape == (32,)
    joined = np.concatenate([features, unit_rows(catalog)], axis=1) @ weights + bias
    raw_half, whitened_half = joined[:, :16], joined[:, 16:]
    assert np.allclose(raw_half @ raw_half.T, features @ features.T, atol=1e-6)
    assert np.median(np.linalg.norm(whitened_half, axis=1)) == pytest.approx(1.0, rel=1e-6)
    with pytest.raises(ValueError, match="raw_dim must be"):
        fit_joint(features, catalog, views, originals, dim=32, raw_dim=32)
