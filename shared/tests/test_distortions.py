from __future__ import annotations

import random

import numpy as np
from PIL import Image

from shared.distortions import distort


def test_a_view_is_repeatable_and_differs_from_the_image() -> None:
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (120, 80, 3), dtype=np.uint8))
    first, again = distort(image, random.Random(3)), distort(image, random.Random(3))
    assert np.array_equal(np.asarray(first), np.asarray(again))
    assert first.size != image.size or not np.array_equal(np.asarray(first), np.asarray(image))


def test_slivers_narrower_than_the_smallest_crop_are_distorted() -> None:
    for size in [(5, 60), (60, 3), (1, 1)]:
        for seed in range(20):
            assert distort(Image.new("RGB", size, "red"), random.Random(seed)).mode == "RGB"
