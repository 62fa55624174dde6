from __future__ import annotations

import io
import json
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from embedding_service.config import Settings
from embedding_service.export import network_name
from embedding_service.head import Projection
from embedding_service.main import build_app
from embedding_service.model import EmbeddingModel, file_digest
from shared.colours import crop_colour, name_colour
from shared.images import decode_image
from shared.testing import load_outcome, running_app, started_app
from shared.vocabulary import colour_family
from tests.conftest import BACKBONE, CATALOG, TAIL


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=95)
    return buffer.getvalue()


def _solid(colour: tuple[int, int, int], size: tuple[int, int] = (120, 90)) -> np.ndarray:
    return np.full((*size, 3), colour, np.uint8)


async def test_batch_in_batch_out_with_unit_vectors(client: httpx.AsyncClient) -> None:
    crops = [_solid((200, 20, 30)), _solid((20, 30, 120), (50, 200)), _solid((240, 240, 240), (300, 40))]
    files = [("images", (f"c{i}.jpg", _jpeg(c), "image/jpeg")) for i, c in enumerate(crops)]
    response = await client.post("/embed", files=files)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["items"]) == 3
    for item in body["items"]:
        assert np.isclose(np.linalg.norm(item["vector"]), 1.0, atol=1e-4)
        assert len(item["vector"]) == body["dim"]
    assert body["items"][0]["colour"] == "Red"


async def test_colours_false_gives_the_same_vectors_without_colours(client: httpx.AsyncClient) -> None:
    files = [("images", ("c.jpg", _jpeg(_solid((200, 20, 30))), "image/jpeg"))]
    named = (await client.post("/embed", files=files)).json()["items"][0]
    plain = (await client.post("/embed", params={"colours": "false"}, files=files)).json()["items"][0]
    assert plain["vector"] == named["vector"]
    assert (plain["colour"], plain["colour_score"]) == (None, None)


async def test_catalog_products_get_their_category(client: httpx.AsyncClient) -> None:
    """A top, shoes, jeans and a watch from the catalog the head was trained on."""
    if not (CATALOG / "images").exists():
        pytest.skip("catalog images not available")
    expected = {"10003": "topwear", "10035": "footwear", "10438": "bottomwear", "10098": "accessories"}
    files = [("images", (f"{i}.jpg", (CATALOG / "images" / f"{i}.jpg").read_bytes())) for i in expected]
    body = (await client.post("/embed", files=files)).json()
    if not body["items"][0]["category_scores"]:
        pytest.skip("no classifier head (make train-classifier)")
    for (product_id, category), item in zip(expected.items(), body["items"], strict=True):
        best = max(item["category_scores"], key=item["category_scores"].get)
        assert best == category, (product_id, item["category_scores"])
        assert item["article_types"][0]["category"] == category


async def test_bad_crops_and_limits(client: httpx.AsyncClient) -> None:
    bad = await client.post("/embed", files=[("images", ("a.jpg", b"not an image"))])
    assert bad.status_code == 400 and "image 0" in bad.json()["detail"]
    many = [("images", (f"{i}.jpg", _jpeg(_solid((1, 2, 3))))) for i in range(9)]
    assert (await client.post("/embed", files=many)).status_code == 413
    assert (await client.post("/embed")).status_code == 422
    one = [("images", ("a.jpg", _jpeg(_solid((1, 2, 3)))))]
    outside = await client.post("/embed", params={"products": [0, 1]}, files=one)
    assert outside.status_code == 422 and "crop 1" in outside.json()["detail"]


async def test_missing_backbone_keeps_service_unready() -> None:
    app = build_app(Settings(backbone_path=Path("/nonexistent/model.onnx")))
    async with started_app(app) as client:
        body = (await load_outcome(client)).json()
        assert body["ready"] is False and "make models" in body["reason"]
        crop = [("images", ("a.jpg", _jpeg(_solid((1, 2, 3)))))]
        assert (await client.post("/embed", files=crop)).status_code == 503


def test_colour_names() -> None:
    assert name_colour(np.array([20, 22, 25])) == "Black"
    assert name_colour(np.array([250, 250, 250])) == "White"
    assert colour_family(name_colour(np.array([30, 40, 75]))) == "blue"
    # a red garment on a white background: the background is not the dominant colour
    crop = _solid((250, 250, 250), (100, 100))
    crop[20:80, 25:75] = (190, 25, 35)
    assert crop_colour(crop)[0] == "Red"


