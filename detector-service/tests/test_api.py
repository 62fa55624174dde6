from __future__ import annotations

import io
import re

import httpx
import numpy as np
from PIL import Image

from shared.boxes import box_iou
from shared.vocabulary import colour_family
from tests.conftest import dev_photo


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG")
    return buffer.getvalue()


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert re.fullmatch("[0-9a-f]{12}", ready.json()["model_version"]), "what the gateway keys answers by"
    await client.post("/detect", files={"image": ("x.jpg", _jpeg(np.zeros((64, 64, 3), np.uint8)))})
    metrics = (await client.get("/metrics")).text
    assert "detector_request_duration_seconds" in metrics
    assert "detector_inference_duration_seconds" in metrics


async def test_full_body_photo_has_top_bottom_and_shoes(client: httpx.AsyncClient) -> None:
    response = await client.post("/detect", files={"image": ("p.jpg", dev_photo("ootd_model_model_8.png"))})
    assert response.status_code == 200
    body = response.json()
    assert len(body["persons"]) == 1
    person = body["persons"][0]
    assert person["full_shot"] is True
    assert person["face_box"] is not None
    regions = {r["region"]: r["box"] for r in body["regions"]}
    assert {"upper", "lower", "feet"} <= set(regions)
    assert "full" not in regions, "a white top over blue jeans is two garments, not a dress"
    # labelled in dev labels.json: topwear, bottomwear, footwear
    assert box_iou(regions["upper"], [0.35, 0.165, 0.645, 0.4]) > 0.5
    assert box_iou(regions["lower"], [0.385, 0.38, 0.648, 0.882]) > 0.5
    assert box_iou(regions["feet"], [0.423, 0.862, 0.565, 0.985]) > 0.5


async def test_half_body_photo_has_no_footwear(client: httpx.AsyncClient) -> None:
    response = await client.post("/detect", files={"image": ("p.jpg", dev_photo("idm_human_00035_00.jpg"))})
    body = response.json()
    regions = {r["region"] for r in body["regions"]}
    assert "feet" not in regions
    assert "upper" in regions
    assert body["persons"][0]["full_shot"] is False


async def test_no_person_gives_one_product_region_around_the_object(client: httpx.AsyncClient) -> None:
    canvas = np.full((400, 300, 3), 245, np.uint8)
    canvas[100:300, 80:220] = (30, 60, 160)  # a blue "garment" on a plain background
    response = await client.post("/detect", files={"image": ("flat.jpg", _jpeg(canvas))})
    body = response.json()
    assert body["persons"] == []
    assert len(body["regions"]) == 1
    region = body["regions"][0]
    assert region["region"] == "product" and region["person"] is None
    assert box_iou(region["box"], [80 / 300, 100 / 400, 220 / 300, 300 / 400]) > 0.7


async def test_bad_inputs_are_4xx_with_json(client: httpx.AsyncClient) -> None:
    text = await client.post("/detect", files={"image": ("a.txt", b"hello, not an image")})
    assert text.status_code == 400 and text.json()["error"] == "invalid_image"
    empty = await client.post("/detect", files={"image": ("a.jpg", b"")})
    assert empty.status_code == 400
    truncated = await client.post("/detect", files={"image": ("a.jpg", dev_photo("schp_demo.jpg")[:5000])})
    assert truncated.status_code == 400
    missing = await client.post("/detect")
    assert missing.status_code == 422 and missing.json()["error"] == "validation_error"


async def test_tiny_and_grayscale_images_are_answered(client: httpx.AsyncClient) -> None:
    tiny = await client.post("/detect", files={"image": ("t.jpg", _jpeg(np.zeros((8, 8, 3), np.uint8)))})
    assert tiny.status_code == 200
    gray = Image.fromarray(np.full((120, 90), 128, np.uint8), mode="L")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    response = await client.post("/detect", files={"image": ("g.png", buffer.getvalue())})
    assert response.status_code == 200


def _encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


async def test_odd_images_are_answered_cleanly(client: httpx.AsyncClient) -> None:
    odd = {
        "blank.png": _encoded(Image.new("RGB", (640, 480), "white"), "PNG"),
        "strip.png": _encoded(Image.new("RGB", (4000, 12), (120, 30, 30)), "PNG"),
        "tall-strip.png": _encoded(Image.new("RGB", (9, 3000), (30, 30, 120)), "PNG"),
        "cmyk.jpg": _encoded(Image.new("CMYK", (300, 400), (10, 200, 30, 0)), "JPEG"),
        "alpha.png": _encoded(Image.new("RGBA", (300, 400), (0, 0, 0, 0)), "PNG"),
        "one-pixel.png": _encoded(Image.new("L", (1, 1), 0), "PNG"),
    }
    for name, data in odd.items():
        response = await client.post("/detect", files={"image": (name, data)})
        assert response.status_code == 200, (name, response.text)
        body = response.json()
        assert body["persons"] == [], name
        assert [r["region"] for r in body["regions"]] == ["product"], name


