"""make bench-index: the embedded Qdrant Edge store at store scale, on synthetic product vectors.

For each size (SIZES, e.g. 100000,1000000) and each storage (float32 vectors; int8 scalar-quantised
vectors in RAM with the originals on disk, rescored): build time (upsert + HNSW), resident memory
taken by a fresh process serving the store (as a restarted index service), disk, filtered query
latency p50/p99 (gender + category, as /recommend asks) at each HNSW search breadth (EFS) after a
warm-up, and recall@10 against a brute-force search with the same filter. The store is configured
as the index service configures it (index_service.model.engine_config, its payload indexes).
Vectors are clustered (products come in families of ~200, spread isotropically: a hard case, every
member of a family nearly as close as the next) and unit length; payloads follow the demo catalog's
mix of genders and categories.

    python -m tools.bench_index --sizes 100000 --dim 768 --efs 128,256 --output reports/bench-index.json
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_edge import (
    EdgeShard,
    Point,
    Query,
    QueryRequest,
    UpdateOperation,
)

from index_service.config import RESCORE_OVERSAMPLING, Settings
from index_service.model import (
    HNSW,
    engine_config,
    engine_filter,
    ensure_payload_indexes,
    product_payload,
    search_params,
)
from shared.contracts import Category, ProductPayload, SearchFilter
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
HNSW_EF = Settings().hnsw_ef  # the service's (INDEX_HNSW_EF)
RSS_KINDS = ("VmRSS", "RssAnon", "RssFile")


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
    """A store configured as the index service configures it with INDEX_HNSW (and int8)."""
    shard = EdgeShard.create(str(path), engine_config(dim, int8, hnsw=True))
    ensure_payload_indexes(shard)  # the service's, product_id's included
    return shard


def build(shard: EdgeShard, data: np.ndarray, genders: np.ndarray, categories: np.ndarray) -> float:
    started = time.perf_counter()
    for start in range(0, len(data), 2000):
        points = [
            Point(
                uuid.UUID(int=i + 1),
                data[i].tolist(),
                product_payload(  # as the service stores it (with the shelf)
                    ProductPayload(
                        product_id=str(i), gender=str(genders[i]), category=Category(categories[i])
                    )
                ),
            )
            for i in range(start, min(start + 2000, len(data)))
        ]
        shard.update(UpdateOperation.upsert_points(points))
    shard.flush()
    shard.optimize()
    return time.perf_counter() - started


def recommend_filter(gender: str, category: str) -> SearchFilter:
    """What /recommend asks: the person's gender or Unisex, and the item's category."""
    return SearchFilter(genders=[gender, "Unisex"], categories=[Category(category)])


def ask(
    shard: EdgeShard, probes: np.ndarray, wanted: list[tuple[str, str]], params: Any
) -> tuple[list[float], list[list[int]]]:
    """Each query's time (ms) and the point ids it found."""
    latencies, answers = [], []
    for vector, (gender, category) in zip(probes, wanted, strict=True):
        request = QueryRequest(
            limit=K,
            query=Query.Nearest(vector.tolist()),
            filter=engine_filter(recommend_filter(gender, category)),  # as the service translates it
            params=params,
            with_payload=False,
            with_vector=False,
        )
        started = time.perf_counter()
        found = shard.query(request)
        latencies.append((time.perf_counter() - started) * 1000)
        answers.append([uuid.UUID(str(p.id)).int for p in found])
    return latencies, answers


def serve(
    folder: str,
    dim: int,
    int8: bool,
    probes: np.ndarray,
    wanted: list[tuple[str, str]],
    breadths: list[tuple[int, float]],
) -> dict[str, Any]:
    """In a fresh process, as a restarted index service: open the store, warm it up with the first
    QUERIES queries (a serving index has answered queries before; the first ones after a start
    fault its files in), then time QUERIES others at each (HNSW search breadth, int8 rescoring) of
    ``breadths``, new ones for each: a query asked again finds the pages it reads (the original
    vectors it rescores) already in memory, a new one does not. The memory it took, and each timed
    query's time and answer."""
    before = {kind: rss_bytes(kind) for kind in RSS_KINDS}
    shard = EdgeShard.load(folder, engine_config(dim, int8, hnsw=True))
    ask(
        shard, probes[:QUERIES], wanted[:QUERIES], search_params(max(b[0] for b in breadths), int8, hnsw=True)
    )
    runs = []
    for number, (ef, rescore) in enumerate(breadths, start=1):
        batch = timed_batch(number)
        runs.append(ask(shard, probes[batch], wanted[batch], search_params(ef, int8, True, rescore)))
    memory = {kind: rss_bytes(kind) - before[kind] for kind in RSS_KINDS}
    shard.close()
    return {"runs": runs, "memory": memory}


def timed_batch(number: int) -> slice:
    """The queries timed in the ``number``-th run (the first QUERIES warm the store up)."""
    return slice(number * QUERIES, (number + 1) * QUERIES)


