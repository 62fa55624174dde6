"""Catalog ingestion: every product image is cropped to its own garment (as query crops are),
embedded in batches and upserted into the index. Idempotent: product ids are the point keys.

    python -m gateway.ingest --catalog ../shared/catalog/myntra
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gateway.catalog import CatalogRow, read_catalog
from gateway.config import Settings
from gateway.pipeline import crop_jpeg, for_detector
from shared.boxes import foreground_box
from shared.clients import DetectorClient, DownstreamError, EmbeddingClient, IndexClient
from shared.contracts import CATEGORY_REGION, CropEmbedding, DetectResponse, IndexPoint, Keypoints, Region
from shared.images import ImageError, decode_image, resize_max_side

logger = logging.getLogger("gateway")
DETECT_BATCH = 8  # photos per detector request
CROP_AHEAD = 2  # batches cropped while one is embedded
# bumped whenever catalog photos are cut differently, so that crops cached by tools are made again
CROP_VERSION = 3
JPEG_MAGIC = b"\xff\xd8\xff"
FOREGROUND_SIDE = 320  # pixels enough to box a product on a plain background
Loaded = tuple[np.ndarray, bytes | None]  # a decoded photo, and its copy for the detector (if it goes)


@dataclass
class IngestReport:
    total: int = 0
    indexed: int = 0
    on_model: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def per_second(self) -> float:
        return self.indexed / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class EmbeddedProduct:
    row: CatalogRow
    embedding: CropEmbedding
    vector_model: str  # the embedding service's: which model made embedding.vector
    on_model: bool
    person: CropEmbedding | None = None  # the whole person wearing it, when asked for
    keypoints: Keypoints | None = None  # of its photo, when asked for


@dataclass(frozen=True)
class Cropped:
    product: bytes
    on_model: bool
    person: bytes | None
    keypoints: Keypoints | None = None


class CatalogEmbedder:
    """Crops catalog images the way query photos are cropped, and embeds them in batches.

    With ``person_crops`` the person wearing the product (if the photo shows one) is embedded too;
    with ``keypoints`` the photo's keypoints are found (by the detector) for the index to keep.
    """

    def __init__(
        self,
        catalog_dir: Path,
        detector: DetectorClient,
        embedding: EmbeddingClient,
        settings: Settings,
        concurrency: int = 4,
        person_crops: bool = False,
        keypoints: bool = False,
    ) -> None:
        self.catalog_dir = catalog_dir
        self.detector = detector
        self.embedding = embedding
        self.settings = settings
        self.person_crops = person_crops
        self.keypoints = keypoints
        self._slots = asyncio.Semaphore(concurrency)

    async def crop(self, row: CatalogRow) -> Cropped:
        """JPEGs of the product's own region (and of its wearer), and whether a person showed it."""
        loaded = await self._load(row)
        detection, keypoints = await asyncio.gather(self._detect([(row, loaded)]), self._keypoints([loaded]))
        return await asyncio.to_thread(self._cut, row, loaded[0], detection[0], keypoints[0])

    async def embed_rows(self, rows: Sequence[CatalogRow], failed: dict[str, str]) -> list[EmbeddedProduct]:
        """Embed a batch; rows whose image cannot be read or cropped are recorded in ``failed``."""
        return await self._embed_cropped(await self._crop_rows(rows, failed))

    def _needs_detector(self, row: CatalogRow) -> bool:
        """Whether the detector can tell more than the photo's foreground: a person whose region of
        the product's category can be cut (or, with ``person_crops``, any person)."""
        region = CATEGORY_REGION.get(row.category) if row.category else None
        return self.person_crops or region not in (None, Region.product)

    async def _load(self, row: CatalogRow) -> Loaded:
        """The product photo, and the copy of it the detector is sent (if it is: for its keypoints,
        or for what it can tell of the photo)."""
        async with self._slots:
            data = await asyncio.to_thread((self.catalog_dir / row.image).read_bytes)
            wanted = self.keypoints or self._needs_detector(row)
            return await asyncio.to_thread(loaded_photo, data, self.settings, wanted)

    async def _crop_rows(
        self, rows: Sequence[CatalogRow], failed: dict[str, str]
    ) -> list[tuple[CatalogRow, Cropped]]:
        results = await asyncio.gather(*(self._load(row) for row in rows), return_exceptions=True)
        loaded: list[tuple[CatalogRow, Loaded]] = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, ImageError | OSError):
                failed[row.product_id] = f"{type(result).__name__}: {result}"
            elif isinstance(result, BaseException):
                raise result
            else:
                loaded.append((row, result))
        detections, keypoints = await asyncio.gather(
            self._detect(loaded), self._keypoints([photo for _, photo in loaded])
        )

        def cut_all() -> list[tuple[CatalogRow, Cropped]]:
            return [
                (row, self._cut(row, image, detection, found))
                for (row, (image, _)), detection, found in zip(loaded, detections, keypoints, strict=True)
            ]

        return await asyncio.to_thread(cut_all)

    async def _detect(self, loaded: Sequence[tuple[CatalogRow, Loaded]]) -> list[DetectResponse | None]:
        """The detector's answer for each photo it can tell more of than its foreground
        (``_needs_detector``), None for the others. Photos go a few to a request (the per-request
        work of both sides was a tenth of the detector's time per catalog photo), several requests
        at once."""
        sent = [
            (index, analysis)
            for index, (row, (_, analysis)) in enumerate(loaded)
            if analysis is not None and self._needs_detector(row)
        ]
        chunks = [sent[start : start + DETECT_BATCH] for start in range(0, len(sent), DETECT_BATCH)]
        answers = await asyncio.gather(
            *(
                self.detector.detect_many([analysis for _, analysis in chunk], colours=False)
                for chunk in chunks
            )
        )
        detections: list[DetectResponse | None] = [None] * len(loaded)
        for chunk, answer in zip(chunks, answers, strict=True):
            for (index, _), detection in zip(chunk, answer, strict=True):
                detections[index] = detection
        return detections

    async def _keypoints(self, loaded: Sequence[Loaded]) -> list[Keypoints | None]:
        """Each photo's keypoints (found in its copy for the detector, as a query photo's are), or
        None for each when they are not asked for."""
        if not self.keypoints:
            return [None] * len(loaded)
        copies = [analysis for _, analysis in loaded if analysis is not None]
        assert len(copies) == len(loaded), (
            "every photo has its copy for the detector when keypoints are asked"
        )
        chunks = [copies[start : start + DETECT_BATCH] for start in range(0, len(copies), DETECT_BATCH)]
        answers = await asyncio.gather(*(self.detector.keypoints_many(chunk) for chunk in chunks))
        return [found for answer in answers for found in answer]

    def _cut(
        self,
        row: CatalogRow,
        image: np.ndarray,
        detection: DetectResponse | None,
        keypoints: Keypoints | None = None,
    ) -> Cropped:
        if detection is None:
            box, on_model = foreground_box(resize_max_side(image, FOREGROUND_SIDE)), False
        else:
            box, on_model = product_box(detection, row)
        product = crop_jpeg(image, box, self.settings)
        person = None
        if self.person_crops and detection is not None and detection.persons:
            person = crop_jpeg(image, detection.persons[0].box, self.settings)
        return Cropped(product, on_model, person, keypoints)

    async def _embed_cropped(self, kept: list[tuple[CatalogRow, Cropped]]) -> list[EmbeddedProduct]:
        if not kept:
            return []
        people = [cropped.person for _, cropped in kept if cropped.person is not None]
        # a colour is named only for products whose catalog row lacks one (see to_point)
        colours = any(row.colour is None for row, _ in kept)
        # the category is named only for products whose row lacks one: by the category tail
        unnamed = [
            i for i, (row, cropped) in enumerate(kept) if row.category is None and not cropped.on_model
        ]
        answer = await self.embedding.embed(
            [c.product for _, c in kept] + people, colours=colours, products=unnamed
        )
        embedded = answer.items
        products, persons = iter(embedded[: len(kept)]), iter(embedded[len(kept) :])
        return [
            EmbeddedProduct(
                row=row,
                embedding=next(products),
                vector_model=answer.vector_model,
                on_model=cropped.on_model,
                person=next(persons) if cropped.person is not None else None,
                keypoints=cropped.keypoints,
            )
            for row, cropped in kept
        ]

    async def embed_catalog(
        self, rows: Sequence[CatalogRow], failed: dict[str, str], batch_size: int = 32, progress: bool = True
    ) -> AsyncGenerator[list[EmbeddedProduct], None]:
        """Batches in catalog order. The next ``CROP_AHEAD`` batches are cropped (detector) while this
        one is embedded and handed over, so that the detector and the embedding service work at the
        same time rather than in turn (two ahead rather than one: a batch that took the detector
        longer than usual no longer leaves the embedding service waiting)."""
        batches = [rows[start : start + batch_size] for start in range(0, len(rows), batch_size)]
        ahead: deque[asyncio.Task[list[tuple[CatalogRow, Cropped]]]] = deque()
        waiting = iter(batches)

        def crop_next() -> None:
            batch = next(waiting, None)
            if batch is not None:
                ahead.append(asyncio.create_task(self._crop_rows(batch, failed)))

        for _ in range(CROP_AHEAD):
            crop_next()
        try:
            with tqdm(total=len(rows), unit="img", disable=not progress, desc="embedding catalog") as bar:
                while ahead:
                    kept = await ahead.popleft()
                    crop_next()
                    yield await self._embed_cropped(kept)
                    bar.update(len(kept))
        finally:
            for task in ahead:
                task.cancel()


