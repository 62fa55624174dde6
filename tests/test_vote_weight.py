"""The gateway weighs the catalog's vote on a product photo's category as the training of what names
the category found best: the category tail (make train-category) when one ships, else the head
(make train-classifier)."""

from __future__ import annotations

import json

from gateway.config import Settings
from tools.eval_retrieval import CATEGORY_TAIL_CARD, HEAD_CARD


def test_the_gateways_vote_weight_named_the_learnt_photos_best() -> None:
    if CATEGORY_TAIL_CARD.exists():
        weighed = json.loads(CATEGORY_TAIL_CARD.read_text())["validation_fold"]["vote_weights"]
    else:
        card = json.loads(HEAD_CARD.read_text())
        weighed = card["category"]["shoppers_photos"]["vote_weights_cross_validated"]
    assert weighed[str(Settings().vote_weight)] == max(weighed.values()), weighed
