"""Latency of /recommend over a folder of photos, sequential and concurrent, with per-stage times, all
computed afresh (``Cache-Control: no-cache``); then the same photos repeated, answered from the
gateway's cache (client and gateway-side latency).

Uses the stack already running on the standard ports if there is one; otherwise starts it on the
default index (ingesting CATALOG first when that index is empty). Writes reports/bench.json and
reports/bench.md and prints the table.

With ``--products`` (a folder of single-product photos), the first 20 of them are timed as well,
sequentially: a product photo is embedded whole and as nine windows.

    python -m tools.bench --queries ../shared/queries/dev --catalog ../shared/catalog/myntra \
        --products ../shared/queries/consumer
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvloop

from gateway.catalog import read_catalog
from gateway.config import Settings
from gateway.ingest import CatalogEmbedder
from gateway.pipeline import crop_jpeg, for_detector, instances_wanted, product_crops
from shared.clients import DetectorClient, EmbeddingClient, GenderClient
from shared.images import decode_image
from tools.eval_gender import sent_heads, timed_gender
from tools.reports import write_report
from tools.stack import (
    ROOT,
    Stack,
    index_count,
    other_model_products,
    other_vocabulary_photos,
    reachable,
    run_ingestion,
    running,
)

T = TypeVar("T")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp"}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = (len(ordered) - 1) * q
    low, high = int(position), min(int(position) + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "mean_ms": round(statistics.fmean(values), 1) if values else float("nan"),
    }


FRESH = {"Cache-Control": "no-cache"}  # the gateway computes the answer instead of reading its cache


async def timed_post(
    client: httpx.AsyncClient, url: str, photo: Path, data: bytes, headers: dict[str, str] = FRESH
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = await client.post(url, files={"image": (photo.name, data)}, headers=headers)
    elapsed = (time.perf_counter() - started) * 1000
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    body["server_ms"] = server_ms(response)
    return elapsed, body


async def timed(call: Awaitable[T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = await call
    return (time.perf_counter() - started) * 1000, result


def server_ms(response: httpx.Response) -> float:
    """The gateway's own time for the request (its Server-Timing header), upload parsing included."""
    timing = response.headers.get("server-timing", "")
    _, _, duration = timing.partition("dur=")
    return float(duration) if duration else float("nan")


async def sequential_runs(
    client: httpx.AsyncClient, url: str, photos: list[Path], blobs: dict[Path, bytes], rounds: int
) -> tuple[list[float], dict[str, list[float]]]:
    """Each photo posted ``rounds`` times, one at a time: latencies and the answers' stage times."""
    latencies: list[float] = []
    stages: dict[str, list[float]] = defaultdict(list)
    for _ in range(rounds):
        for photo in photos:
            elapsed, body = await timed_post(client, url, photo, blobs[photo])
            latencies.append(elapsed)
            for stage, ms in body["timings_ms"].items():
                stages[stage].append(ms)
    return latencies, stages


async def measure(
    gateway: str,
    services: dict[str, str],
    photos: list[Path],
    catalog: Path,
    rounds: int,
    concurrency: int,
    products: list[Path],
) -> dict[str, Any]:
    every = [*photos, *products]
    blobs = {photo: photo.read_bytes() for photo in every}
    url = f"{gateway}/recommend"
    async with httpx.AsyncClient(timeout=120) as client:
        for photo in every:  # warm-up: first calls pay for lazy initialisation
            await timed_post(client, url, photo, blobs[photo])
        sequential, stages = await sequential_runs(client, url, photos, blobs, rounds)
        product_runs = await sequential_runs(client, url, products, blobs, rounds) if products else None
        queue = [photo for _ in range(rounds) for photo in photos]
        concurrent: list[float] = []

        async def worker() -> None:
            while queue:
                photo = queue.pop()
                elapsed, _ = await timed_post(client, url, photo, blobs[photo])
                concurrent.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        wall = time.perf_counter() - started
        cached = await measure_cache(client, url, photos, blobs, rounds)
    return {
        "services_alone": await measure_services(services, photos, blobs, rounds),
        "embedding_alone": await measure_embedding(services, photos, blobs, rounds),
        "embedding_catalog": await measure_catalog_embedding(services, catalog, rounds),
        "sequential": summary(sequential),
        f"concurrency_{concurrency}": {
            **summary(concurrent),
            "throughput_rps": round(len(concurrent) / wall, 2),
        },
        "stages_sequential": {stage: summary(values) for stage, values in stages.items()},
        "cache": {"uncached": summary(sequential), **cached},
        **(
            {
                "product_photos": {
                    "photos": len(products),
                    "sequential": summary(product_runs[0]),
                    "stages_sequential": {stage: summary(v) for stage, v in product_runs[1].items()},
                }
            }
            if product_runs
            else {}
        ),
    }


