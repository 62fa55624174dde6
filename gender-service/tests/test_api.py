from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import numpy as np
import pytest
import pytest_asyncio
from PIL import Image

from gender_service.config import Settings
from gender_service.main import build_app
from shared.testing import running_app
from tests.conftest import DEV, dev_photo

# One loaded service for the whole module: loading both graphs takes seconds.
pytestmark = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(loop_scope="module", scope="module")
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running_app(build_app(settings)) as c:
        yield c


def _jpeg(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def _photo_array(name: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(dev_photo(name))).convert("RGB"))


def _labelled_persons(name: str) -> list[dict[str, object]]:
    labels = json.loads((DEV / "labels.json").read_text())
    return next(entry["persons"] for entry in labels if entry["path"] == name)


def _centre_inside(box: list[float], outer: list[float]) -> bool:
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return outer[0] <= cx <= outer[2] and outer[1] <= cy <= outer[3]


async def _faces(client: httpx.AsyncClient, data: bytes, name: str = "photo.jpg") -> dict[str, object]:
    response = await client.post("/faces", files={"image": (name, data, "image/jpeg")})
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_health_ready_and_metrics(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "alive"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert re.fullmatch("[0-9a-f]{12}", ready.json()["model_version"]), "what the gateway keys answers by"
    await _faces(client, _jpeg(np.zeros((64, 64, 3), np.uint8)))
    metrics = (await client.get("/metrics")).text
    assert "gender_request_duration_seconds" in metrics
    assert 'gender_inference_duration_seconds_count{operation="faces"}' in metrics


@pytest.mark.parametrize(
    ("name", "gender"),
    [
        ("idm_human_00035_00.jpg", "Women"),
        ("ootd_model_model_1.png", "Women"),
        ("idm_human_will1_1.jpg", "Men"),
    ],
)
async def test_one_visible_face_has_the_right_gender(
    client: httpx.AsyncClient, name: str, gender: str
) -> None:
    body = await _faces(client, dev_photo(name), name)
    person = _labelled_persons(name)[0]
    assert person["gender"] == gender
    faces = body["faces"]
    assert isinstance(faces, list) and len(faces) == 1
    face = faces[0]
    assert face["label"] == gender and face["score"] >= 0.6
    assert face["detection_score"] >= 0.75
    box = face["box"]
    assert _centre_inside(box, person["person_box"])  # type: ignore[arg-type]
    assert (box[1] + box[3]) / 2 < 0.4  # a head, near the top of these portraits
    assert 0.05 < box[2] - box[0] < 0.4


async def test_two_men_are_both_found(client: httpx.AsyncClient) -> None:
    name = "ultralytics_assets_zidane.jpg"
    body = await _faces(client, dev_photo(name), name)
    assert (body["width"], body["height"]) == (1280, 720)
    faces = body["faces"]
    assert isinstance(faces, list) and len(faces) == 2
    assert [f["label"] for f in faces] == ["Men", "Men"]
    left, right = sorted(faces, key=lambda f: f["box"][0])
    assert left["box"][2] < right["box"][0]  # two different heads
    assert 0.3 < (left["box"][0] + left["box"][2]) / 2 < 0.6
    assert 0.65 < (right["box"][0] + right["box"][2]) / 2 < 0.9


async def test_blank_and_tiny_images_have_no_faces(client: httpx.AsyncClient) -> None:
    blank = await _faces(client, _jpeg(np.full((480, 640, 3), 200, np.uint8)))
    assert blank == {"width": 640, "height": 480, "faces": []}
    tiny = await _faces(client, _jpeg(np.zeros((4, 4, 3), np.uint8)))
    assert tiny["faces"] == []
    sliver = await _faces(client, _jpeg(np.zeros((2, 900, 3), np.uint8)))
    assert sliver["faces"] == [] and sliver["width"] == 900


async def test_grayscale_photo_is_answered(client: httpx.AsyncClient) -> None:
    gray = Image.fromarray(_photo_array("idm_human_will1_1.jpg")).convert("L")
    buffer = io.BytesIO()
    gray.save(buffer, format="PNG")
    body = await _faces(client, buffer.getvalue(), "gray.png")
    faces = body["faces"]
    assert isinstance(faces, list) and len(faces) == 1
    assert faces[0]["label"] == "Men"


async def test_small_face_is_found_but_unknown(client: httpx.AsyncClient) -> None:
    photo = Image.fromarray(_photo_array("idm_human_will1_1.jpg"))
    small = photo.resize((photo.width // 4, photo.height // 4))  # face about 27 px wide
    canvas = np.full((256, 256, 3), 255, np.uint8)
    canvas[: small.height, : small.width] = np.asarray(small)
    body = await _faces(client, _jpeg(canvas))
    faces = body["faces"]
    assert isinstance(faces, list) and len(faces) == 1
    assert faces[0]["label"] == "unknown" and faces[0]["score"] == 0.0


async def test_face_cut_by_the_frame_is_unknown(client: httpx.AsyncClient) -> None:
    photo = _photo_array("idm_human_will1_1.jpg")
    cut = photo[int(0.16 * photo.shape[0]) :]  # the top of the head is outside the frame
    body = await _faces(client, _jpeg(cut))
    faces = body["faces"]
    assert isinstance(faces, list)
    assert all(f["label"] == "unknown" for f in faces)


async def test_bad_inputs_are_4xx_with_json(client: httpx.AsyncClient) -> None:
    text = await client.post("/faces", files={"image": ("a.txt", b"hello, not an image", "text/plain")})
    assert text.status_code == 400
    assert text.json()["error"] == "invalid_image" and text.json()["detail"]
    empty = await client.post("/faces", files={"image": ("a.jpg", b"")})
    assert empty.status_code == 400 and empty.json()["error"] == "invalid_image"
    truncated = await client.post("/faces", files={"image": ("a.jpg", dev_photo("schp_demo.jpg")[:5000])})
    assert truncated.status_code == 400
    missing = await client.post("/faces")
    assert missing.status_code == 422 and missing.json()["error"] == "validation_error"


def _head_crop(photo: np.ndarray, face_box: list[float], factor: float = 2.5) -> np.ndarray:
    """A square around a face, ``factor`` times its size, kept inside the photo (as the gateway cuts)."""
    height, width = photo.shape[:2]
    x1, y1, x2, y2 = face_box[0] * width, face_box[1] * height, face_box[2] * width, face_box[3] * height
    side = max(x2 - x1, y2 - y1) * factor
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    left, top = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
    return photo[top : int(min(height, cy + side / 2)), left : int(min(width, cx + side / 2))]


async def _heads(client: httpx.AsyncClient, crops: list[bytes]) -> list[dict[str, object] | None]:
    files = [("images", (f"head{i}.jpg", crop, "image/jpeg")) for i, crop in enumerate(crops)]
    response = await client.post("/heads", files=files)
    assert response.status_code == 200, response.text
    faces: list[dict[str, object] | None] = response.json()["faces"]
    return faces


async def _two_men(client: httpx.AsyncClient) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """The two-men photo and its two faces as /faces reads them, to cut head crops around."""
    name = "ultralytics_assets_zidane.jpg"
    whole = await _faces(client, dev_photo(name), name)
    faces = whole["faces"]
    assert isinstance(faces, list) and len(faces) == 2
    return _photo_array(name), faces


async def test_heads_read_each_crop_in_order(client: httpx.AsyncClient) -> None:
    photo, faces = await _two_men(client)
    crops = [_jpeg(_head_crop(photo, face["box"])) for face in faces]
    blank = _jpeg(np.full((120, 120, 3), 90, np.uint8))
    answers = await _heads(client, [crops[0], blank, crops[1]])
    assert answers[1] is None  # no face in the plain crop
    for answer, face in zip((answers[0], answers[2]), faces, strict=True):
        assert answer is not None and answer["label"] == face["label"] == "Men"
        assert abs(float(answer["p_men"]) - float(face["p_men"])) < 0.2  # type: ignore[arg-type]
        assert _centre_inside(answer["box"], [0.2, 0.2, 0.8, 0.8])  # type: ignore[arg-type]
    metrics = (await client.get("/metrics")).text
    assert 'gender_inference_duration_seconds_count{operation="heads"}' in metrics


async def test_heads_too_small_or_holding_two_faces_get_a_clean_answer(client: httpx.AsyncClient) -> None:
    photo, faces = await _two_men(client)
    right = max(faces, key=lambda f: f["box"][0])
    # a crop holding both men's faces, the right-hand one nearer its centre
    both = photo[: int(0.6 * photo.shape[0]), int(0.3 * photo.shape[1]) :]
    tiny = _jpeg(np.full((1, 1, 3), 120, np.uint8))
    small = Image.fromarray(_head_crop(photo, right["box"])).resize((24, 24))
    answers = await _heads(client, [_jpeg(both), tiny, _jpeg(np.asarray(small))])
    assert answers[0] is not None and answers[0]["label"] == "Men"
    box = answers[0]["box"]
    assert isinstance(box, list) and (box[0] + box[2]) / 2 > 0.5  # the face nearer the centre
    assert answers[1] is None
    assert answers[2] is None or answers[2]["label"] == "unknown"  # a face of a few pixels says nothing


async def test_heads_refuse_bad_batches_with_the_reason(client: httpx.AsyncClient) -> None:
    good = _jpeg(np.full((64, 64, 3), 90, np.uint8))
    broken = await client.post(
        "/heads", files=[("images", ("a.jpg", good)), ("images", ("b.jpg", b"not an image"))]
    )
    assert broken.status_code == 400 and "image 1" in broken.json()["detail"]
    too_many = await client.post("/heads", files=[("images", (f"{i}.jpg", good)) for i in range(33)])
    assert too_many.status_code == 413 and "limit is 32" in too_many.json()["detail"]
    none = await client.post("/heads")
    assert none.status_code == 422
