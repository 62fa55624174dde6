from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import httpx
import pytest

from gateway.config import Settings
from gateway.items import ResolvedItem
from gateway.main import build_app
from gateway.paths import inside_folder
from gateway.pipeline import (
    exact_first,
    head_box,
    named_by_own_photo,
    photo_first,
    product_windows,
    unshown_own_photos,
)
from shared.contracts import (
    Category,
    Hit,
    ProductPayload,
    RecommendResponse,
    Region,
    RegionDetection,
    VectorSpace,
)
from shared.testing import load_outcome, running_app, started_app
from tests.conftest import PRODUCTS, Downstream, jpeg, stand_in_clients


async def _recommend(
    client: httpx.AsyncClient, params: str = "", image: bytes | None = None
) -> httpx.Response:
    return await client.post(f"/recommend{params}", files={"image": ("look.jpg", image or jpeg())})


def resolved_item(
    category: Category, person: int | None = None, article_type: str | None = None
) -> ResolvedItem:
    """A red item covering the whole photo, as the pipeline resolves it."""
    return ResolvedItem(
        person=person,
        category=category,
        article_type=article_type,
        colour="Red",
        box=[0, 0, 1, 1],
        score=1.0,
        vector=[1.0],
    )


async def test_answer_has_every_item_with_consistent_recommendations(client: httpx.AsyncClient) -> None:
    response = await _recommend(client)
    assert response.status_code == 200, response.text
    body = RecommendResponse.model_validate(response.json())
    assert body.image.width == 300 and body.image.height == 400
    assert len(body.persons) == 1
    person = body.persons[0]
    assert person.gender.label == "Women" and person.gender.source == "face+appearance"
    assert person.box == [60.0, 0.0, 240.0, 400.0]  # pixels of the posted image
    assert [i.category for i in body.items] == [Category.topwear, Category.bottomwear, Category.footwear]
    for item in body.items:
        assert item.person == 0
        assert item.colour == "Red"
        for rec in item.recommendations:
            assert rec.category == item.category
            assert rec.gender in ("Women", "Unisex")
            assert rec.image_url.endswith(f"/catalog/images/{rec.product_id}")
    assert body.items[0].article_type == "Tops"
    assert body.degraded == []
    assert {"decode", "detect", "gender", "embed", "search", "total"} <= set(body.timings_ms)


async def test_dress_replaces_top_and_bottom(client: httpx.AsyncClient, downstream: Downstream) -> None:
    downstream.upper_category = Category.dress
    body = (await _recommend(client)).json()
    assert [i["category"] for i in body["items"]] == ["dress", "footwear"]
    assert body["items"][0]["recommendations"][0]["product_id"] == "d1"


async def test_men_get_no_dress_and_mens_products(client: httpx.AsyncClient, downstream: Downstream) -> None:
    downstream.upper_category = Category.dress
    downstream.gender = "Men"
    body = (await _recommend(client)).json()
    assert "dress" not in [i["category"] for i in body["items"]]
    for search in downstream.searches:
        assert search.filter.genders == ["Men", "Unisex"]