async def test_a_projection_reads_the_backbone_outputs_it_names(tmp_path: Path) -> None:
    """A projection of the average-pooled features (1280 values) beside the multi-stage descriptor
    (1712 for Lite0) reads both outputs side by side; one that names an output the backbone lacks is
    refused at start."""
    weights = np.random.default_rng(0).normal(size=(1280 + 1712, 8)).astype(np.float32)
    projection = tmp_path / "projection.npz"
    np.savez(
        projection, weights=weights, bias=np.zeros(8, np.float32), source=np.array("features+descriptor")
    )
    settings = Settings(backbone_path=BACKBONE, projection=str(projection), instance_projection="none")
    async with running_app(build_app(settings)) as client:
        files = [("images", ("c.jpg", _jpeg(_solid((20, 30, 120))), "image/jpeg"))]
        body = (await client.post("/embed", files=files)).json()
        ready = (await client.get("/readyz")).json()
    assert ready["dim"] == 8 and ready["vector_model"] == body["vector_model"], "/readyz tells the vectors"
    tail = TAIL if TAIL.exists() else None  # make models puts the committed fine-tuned tail in
    assert body["backbone"] == ready["backbone"] == network_name("efficientnet-lite0", tail), (
        "the export names it"
    )
    assert body["dim"] == 8 and len(body["items"][0]["backbone"]) == 1280
    backbone_digest = file_digest(BACKBONE)
    assert body["vector_model"] == f"{BACKBONE.stem}@{backbone_digest}+projection@{file_digest(projection)}"
    raw = EmbeddingModel(Settings(backbone_path=BACKBONE, projection="none", instance_projection="none"))
    raw.load()
    assert raw.vector_model == f"{BACKBONE.stem}@{backbone_digest}", "no projection, no projection's name"
    np.savez(projection, weights=weights, bias=np.zeros(8, np.float32), source=np.array("pixels"))
    model = EmbeddingModel(Settings(backbone_path=BACKBONE, projection=str(projection)))
    with pytest.raises(ValueError, match="reads the backbone's 'pixels'"):
        model.load()


async def test_the_instance_vector_is_the_instance_projection_of_the_same_pass(tmp_path: Path) -> None:
    """Beside the look vector, each crop gets its instance vector: the instance projection of the
    backbone outputs of the same crop; /readyz and the answer tell its size and the model name
    carries its digest. Without one, no instance vectors."""
    rng = np.random.default_rng(1)
    instance = tmp_path / "instance.npz"
    weights = rng.normal(size=(1280 + 1712, 12)).astype(np.float32)
    np.savez(instance, weights=weights, bias=np.zeros(12, np.float32), source=np.array("features+descriptor"))
    crops = [_solid((20, 30, 120)), _solid((200, 180, 40))]
    settings = Settings(backbone_path=BACKBONE, projection="none", instance_projection=str(instance))
    async with running_app(build_app(settings)) as client:
        files = [("images", (f"{i}.jpg", _jpeg(crop), "image/jpeg")) for i, crop in enumerate(crops)]
        body = (await client.post("/embed", files=files)).json()
        ready = (await client.get("/readyz")).json()
        skipped = (await client.post("/embed", files=files, params={"instances": "false"})).json()
    assert body["instance_dim"] == ready["instance_dim"] == 12 and body["dim"] == 1280
    assert [item["instance"] for item in skipped["items"]] == [None, None], "not asked, not made"
    assert skipped["instance_dim"] == 12, "what the service makes when asked"
    assert body["vector_model"].endswith(f"+instance@{file_digest(instance)}")
    model = EmbeddingModel(settings)
    model.load()
    decoded = [decode_image(_jpeg(crop)) for crop in crops]
    expected = Projection.load(instance).apply(
        np.concatenate([model.embed_outputs(decoded)[n] for n in ("features", "descriptor")], axis=1)
    )
    got = np.array([item["instance"] for item in body["items"]])
    assert np.allclose(got, expected, atol=1e-4), "each crop's own instance vector, in order"
    assert not np.allclose(got[0], got[1], atol=1e-2)
    assert all(item.instance is None for item in model.predict(decoded, colours=False, instances=False))
    plain = EmbeddingModel(Settings(backbone_path=BACKBONE, projection="none", instance_projection="none"))
    plain.load()
    assert plain.instance_dim is None and plain.predict(decoded[:1])[0].instance is None


