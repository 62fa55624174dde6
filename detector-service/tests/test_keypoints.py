"""A photo's keypoints: the same photo cropped, turned and compressed keeps them, another does not."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image

from detector_service.config import Settings
from detector_service.keypoints import KeypointFinder, Vocabulary
from shared.contracts import Keypoints
from shared.keypoints import inliers, unpack
from tests.conftest import dev_photo


def finder() -> KeypointFinder:
    found = KeypointFinder(Settings().vocabulary)
    found.load()
    return found


def shopper_copy(photo: Image.Image) -> Image.Image:
    """What a shopper's screenshot does: a crop, a small turn, darker, JPEG at quality 40."""
    width, height = photo.size
    cropped = photo.crop((width // 10, height // 12, width, height - height // 10))
    turned = cropped.rotate(6, resample=Image.Resampling.BICUBIC, expand=True, fillcolor=(255, 255, 255))
    darker = Image.fromarray((np.asarray(turned) * 0.75).astype(np.uint8))
    buffer = io.BytesIO()
    darker.save(buffer, format="JPEG", quality=40)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def test_the_same_photo_keeps_its_keypoints_and_another_photo_does_not() -> None:
    keypoints = finder()
    photo = Image.open(io.BytesIO(dev_photo("ootd_model_model_8.png"))).convert("RGB")
    other = Image.open(io.BytesIO(dev_photo("idm_human_00035_00.jpg"))).convert("RGB")
    original = unpack(keypoints.predict(np.asarray(photo)).data)
    copy = unpack(keypoints.predict(np.asarray(shopper_copy(photo))).data)
    elsewhere = unpack(keypoints.predict(np.asarray(other)).data)
    assert len(original) > 300
    assert inliers(copy, original) >= 40
    assert inliers(elsewhere, original) < 12


def test_words_are_the_vocabularys_and_a_blank_photo_has_none() -> None:
    keypoints = finder()
    blank = keypoints.predict(np.full((300, 200, 3), 240, np.uint8))
    assert blank.count == 0 and len(unpack(blank.data)) == 0
    vocabulary = Vocabulary(Settings().vocabulary)
    assert vocabulary.words == 32768 and vocabulary.name.startswith("orb500-32768w@")
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    words = unpack(keypoints.predict(noise).data)["word"]
    assert len(words) and int(words.max()) < vocabulary.words


async def test_keypoints_come_with_a_detection_when_asked_and_alone_in_batches(
    client: httpx.AsyncClient,
) -> None:
    photo = dev_photo("ootd_model_model_8.png")
    plain = (await client.post("/detect", files={"image": ("p.png", photo)})).json()
    assert plain["keypoints"] is None
    asked = (await client.post("/detect?keypoints=true", files={"image": ("p.png", photo)})).json()
    found = Keypoints.model_validate(asked["keypoints"])
    assert found.count > 300 and found.vocabulary.startswith("orb500-")
    assert asked["persons"] == plain["persons"]
    files = [("images", ("a.png", photo)), ("images", ("b.png", photo))]
    batch = (await client.post("/keypoints/batch", files=files)).json()["items"]
    assert [Keypoints.model_validate(k).data for k in batch] == [found.data, found.data]
    bad = await client.post("/keypoints/batch", files=[("images", ("x.jpg", b"not an image"))])
    assert bad.status_code == 400 and "image 0" in bad.text
