"""The edge store's store-scale options: HNSW graph, int8 vectors, snapshots and read-only replicas."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from index_service.config import Settings
from index_service.main import build_app
from index_service.model import VectorIndex
from shared.contracts import IndexPoint, ProductPayload, SearchFilter, SearchRequest, VectorSpace
from shared.testing import running_app

DIM = 32


def clustered(count: int, seed: int = 0) -> tuple[np.ndarray, list[IndexPoint]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(40, DIM))
    vectors = centres[rng.integers(40, size=count)] + 0.3 * rng.normal(size=(count, DIM))
    points = [
        IndexPoint(
            vector=v.tolist(),
            product=ProductPayload(product_id=f"p{i}", gender=("Men", "Women")[i % 2], category="topwear"),
        )
        for i, v in enumerate(vectors)
    ]
    return vectors, points


def test_hnsw_with_int8_finds_what_the_exact_scan_finds(tmp_path: Path) -> None:
    vectors, points = clustered(3000)
    exact = VectorIndex(Settings(path=tmp_path / "exact", vector_dim=DIM))
    graph = VectorIndex(Settings(path=tmp_path / "graph", vector_dim=DIM, hnsw=True, quantization="int8"))
    for index in (exact, graph):
        index.load()
        index.upsert(points)
    assert graph.optimize() == 3000
    rng = np.random.default_rng(1)
    overlap = []
    for _ in range(30):
        request = SearchRequest(
            vector=(vectors[rng.integers(3000)] + 0.1 * rng.normal(size=DIM)).tolist(),
            k=10,
            filter=SearchFilter(genders=["Women"]),
        )
        truth = {h.product.product_id for h in exact.search(request)}
        found = graph.search(request)
        assert all(h.product.gender == "Women" for h in found)
        overlap.append(len(truth & {h.product.product_id for h in found}) / 10)
    assert np.mean(overlap) >= 0.9
    for index in (exact, graph):
        index.close()


@pytest.mark.parametrize("rescore", [2.0, 0.0])
def test_int8_scores_are_rescored_only_when_asked(tmp_path: Path, rescore: float) -> None:
    """Rescored, an int8 store's scores are the original vectors' cosines; with INDEX_INT8_RESCORE=0
    they are the int8 vectors' own (no disk reads), close but not equal."""
    vectors, points = clustered(3000)
    settings = Settings(path=tmp_path, vector_dim=DIM, hnsw=True, quantization="int8", int8_rescore=rescore)
    index = VectorIndex(settings)
    index.load()
    index.upsert(points)
    index.optimize()
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    errors = []
    for row in range(0, 3000, 100):
        for hit in index.search(SearchRequest(vector=vectors[row].tolist(), k=5)):
            cosine = float(unit[int(hit.product.product_id[1:])] @ unit[row])
            errors.append(abs(hit.score - cosine))
    index.close()
    if rescore:
        assert max(errors) < 1e-4
    else:
        assert 1e-4 < max(errors) < 0.05


def test_rescoring_takes_whole_candidate_lists() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        Settings(int8_rescore=0.5)


async def test_snapshot_starts_a_read_only_replica(tmp_path: Path) -> None:
    _, points = clustered(200)
    primary = Settings(path=tmp_path / "primary", vector_dim=DIM, snapshot_dir=tmp_path / "snapshots")
    async with running_app(build_app(primary)) as client:
        await client.post("/points", json={"points": [p.model_dump(mode="json") for p in points]})
        made = (await client.post("/snapshot")).json()
    assert made["points"] == 200 and Path(made["path"]).is_file() and made["bytes"] > 0
    replica = Settings(
        path=tmp_path / "replica", vector_dim=DIM, restore_snapshot=Path(made["path"]), read_only=True
    )
    async with running_app(build_app(replica)) as client:
        assert (await client.get("/count")).json() == {"count": 200}
        hit = (await client.post("/search", json={"vector": points[7].vector, "k": 1})).json()["hits"][0]
        assert hit["product"]["product_id"] == "p7"
        refused = await client.post("/points", json={"points": [points[0].model_dump(mode="json")]})
        assert refused.status_code == 403 and "read-only" in refused.json()["detail"]
        assert (await client.post("/points/delete", json={"product_ids": ["p1"]})).status_code == 403
        assert (await client.patch("/points/p1", json={"colour": "Red"})).status_code == 403


async def test_optimize_answers_on_both_backends(client: object) -> None:
    import httpx

    assert isinstance(client, httpx.AsyncClient)
    response = await client.post("/optimize")
    assert response.status_code == 200 and response.json()["indexed_vectors"] >= 0


def test_optimize_counts_look_and_instance_vectors_together(tmp_path: Path) -> None:
    """The engine counts the vectors of both graphs as one number (what /optimize answers); an
    instance search through the graph finds the very product."""
    _, points = clustered(3000)
    rng = np.random.default_rng(2)
    instances = rng.normal(size=(1500, DIM))
    for point, instance in zip(points[::2], instances, strict=True):
        point.instance = instance.tolist()
    index = VectorIndex(Settings(path=tmp_path, vector_dim=DIM, instance_dim=DIM, hnsw=True))
    index.load()
    index.upsert(points)
    assert index.optimize() == 3000 + 1500
    for row in range(0, 1500, 150):
        request = SearchRequest(vector=instances[row].tolist(), k=1, space=VectorSpace.instance)
        assert [hit.product.product_id for hit in index.search(request)] == [f"p{2 * row}"]
    index.close()
