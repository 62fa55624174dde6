"""Held-out splits are fixed by hashes: the same on every machine, whole contributors at a time."""

from __future__ import annotations

from shared.splits import photo_held_out, retrieval_held_out


def test_a_contributors_photos_fall_on_one_side_and_about_half_are_held_out() -> None:
    contributors = [f"person-{i}" for i in range(400)]
    sides = [photo_held_out(who, f"{who}/1.jpg") for who in contributors]
    assert all(
        photo_held_out(who, f"{who}/2.jpg") == side for who, side in zip(contributors, sides, strict=True)
    )
    assert 0.4 < sum(sides) / len(sides) < 0.6


def test_photos_without_a_contributor_are_split_by_image() -> None:
    images = [f"images/{i}.jpg" for i in range(400)]
    assert 0.4 < sum(photo_held_out("", image) for image in images) / len(images) < 0.6


def test_a_tenth_of_the_products_is_kept_from_the_retrieval_trainings() -> None:
    assert 0.07 < sum(retrieval_held_out(str(i)) for i in range(2000)) / 2000 < 0.13
