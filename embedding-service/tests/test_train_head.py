"""The category head learns from shoppers' photos of half the contributors, and says which."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from embedding_service.train_head import VOTE_WEIGHTS, Examples, neighbour_shares, train
from shared.contracts import CATEGORY_VOTE_K
from shared.splits import photo_held_out

DIM = 16
CATEGORIES = ("topwear", "dress", "bottomwear")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def catalog_features(path: Path, rng: np.random.Generator, centres: np.ndarray) -> None:
    labels = np.repeat(np.arange(len(CATEGORIES)), 200)
    np.savez(
        path,
        vectors=unit(centres[labels] + 0.3 * rng.normal(size=(len(labels), DIM))),
        product_ids=np.array([str(i) for i in range(len(labels))]),
        categories=np.array([CATEGORIES[i] for i in labels]),
        article_types=np.array(["Tshirts", "Dresses", "Jeans"])[labels],
        backbone=np.array("net-a"),
    )


def photo_features(
    path: Path, rng: np.random.Generator, centres: np.ndarray, backbone: str = "net-a"
) -> list[str]:
    """Photos whose dresses look like the catalog's tops, but for one direction the catalog never
    shows (laid flat, on a bed); returns the contributors."""
    flat = np.zeros(DIM)
    flat[-1] = 1.5
    labels = np.tile(np.arange(len(CATEGORIES)), 80)
    looks = centres[labels].copy()
    looks[labels == 1] = centres[0] + flat
    contributors = [f"person-{i % 40}" for i in range(len(labels))]
    np.savez(
        path,
        vectors=unit(looks + 0.3 * rng.normal(size=looks.shape)),
        images=np.array([f"images/{i}.jpg" for i in range(len(labels))]),
        categories=np.array([CATEGORIES[i] for i in labels]),
        contributors=np.array(contributors),
        backbone=np.array(backbone),
        folder=np.array("consumer"),
    )
    return contributors


@pytest.fixture
def centres() -> np.ndarray:
    values = np.zeros((len(CATEGORIES), DIM))
    values[0, 0] = values[1, 1] = values[2, 2] = 2.0
    return values


def test_photos_of_half_the_contributors_are_learnt_and_named(tmp_path: Path, centres: np.ndarray) -> None:
    rng = np.random.default_rng(0)
    catalog_features(tmp_path / "catalog.npz", rng, centres)
    contributors = photo_features(tmp_path / "photos.npz", rng, centres)
    _, card = train(tmp_path / "catalog.npz", None, tmp_path / "photos.npz")
    photos = card["photos"]
    assert isinstance(photos, dict)
    learnt = set(photos["images"])
    expected = {
        f"images/{i}.jpg" for i, who in enumerate(contributors) if not photo_held_out(who, f"images/{i}.jpg")
    }
    assert learnt == expected and 0 < len(learnt) < len(contributors)
    assert photos["learnt_from"] == len(learnt) and photos["held_out"] == len(contributors) - len(learnt)
    assert photos["folder"] == "consumer"


def test_the_held_out_photos_are_named_better_once_photos_are_learnt(
    tmp_path: Path, centres: np.ndarray
) -> None:
    rng = np.random.default_rng(1)
    catalog_features(tmp_path / "catalog.npz", rng, centres)
    photo_features(tmp_path / "photos.npz", rng, centres)
    head, card = train(tmp_path / "catalog.npz", None, tmp_path / "photos.npz")
    held_out = card["category"]["shoppers_photos"]  # type: ignore[index]
    # without the photos, the flat dresses (a third of them) read as tops
    plain, _ = train(tmp_path / "catalog.npz", None)
    data = np.load(tmp_path / "photos.npz")
    kept = np.array([photo_held_out(c, i) for c, i in zip(data["contributors"], data["images"], strict=True)])
    dresses = data["vectors"][kept & (data["categories"] == "dress")]
    named = [max(s, key=lambda c: s[c]).value for s, _ in head.classify(dresses)]
    named_plain = [max(s, key=lambda c: s[c]).value for s, _ in plain.classify(dresses)]
    assert np.mean([n == "dress" for n in named]) > 0.9 > 0.1 > np.mean([n == "dress" for n in named_plain])
    assert held_out["top1_accuracy"] > 0.9
    # the weight of a photo was chosen among the learnt photos, by contributor folds
    assert held_out["copies"] in held_out["copies_cross_validated"]


def test_photos_of_another_network_are_refused(tmp_path: Path, centres: np.ndarray) -> None:
    rng = np.random.default_rng(2)
    catalog_features(tmp_path / "catalog.npz", rng, centres)
    photo_features(tmp_path / "photos.npz", rng, centres, backbone="net-b")
    with pytest.raises(SystemExit, match="another network"):
        train(tmp_path / "catalog.npz", None, tmp_path / "photos.npz")


def test_the_catalogs_vote_is_weighed_on_the_learnt_photos(tmp_path: Path, centres: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    catalog_features(tmp_path / "catalog.npz", rng, centres)
    photo_features(tmp_path / "photos.npz", rng, centres)
    _, card = train(tmp_path / "catalog.npz", None, tmp_path / "photos.npz")
    weighed = card["category"]["shoppers_photos"]["vote_weights_cross_validated"]  # type: ignore[index]
    assert set(weighed) == {str(w) for w in VOTE_WEIGHTS}
    # the flat dresses' nearest catalog products are tops: once they count as much as the head,
    # the dresses (a third of the photos) are named tops
    assert weighed["0.0"] > 0.95 and weighed["2.0"] < 0.7


def test_neighbour_shares_count_the_nearest_catalog_crops_categories() -> None:
    catalog = Examples(
        x=np.array([[1.0, 0.0]] * 7 + [[0.9, 0.1]] * 3 + [[0.0, 1.0]] * 10),
        labels=np.array(["topwear"] * 7 + ["dress"] * 3 + ["bottomwear"] * 10),
        train=np.ones(20, dtype=bool),
    )
    index = {"bottomwear": 0, "dress": 1, "topwear": 2}
    shares = neighbour_shares(np.array([[2.0, 0.0], [0.0, 3.0]]), catalog, index)
    assert CATEGORY_VOTE_K == 10
    np.testing.assert_allclose(shares, [[0.0, 0.3, 0.7], [1.0, 0.0, 0.0]])
