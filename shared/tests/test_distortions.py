from __future__ import annotations

import random

import numpy as np
from PIL import Image

from shared.distortions import distort, on_clutter


def test_a_view_is_repeatable_and_differs_from_the_image() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 80, 3), dtype=np.uint8))
    first, again = distort(image, random.Random(3)), distort(image, random.Random(3))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert first.size != image.size or not np.array_equal(np.asarray(first), np.asarray(image))


def test_slivers_narrower_than_the_smallest_crop_are_distorted() -> None:
    for size in [(5, 60), (60, 3), (1, 1)]:
        for seed in range(20):
            assert distort(Image.new("RGB", size, "red"), random.Random(seed)).mode == "RGB"


def test_clutter_replaces_the_background_around_a_product_but_not_its_own_white() -> None:
    # a white shirt: a dark outline around white cloth, on the catalog's white ground
    image = np.full((200, 160, 3), 255, dtype=np.uint8)
    image[40:160, 30:130] = 20
    image[46:154, 36:124] = 250
    pasted = np.asarray(on_clutter(Image.fromarray(image), random.Random(5)))
    cloth = np.abs(pasted.astype(int) - 250).sum(axis=2) <= 12
    assert cloth.sum() >= 0.95 * (108 * 88)  # the cloth is all there, wherever it was pasted
    assert cloth.sum() < 0.5 * cloth.size  # and the ground around it is clutter
