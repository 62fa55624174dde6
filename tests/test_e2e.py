"""End-to-end: real services as processes, real catalog products, real photos."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from gateway.ingest import ingest
from shared.boxes import box_iou
from shared.contracts import Category, RecommendResponse
from shared.distortions import distort
from tests.conftest import API_KEY, CONSUMER, DEV, E2E
from tools.stack import other_vocabulary_photos

FULLY_VISIBLE = 0.9


def _photos(labels: list[dict[str, Any]]) -> list[str]:
    return [str(entry["path"]) for entry in labels]


def _match_persons(body: RecommendResponse, labelled: list[dict[str, Any]]) -> dict[int, int]:
    """Labelled person index -> returned person index, greedily by box overlap."""
    width, height = body.image.width, body.image.height
    found = [[p.box[0] / width, p.box[1] / height, p.box[2] / width, p.box[3] / height] for p in body.persons]
    pairs = sorted(
        (
            (box_iou(label["person_box"], box), li, fi)
            for li, label in enumerate(labelled)
            for fi, box in enumerate(found)
        ),
        reverse=True,
    )
    matched: dict[int, int] = {}
    for overlap, li, fi in pairs:
        if overlap >= 0.3 and li not in matched and fi not in matched.values():
            matched[li] = fi
    return matched


def _face_visible(entry: dict[str, Any]) -> bool:
    """The labels' notes say when the head is cut off by the frame."""
    notes = str(entry.get("notes", "")).lower()
    return "head cropped" not in notes and "face only visible" not in notes


def test_ingestion_indexed_the_sample(e2e: E2E) -> None:
    assert e2e.report.failed == {}
    assert e2e.report.indexed == e2e.products >= 200
    assert e2e.report.on_model > 0, "topwear shown on models should be cropped from the person"
    count = httpx.get(f"{e2e.stack.url('index-service')}/count").json()["count"]
    assert count == e2e.products
    # every photo's keypoints are stored, named by the detector's vocabulary (make run ingests the
    # catalog again when some are not)
    assert other_vocabulary_photos(e2e.stack, count) == 0
    vocabulary = httpx.get(f"{e2e.stack.url('detector-service')}/readyz").json()["vocabulary"]
    facets = httpx.get(f"{e2e.stack.url('index-service')}/facets").json()["counts"]
    assert facets["keypoint_vocabulary"] == {vocabulary: count}


def test_every_dev_photo_gets_consistent_recommendations(e2e: E2E, dev_labels: list[dict[str, Any]]) -> None:
    missing: list[str] = []
    wrong_gender: list[str] = []
    faces_read = faces_seen = 0
    for entry in dev_labels:
        response = e2e.recommend(DEV / str(entry["path"]))
        assert response.status_code == 200, (entry["path"], response.text)
        body = RecommendResponse.model_validate(response.json())
        assert body.degraded == [], (entry["path"], body.degraded)
        assert (body.image.width, body.image.height) == (entry["width"], entry["height"])
        labelled = list(entry["persons"])
        assert body.persons, f"{entry['path']}: no person found"
        matched = _match_persons(body, labelled)
        assert 0 in matched or len(labelled) > 1, f"{entry['path']}: the main person was not found"
        for li, fi in matched.items():
            person = body.persons[fi]
            label = labelled[li]
            if person.gender.label not in ("unknown", label["gender"]):
                wrong_gender.append(f"{entry['path']}#{li}: {person.gender.label} for {label['gender']}")
            if _face_visible(entry):
                faces_seen += 1
                faces_read += person.gender.label == label["gender"]
            worn = {item.category for item in body.items if item.person == fi}
            for garment in label["garments"]:
                if garment["visible_fraction"] >= FULLY_VISIBLE and Category(garment["category"]) not in worn:
                    missing.append(f"{entry['path']}#{li}: {garment['category']} not in {sorted(worn)}")
        for item in body.items:
            assert item.recommendations, f"{entry['path']}: {item.category} has no recommendations"
            gender = body.persons[item.person].gender.label if item.person is not None else "unknown"
            for rec in item.recommendations:
                assert rec.category == item.category
                if gender != "unknown":
                    assert rec.gender in (gender, "Unisex"), (entry["path"], rec)
    assert not wrong_gender, wrong_gender  # an honest "unknown" is allowed, a wrong gender is not
    assert faces_read >= 0.8 * faces_seen, f"gender read for only {faces_read} of {faces_seen} visible faces"
    assert not missing, missing


