"""A person shows skin at the face or hands; a garment posed as one (a hoodie on a ghost mannequin,
a shoe) shows fabric there and is answered as a product."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detector_service.config import Settings
from detector_service.localise import LEFT_WRIST, NOSE, Landmarks, Localiser, skin_rule
from detector_service.main import build_app
from shared.testing import running_app

CATALOG = Path(__file__).resolve().parents[2].parent / "shared" / "catalog" / "myntra" / "images"
FABRIC = (40, 70, 150)
SKIN_TONES = ((224, 172, 140), (141, 85, 36), (255, 219, 172))  # light, dark, pale
SIZE = 200


def _pose(points: dict[int, tuple[float, float, float]]) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints and visibilities of a pose with only ``points`` (index: x, y, visibility)."""
    xy, visibility = np.full((33, 2), -1.0), np.zeros(33)
    for index, (x, y, seen) in points.items():
        xy[index], visibility[index] = (x, y), seen
    return xy, visibility


def _bare_skin(image: np.ndarray, points: dict[int, tuple[float, float, float]]) -> float:
    skin = skin_rule(cv2.cvtColor(image, cv2.COLOR_RGB2YCrCb))
    return Localiser(image, None).bare_skin(Landmarks(*_pose(points)), skin)


def _fabric_with_patch(at: tuple[float, float], colour: tuple[int, int, int]) -> np.ndarray:
    image = np.full((SIZE, SIZE, 3), FABRIC, np.uint8)
    cx, cy = int(at[0] * SIZE), int(at[1] * SIZE)
    image[cy - 6 : cy + 7, cx - 6 : cx + 7] = colour
    return image


@pytest.mark.parametrize("tone", SKIN_TONES)
def test_skin_at_the_face_or_a_seen_hand_is_bare_skin(tone: tuple[int, int, int]) -> None:
    assert _bare_skin(_fabric_with_patch((0.5, 0.2), tone), {NOSE: (0.5, 0.2, 0.1)}) == 1.0
    assert _bare_skin(_fabric_with_patch((0.3, 0.6), tone), {LEFT_WRIST: (0.3, 0.6, 0.9)}) == 1.0


def test_fabric_at_the_face_and_hands_or_skin_at_an_unseen_hand_is_not() -> None:
    fabric = np.full((SIZE, SIZE, 3), FABRIC, np.uint8)
    assert _bare_skin(fabric, {NOSE: (0.5, 0.2, 1.0), LEFT_WRIST: (0.3, 0.6, 1.0)}) == 0.0
    # a hand the pose model barely sees is a guess: skin under it says nothing
    hidden_hand = _fabric_with_patch((0.3, 0.6), SKIN_TONES[0])
    assert _bare_skin(hidden_hand, {LEFT_WRIST: (0.3, 0.6, 0.1)}) == 0.0
    # nor does a face point off the frame
    assert _bare_skin(fabric, {NOSE: (0.5, -0.2, 1.0)}) == 0.0


def test_a_face_under_a_colour_cast_is_still_bare_skin() -> None:
    image = np.full((SIZE, SIZE, 3), 200, np.uint8)  # a grey wall, a blue top, a face
    image[int(0.3 * SIZE) : int(0.8 * SIZE), int(0.3 * SIZE) : int(0.7 * SIZE)] = FABRIC
    image[int(0.2 * SIZE) - 6 : int(0.2 * SIZE) + 7, SIZE // 2 - 6 : SIZE // 2 + 7] = SKIN_TONES[0]
    cyan_light = np.clip(image * np.array([0.65, 1.0, 1.1]), 0, 255).astype(np.uint8)
    nose = {NOSE: (0.5, 0.2, 1.0)}
    as_taken = skin_rule(cv2.cvtColor(cyan_light, cv2.COLOR_RGB2YCrCb))
    assert (
        Localiser(cyan_light, None)._skin_at(Landmarks(*_pose(nose)), as_taken) == 0.0
    )  # the rule alone misses it
    assert _bare_skin(cyan_light, nose) == 1.0


def _catalog_photo(name: str) -> bytes:
    path = CATALOG / name
    if not path.exists():
        pytest.skip(f"catalog photo {path} is not available")
    return path.read_bytes()


@pytest.mark.parametrize("photo", ["15600.jpg", "17838.jpg"])  # a hoodie on a ghost mannequin, a shoe
async def test_a_garment_the_pose_model_takes_for_a_person_is_one_product(photo: str) -> None:
    data = _catalog_photo(photo)
    async with running_app(build_app(Settings(inference_threads=1, min_bare_skin=0.0))) as every_pose:
        taken_for_a_person = (await every_pose.post("/detect", files={"image": (photo, data)})).json()
    assert len(taken_for_a_person["persons"]) == 1  # what the check is for
    async with running_app(build_app(Settings(inference_threads=1))) as client:
        body = (await client.post("/detect", files={"image": (photo, data)})).json()
    assert body["persons"] == []
    assert [r["region"] for r in body["regions"]] == ["product"]
