"""What trainings never see, so that make eval measures on what they did not learn, the same on
every machine: a tenth of the catalog's products for the retrieval trainings (a store's new
products), half of the labelled shoppers' photos for the classifier head (new shoppers)."""

from __future__ import annotations

import hashlib


def retrieval_held_out(product_id: str) -> bool:
    return int(hashlib.sha1(f"projection:{product_id}".encode()).hexdigest()[:8], 16) % 10 == 0


def photo_held_out(contributor: str, image: str) -> bool:
    """Whether a labelled shopper's photo is kept out of the classifier head's training, for make
    eval: half of the contributors, by a hash of their name, with all their photos (so the head is
    measured on people whose rooms, beds and phones it never saw); by the image where the
    contributor is unknown."""
    key = contributor or image
    return int(hashlib.sha1(f"photos:{key}".encode()).hexdigest()[:8], 16) % 2 == 0