async def test_exif_rotated_photo_gives_boxes_of_the_upright_image(client: httpx.AsyncClient) -> None:
    upright = Image.open(io.BytesIO(dev_photo("ootd_model_model_8.png"))).convert("RGB")
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # as a camera stores a portrait shot
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    rotated = await client.post("/detect", files={"image": ("r.jpg", _encoded(stored, "JPEG", exif=exif))})
    plain = await client.post("/detect", files={"image": ("p.jpg", _encoded(upright, "JPEG"))})
    got, expected = rotated.json(), plain.json()
    assert (got["width"], got["height"]) == (expected["width"], expected["height"])
    assert len(got["persons"]) == 1
    assert box_iou(got["persons"][0]["box"], expected["persons"][0]["box"]) > 0.9


async def test_several_people_each_get_their_own_regions(client: httpx.AsyncClient) -> None:
    body = (
        await client.post("/detect", files={"image": ("z.jpg", dev_photo("ultralytics_assets_zidane.jpg"))})
    ).json()
    assert len(body["persons"]) == 2
    owners = {r["person"] for r in body["regions"]}
    assert owners == {0, 1}
    left, right = sorted(body["persons"], key=lambda p: p["box"][0])
    assert left["box"][2] < right["box"][2] and left["box"][0] < 0.3 < right["box"][0]


async def test_garment_colours_come_from_the_garment_pixels(client: httpx.AsyncClient) -> None:
    body = (
        await client.post("/detect", files={"image": ("p.png", dev_photo("ootd_model_model_8.png"))})
    ).json()
    colours = {r["region"]: r["colour"] for r in body["regions"]}
    assert colour_family(colours["upper"]) == "white"  # a white top
    assert colour_family(colours["lower"]) == "blue"  # blue jeans


async def test_colours_false_gives_the_same_regions_without_colours(client: httpx.AsyncClient) -> None:
    photo = {"image": ("p.png", dev_photo("ootd_model_model_8.png"))}
    named = (await client.post("/detect", files=photo)).json()
    plain = (await client.post("/detect", params={"colours": "false"}, files=photo)).json()
    assert [r["box"] for r in plain["regions"]] == [r["box"] for r in named["regions"]]
    assert all(r["colour"] is None for r in plain["regions"])
    assert all(r["colour"] is not None for r in named["regions"])


async def test_batch_answers_each_photo_as_detect_does(client: httpx.AsyncClient) -> None:
    photos = [dev_photo("ootd_model_model_8.png"), _jpeg(np.full((300, 200, 3), 240, np.uint8))]
    singles = [(await client.post("/detect", files={"image": ("p", photo)})).json() for photo in photos]
    files = [("images", (f"p{i}", photo)) for i, photo in enumerate(photos)]
    batch = await client.post("/detect/batch", files=files)
    assert batch.status_code == 200, batch.text
    assert batch.json()["items"] == singles
    assert len(singles[0]["persons"]) == 1 and singles[1]["persons"] == []


async def test_batch_names_the_photo_it_cannot_read_and_caps_its_size(client: httpx.AsyncClient) -> None:
    good = _jpeg(np.zeros((64, 64, 3), np.uint8))
    broken = await client.post("/detect/batch", files=[("images", ("a", good)), ("images", ("b", b"nope"))])
    assert broken.status_code == 400 and "image 1" in broken.json()["detail"]
    too_many = await client.post("/detect/batch", files=[("images", (f"{i}", good)) for i in range(33)])
    assert too_many.status_code == 413


async def test_the_shirt_under_an_open_suit_jacket_is_a_region_of_its_own(client: httpx.AsyncClient) -> None:
    response = await client.post("/detect", files={"image": ("p.jpg", dev_photo("idm_human_will1_1.jpg"))})
    regions = {r["region"]: r["box"] for r in response.json()["regions"]}
    assert "inner" in regions
    # labelled in dev labels.json: the shirt and tie between the lapels
    assert box_iou(regions["inner"], [0.42, 0.235, 0.595, 0.385]) > 0.5


async def test_a_print_on_a_t_shirt_is_no_inner_layer(client: httpx.AsyncClient) -> None:
    response = await client.post("/detect", files={"image": ("p.jpg", dev_photo("idm_human_00035_00.jpg"))})
    assert "inner" not in {r["region"] for r in response.json()["regions"]}