async def measure_services(
    services: dict[str, str], photos: list[Path], blobs: dict[Path, bytes], rounds: int
) -> dict[str, Any]:
    """The detector and the gender service called directly through the gateway's own clients, one
    request at a time (nothing else running), as the gateway calls them, grouped by the number of
    persons found: the detector with the photo as the gateway sends it (a JPEG of at most
    ``analysis_side`` pixels), the gender service with the crops around the persons' heads, then
    the /persons fusion (with a stand-in appearance vector). Upload and decoding included. Gender
    is also given per person: both calls, divided by the heads sent."""
    detect: dict[int, list[float]] = defaultdict(list)
    heads_ms: dict[int, list[float]] = defaultdict(list)
    per_person: list[float] = []
    sizes: dict[int, set[str]] = defaultdict(set)
    settings = Settings()
    sent = {photo: for_detector(decode_image(blobs[photo]), settings) for photo in photos}
    detector = DetectorClient("detector", services["detector-service"], 120.0)
    gender = GenderClient("gender", services["gender-service"], 120.0)
    try:
        for photo in photos:
            scaled, analysis = sent[photo]
            found = await detector.detect(analysis)
            sizes[len(found.persons)].add(f"{found.width}x{found.height}")
            heads = sent_heads(scaled, found.persons)
            if heads:
                await timed_gender(gender, heads)
            for _ in range(rounds):
                ms, found = await timed(detector.detect(analysis))
                detect[len(found.persons)].append(ms)
                if heads:
                    read_ms, fusion_ms = await timed_gender(gender, heads)
                    heads_ms[len(found.persons)].append(read_ms)
                    per_person.append((read_ms + fusion_ms) / len(heads))
    finally:
        await detector.aclose()
        await gender.aclose()
    return {
        "groups": [
            {
                "persons": persons,
                "sizes": sorted(sizes[persons]),
                "detect": summary(detect[persons]),
                "gender_heads": summary(heads_ms[persons]),
            }
            for persons in sorted(detect)
        ],
        "gender_per_person": summary(per_person),
    }


@dataclass(frozen=True)
class SentCrop:
    """A crop as /recommend sends it, with what the embedding service is asked to make of it."""

    data: bytes
    colour: bool  # a garment region the detector gave no colour: the service names it
    instance: bool  # the photo's crops get instance vectors (pipeline.instances_wanted)
    product: bool = False  # a product worn by no one: named by the category tail (pipeline.product_crops)


async def photo_crops(detector: DetectorClient, blob: bytes, settings: Settings) -> list[SentCrop]:
    """The crops /recommend embeds for a photo: each garment region and each person, cut from the
    photo and sized as the gateway cuts them, with what the gateway asks of each."""
    image = decode_image(blob)
    found = await detector.detect(for_detector(image, settings)[1])
    instances = instances_wanted(found.regions, settings)
    products = set(product_crops(found.regions))
    regions = [
        SentCrop(crop_jpeg(image, r.box, settings), r.colour is None, instances, i in products)
        for i, r in enumerate(found.regions)
    ]
    return regions + [SentCrop(crop_jpeg(image, p.box, settings), False, instances) for p in found.persons]


async def embed_as_sent(embedding: EmbeddingClient, crops: list[SentCrop]) -> None:
    """One request, naming colours when any of its crops needs one, making instance vectors when
    the photo's crops need them and naming product crops by the category tail (as the gateway
    asks)."""
    await embedding.embed(
        [crop.data for crop in crops],
        colours=any(crop.colour for crop in crops),
        instances=any(crop.instance for crop in crops),
        products=[i for i, crop in enumerate(crops) if crop.product],
    )


@asynccontextmanager
async def detector_and_embedding(
    services: dict[str, str],
) -> AsyncIterator[tuple[DetectorClient, EmbeddingClient]]:
    """Clients of the detector (to cut crops) and of the embedding service, closed after."""
    detector = DetectorClient("detector", services["detector-service"], 120.0)
    embedding = EmbeddingClient("embedding", services["embedding-service"], 120.0)
    try:
        yield detector, embedding
    finally:
        await detector.aclose()
        await embedding.aclose()