def test_the_shirt_under_an_open_suit_jacket_is_an_item_of_its_own(e2e: E2E) -> None:
    body = RecommendResponse.model_validate(e2e.recommend(DEV / "idm_human_will1_1.jpg").json())
    worn = [item for item in body.items if item.person == 0]
    jackets = [item for item in worn if item.category == Category.outerwear]
    tops = [item for item in worn if item.category == Category.topwear]
    assert len(jackets) == 1 and len(tops) == 1, [(i.category, i.box) for i in worn]
    jacket, shirt = jackets[0].box, tops[0].box
    assert (
        jacket[0] <= shirt[0]
        and shirt[2] <= jacket[2]
        and jacket[1] - 5 <= shirt[1]
        and shirt[3] <= jacket[3]
    )
    width, height = body.image.width, body.image.height
    labelled = [0.42 * width, 0.235 * height, 0.595 * width, 0.385 * height]  # dev labels.json
    assert box_iou(shirt, labelled) > 0.5
    assert tops[0].recommendations and {r.category for r in tops[0].recommendations} == {Category.topwear}


def test_recommended_images_are_served(e2e: E2E) -> None:
    body = e2e.recommend(DEV / "ootd_model_model_8.png").json()
    url = body["items"][0]["recommendations"][0]["image_url"]
    image = httpx.get(url)
    assert image.status_code == 200 and image.headers["content-type"].startswith("image/")


def test_product_photo_without_person_is_one_item(e2e: E2E) -> None:
    photos = sorted((CONSUMER / "images").glob("*.jpg"))[:5]
    if not photos:
        pytest.skip("no consumer photos")
    for photo in photos:
        body = e2e.recommend(photo).json()
        assert body["persons"] == [], photo.name
        assert len(body["items"]) == 1, photo.name
        item = body["items"][0]
        assert item["person"] is None and item["recommendations"]
        assert {r["category"] for r in item["recommendations"]} == {item["category"]}


def _distorted_photos(e2e: E2E, count: int) -> list[tuple[str, bytes]]:
    """Photos of indexed products as a shopper takes them (shared.distortions: clutter, crop,
    rotation, perspective, light, JPEG), with their product ids."""
    with (e2e.catalog / "catalog.csv").open(newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if r["category"] in ("topwear", "bottomwear", "footwear")]
    photos = []
    for row in random.Random(5).sample(rows, count):
        view = distort(Image.open(e2e.catalog / row["image"]), random.Random(row["id"]))
        buffer = io.BytesIO()
        view.save(buffer, format="JPEG", quality=90)
        photos.append((row["id"], buffer.getvalue()))
    return photos


def test_a_photo_of_an_indexed_product_finds_that_product(e2e: E2E) -> None:
    """A product photo is searched by its instance vectors (the gateway's item.query_vectors), so
    the product itself mostly comes back, and first. Measured on these 40 photos before photos were
    matched by keypoints (the next test): 30 among the first ten and 27 first; searched by their
    look alone (GATEWAY_INSTANCE_SEARCH=false), 26 and 15.
    The ten missed: five shots of a model wearing the product (searched by their look) and five
    children's products, small in their frame, lost among the clutter and named accessories."""
    ranks = []
    for product_id, data in _distorted_photos(e2e, 40):
        body = e2e.recommend(data, "?k=10").json()
        found = [
            rank
            for item in body["items"]
            for rank, product in enumerate(item["recommendations"])
            if product["product_id"] == product_id
        ]
        ranks.append(min(found, default=None))
    assert sum(rank is not None for rank in ranks) >= 28, ranks
    assert sum(rank == 0 for rank in ranks) >= 23, ranks


def test_a_shoppers_copy_of_a_catalog_photo_is_matched_by_its_keypoints(e2e: E2E) -> None:
    """The catalog photo that a distorted photo was made from is found by keypoints (the index's
    /duplicates) and its product put first in the item of its category, marked photo_match; no
    product of another photo is taken for the photo's own (the catalog holds some photos twice,
    under two product ids: both products are the photo's)."""
    with (e2e.catalog / "catalog.csv").open(newline="") as handle:
        images = {r["id"]: e2e.catalog / r["image"] for r in csv.DictReader(handle)}

    def same_photo(one: str, other: str) -> bool:
        return np.array_equal(np.asarray(Image.open(images[one])), np.asarray(Image.open(images[other])))

    matched, wrong = 0, []
    for product_id, data in _distorted_photos(e2e, 40):
        body = RecommendResponse.model_validate(e2e.recommend(data, "?k=10").json())
        own = [r.product_id for item in body.items for r in item.recommendations if r.photo_match]
        matched += product_id in own[:2]
        wrong += [p for p in own if not same_photo(p, product_id)]
    assert matched >= 22, matched  # 25 of 40 measured with the vocabulary before its k-majority rounds
    assert wrong == []


def test_photos_that_are_no_catalog_photo_match_none_by_keypoints(
    e2e: E2E, dev_labels: list[dict[str, Any]]
) -> None:
    with (CONSUMER / "labels.csv").open(newline="") as handle:
        consumer = [CONSUMER / r["image"] for r in csv.DictReader(handle)][:30]
    for path in [DEV / name for name in _photos(dev_labels)] + consumer:
        body = RecommendResponse.model_validate(e2e.recommend(path).json())
        assert not any(r.photo_match for item in body.items for r in item.recommendations), path.name


