"""Catalog embedding in batches, the next batch cropped while the current one is embedded."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image

from gateway.catalog import CatalogRow
from gateway.config import Settings
from gateway.ingest import DETECT_BATCH, CatalogEmbedder, EmbeddedProduct, to_point
from shared.contracts import Category, CropEmbedding
from tests.conftest import Downstream, jpeg, stand_in_clients


def _catalog(folder: Path, count: int, broken: set[int]) -> list[CatalogRow]:
    rows = []
    for number in range(count):
        name = f"{number}.jpg"
        (folder / name).write_bytes(b"not an image" if number in broken else jpeg(60, 80))
        rows.append(
            CatalogRow(
                product_id=str(number),
                image=name,
                gender="Women",
                category=Category.topwear,
                article_type="Tops",
                colour=None,
                name=None,
                usage=None,
            )
        )
    return rows


async def test_batches_come_in_catalog_order_with_unreadable_images_reported(tmp_path: Path) -> None:
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    embedder = CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings())
    failed: dict[str, str] = {}
    batches = [
        [product.row.product_id for product in batch]
        async for batch in embedder.embed_catalog(_catalog(tmp_path, 7, {3}), failed, 3, False)
    ]
    await clients.aclose()
    assert batches == [["0", "1", "2"], ["4", "5"], ["6"]]
    assert list(failed) == ["3"] and "ImageError" in failed["3"]
    assert downstream.embedded == [3, 2, 1]  # one embedding call per batch
    # one detector call per batch (of at most DETECT_BATCH); batches ahead are cropped concurrently
    assert sorted(downstream.detected) == [1, 2, 3]


async def test_a_batch_larger_than_a_detector_request_is_split(tmp_path: Path) -> None:
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    embedder = CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings())
    rows = _catalog(tmp_path, DETECT_BATCH + 3, set())
    embedded = await embedder.embed_rows(rows, {})
    await clients.aclose()
    assert [p.row.product_id for p in embedded] == [row.product_id for row in rows]
    assert sorted(downstream.detected) == [3, DETECT_BATCH]
    assert all(p.on_model for p in embedded)  # each photo got its own answer (a person in each)


async def test_every_photo_keeps_its_keypoints_when_asked(tmp_path: Path) -> None:
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    rows = _catalog(tmp_path, DETECT_BATCH + 3, set())
    rows[0] = replace(rows[0], category=Category.accessories)  # needs no detector
    embedded = await CatalogEmbedder(
        tmp_path, clients.detector, clients.embedding, Settings(), keypoints=True
    ).embed_rows(rows, {})
    without = await CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings()).embed_rows(
        rows, {}
    )
    await clients.aclose()
    assert sorted(downstream.keypoints_asked) == [3, DETECT_BATCH], "every photo, the detector's or not"
    assert sorted(downstream.detected) == [2, 2, DETECT_BATCH, DETECT_BATCH], "detected as before"
    points = [to_point(product) for product in embedded]
    assert all(p.keypoints is not None and p.keypoints.count == 1 for p in points)
    assert all(to_point(product).keypoints is None for product in without)


async def test_stopping_early_leaves_no_cropping_behind(tmp_path: Path) -> None:
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    embedder = CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings())
    batches = embedder.embed_catalog(_catalog(tmp_path, 6, set()), {}, 2, False)
    first = await anext(batches)
    await batches.aclose()  # the second batch was being cropped: it is cancelled, not left running
    await clients.aclose()
    assert [p.row.product_id for p in first] == ["0", "1"]
    assert downstream.embedded == [2]


async def test_a_product_without_a_body_region_is_cut_to_its_foreground_without_the_detector(
    tmp_path: Path,
) -> None:
    canvas = np.full((300, 200, 3), 250, np.uint8)
    canvas[100:200, 50:150] = (30, 60, 160)  # a bag on a plain background
    Image.fromarray(canvas).save(tmp_path / "bag.jpg", quality=95)
    bag = CatalogRow(
        product_id="bag",
        image="bag.jpg",
        gender="Women",
        category=None,  # the catalog does not say (a bag, a watch, a belt)
        article_type="Handbags",
        colour=None,
        name=None,
        usage=None,
    )
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    cropped = await CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings()).crop(bag)
    assert downstream.detected == [] and cropped.on_model is False
    assert Image.open(io.BytesIO(cropped.product)).size == (108, 112)  # the bag, 2% margin
    gender_training = CatalogEmbedder(
        tmp_path, clients.detector, clients.embedding, Settings(), person_crops=True
    )
    assert (await gender_training.crop(bag)).person is not None  # persons are looked for in every photo
    await clients.aclose()
    assert downstream.detected == [1]


def test_a_products_point_carries_its_instance_vector(tmp_path: Path) -> None:
    row = _catalog(tmp_path, 1, set())[0]
    embedding = CropEmbedding(
        vector=[1.0, 0.0],
        instance=[0.0, 1.0, 0.0],
        category_scores={},
        article_types=[],
        colour="Red",
        colour_score=0.7,
    )
    point = to_point(EmbeddedProduct(row=row, embedding=embedding, vector_model="m@1", on_model=False))
    assert point.vector == [1.0, 0.0] and point.instance == [0.0, 1.0, 0.0]
    assert point.product.embedding_model == "m@1" and point.product.colour == "Red"
    embedding.instance = None
    point = to_point(EmbeddedProduct(row=row, embedding=embedding, vector_model="m@1", on_model=False))
    assert point.instance is None, "a service without instance vectors stores look vectors alone"


async def test_only_products_the_catalog_gives_no_category_are_named_by_the_category_tail(
    tmp_path: Path,
) -> None:
    rows = _catalog(tmp_path, 4, set())
    rows[1], rows[3] = (replace(row, category=None) for row in (rows[1], rows[3]))
    downstream = Downstream()
    clients = stand_in_clients(downstream)
    await CatalogEmbedder(tmp_path, clients.detector, clients.embedding, Settings()).embed_rows(rows, {})
    await clients.aclose()
    assert downstream.embed_products == [[1, 3]]