async def test_the_answer_gives_the_instance_projections_exact_match_threshold(tmp_path: Path) -> None:
    """The threshold from which an instance match is the very product is the calibration written in
    the instance projection's card; an uncalibrated projection (a card without it, or none) has none."""
    instance = tmp_path / "instance.npz"
    weights = np.random.default_rng(2).normal(size=(1280, 6)).astype(np.float32)
    np.savez(instance, weights=weights, bias=np.zeros(6, np.float32), source=np.array("features"))
    files = [("images", ("0.jpg", _jpeg(_solid((20, 30, 120))), "image/jpeg"))]
    settings = Settings(backbone_path=BACKBONE, projection="none", instance_projection=str(instance))
    for card, expected in (
        (None, None),
        ({"dim": 6}, None),
        ({"dim": 6, "exact_match": {"threshold": 0.81, "photos": 500}}, 0.81),
    ):
        if card is not None:
            instance.with_suffix(".json").write_text(json.dumps(card))
        async with running_app(build_app(settings)) as client:
            answer = (await client.post("/embed", files=files)).json()
            ready = (await client.get("/readyz")).json()
        assert answer["exact_match"] == ready["exact_match"] == expected, card
    plain = Settings(backbone_path=BACKBONE, projection="none", instance_projection="none")
    async with running_app(build_app(plain)) as client:
        assert (await client.post("/embed", files=files)).json()["exact_match"] is None


async def test_a_served_projection_keeps_the_backbone_features_beside_it(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    projection = tmp_path / "projection.npz"
    np.savez(
        projection,
        hidden_weights=rng.normal(size=(1280, 64)).astype(np.float32),
        hidden_bias=np.zeros(64, np.float32),
        weights=rng.normal(size=(64, 16)).astype(np.float32),
        bias=np.zeros(16, np.float32),
    )
    async with running_app(build_app(Settings(backbone_path=BACKBONE, projection=str(projection)))) as client:
        files = [("images", ("c.jpg", _jpeg(_solid((20, 30, 120))), "image/jpeg"))]
        body = (await client.post("/embed", files=files)).json()
    assert body["dim"] == 16
    item = body["items"][0]
    assert len(item["vector"]) == 16 and np.isclose(np.linalg.norm(item["vector"]), 1.0, atol=1e-4)
    assert len(item["backbone"]) == 1280 and np.isclose(np.linalg.norm(item["backbone"]), 1.0, atol=1e-4)


async def test_a_head_trained_on_another_network_is_refused(tmp_path: Path) -> None:
    """Lite0 and Lite2 features are both 1280 values: only the name the head was trained on tells
    them apart, and a head of the other network keeps the service unready."""
    from embedding_service.head import ClassifierHead

    head = ClassifierHead.load(Settings().head_path)
    other = tmp_path / "classifier.npz"
    ClassifierHead(head.category, head.article, head.article_category, "efficientnet-lite2-imagenet").save(
        other
    )
    model = EmbeddingModel(Settings(backbone_path=BACKBONE, head_path=other))
    with pytest.raises(ValueError, match=r"trained on efficientnet-lite2-imagenet.*make train-classifier"):
        model.load()


async def test_a_retrained_head_changes_the_item_model_not_the_vector_model(tmp_path: Path) -> None:
    """The gateway caches a crop's item (vectors, categories, colour) under item_model: a retrained
    head must give another one, while the index's vectors (vector_model) stay comparable."""
    from embedding_service.head import ClassifierHead

    head = ClassifierHead.load(Settings().head_path)
    head.category.weights[0, 0] += 1.0
    retrained = tmp_path / "classifier.npz"
    head.save(retrained)
    unprojected = {"projection": "none", "instance_projection": "none"}
    served = EmbeddingModel(Settings(backbone_path=BACKBONE, **unprojected))
    other = EmbeddingModel(Settings(backbone_path=BACKBONE, head_path=retrained, **unprojected))
    served.load()
    other.load()
    assert served.vector_model == other.vector_model
    assert served.item_model != other.item_model
    assert other.item_model.startswith(f"{other.vector_model}+classifier@{file_digest(retrained)}")
    async with running_app(
        build_app(Settings(backbone_path=BACKBONE, head_path=retrained, **unprojected))
    ) as client:
        body = (
            await client.post("/embed", files=[("images", ("c.jpg", _jpeg(_solid((20, 30, 120)))))])
        ).json()
        ready = (await client.get("/readyz")).json()
    assert body["item_model"] == ready["item_model"] == other.item_model
