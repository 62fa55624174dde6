"""make bench-index: the embedded Qdrant Edge store at store scale, on synthetic product vectors.

For each size (SIZES, e.g. 100000,1000000) and each storage (float32 vectors; int8 scalar-quantised
vectors in RAM with the originals on disk, rescored): build time (upsert + HNSW), resident memory
added by the store, disk, filtered query latency p50/p99 (gender + category, as /recommend asks) and
recall@10 against an exact search with the same filter. Vectors are clustered (products come in
families) and unit length; payloads follow the demo catalog's mix of genders and categories.

    python -m tools.bench_index --sizes 100000 --dim 1280 --output reports/bench-index.json
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeVectorParams,
    FieldCondition,
    Filter,
    HnswIndexConfig,
    MatchAny,
    PayloadSchemaType,
    Point,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    ScalarQuantizationConfig,
    ScalarType,
    SearchParams,
    UpdateOperation,
)

from tools.reports import write_report

logger = logging.getLogger("bench-index")
GENDERS = (("Men", 0.45), ("Women", 0.42), ("Unisex", 0.08), ("Boys", 0.03), ("Girls", 0.02))
CATEGORIES = (
    ("topwear", 0.45),
    ("footwear", 0.22),
    ("accessories", 0.21),
    ("bottomwear", 0.07),
    ("outerwear", 0.03),
    ("dress", 0.02),
)
QUERIES = 200
K = 10
HNSW_EF = 128


def rss_bytes(kind: str = "VmRSS") -> int:
    """Resident memory of this process: VmRSS (all), RssAnon (heap), RssFile (mapped files: the
    store's segments, evictable page cache for vectors kept on disk)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{kind}:"):
            return int(line.split()[1]) * 1024
    return 0


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def pick(rng: np.random.Generator, choices: tuple[tuple[str, float], ...], n: int) -> np.ndarray:
    names, weights = zip(*choices, strict=True)
    return rng.choice(np.array(names), size=n, p=np.array(weights) / sum(weights))


def vectors(rng: np.random.Generator, n: int, dim: int, centres: np.ndarray) -> np.ndarray:
    """Unit vectors around random family centres, made in chunks (1M x 1280 floats is 5 GB already)."""
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 50_000):
        stop = min(n, start + 50_000)
        family = rng.integers(len(centres), size=stop - start)
        noise = rng.standard_normal(size=(stop - start, dim), dtype=np.float32)
        chunk = centres[family] + 0.6 * noise / np.sqrt(dim)
        out[start:stop] = chunk / np.linalg.norm(chunk, axis=1, keepdims=True)
    return out


def open_store(path: Path, dim: int, int8: bool) -> EdgeShard:
    quantization = ScalarQuantizationConfig(ScalarType.Int8, quantile=0.99, always_ram=True) if int8 else None
    config = EdgeConfig(
        vectors=EdgeVectorParams(
            size=dim, distance=Distance.Cosine, on_disk=int8, quantization_config=quantization
        ),
        hnsw_config=HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=1_000),
        # thresholds are in kilobytes of vectors: index every segment, however small
        optimizers=EdgeOptimizersConfig(indexing_threshold=1_000, default_segment_number=2),
    )
    shard = EdgeShard.create(str(path), config)
    for field in ("gender", "category"):
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    return shard


def build(shard: EdgeShard, data: np.ndarray, genders: np.ndarray, categories: np.ndarray) -> float:
    started = time.perf_counter()
    for start in range(0, len(data), 2000):
        points = [
            Point(
                uuid.UUID(int=i + 1),
                data[i].tolist(),
                {"gender": str(genders[i]), "category": str(categories[i])},
            )
            for i in range(start, min(start + 2000, len(data)))
        ]
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return time.perf_counter() - started


def query(shard: EdgeShard, vector: np.ndarray, wanted: Filter, exact: bool, int8: bool) -> list[Any]:
    params = SearchParams(
        hnsw_ef=HNSW_EF,
        exact=exact,
        quantization=QuantizationSearchParams(rescore=True, oversampling=2.0) if int8 and not exact else None,
    )
    request = QueryRequest(
        limit=K,
        query=Query.Nearest(vector.tolist()),
        filter=wanted,
        params=params,
        with_payload=False,
        with_vector=False,
    )
    return [p.id for p in shard.query(request)]


def measure(size: int, dim: int, int8: bool, seed: int) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(50, size // 200), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = vectors(rng, size, dim, centres)
    genders, categories = pick(rng, GENDERS, size), pick(rng, CATEGORIES, size)
    folder = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        before, anon_before = rss_bytes(), rss_bytes("RssAnon")
        shard = open_store(folder / "store", dim, int8)
        seconds = build(shard, data, genders, categories)
        del data
        memory, anon = rss_bytes() - before, rss_bytes("RssAnon") - anon_before
        probes = vectors(rng, QUERIES, dim, centres)
        latencies, recalls = [], []
        for vector in probes:
            wanted = Filter(
                must=[
                    FieldCondition("gender", match=MatchAny([str(pick(rng, GENDERS, 1)[0]), "Unisex"])),
                    FieldCondition("category", match=MatchAny([str(pick(rng, CATEGORIES, 1)[0])])),
                ]
            )
            started = time.perf_counter()
            found = query(shard, vector, wanted, exact=False, int8=int8)
            latencies.append((time.perf_counter() - started) * 1000)
            truth = query(shard, vector, wanted, exact=True, int8=int8)
            recalls.append(len(set(found) & set(truth)) / max(1, len(truth)))
        disk = folder_bytes(folder / "store")
        indexed = shard.info().indexed_vectors_count
        shard.close()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return {
        "size": size,
        "dim": dim,
        "storage": "int8 (originals on disk, rescored)" if int8 else "float32",
        "build_s": round(seconds, 1),
        "hnsw_indexed_vectors": indexed,
        "rss_added_mb": round(memory / 2**20, 1),
        "rss_anon_added_mb": round(anon / 2**20, 1),
        "disk_mb": round(disk / 2**20, 1),
        "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
        "query_p99_ms": round(float(np.percentile(latencies, 99)), 2),
        "recall@10": round(float(np.mean(recalls)), 4),
    }


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| vectors | dim | storage | build s | RAM added MB (heap) | disk MB | filtered p50 ms | p99 ms | recall@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['dim']} | {r['storage']} | {r['build_s']} | {r['rss_added_mb']} "
            f"({r.get('rss_anon_added_mb', '?')}) | {r['disk_mb']} "
            f"| {r['query_p50_ms']} | {r['query_p99_ms']} | {r['recall@10']} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--storages", default="float32,int8", help="comma list of float32, int8")
    parser.add_argument("--output", type=Path, default=Path("reports/bench-index.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for int8 in [name == "int8" for name in args.storages.split(",")]:
            rows.append(measure(size, args.dim, int8, seed=size))
            logger.info(json.dumps(rows[-1]))
    report = {"hnsw": {"m": 16, "ef_construct": 100, "ef": HNSW_EF}, "runs": rows}
    write_report(args.output, report, "# Index benchmark (Qdrant Edge, HNSW)\n\n" + table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