def loaded_photo(data: bytes, settings: Settings, wanted: bool = True) -> Loaded:
    """The decoded photo, and (when ``wanted``) what the detector is sent: the file itself when it
    is a JPEG small enough to need no resizing (the detector decodes it as this did), else
    ``for_detector``'s copy."""
    image = decode_image(data)
    if not wanted:
        return image, None
    if data.startswith(JPEG_MAGIC) and max(image.shape[:2]) <= settings.analysis_side:
        return image, data
    return image, for_detector(image, settings)[1]


def product_box(detection: DetectResponse, row: CatalogRow) -> tuple[list[float], bool]:
    """The region of the product's category on the first person, else the photo's foreground."""
    region = CATEGORY_REGION.get(row.category) if row.category else None
    if region is not None and detection.persons:
        wanted = [region, Region.upper_body] if region == Region.full else [region]
        for name in wanted:
            for found in detection.regions:
                if found.person == 0 and found.region == name:
                    return found.box, True
    product = next((r for r in detection.regions if r.region == Region.product), None)
    return (product.box if product else [0.0, 0.0, 1.0, 1.0]), False


def to_point(product: EmbeddedProduct) -> IndexPoint:
    """The catalog's own metadata wins; what it lacks comes from the classifier."""
    payload = product.row.payload()
    embedding = product.embedding
    if payload.category is None and embedding.category_scores:
        payload.category = max(embedding.category_scores, key=lambda c: embedding.category_scores[c])
    if payload.article_type is None and embedding.article_types:
        payload.article_type = embedding.article_types[0].name
    if payload.colour is None:
        payload.colour = embedding.colour
    payload.embedding_model = product.vector_model
    return IndexPoint(
        vector=embedding.vector, instance=embedding.instance, keypoints=product.keypoints, product=payload
    )


