from __future__ import annotations

import json
from pathlib import Path

from shared.calibration import CARD_KEY, calibrated, card_threshold


def test_the_threshold_is_passed_by_at_most_one_photo_in_200() -> None:
    cosines = [i / 1000 for i in range(400)] + [0.731, 0.79]  # 402 photos: two pass 0.4
    found = calibrated(cosines)
    assert found is not None
    assert found["threshold"] == 0.4, "the next hundredth above the third highest (0.399)"
    assert sum(c >= found["threshold"] for c in cosines) == 2 <= len(cosines) / 200
    assert found["photos"] == 402 and found["best_cosine_max"] == 0.79
    assert calibrated([0.5] * 10)["threshold"] == 0.51, "none of 10 may reach it"  # type: ignore[index]
    assert calibrated([0.999]) == {"threshold": 1.0, "quantile": 0.995, "photos": 1, "best_cosine_max": 0.999}
    assert calibrated([]) is None


def test_the_threshold_is_read_from_the_projections_card(tmp_path: Path) -> None:
    projection = tmp_path / "instance.npz"
    assert card_threshold(projection) is None, "no card"
    projection.with_suffix(".json").write_text(json.dumps({"dim": 768}))
    assert card_threshold(projection) is None, "a card without a calibration"
    projection.with_suffix(".json").write_text(json.dumps({"dim": 768, CARD_KEY: {"threshold": 0.77}}))
    assert card_threshold(projection) == 0.77