async def test_gender_override_and_category_filter_and_k(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    body = (await _recommend(client, "?gender=Men&categories=topwear&k=1")).json()
    assert [i["category"] for i in body["items"]] == ["topwear"]
    assert body["persons"][0]["gender"] == {"label": "Men", "score": 1.0, "source": "request"}
    assert [r["product_id"] for r in body["items"][0]["recommendations"]] == ["t2"]


async def test_failed_gender_service_degrades_to_unknown(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.failing = {"gender"}
    response = await _recommend(client)
    assert response.status_code == 200
    body = response.json()
    assert body["degraded"] == ["gender"]
    assert body["persons"][0]["gender"]["label"] == "unknown"
    assert all(s.filter.genders is None for s in downstream.searches)


async def test_failed_detector_makes_the_photo_one_item(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.failing = {"detector"}
    body = (await _recommend(client)).json()
    assert body["degraded"] == ["detector"]
    assert body["persons"] == [] and len(body["items"]) == 1
    assert body["items"][0]["person"] is None


async def test_failed_index_keeps_items_and_says_so(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.failing = {"index"}
    body = (await _recommend(client)).json()
    assert body["degraded"] == ["index"]
    assert body["items"] and all(i["recommendations"] == [] for i in body["items"])


async def test_products_of_another_embedding_model_mark_the_answer(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    # other k each time: an answer is not taken from the gateway's cache
    assert (await _recommend(client, "?k=1")).json()["degraded"] == [], "products with no model name"
    stale = [p.model_copy(update={"embedding_model": "older@1"}) for p in PRODUCTS]
    with patch("tests.conftest.PRODUCTS", stale):
        assert (await _recommend(client, "?k=2")).json()["degraded"] == ["index-model"]
    same = [p.model_copy(update={"embedding_model": downstream.vector_model}) for p in PRODUCTS]
    with patch("tests.conftest.PRODUCTS", same):
        assert (await _recommend(client, "?k=3")).json()["degraded"] == []


async def test_failed_embedding_is_503(client: httpx.AsyncClient, downstream: Downstream) -> None:
    downstream.failing = {"embedding"}
    response = await _recommend(client)
    assert response.status_code == 503
    assert response.json()["error"] == "unavailable"
    assert "embedding" in response.json()["detail"]


async def test_bad_uploads_are_4xx_with_json(client: httpx.AsyncClient) -> None:
    not_image = await _recommend(client, image=b"just some text")
    assert not_image.status_code == 400 and not_image.json()["error"] == "invalid_image"
    truncated = await _recommend(client, image=jpeg()[:300])
    assert truncated.status_code == 400
    empty = await client.post("/recommend", files={"image": ("e.jpg", b"")})
    assert empty.status_code == 400
    missing = await client.post("/recommend")
    assert missing.status_code == 422 and missing.json()["error"] == "validation_error"
    too_big = await _recommend(client, image=b"\xff" * 2_000_001)
    assert too_big.status_code == 413
    too_many_pixels = await _recommend(client, image=jpeg(3000, 2000))
    assert too_many_pixels.status_code == 413 and "pixels" in too_many_pixels.json()["detail"]


async def test_bad_parameters_are_422(client: httpx.AsyncClient) -> None:
    assert (await _recommend(client, "?k=0")).status_code == 422
    assert (await _recommend(client, "?k=51")).status_code == 422
    assert (await _recommend(client, "?gender=Robots")).status_code == 422
    response = await _recommend(client, "?categories=hats")
    assert response.status_code == 422 and "hats" in response.json()["detail"]


async def test_catalog_images_are_served_and_unknown_is_404(client: httpx.AsyncClient) -> None:
    image = await client.get("/catalog/images/t1")
    assert image.status_code == 200 and image.headers["content-type"] == "image/jpeg"
    assert (await client.get("/catalog/images/nope")).status_code == 404
    assert (await client.get("/catalog/images/t2")).status_code == 404  # no image file


async def test_ops_endpoints(client: httpx.AsyncClient) -> None:
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["services"]["index"]["ready"] is True
    assert ready.json()["answers_keyed_by"] == {
        "detector": "detector@0",
        "gender": "gender@0",
        "embedding": "stand-in@0+head@0",
        "index": f"{len(PRODUCTS)} products",
    }
    await _recommend(client)
    assert "gateway_request_duration_seconds" in (await client.get("/metrics")).text
    docs = await client.get("/openapi.json")
    assert "/recommend" in docs.json()["paths"]


async def readiness(downstream: Downstream, tmp_path: Path) -> httpx.Response:
    """The gateway's /readyz, once loaded, in front of these stand-in services."""
    app = build_app(Settings(catalog_dir=tmp_path), clients=stand_in_clients(downstream))
    async with started_app(app) as client:
        return await load_outcome(client)


async def test_not_ready_while_the_index_stores_vectors_of_another_dimension(
    downstream: Downstream, tmp_path: Path
) -> None:
    downstream.index_dim = 1280
    ready = await readiness(downstream, tmp_path)
    assert ready.status_code == 503
    assert "makes 8-dimensional vectors but the index stores 1280" in ready.json()["reason"]
    assert "INDEX_VECTOR_DIM=8" in ready.json()["reason"]


async def test_not_ready_while_the_index_has_no_room_for_instance_vectors(
    downstream: Downstream, tmp_path: Path
) -> None:
    downstream.instance_dim = 4
    ready = await readiness(downstream, tmp_path)
    assert ready.status_code == 503
    assert "makes 4-dimensional instance vectors but the index stores none" in ready.json()["reason"]
    assert "INDEX_INSTANCE_DIM=4" in ready.json()["reason"]
    downstream.index_instance_dim = 4
    assert (await readiness(downstream, tmp_path)).status_code == 200


async def test_a_product_photo_is_searched_by_its_instance_vectors(
    downstream: Downstream, tmp_path: Path
) -> None:
    """An item worn by no one is looked for as the very product: its instance vector and its
    windows' search the products' instance vectors. Worn garments, and the catalog's vote on the
    product's category, keep to the look vectors."""
    downstream.instance_dim = downstream.index_instance_dim = 4
    downstream.extra_regions = [
        RegionDetection(person=None, region=Region.product, box=[0.5, 0.0, 1.0, 0.5], score=0.7)
    ]
    for by_instance in (True, False):
        downstream.searches.clear()
        settings = Settings(catalog_dir=tmp_path, instance_search=by_instance)
        async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
            assert (await _recommend(client, "?gender=Men")).status_code == 200
        item_searches = [s for s in downstream.searches if s.filter.categories]
        product = [s for s in item_searches if s.views]
        assert len(product) == 1 and len(item_searches) > 1
        if by_instance:
            assert product[0].space == VectorSpace.instance
            assert len(product[0].vector) == 4 and len(product[0].views) == 9
            assert len({tuple(v) for v in product[0].views}) > 1, "each window's own instance vector"
            assert product[0].k == 6, "the very product is not reordered by a colour guess"
        else:
            assert product[0].space == VectorSpace.look and len(product[0].vector) == 8
            assert product[0].k == 100, "the colour rerank's pool"
        others = [s for s in downstream.searches if s not in product]
        assert all(s.space == VectorSpace.look or s.k == 1 for s in others), "worn: by look, and exact"
    downstream.extra_regions, downstream.embed_instances = [], []
    settings = Settings(catalog_dir=tmp_path, exact_match=1.0)
    async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
        await _recommend(client, "?gender=Men")
    assert downstream.embed_instances == [False], "without exact matches, persons need no instance vectors"


async def test_a_worn_garment_also_looks_for_its_very_product(downstream: Downstream, tmp_path: Path) -> None:
    downstream.instance_dim = downstream.index_instance_dim = 4
    settings = Settings(catalog_dir=tmp_path)
    async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
        await _recommend(client, "?gender=Women&colour=match")
    assert downstream.embed_instances == [True]
    exact = [s for s in downstream.searches if s.space == VectorSpace.instance]
    looks = [s for s in downstream.searches if s.space == VectorSpace.look]
    assert exact and len(exact) == len(looks), "one exact search per worn item"
    assert all(s.k == 1 and len(s.vector) == 4 and not s.views for s in exact)
    assert [s.filter for s in exact] == [s.filter for s in looks], "within the item's own filters"


@pytest.mark.parametrize(
    ("calibrated", "setting", "looked_for"),
    [(0.8, None, True), (None, None, False), (None, 0.7, True), (0.8, 1.0, False)],
    ids=["the service's calibration", "uncalibrated", "the gateway's own threshold", "never"],
)
async def test_the_very_product_is_looked_for_with_a_threshold_only(
    downstream: Downstream, tmp_path: Path, calibrated: float | None, setting: float | None, looked_for: bool
) -> None:
    """The threshold is GATEWAY_EXACT_MATCH when set, else the embedding service's calibration of its
    instance vectors: a projection with none (its cosines unknown) looks for no very product."""
    downstream.instance_dim = downstream.index_instance_dim = 4
    downstream.exact_match = calibrated
    settings = Settings(catalog_dir=tmp_path, exact_match=setting)
    async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
        assert (await _recommend(client, "?gender=Women")).status_code == 200
    exact = [s for s in downstream.searches if s.space == VectorSpace.instance]
    assert bool(exact) == looked_for


def test_the_very_product_goes_first_only_when_it_is_close_enough() -> None:
    def hit(product_id: str, score: float) -> Hit:
        return Hit(score=score, product=ProductPayload(product_id=product_id))

    look = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    assert [h.product.product_id for h in exact_first(look, [hit("c", 0.85)], 0.78)] == ["c", "a", "b"]
    assert [h.product.product_id for h in exact_first(look, [hit("z", 0.79)], 0.78)] == ["z", "a", "b", "c"]
    assert exact_first(look, [hit("c", 0.7)], 0.78) == look, "not close enough: the look's order"
    assert exact_first(look, [], 0.78) == look
    assert exact_first(look, [hit("c", 0.99)], None) == look, "no threshold: never"


async def test_the_posted_photos_own_product_goes_first_in_the_item_of_its_category(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.own_photos = ["b1"]  # the catalog photo of the jeans is the posted one
    body = RecommendResponse.model_validate((await _recommend(client, "?gender=Women")).json())
    assert downstream.keypoints_asked == [1], "the photo's keypoints come with its detection"
    [request] = downstream.duplicate_requests
    assert request.filter.genders == ["Women", "Unisex"], "the gender the request asks for narrows them"
    assert request.min_inliers == Settings().duplicate_inliers
    by_category = {item.category: item.recommendations for item in body.items}
    first = by_category[Category.bottomwear][0]
    assert (first.product_id, first.score, first.photo_match) == ("b1", 1.0, True)
    assert [r.product_id for r in by_category[Category.bottomwear]].count("b1") == 1
    others = [r for c, recs in by_category.items() if c != Category.bottomwear for r in recs]
    assert others and not any(r.photo_match for r in others)
    assert body.degraded == []


async def test_the_gender_a_person_looks_does_not_narrow_their_own_photo(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.own_photos = ["t2"]  # a man's shirt on a person taken for a woman
    body = RecommendResponse.model_validate((await _recommend(client)).json())
    assert downstream.duplicate_requests[0].filter.genders is None
    tops = next(i for i in body.items if i.category == Category.topwear).recommendations
    assert tops[0].product_id == "t2" and tops[0].photo_match


async def test_an_own_photos_product_of_a_category_no_item_has_is_an_item_of_its_own(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    # the catalog's shot of the dress, whose wearer the detector saw in a top and a skirt
    downstream.own_photos = ["d1"]
    body = RecommendResponse.model_validate((await _recommend(client, "?gender=Women&k=3")).json())
    [dress] = [item for item in body.items if item.category == Category.dress]
    assert body.items[-1] == dress, "after the detected items"
    assert (dress.article_type, dress.person, dress.score) == ("Dresses", 0, 1.0)
    assert dress.box == [0, 0, body.image.width, body.image.height]
    first, *like = dress.recommendations
    assert (first.product_id, first.score, first.photo_match) == ("d1", 1.0, True)
    assert len(like) <= 2 and not any(r.photo_match or r.product_id == "d1" for r in like)
    [asked] = downstream.recommends
    assert asked.positive == ["d1"] and asked.k == 2
    assert asked.filter.categories == [Category.dress] and asked.filter.genders == ["Women", "Unisex"]
    others = [r for item in body.items[:-1] for r in item.recommendations]
    assert others and not any(r.photo_match for r in others)


async def test_an_own_photo_item_without_its_look_alikes_still_shows_the_product(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.own_photos, downstream.failing = ["d1"], {"index-recommend"}
    body = RecommendResponse.model_validate((await _recommend(client, "?gender=Women")).json())
    [dress] = [item for item in body.items if item.category == Category.dress]
    assert [r.product_id for r in dress.recommendations] == ["d1"]
    assert body.degraded == ["index"]


def test_only_sure_own_photos_of_categories_no_item_has_are_shown_as_items() -> None:
    def own(product_id: str, inliers: int, category: Category | None) -> Hit:
        return Hit(score=inliers, product=ProductPayload(product_id=product_id, category=category))

    tops = resolved_item(Category.topwear, person=0)
    found = [
        own("t", 60, Category.topwear),
        own("j", 50, Category.outerwear),
        own("k", 45, Category.outerwear),
    ]
    found += [own("s", 24, Category.footwear), own("x", 80, None)]
    assert [h.product.product_id for h in unshown_own_photos([tops], found, 25)] == ["j"]
    assert [h.product.product_id for h in unshown_own_photos([], found, 20)] == ["t", "j", "s"]


async def test_a_store_without_keypoints_answers_as_before(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.own_photos, downstream.duplicates_status = ["b1"], 409
    body = RecommendResponse.model_validate((await _recommend(client, "?gender=Women")).json())
    assert body.degraded == [] and body.items
    assert not any(r.photo_match for item in body.items for r in item.recommendations)


async def test_a_failing_photo_match_marks_the_answer_degraded(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.own_photos, downstream.duplicates_status = ["b1"], 500
    body = RecommendResponse.model_validate((await _recommend(client, "?gender=Women")).json())
    assert body.degraded == ["index"]
    assert all(item.recommendations for item in body.items), "the searches still answer"


async def test_photos_are_not_matched_by_keypoints_when_turned_off(
    downstream: Downstream, tmp_path: Path
) -> None:
    downstream.own_photos = ["b1"]
    settings = Settings(catalog_dir=tmp_path, duplicate_inliers=0)
    async with running_app(build_app(settings, clients=stand_in_clients(downstream))) as client:
        assert (await _recommend(client, "?gender=Women")).status_code == 200
    assert downstream.keypoints_asked == [] and downstream.duplicate_requests == []


def test_own_photos_go_first_once_and_only_in_their_category() -> None:
    def hit(product_id: str, score: float, category: Category = Category.topwear) -> Hit:
        return Hit(score=score, product=ProductPayload(product_id=product_id, category=category))

    item = resolved_item(Category.topwear)
    look = [hit("a", 0.9), hit("b", 0.8), hit("c", 0.7)]
    own = [hit("c", 60), hit("j", 50, Category.bottomwear), hit("z", 40)]
    ordered = photo_first(look, own, item, k=3)
    assert [(h.product.product_id, h.score) for h in ordered] == [("c", 1.0), ("z", 1.0), ("a", 0.9)]
    assert photo_first(look, [hit("j", 50, Category.bottomwear)], item, k=3) == look


def test_a_product_photos_item_takes_the_category_of_its_own_catalog_photo() -> None:
    def item(category: Category, person: int | None = None) -> ResolvedItem:
        return resolved_item(category, person, article_type="Caps")

    shirt = Hit(
        score=40, product=ProductPayload(product_id="s", category=Category.topwear, article_type="Shirts")
    )
    [renamed] = named_by_own_photo([item(Category.accessories)], [shirt], 20)
    assert (renamed.category, renamed.article_type) == (Category.topwear, "Shirts")
    assert named_by_own_photo([item(Category.accessories)], [shirt], 41) == [item(Category.accessories)], (
        "too few agreeing keypoints to rename"
    )
    worn = [item(Category.bottomwear, person=0)]
    assert named_by_own_photo(worn, [shirt], 20) == worn, "a worn garment keeps what its region holds"
    two = [item(Category.accessories), item(Category.footwear)]
    assert named_by_own_photo(two, [shirt], 20) == two, "which of two would it be"
    named = [item(Category.topwear)]
    assert named_by_own_photo(named, [shirt], 20) == named
    assert named_by_own_photo([item(Category.accessories)], [], 20) == [item(Category.accessories)]


def test_catalog_image_paths_cannot_escape_the_folder(tmp_path: Path) -> None:
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    (catalog / "a.jpg").write_bytes(b"x")
    (tmp_path / "secret.txt").write_text("no")
    assert inside_folder(catalog, "a.jpg") == catalog / "a.jpg"
    assert inside_folder(catalog, "../secret.txt") is None
    assert inside_folder(catalog, "/etc/hostname") is None
    assert inside_folder(catalog, "missing.jpg") is None


def _accessory_on_no_one() -> RegionDetection:
    """A cap beside the person, which the detector (a YOLO backend) names itself."""
    return RegionDetection(
        person=None, region=Region.product, box=[0.0, 0.0, 0.1, 0.1], score=0.6, category=Category.accessories
    )


async def test_categories_the_detector_knows_are_kept(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    """A YOLO detection comes with its category: a bag on the person, a cap on no one."""
    downstream.extra_regions = [
        RegionDetection(
            person=0,
            region=Region.product,
            box=[0.7, 0.4, 0.9, 0.6],
            score=0.8,
            category=Category.accessories,
        ),
        _accessory_on_no_one(),
    ]
    body = (await _recommend(client)).json()
    accessories = [i for i in body["items"] if i["category"] == "accessories"]
    assert [i["person"] for i in accessories] == [0, None]
    only = (await _recommend(client, "?categories=footwear")).json()
    assert [i["category"] for i in only["items"]] == ["footwear"]


async def test_only_a_product_worn_by_no_one_is_named_by_the_category_tail(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.extra_regions = [
        RegionDetection(person=None, region=Region.product, box=[0.0, 0.0, 0.2, 0.2], score=0.7),
        _accessory_on_no_one(),
    ]
    assert (await _recommend(client)).status_code == 200
    assert downstream.embed_products == [[4]], "not the worn garments, nor what the detector named"


async def test_a_long_coat_takes_the_long_box(client: httpx.AsyncClient, downstream: Downstream) -> None:
    downstream.upper_category = Category.outerwear  # every crop reads as outerwear, the long one too
    body = (await _recommend(client)).json()
    coat = body["items"][0]
    assert coat["category"] == "outerwear"
    assert coat["box"] == [75.0, 60.0, 225.0, 340.0]  # shoulders to hem, not shoulders to hips


async def test_the_person_crop_is_embedded_for_the_gender_service(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await _recommend(client)
    assert len(downstream.person_vectors) == 1 and downstream.person_vectors[0] is not None
    assert downstream.person_vectors_backbone == "stand-in-net", "the gender service is told their network"
    downstream.person_vectors = []
    await _recommend(client, "?gender=Women")
    assert downstream.person_vectors == [], "with the gender given, no appearance is needed"


async def test_colour_match_filters_by_colour_family(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await _recommend(client, "?colour=match")
    assert downstream.searches and all(s.filter.colours for s in downstream.searches)
    assert "Maroon" in downstream.searches[0].filter.colours  # the stand-in's items are Red
    downstream.searches.clear()
    await _recommend(client)
    assert all(s.filter.colours is None for s in downstream.searches)
    assert (await _recommend(client, "?colour=purple")).status_code == 422


async def test_the_colour_rerank_reorders_a_deep_pool_and_returns_k(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    body = (await _recommend(client, "?k=2")).json()
    assert {s.k for s in downstream.searches} == {100}, "the pool of GATEWAY_COLOUR_RERANK_POOL"
    assert all(len(item["recommendations"]) <= 2 for item in body["items"])
    downstream.searches.clear()
    await _recommend(client, "?k=2&colour=match")
    assert {s.k for s in downstream.searches} == {2}, "a colour filter needs no rerank"


async def test_a_product_photo_is_also_searched_by_its_windows(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await _recommend(client, "?gender=Men&colour=match")
    downstream.searches.clear()
    downstream.extra_regions = [
        RegionDetection(person=None, region=Region.product, box=[0.5, 0.0, 1.0, 0.5], score=0.7)
    ]
    await _recommend(client, "?gender=Men&colour=match&k=3")  # another answer than the one cached
    # the worn items' crops are cached: the product and its nine windows are embedded together
    assert downstream.embedded[1] == 1 + 9
    item_searches = [s for s in downstream.searches if s.filter.categories]
    with_views = [s for s in item_searches if s.views]
    assert len(with_views) == 1 and len(with_views[0].views) == 9
    assert with_views[0].views != [with_views[0].vector] * 9, "each window is its own crop"
    assert all(not s.views for s in downstream.searches if s not in with_views), "worn items have none"


def test_product_windows_tile_the_box_in_a_three_by_three_grid() -> None:
    windows = product_windows([0.0, 0.0, 1.0, 2.0])
    assert len(windows) == 9
    assert windows[0] == pytest.approx([0.0, 0.0, 0.7, 1.4]), "clipped into the box"
    assert windows[4] == pytest.approx([0.15, 0.3, 0.85, 1.7]), "the centre window"
    assert windows[8] == pytest.approx([0.3, 0.6, 1.0, 2.0])


async def test_colours_the_detector_named_are_not_asked_of_the_embedding_service(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.region_colour = "Navy Blue"
    body = (await _recommend(client)).json()
    assert downstream.embed_colours == [False]
    assert {i["colour"] for i in body["items"]} == {"Navy Blue"}
    downstream.extra_regions = [  # a product beside the person: its colour comes from its crop
        RegionDetection(person=None, region=Region.product, box=[0.0, 0.0, 0.2, 0.2], score=0.7)
    ]
    body = (await _recommend(client, "?gender=Men")).json()
    assert downstream.embed_colours == [False, True]
    assert [i["colour"] for i in body["items"] if i["person"] is None] == ["Red"]


async def test_a_product_region_asks_the_catalog_to_vote_on_its_category(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.extra_regions = [
        RegionDetection(person=None, region=Region.product, box=[0.0, 0.0, 0.2, 0.2], score=0.7)
    ]
    body = (await _recommend(client, "?gender=Men")).json()
    votes = [s for s in downstream.searches if s.filter.categories is None]
    assert len(votes) == 1 and votes[0].k == 10, "one unfiltered look at the nearest products"
    assert votes[0].filter.genders == ["Men", "Unisex"]
    assert "vote" in body["timings_ms"]
    assert [i["category"] for i in body["items"] if i["person"] is None] == ["topwear"]


async def test_without_the_index_the_classifier_names_the_product_alone(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    downstream.extra_regions = [
        RegionDetection(person=None, region=Region.product, box=[0.0, 0.0, 0.2, 0.2], score=0.7)
    ]
    downstream.failing = {"index"}
    body = (await _recommend(client)).json()
    assert body["degraded"] == ["index"]
    assert [i["category"] for i in body["items"] if i["person"] is None] == ["topwear"]


async def test_person_photos_make_no_vote(client: httpx.AsyncClient, downstream: Downstream) -> None:
    body = (await _recommend(client)).json()
    assert "vote" not in body["timings_ms"]
    assert all(s.filter.categories is not None for s in downstream.searches)


async def test_each_persons_head_is_read_once_and_only_when_gender_is_asked(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await _recommend(client)
    assert downstream.heads == [1]  # one person with a face box: one head crop, in one call
    await _recommend(client, "?gender=Women")
    assert downstream.heads == [1]  # the request's gender needs no face


def test_head_box_is_a_square_around_the_face_inside_the_photo() -> None:
    # a 40x40 px face in a 400x200 photo: a 100x100 px square around it
    assert head_box([0.45, 0.4, 0.55, 0.6], 400, 200) == pytest.approx([0.375, 0.25, 0.625, 0.75])
    # at the top-left corner the square is cut by the photo's edges, not moved
    assert head_box([0.0, 0.0, 0.1, 0.2], 400, 200) == pytest.approx([0.0, 0.0, 0.175, 0.35])