def exact_top(
    data: np.ndarray,
    genders: np.ndarray,
    categories: np.ndarray,
    probes: np.ndarray,
    wanted: list[tuple[str, str]],
) -> list[set[int]]:
    """For each probe, the point ids of the K nearest products that pass its filter, by brute force
    (the probes of one filter together)."""
    truth: list[set[int]] = [set() for _ in wanted]
    for want in set(wanted):
        rows = np.flatnonzero(np.isin(genders, [want[0], "Unisex"]) & (categories == want[1]))
        asking = [i for i, w in enumerate(wanted) if w == want]
        scores = data[rows] @ probes[asking].T
        for column, i in enumerate(asking):
            truth[i] = {int(r) + 1 for r in rows[np.argsort(-scores[:, column])[:K]]}
    return truth


def measure(
    size: int, dim: int, int8: bool, seed: int, efs: list[int], rescores: list[float]
) -> list[dict[str, Any]]:
    """One store built; a row per HNSW search breadth (and, int8, per rescoring)."""
    breadths = [(ef, rescore) for ef in efs for rescore in (rescores if int8 else [0.0])]
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(max(50, size // 200), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    data = vectors(rng, size, dim, centres)
    genders, categories = pick(rng, GENDERS, size), pick(rng, CATEGORIES, size)
    asked = (1 + len(breadths)) * QUERIES
    probes = vectors(rng, asked, dim, centres)
    wanted = list(zip(pick(rng, GENDERS, asked).tolist(), pick(rng, CATEGORIES, asked).tolist(), strict=True))
    folder = Path(tempfile.mkdtemp(prefix="bench-index-"))
    try:
        shard = open_store(folder / "store", dim, int8)
        seconds = build(shard, data, genders, categories)
        indexed = shard.info().indexed_vectors_count
        shard.close()
        disk = folder_bytes(folder / "store")
        logger.info("built %s vectors in %.0f s; querying in a fresh process", f"{size:,}", seconds)
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as fresh:
            served = fresh.submit(serve, str(folder / "store"), dim, int8, probes, wanted, breadths).result()
        truths = [
            exact_top(data, genders, categories, probes[timed_batch(n)], wanted[timed_batch(n)])
            for n in range(1, len(breadths) + 1)
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    memory = served["memory"]
    rows = []
    runs = zip(truths, breadths, served["runs"], strict=True)
    for truth, (ef, rescore), (latencies, answers) in runs:
        recalls = [len(t & set(found)) / K for t, found in zip(truth, answers, strict=True)]
        rows.append(
            {
                "size": size,
                "dim": dim,
                "storage": "int8 (originals on disk, rescored)" if int8 else "float32",
                "ef": ef,
                "rescore": rescore if int8 else None,
                "build_s": round(seconds, 1),
                "hnsw_indexed_vectors": indexed,
                "rss_added_mb": round(memory["VmRSS"] / 2**20, 1),
                "rss_anon_added_mb": round(memory["RssAnon"] / 2**20, 1),
                "rss_file_added_mb": round(memory["RssFile"] / 2**20, 1),
                "disk_mb": round(disk / 2**20, 1),
                "query_p50_ms": round(float(np.percentile(latencies, 50)), 2),
                "query_p99_ms": round(float(np.percentile(latencies, 99)), 2),
                "recall@10": round(float(np.mean(recalls)), 4),
            }
        )
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| vectors | dim | storage | ef | int8 rescored | build s | RAM MB (heap) | disk MB | filtered p50 ms | p99 ms | recall@10 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['size']:,} | {r['dim']} | {r['storage']} | {r['ef']} | {rescored(r.get('rescore'))} "
            f"| {r['build_s']} | {r['rss_added_mb']} "
            f"({r.get('rss_anon_added_mb', '?')}) | {r['disk_mb']} "
            f"| {r['query_p50_ms']} | {r['query_p99_ms']} | {r['recall@10']} |"
        )
    return "\n".join(lines)


def rescored(rescore: float | None) -> str:
    if rescore is None:
        return "-"
    return f"{rescore:g} x k" if rescore else "no"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="100000")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--storages", default="float32,int8", help="comma list of float32, int8")
    parser.add_argument(
        "--efs", default=str(HNSW_EF), help="comma list of HNSW search breadths (default: the service's)"
    )
    parser.add_argument(
        "--rescores",
        default=f"{RESCORE_OVERSAMPLING:g}",
        help="int8: comma list of rescoring oversamplings, 0 for none (default: the service's)",
    )
    parser.add_argument("--output", type=Path, default=Path("reports/bench-index.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        for int8 in [name == "int8" for name in args.storages.split(",")]:
            efs = [int(ef) for ef in args.efs.split(",")]
            rescores = [float(r) for r in args.rescores.split(",")]
            for row in measure(size, args.dim, int8, seed=size, efs=efs, rescores=rescores):
                rows.append(row)
                logger.info(json.dumps(row))
    hnsw = {"m": HNSW.m, "ef_construct": HNSW.ef_construct, "full_scan_kb": HNSW.full_scan_threshold}
    report = {"hnsw": {**hnsw, "service_ef": HNSW_EF}, "runs": rows}
    write_report(args.output, report, "# Index benchmark (Qdrant Edge, HNSW)\n\n" + table(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
