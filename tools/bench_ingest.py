"""Catalog ingestion throughput, end to end: the first LIMIT products of a catalog folder read,
cropped (detector), embedded (embedding service) and upserted (index service) into a fresh,
temporary index by services started for the run on free ports, so no running stack or index is
touched. Reports images per second and where the time went (each service's own inference time per
image, from its Prometheus metrics). Writes reports/bench-ingest.json and .md.

    python -m tools.bench_ingest --catalog ../shared/catalog/myntra --limit 960
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shutil
import tempfile
from pathlib import Path
from typing import Any

import httpx

from tools.reports import write_report
from tools.stack import Stack, free_port, running

SERVICES = ("index-service", "embedding-service", "detector-service")
# (service, Prometheus histogram): time spent in each service's own inference per request
INFERENCE_METRICS = {
    "detector-service": "detector_inference_duration_seconds",
    "embedding-service": "embedding_inference_duration_seconds",
    "index-service": "index_inference_duration_seconds",
}


def inference_seconds(url: str, metric: str) -> float:
    """Total seconds of a service's inference histogram (all operations)."""
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    return sum(
        float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(f"{metric}_sum")
    )


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure(catalog: Path, limit: int) -> dict[str, Any]:
    from gateway.ingest import ingest

    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    stack = Stack(
        services=SERVICES,
        ports={name: free_port() for name in SERVICES},
        env={"INDEX_PATH": str(folder / "index")},
    )
    try:
        with running(stack):
            settings = stack.gateway_settings()
            pids = {name: stack.processes[name].pid for name in SERVICES}
            before = {name: inference_seconds(stack.url(name), INFERENCE_METRICS[name]) for name in SERVICES}
            cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()} | {
                "ingestion": own_cpu_seconds()
            }
            report = asyncio.run(ingest(catalog, settings, limit, progress=False))
            cpu_after = {name: cpu_seconds(pid) for name, pid in pids.items()} | {
                "ingestion": own_cpu_seconds()
            }
            after = {name: inference_seconds(stack.url(name), INFERENCE_METRICS[name]) for name in SERVICES}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    per_image = {
        name: round((after[name] - before[name]) * 1000 / max(report.indexed, 1), 1) for name in SERVICES
    }
    cpu_per_image = {
        name: round((cpu_after[name] - cpu_before[name]) * 1000 / max(report.indexed, 1), 1)
        for name in cpu_after
    }
    return {
        "catalog": str(catalog),
        "images": report.total,
        "indexed": report.indexed,
        "failed": len(report.failed),
        "cropped_from_person": report.on_model,
        "seconds": round(report.seconds, 1),
        "images_per_second": round(report.per_second, 1),
        "inference_ms_per_image": per_image,
        "cpu_ms_per_image": cpu_per_image,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
    }


def markdown(result: dict[str, Any]) -> str:
    spent = ", ".join(f"{name} {ms} ms" for name, ms in result["inference_ms_per_image"].items())
    cpu = ", ".join(f"{name} {ms} ms" for name, ms in result["cpu_ms_per_image"].items())
    total_cpu = round(sum(result["cpu_ms_per_image"].values()), 1)
    return "\n".join(
        [
            "# Catalog ingestion benchmark",
            "",
            f"{result['indexed']} of {result['images']} products of `{result['catalog']}` read, cropped, "
            f"embedded and indexed into a fresh index in {result['seconds']} s on {result['machine']}: "
            f"**{result['images_per_second']} images/s** ({result['cropped_from_person']} cropped from a "
            f"person, {result['failed']} failed).",
            "",
            f"Inference time inside each service per image (its own model or index work, without HTTP; "
            f"wall time, so overlapping work on the shared cores adds up): {spent}.",
            "",
            f"CPU time per image, by process: {cpu}; {total_cpu} ms in all, against "
            f"{round(os.cpu_count() or 1) * 1000 / max(result['images_per_second'], 0.1):.0f} ms of "
            "CPU time available per image at this rate.",
            "",
        ]
    )


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=960)
    parser.add_argument("--output", type=Path, default=Path("reports/bench-ingest.json"))
    args = parser.parse_args()
    if not (args.catalog / "catalog.csv").exists():
        parser.error(f"{args.catalog} has no catalog.csv")
    result = measure(args.catalog.resolve(), args.limit)
    write_report(args.output, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
