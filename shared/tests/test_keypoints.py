from __future__ import annotations

import numpy as np
import pytest

from shared.keypoints import (
    PHRASES_FROM,
    _affine_maps,
    correspondences,
    inliers,
    own_photos,
    pack,
    phrases,
    terms,
    unpack,
)


def photo(seed: int, count: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions in a 448 px photo, words of a 32k vocabulary and random descriptors."""
    rng = np.random.default_rng(seed)
    points = rng.uniform(0, 448, (count, 2))
    words = rng.integers(0, 32768, count)
    descriptors = rng.integers(0, 256, (count, 32), dtype=np.uint8)
    return points, words, descriptors


def moved(points: np.ndarray, degrees: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    turn = np.radians(degrees)
    rotation = scale * np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    return points @ rotation.T + np.array(shift)


def test_keypoints_survive_packing() -> None:
    points, words, descriptors = photo(0, 5)
    unpacked = unpack(pack(points, words, descriptors))
    assert np.allclose(unpacked["x"], points[:, 0]) and np.allclose(unpacked["y"], points[:, 1])
    assert list(unpacked["word"]) == list(words)
    assert np.array_equal(unpacked["descriptor"], descriptors)
    assert list(unpacked["copy"]) == [0] * 5
    assert terms(unpacked)[:5] == sorted(set(int(w) for w in words))
    assert all(t >= PHRASES_FROM for t in terms(unpacked)[5:])


def test_phrases_pair_neighbouring_words_of_one_size_wherever_the_photo_is_moved() -> None:
    points, words, descriptors = photo(5)
    own = phrases(unpack(pack(points, words, descriptors)))
    copy = phrases(unpack(pack(moved(points, 8, 0.6, (40, 10)), words, descriptors)))
    assert np.array_equal(own, copy), "neighbours stay neighbours under a turn, a scale, a shift"
    assert len(own) >= len(words) and own.min() >= PHRASES_FROM and own.max() < 2**32
    other = phrases(unpack(pack(*photo(6))))
    assert len(np.intersect1d(own, other)) <= 0.01 * len(own), "two photos' words pair differently"
    # keypoints found at two sizes of a photo pair only with those of their own size
    twice = np.concatenate([points, points + 0.5])
    both = unpack(pack(twice, np.concatenate([words, words + 1]), np.concatenate([descriptors] * 2)))
    assert len(phrases(both)) > len(own), "each size pairs its own nearest"
    sized = unpack(
        pack(
            twice,
            np.concatenate([words, words + 1]),
            np.concatenate([descriptors] * 2),
            np.repeat([0, 1], 300),
        )
    )
    shifted = phrases(unpack(pack(points + 0.5, words + 1, descriptors)))
    assert np.array_equal(phrases(sized), np.union1d(own, shifted))


@pytest.mark.parametrize("blob", ["not base64!", "AAAA"])
def test_what_is_not_keypoints_is_refused(blob: str) -> None:
    with pytest.raises(ValueError):
        unpack(blob)


def test_the_same_photo_turned_scaled_and_cropped_agrees_and_another_does_not() -> None:
    points, words, descriptors = photo(1)
    catalog = unpack(pack(points, words, descriptors))
    # the shopper's copy: turned 8 degrees, at 0.7 of the size, a third of its keypoints lost to
    # the crop and as many new ones from clutter, each position off by up to a pixel
    rng = np.random.default_rng(2)
    kept = rng.random(len(points)) > 0.33
    clutter_points, clutter_words, clutter_descriptors = photo(3, 100)
    query = unpack(
        pack(
            np.concatenate(
                [moved(points[kept], 8, 0.7, (30, -12)) + rng.uniform(-1, 1, (kept.sum(), 2)), clutter_points]
            ),
            np.concatenate([words[kept], clutter_words]),
            np.concatenate([descriptors[kept], clutter_descriptors]),
        )
    )
    other = unpack(pack(*photo(4)))
    assert inliers(query, catalog) >= 0.9 * kept.sum()
    assert inliers(query, other) < 5


def test_words_alone_do_not_make_a_match() -> None:
    # the same words in other places with other descriptors: a photo of another product of a kind
    points, words, descriptors = photo(5)
    catalog = unpack(pack(points, words, descriptors))
    shuffled = unpack(pack(photo(6)[0], words, photo(7)[2]))
    assert len(correspondences(shuffled, catalog)[0]) < 10
    assert inliers(shuffled, catalog) < 5


def test_a_mirror_image_is_not_the_same_photo() -> None:
    points, words, descriptors = photo(8)
    catalog = unpack(pack(points, words, descriptors))
    mirrored = points * np.array([-1.0, 1.0]) + np.array([448.0, 0.0])
    assert inliers(unpack(pack(mirrored, words, descriptors)), catalog) < 5


def test_the_affine_map_of_three_points_is_solved_exactly_and_collinear_ones_are_left_out() -> None:
    rng = np.random.default_rng(3)
    linear = np.array([[0.8, 0.3], [-0.2, 1.1]])
    shift = np.array([12.0, -7.0])
    points = rng.uniform(0, 448, (50, 3, 2))
    points[7] = [[0, 0], [10, 10], [30, 30]]  # on one line: no map, whatever the images
    found_linear, found_shift = _affine_maps(points, points @ linear + shift)
    assert len(found_linear) == 49
    np.testing.assert_allclose(found_linear, np.broadcast_to(linear, (49, 2, 2)), atol=1e-9)
    np.testing.assert_allclose(found_shift, np.broadcast_to(shift, (49, 2)), atol=1e-6)


def test_keypoints_agreeing_along_one_line_are_printed_words_not_the_same_photo() -> None:
    """A slogan matches a logo's letters along their line; a photo's own copy agrees across its area."""
    rng = np.random.default_rng(5)
    line_of_print = np.stack([rng.uniform(50, 400, 60), 200 + rng.normal(0, 3, 60)], axis=1)
    area = rng.uniform(50, 400, (60, 2))
    words = rng.integers(0, 32768, 60)
    descriptors = rng.integers(0, 256, (60, 32), dtype=np.uint8)
    for points, agreeing in ((line_of_print, 0), (area, 60)):
        posted = unpack(pack(points, words, descriptors))
        stored = unpack(pack(points * 0.9 + 10, words, descriptors))
        assert inliers(posted, stored) == agreeing


def test_only_photos_near_the_best_match_count_as_the_posted_photos() -> None:
    """The very photo agrees on 80 keypoints, the same model's pose in another colour on 30: only
    the first is the photo's; a photo held twice under two ids agrees as well with both."""
    assert own_photos([80, 30, 79], 25, 5) == [0, 2]
    assert own_photos([25], 25, 5) == [0]
    assert own_photos([], 25, 5) == []
