from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import pytest

from index_service.model import (
    KEYPOINTS,
    KEYWORD_FIELDS,
    SHELF,
    IndexUnavailable,
    VectorIndex,
    engine_config,
    filter_values,
    point_id,
)
from shared.contracts import Category, IndexPoint, ProductPayload, SearchFilter, SearchRequest
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


def test_a_store_made_before_shelves_gets_them_when_opened(tmp_path: Path) -> None:
    """Filters on gender and category together are asked as shelves: products written by an
    earlier version, without one, are given theirs when the store is opened."""
    from qdrant_edge import EdgeShard, PayloadSchemaType, Point, UpdateOperation

    settings = make_settings(tmp_path / "index", instance_dim=0)  # made before instance vectors too
    shard = EdgeShard.create(str(settings.path), engine_config(DIM, int8=False, hnsw=False))
    for field in ("product_id", "gender", "category"):
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    old = [
        ("1", "Men", "topwear"),
        ("2", "Women", "topwear"),
        ("3", "Unisex", "footwear"),
        ("4", "Men", None),
    ]
    shard.update(
        UpdateOperation.upsert_points(
            [
                Point(
                    point_id(pid), axis(i), {"product_id": pid, "gender": g} | ({"category": c} if c else {})
                )
                for i, (pid, g, c) in enumerate(old)
            ]
        )
    )
    shard.flush()
    shard.close()

    index = VectorIndex(settings)
    index.load()
    try:

        def found(genders: list[str], categories: list[Category]) -> list[str]:
            request = SearchRequest(
                vector=axis(0), k=10, filter=SearchFilter(genders=genders, categories=categories)
            )
            return sorted(hit.product.product_id for hit in index.search(request))

        assert found(["Men", "Unisex"], [Category.topwear, Category.footwear]) == ["1", "3"]
        assert found(["Women"], [Category.topwear]) == ["2"]
        assert found(["Men"], [Category.dress]) == []
        stored = index.get("1")
        assert stored is not None and "shelf" not in stored.model_dump()  # internal to the index
    finally:
        index.close()


def test_filters_on_gender_and_category_together_ask_for_shelves() -> None:
    both = SearchFilter(genders=["Men", "Unisex"], categories=[Category.topwear], colours=["Blue"])
    assert filter_values(both) == {"colour": ["Blue"], "shelf": ["Men/topwear", "Unisex/topwear"]}
    assert filter_values(SearchFilter(genders=["Men"])) == {"gender": ["Men"]}
    assert filter_values(SearchFilter(categories=[Category.dress])) == {"category": ["dress"]}


def test_the_clusters_collection_script_indexes_what_the_service_does() -> None:
    """deploy/base/qdrant/ensure_collection.py runs in an init container with the standard library
    alone, so it keeps its own copy of the keyword fields (less the shelf, which the service makes
    itself) and of the sparse vector: they must stay the service's."""
    path = Path(__file__).resolve().parents[2] / "deploy" / "base" / "qdrant" / "ensure_collection.py"
    spec = importlib.util.spec_from_file_location("ensure_collection", path)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert set(script.KEYWORD_FIELDS) == set(KEYWORD_FIELDS) - {SHELF}
    assert set(script.SPARSE_VECTORS) == {KEYPOINTS}
