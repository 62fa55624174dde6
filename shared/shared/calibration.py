"""The exact-match threshold of an instance projection: the instance cosine from which a crop's
nearest product is taken for the very product (the gateway puts it first).

Cosines of one projection are not those of another, so the threshold travels with the projection:
make eval measures it on photos of products the catalog does not hold (``calibrated``),
make train-embedding writes it into the card of the projection it adopts (the JSON beside the
.npz, under ``CARD_KEY``), and the embedding service reads it from there and gives it with every
answer (EmbedResponse.exact_match).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

CARD_KEY = "exact_match"
# of photos of products the catalog does not hold, at most one in 200 may pass the threshold
QUANTILE = 0.995


def calibrated(best_cosines: Sequence[float]) -> dict[str, Any] | None:
    """The threshold for these photos' best instance cosines (each photo's nearest product, none of
    them its own): the lowest hundredth that at most 1 - QUANTILE of them reach; None without
    photos."""
    if not best_cosines:
        return None
    ordered = sorted(best_cosines)
    allowed = math.floor(round((1 - QUANTILE) * len(ordered), 6))
    highest_kept_below = ordered[len(ordered) - allowed - 1]
    return {
        "threshold": min(1.0, (math.floor(round(highest_kept_below * 100, 6)) + 1) / 100),
        "quantile": QUANTILE,
        "photos": len(ordered),
        "best_cosine_max": round(ordered[-1], 4),
    }


def card_threshold(projection: Path) -> float | None:
    """The exact-match threshold in the card beside ``projection``, if it was calibrated."""
    card = projection.with_suffix(".json")
    if not card.exists():
        return None
    found = json.loads(card.read_text()).get(CARD_KEY)
    return float(found["threshold"]) if isinstance(found, dict) and "threshold" in found else None
