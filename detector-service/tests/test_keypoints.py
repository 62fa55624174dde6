"""A photo's keypoints: the same photo cropped, turned and compressed keeps them, another does not."""

from __future__ import annotations

import io

import httpx
import numpy as np
from PIL import Image, ImageFilter

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


def test_a_smaller_copy_is_found_by_the_catalog_photos_smaller_sizes() -> None:
    """A shopper's copy showing the product at half the store shot's size, on a busy ground: the
    catalog photo's keypoints at its smaller sizes agree with it where those of its own size alone
    barely do."""
    keypoints = finder()
    photo = Image.open(io.BytesIO(dev_photo("ootd_model_model_8.png"))).convert("RGB")
    photo.thumbnail((448, 448))
    ground = np.random.default_rng(1).integers(60, 200, (photo.height, photo.width, 3), dtype=np.uint8)
    canvas = Image.fromarray(ground).filter(ImageFilter.GaussianBlur(3))
    canvas.paste(photo.resize((photo.width // 2, photo.height // 2)), (photo.width // 4, photo.height // 3))
    copy = unpack(keypoints.predict(np.asarray(canvas)).data)
    posted_size = unpack(keypoints.predict(np.asarray(photo)).data)
    every_size = unpack(keypoints.predict(np.asarray(photo), catalog=True).data)
    assert inliers(copy, every_size) >= 60
    assert inliers(copy, every_size) >= 2 * inliers(copy, posted_size)


def test_words_are_the_vocabularys_and_a_blank_photo_has_none() -> None:
    keypoints = finder()
    blank = keypoints.predict(np.full((300, 200, 3), 240, np.uint8))
    assert blank.count == 0 and len(unpack(blank.data)) == 0
    vocabulary = Vocabulary(Settings().vocabulary)
    assert vocabulary.words == 32768 and vocabulary.name.startswith("orb500-32768w-448+320+224-p6@")
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
    batch = [
        Keypoints.model_validate(k)
        for k in (await client.post("/keypoints/batch", files=files)).json()["items"]
    ]
    # a catalog photo's: those at 448 px as a posted photo's, then those of its smaller sizes (a
    # posted photo's at a larger one)
    assert batch[0].data == batch[1].data and batch[0].vocabulary == found.vocabulary
    catalog, posted = unpack(batch[0].data), unpack(found.data)
    assert set(catalog["copy"]) == {0, 1, 2} and set(posted["copy"]) == {0, 1}
    assert catalog[catalog["copy"] == 0].tobytes() == posted[posted["copy"] == 0].tobytes()
    bad = await client.post("/keypoints/batch", files=[("images", ("x.jpg", b"not an image"))])
    assert bad.status_code == 400 and "image 0" in bad.text