def test_gender_override_filters_the_catalog(e2e: E2E) -> None:
    body = e2e.recommend(DEV / "idm_human_00121_00.jpg", "?gender=Men&categories=topwear&k=10").json()
    assert body["items"] and {i["category"] for i in body["items"]} == {"topwear"}
    for rec in body["items"][0]["recommendations"]:
        assert rec["gender"] in ("Men", "Unisex")


def test_more_like_this_stays_in_gender_and_category(e2e: E2E) -> None:
    body = e2e.recommend(DEV / "ootd_model_model_8.png").json()
    liked = body["items"][0]["recommendations"][0]
    gateway = e2e.stack.url("gateway")
    response = httpx.post(f"{gateway}/similar", json={"positive": [liked["product_id"]], "k": 5}, timeout=30)
    assert response.status_code == 200, response.text
    similar = response.json()["recommendations"]
    assert similar and liked["product_id"] not in {r["product_id"] for r in similar}
    assert {r["category"] for r in similar} == {liked["category"]}
    if liked["gender"] in ("Men", "Women"):
        assert {r["gender"] for r in similar} <= {liked["gender"], "Unisex"}
    missing = httpx.post(f"{gateway}/similar", json={"positive": ["no-such-product"]}, timeout=30)
    assert missing.status_code == 404 and "no-such-product" in missing.json()["detail"]


def test_catalog_api_adds_finds_updates_and_deletes_a_product(e2e: E2E) -> None:
    gateway, auth = e2e.stack.url("gateway"), {"X-API-Key": API_KEY}
    photo = sorted((CONSUMER / "images").glob("*.jpg"))[0]
    metadata = {"product_id": "e2e-new", "gender": "Women", "name": "Posted through the API"}
    added = httpx.post(
        f"{gateway}/catalog/products",
        headers=auth,
        files={"image": (photo.name, photo.read_bytes(), "image/jpeg")},
        data={"metadata": json.dumps(metadata)},
        timeout=60,
    )
    assert added.status_code == 201, added.text
    product = added.json()
    assert product["category"] and product["colour"] and product["image"].startswith("media:")
    assert httpx.get(f"{gateway}/catalog/images/e2e-new").status_code == 200
    found = e2e.recommend(photo, f"?gender=Women&categories={product['category']}&k=5").json()
    assert "e2e-new" in {r["product_id"] for item in found["items"] for r in item["recommendations"]}
    changed = httpx.patch(f"{gateway}/catalog/products/e2e-new", headers=auth, json={"usage": "Party"})
    assert changed.status_code == 200 and changed.json()["usage"] == "Party"
    stats = httpx.get(f"{gateway}/catalog/stats", headers=auth).json()
    assert stats["counts"]["usage"]["Party"] >= 1 and stats["total"] >= 1
    assert httpx.delete(f"{gateway}/catalog/products/e2e-new", headers=auth).status_code == 204
    assert httpx.get(f"{gateway}/catalog/products/e2e-new", headers=auth).status_code == 404
    assert httpx.delete(f"{gateway}/catalog/products/e2e-new", headers=auth).status_code == 404
    assert httpx.get(f"{gateway}/catalog/stats").status_code == 401


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((height, width, 3), np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_bad_inputs(e2e: E2E) -> None:
    text = e2e.recommend(b"this is a text file, not a photo", name="notes.txt")
    assert text.status_code == 400 and text.json()["error"] == "invalid_image"
    truncated = e2e.recommend((DEV / "schp_demo.jpg").read_bytes()[:20000])
    assert truncated.status_code == 400 and "detail" in truncated.json()
    empty = e2e.recommend(b"")
    assert empty.status_code == 400
    huge = e2e.recommend(_png(8000, 6000), name="huge.png")
    assert huge.status_code == 413 and "pixels" in huge.json()["detail"]
    missing = httpx.post(f"{e2e.gateway}/recommend", timeout=10)
    assert missing.status_code == 422


def test_ingestion_is_idempotent(e2e: E2E) -> None:
    index = e2e.stack.url("index-service")
    before = httpx.get(f"{index}/count").json()["count"]
    report = asyncio.run(ingest(e2e.catalog, e2e.settings(), limit=24, progress=False))
    assert report.indexed == 24
    assert httpx.get(f"{index}/count").json()["count"] == before


def test_a_downstream_that_is_down_degrades_or_503(e2e: E2E) -> None:
    with e2e.variant(("gateway",), {}, down=("gender-service",)) as no_gender:
        degraded = e2e.recommend(DEV / "idm_human_00035_00.jpg", gateway=no_gender.url("gateway"))
        assert degraded.status_code == 200
        body = degraded.json()
        assert body["degraded"] == ["gender"]
        assert body["items"] and all(i["recommendations"] for i in body["items"])
    with e2e.variant(("gateway",), {}, down=("embedding-service",)) as no_embedding:
        down = e2e.recommend(DEV / "idm_human_00035_00.jpg", gateway=no_embedding.url("gateway"))
        assert down.status_code == 503 and down.json()["error"] == "unavailable"
