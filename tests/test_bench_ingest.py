"""make bench-index's ingestion benchmark: services of its own on free ports, a fresh index,
throughput and the CPU time of each process per image."""

from __future__ import annotations

import os

from tests.conftest import CATALOG, require_shared_data
from tools.bench_ingest import cpu_seconds, markdown, measure


def test_cpu_seconds_of_this_process_grow() -> None:
    before = cpu_seconds(os.getpid())
    sum(i * i for i in range(300_000))
    assert cpu_seconds(os.getpid()) > before


def test_ingests_a_few_products_into_a_fresh_index() -> None:
    require_shared_data()
    result = measure(CATALOG, limit=12)
    assert result["indexed"] == 12 and result["failed"] == 0
    assert result["images_per_second"] > 0
    assert set(result["cpu_ms_per_image"]) == {
        "index-service",
        "embedding-service",
        "detector-service",
        "ingestion",
    }
    assert result["cpu_ms_per_image"]["embedding-service"] > 0
    assert result["inference_ms_per_image"]["detector-service"] > 0
    assert "images/s" in markdown(result)
