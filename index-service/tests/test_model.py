from __future__ import annotations

import threading
from pathlib import Path

import pytest

from index_service.model import IndexUnavailable, VectorIndex, point_id
from shared.contracts import IndexPoint, ProductPayload, SearchRequest
from tests.conftest import DIM, axis, make_settings


def test_point_ids_are_stable_uuid5_of_the_product_id() -> None:
    assert point_id("10000") == point_id("10000")
    assert point_id("10000") != point_id("10001")
    assert point_id("10000").version == 5


def test_calls_after_close_are_unavailable_not_engine_errors(tmp_path: Path) -> None:
    index = VectorIndex(make_settings(tmp_path / "index"))
    with pytest.raises(IndexUnavailable, match="not loaded"):
        index.count()
    index.load()
    index.upsert([IndexPoint(vector=axis(0), product=ProductPayload(product_id="1"))])
    index.close()
    with pytest.raises(IndexUnavailable, match="closed"):
        index.search(SearchRequest(vector=axis(0)))
    index.close()  # closing twice is harmless


def test_close_while_searching_from_threads(tmp_path: Path) -> None:
    index = VectorIndex(make_settings(tmp_path / "index"))
    index.load()
    points = [IndexPoint(vector=axis(i % DIM), product=ProductPayload(product_id=str(i))) for i in range(64)]
    index.upsert(points)
    unexpected: list[BaseException] = []

    def keep_searching() -> None:
        while True:
            try:
                index.search(SearchRequest(vector=axis(1), k=5))
            except IndexUnavailable:
                return
            except BaseException as exc:
                unexpected.append(exc)
                return

    threads = [threading.Thread(target=keep_searching) for _ in range(4)]
    for thread in threads:
        thread.start()
    index.close()
    for thread in threads:
        thread.join(timeout=10)
    assert unexpected == []
    assert not any(thread.is_alive() for thread in threads)
