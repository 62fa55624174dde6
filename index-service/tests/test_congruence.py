"""The embedded store and the Qdrant server backend answer the same operations alike."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from index_service.config import Settings
from index_service.model import ENGINE_CONFIG_FILE, INT8_QUANTILE, VectorIndex
from index_service.server import ServerIndex
from shared.contracts import (
    IndexPoint,
    ProductPayload,
    ProductUpdate,
    RecommendRequest,
    SearchFilter,
    SearchRequest,
    VectorSpace,
)

DIM = 24
INSTANCE_DIM = 12
GENDERS = ("Men", "Women", "Unisex")
CATEGORIES = ("topwear", "bottomwear", "footwear", "accessories")


def products(count: int, seed: int) -> list[IndexPoint]:
    """Random products; every third has no instance vector."""
    rng = np.random.default_rng(seed)
    return [
        IndexPoint(
            vector=rng.normal(size=DIM).tolist(),
            instance=rng.normal(size=INSTANCE_DIM).tolist() if i % 3 else None,
            product=ProductPayload(
                product_id=f"p{i}",
                gender=GENDERS[rng.integers(3)],
                category=CATEGORIES[rng.integers(4)],  # type: ignore[arg-type]
                article_type=f"a{rng.integers(6)}",
                colour=f"c{rng.integers(5)}",
                usage="Casual" if i % 2 else "Formal",
            ),
        )
        for i in range(count)
    ]


def ranked(hits: list) -> list[tuple[str, float]]:  # type: ignore[type-arg]
    return [(h.product.product_id, round(h.score, 4)) for h in hits]


def test_same_operations_give_the_same_answers(tmp_path: Path) -> None:
    edge = VectorIndex(Settings(path=tmp_path / "edge", vector_dim=DIM, instance_dim=INSTANCE_DIM))
    server = ServerIndex(Settings(qdrant_url=":memory:", vector_dim=DIM, instance_dim=INSTANCE_DIM))
    backends = (edge, server)
    for index in backends:
        index.load()
    catalog = products(300, seed=1)
    rng = np.random.default_rng(2)
    for index in backends:
        assert index.upsert(catalog) == 300
        assert index.upsert(products(20, seed=9)) == 20  # replaces p0..p19
        assert index.delete(["p5", "p7", "ghost"]) == (2, ["ghost"])
        index.update("p9", ProductUpdate(colour="c4", name="renamed"))
    assert edge.count() == server.count() == 298
    for _ in range(25):
        wanted = SearchFilter(
            genders=[str(g) for g in rng.choice(GENDERS, 2, replace=False)],
            categories=[str(rng.choice(CATEGORIES))],  # type: ignore[list-item]
        )
        request = SearchRequest(vector=rng.normal(size=DIM).tolist(), k=10, filter=wanted)
        assert ranked(edge.search(request)) == ranked(server.search(request))
        same = SearchRequest(
            vector=rng.normal(size=INSTANCE_DIM).tolist(),
            views=[rng.normal(size=INSTANCE_DIM).tolist()],
            k=10,
            filter=wanted,
            space=VectorSpace.instance,
        )
        found = edge.search(same)
        assert ranked(found) == ranked(server.search(same))
        assert all(int(hit.product.product_id[1:]) % 3 for hit in found), "products without one: never"
        assert edge.count(wanted) == server.count(wanted)
        liked = RecommendRequest(
            positive=[f"p{rng.integers(20, 300)}"], negative=[f"p{rng.integers(20, 300)}"], k=8, filter=wanted
        )
        if liked.positive != liked.negative:
            assert ranked(edge.recommend(liked)) == ranked(server.recommend(liked))
    assert edge.get("p9") == server.get("p9") and edge.get("p5") is None and server.get("p5") is None
    assert edge.facets() == server.facets()
    assert _all_pages(edge) == _all_pages(server)
    for index in backends:
        index.close()


def _all_pages(index: VectorIndex | ServerIndex) -> list[ProductPayload]:
    seen: list[ProductPayload] = []
    offset = None
    while True:
        page = index.page(37, offset)
        seen += page.products
        if page.next_offset is None:
            return sorted(seen, key=lambda p: p.product_id)
        offset = page.next_offset


def test_both_backends_quantise_to_int8_alike(tmp_path: Path) -> None:
    """The collection the server backend creates asks for the edge store's int8 settings (the local
    stand-in ignores quantisation, so the request itself is read), for both vectors."""
    asked: dict[str, Any] = {}

    class Recording:
        def create_collection(self, name: str, **options: Any) -> None:
            asked.update(options)

    int8 = {"vector_dim": DIM, "instance_dim": INSTANCE_DIM, "quantization": "int8"}
    ServerIndex(Settings(qdrant_url=":memory:", **int8))._create(Recording())  # type: ignore[arg-type]
    scalar = asked["quantization_config"].scalar  # the collection's: every vector's
    assert scalar.quantile == INT8_QUANTILE and scalar.always_ram is True
    assert {name: params.size for name, params in asked["vectors_config"].items()} == {
        "": DIM,
        "instance": INSTANCE_DIM,
    }
    edge = VectorIndex(Settings(path=tmp_path / "edge", hnsw=True, **int8))
    edge.load()
    edge.close()
    stored = json.loads((tmp_path / "edge" / ENGINE_CONFIG_FILE).read_text())["vectors"]
    assert {name: params["size"] for name, params in stored.items()} == {"": DIM, "instance": INSTANCE_DIM}
    for params in stored.values():
        assert params["quantization_config"]["scalar"] == {
            "type": "int8",
            "quantile": INT8_QUANTILE,
            "always_ram": True,
        }