async def ingest(
    catalog_dir: Path,
    settings: Settings,
    limit: int | None = None,
    batch_size: int = 32,
    progress: bool = True,
) -> IngestReport:
    rows = read_catalog(catalog_dir)[:limit]
    detector = DetectorClient("detector", settings.detector_url, 60.0)
    embedding = EmbeddingClient("embedding", settings.embedding_url, 120.0)
    index = IndexClient("index", settings.index_url, 60.0)
    report = IngestReport(total=len(rows))
    started = time.perf_counter()
    try:
        keypoints = settings.duplicate_inliers > 0
        embedder = CatalogEmbedder(catalog_dir, detector, embedding, settings, keypoints=keypoints)
        async for batch in embedder.embed_catalog(rows, report.failed, batch_size, progress):
            if batch:
                await index.upsert([to_point(p) for p in batch])
                report.indexed += len(batch)
                report.on_model += sum(p.on_model for p in batch)
    finally:
        report.seconds = time.perf_counter() - started
        for client in (detector, embedding, index):
            await client.aclose()
    return report


def log_report(report: IngestReport) -> None:
    logger.info(
        "ingestion finished",
        extra={
            "total": report.total,
            "indexed": report.indexed,
            "cropped_from_person": report.on_model,
            "failed": len(report.failed),
            "seconds": round(report.seconds, 1),
            "images_per_second": round(report.per_second, 1),
        },
    )
    for product_id, reason in sorted(report.failed.items()):
        logger.warning("product not indexed", extra={"product_id": product_id, "reason": reason})


def main(argv: Sequence[str] | None = None) -> int:
    from shared.logs import configure_logging

    parser = argparse.ArgumentParser(description="Embed and index a catalog folder (catalog.csv + images)")
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--limit", type=int, default=None, help="Only the first N products")
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    settings = Settings()
    configure_logging("gateway", settings.log_level)
    try:
        report = asyncio.run(ingest(args.catalog, settings, args.limit, args.batch_size))
    except DownstreamError as exc:
        logger.error("ingestion stopped: a service failed", extra={"detail": str(exc)})
        return 1
    log_report(report)
    return 0 if not report.failed else 2


if __name__ == "__main__":
    raise SystemExit(main())