async def measure_embedding(
    services: dict[str, str], photos: list[Path], blobs: dict[Path, bytes], rounds: int, batch: int = 32
) -> dict[str, Any]:
    """The embedding service called directly with the photos' crops, nothing else running: one
    crop per request (latency per crop), each photo's crops in one request as /recommend sends
    them (per crop: the request's time over its crops), and all of them in batches of ``batch``
    (throughput)."""
    settings = Settings()
    async with detector_and_embedding(services) as (detector, embedding):
        crops = {photo: await photo_crops(detector, blobs[photo], settings) for photo in photos}
        every = [crop for photo in photos for crop in crops[photo]]
        await embed_as_sent(embedding, every[:batch])  # warm-up
        alone: list[float] = []
        per_crop_in_photo: list[float] = []
        for _ in range(rounds):
            for photo in photos:
                for crop in crops[photo]:
                    alone.append((await timed(embed_as_sent(embedding, [crop])))[0])
                if crops[photo]:
                    ms, _ = await timed(embed_as_sent(embedding, crops[photo]))
                    per_crop_in_photo.append(ms / len(crops[photo]))
        started = time.perf_counter()
        for _ in range(rounds):
            for start in range(0, len(every), batch):
                await embed_as_sent(embedding, every[start : start + batch])
        seconds = time.perf_counter() - started
    return {
        "crops": len(every),
        "one_crop_per_request": summary(alone),
        "per_crop_in_photo_request": summary(per_crop_in_photo),
        "batch": batch,
        "batched_crops_per_second": round(rounds * len(every) / seconds, 1),
    }


async def measure_catalog_embedding(
    services: dict[str, str], catalog: Path, rounds: int, count: int = 320, batch: int = 32
) -> dict[str, Any]:
    """The embedding service called directly with catalog crops as ingestion sends them: batches
    of ``batch``, colours asked only when a product of the batch has none in the catalog."""
    async with detector_and_embedding(services) as (detector, embedding):
        rows = read_catalog(catalog)[:count]
        embedder = CatalogEmbedder(catalog, detector, embedding, Settings())
        crops = [(await embedder.crop(row)).product for row in rows]
        batches = [
            (crops[start : start + batch], any(row.colour is None for row in rows[start : start + batch]))
            for start in range(0, len(crops), batch)
        ]
        await embedding.embed(*batches[0])  # warm-up
        started = time.perf_counter()
        for _ in range(rounds):
            for part, colours in batches:
                await embedding.embed(part, colours)
        seconds = time.perf_counter() - started
    return {
        "crops": len(crops),
        "batch": batch,
        "with_colours": sum(colours for _, colours in batches),
        "batches": len(batches),
        "batched_crops_per_second": round(rounds * len(crops) / seconds, 1),
    }


async def measure_cache(
    client: httpx.AsyncClient, url: str, photos: list[Path], blobs: dict[Path, bytes], rounds: int
) -> dict[str, Any]:
    """Identical requests repeated: the first fills the cache, the next ``rounds`` read it."""
    elapsed: list[float] = []
    gateway: list[float] = []
    hits = 0
    for photo in photos:
        await timed_post(client, url, photo, blobs[photo], headers={})
        for _ in range(rounds):
            ms, body = await timed_post(client, url, photo, blobs[photo], headers={})
            elapsed.append(ms)
            gateway.append(body["server_ms"])
            hits += bool(body.get("cached"))
    return {
        "cached": summary(elapsed),
        "cached_at_gateway": summary(gateway),
        "cached_share": round(hits / max(len(elapsed), 1), 3),
    }


