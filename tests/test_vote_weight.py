"""The gateway weighs the catalog's vote on a product photo's category as make train-classifier
found best for the served head."""

from __future__ import annotations

import json

from gateway.config import Settings
from tools.eval_retrieval import HEAD_CARD


def test_the_gateways_vote_weight_named_the_learnt_photos_best() -> None:
    card = json.loads(HEAD_CARD.read_text())
    weighed = card["category"]["shoppers_photos"]["vote_weights_cross_validated"]
    assert weighed[str(Settings().vote_weight)] == max(weighed.values()), weighed
