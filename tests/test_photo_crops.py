"""The shoppers' photo crops make train-category learns from: one JPEG per kept photo, in order, and
labels saying which of them the category tail may learn from (the head's split)."""

from __future__ import annotations

import json
from pathlib import Path

from shared.contracts import Category
from shared.splits import photo_held_out
from tools.photo_features import LabelledPhoto, save_crops


def test_crops_are_saved_in_order_with_the_heads_split(tmp_path: Path) -> None:
    photos = [
        LabelledPhoto(f"images/{n}.jpg", "Shirt", Category.topwear, contributor)
        for n, contributor in enumerate("abcdef")
    ]
    output = tmp_path / "crops"
    save_crops([bytes([n]) * 3 for n in range(6)], photos, tmp_path / "consumer", output)
    labels = json.loads((output / "labels.json").read_text())
    assert labels["folder"] == "consumer"
    assert [p["image"] for p in labels["photos"]] == [p.image for p in photos]
    assert [p["learnt"] for p in labels["photos"]] == [
        not photo_held_out(p.contributor, p.image) for p in photos
    ]
    assert {p["learnt"] for p in labels["photos"]} == {True, False}
    assert (output / "4.jpg").read_bytes() == bytes([4]) * 3
