"""Which catalog products the retrieval trainings never see, so that make eval can measure them on
products they did not learn (a store's new products): a tenth, by a hash of the product id, the
same on every machine."""

from __future__ import annotations

import hashlib


def retrieval_held_out(product_id: str) -> bool:
    return int(hashlib.sha1(f"projection:{product_id}".encode()).hexdigest()[:8], 16) % 10 == 0