def keypoints_kept(result: dict[str, Any]) -> str:
    kept = result.get("photos_with_keypoints")
    if kept is None:
        return "a store made before keypoints: no photo is matched by them"
    return f"{kept} with their photo's keypoints"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "# /recommend benchmark",
        "",
        f"{result['photos']} photos from `{result['queries']}`, {result['rounds']} rounds, "
        f"index of {result['index_products']} products ({keypoints_kept(result)}), {result['machine']}.",
        "",
        "| run | n | p50 ms | p95 ms | mean ms |",
        "|---|---|---|---|---|",
    ]
    for run in ("sequential", f"concurrency_{result['concurrency']}"):
        row = result[run]
        lines.append(f"| {run} | {row['n']} | {row['p50_ms']} | {row['p95_ms']} | {row['mean_ms']} |")
    concurrent = result[f"concurrency_{result['concurrency']}"]
    lines += [
        "",
        f"Throughput at concurrency {result['concurrency']}: {concurrent['throughput_rps']} requests/s.",
    ]
    lines += [
        "",
        "Per stage (sequential, as reported in `timings_ms`):",
        "",
        "| stage | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for stage, row in result["stages_sequential"].items():
        lines.append(f"| {stage} | {row['p50_ms']} | {row['p95_ms']} |")
    products = result.get("product_photos")
    if products:
        stages = products["stages_sequential"]
        lines += [
            "",
            f"Product photos (no person; {products['photos']} of `{result['products']}`, sequential, "
            f"embedded whole and as nine windows): p50 {products['sequential']['p50_ms']} ms, "
            f"p95 {products['sequential']['p95_ms']} ms; of which embed p50 {stages['embed']['p50_ms']} ms, "
            f"search p50 {stages['search']['p50_ms']} ms.",
        ]
    alone = result["services_alone"]
    lines += [
        "",
        "Model services alone (each called directly, one request at a time, as the gateway calls "
        "them; upload and decoding included): the detector with the photo as the gateway sends it "
        "(a JPEG of at most `analysis_side` pixels), the gender service's /heads with the crops "
        "around the persons' heads; by the number of persons in the photo:",
        "",
        "| persons | sizes sent | detect requests | detect p50 ms | detect p95 ms | gender /heads p50 ms | gender /heads p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for row in alone["groups"]:
        lines.append(
            f"| {row['persons']} | {', '.join(row['sizes'])} | {row['detect']['n']} "
            f"| {row['detect']['p50_ms']} "
            f"| {row['detect']['p95_ms']} | {row['gender_heads']['p50_ms']} | {row['gender_heads']['p95_ms']} |"
        )
    per_person = alone["gender_per_person"]
    lines += [
        "",
        f"Gender per person (/heads plus the /persons fusion call, divided by the heads sent): "
        f"p50 {per_person['p50_ms']} ms, "
        f"p95 {per_person['p95_ms']} ms.",
    ]
    embedded = result["embedding_alone"]
    lines += [
        "",
        f"Embedding service alone, with the {embedded['crops']} crops /recommend embeds for these photos "
        "(garments and persons; colours named only where a request holds a garment whose colour the "
        "detector did not name, instance vectors as pipeline.instances_wanted asks, as the "
        "gateway asks): one crop per request p50 "
        f"{embedded['one_crop_per_request']['p50_ms']} ms (p95 {embedded['one_crop_per_request']['p95_ms']}); "
        "each photo's crops in one request, as /recommend sends them: p50 "
        f"{embedded['per_crop_in_photo_request']['p50_ms']} ms per crop; in batches of {embedded['batch']}: "
        f"{embedded['batched_crops_per_second']} crops/s.",
    ]
    catalog = result["embedding_catalog"]
    lines += [
        "",
        f"Embedding service alone, with {catalog['crops']} catalog crops as ingestion sends them (batches "
        f"of {catalog['batch']}, colours asked in {catalog['with_colours']} of {catalog['batches']}: "
        f"only for products the catalog gives no colour): {catalog['batched_crops_per_second']} crops/s.",
    ]
    cache = result["cache"]
    lines += [
        "",
        f"Cache: each photo posted again {result['rounds']} times ({cache['cached_share']:.0%} answered from "
        "the cache; the runs above asked for fresh answers with `Cache-Control: no-cache`):",
        "",
        "| request | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for run, label in (
        ("uncached", "uncached (client)"),
        ("cached", "cached (client)"),
        ("cached_at_gateway", "cached (at the gateway: its Server-Timing)"),
    ):
        lines.append(f"| {label} | {cache[run]['p50_ms']} | {cache[run]['p95_ms']} |")
    return "\n".join(lines) + "\n"


@contextmanager
def stack_for(catalog: Path) -> Iterator[Stack]:
    """The stack running on the standard ports, or one started for the benchmark."""
    default = Stack()
    if reachable([default.url(name) for name in default.services]):
        yield default
        return
    stack = Stack(env={"GATEWAY_CATALOG_DIR": str(catalog)})
    with running(stack):
        count = index_count(stack.url("index-service"))
        if count == 0 or other_model_products(stack) or other_vocabulary_photos(stack, count):
            run_ingestion(stack, catalog)
        yield stack


PRODUCT_PHOTOS = 20


def image_files(folder: Path) -> list[Path]:
    """The photos of ``folder`` (or of its ``images`` subfolder, as a labels.csv folder keeps them)."""
    if (folder / "images").is_dir():
        folder = folder / "images"
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=Path, required=True)
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "bench.json")
    parser.add_argument("--products", type=Path, default=None, help="a folder of single-product photos")
    args = parser.parse_args()
    photos = image_files(args.queries)
    product_photos = image_files(args.products)[:PRODUCT_PHOTOS] if args.products else []
    with stack_for(args.catalog.resolve()) as stack:
        products = index_count(stack.url("index-service"))
        unnamed = other_vocabulary_photos(stack, products)
        services = {
            name: stack.url(name) for name in ("detector-service", "gender-service", "embedding-service")
        }
        # the gateway's clients run on uvloop inside the gateway (uvicorn picks it); so do they here
        result = uvloop.run(
            measure(
                stack.url("gateway"),
                services,
                photos,
                args.catalog,
                args.rounds,
                args.concurrency,
                product_photos,
            )
        )
    result.update(
        photos=len(photos),
        queries=str(args.queries),
        products=str(args.products) if args.products else None,
        rounds=args.rounds,
        concurrency=args.concurrency,
        index_products=products,
        # what the duplicates stage measured: None, a store made before keypoints (it answers 409)
        photos_with_keypoints=None if unnamed is None else products - unnamed,
        machine=f"{platform.machine()}, {os.cpu_count()} CPUs",
    )
    write_report(args.output, result, markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
