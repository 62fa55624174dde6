"""The top under an open jacket: pure geometry on drawn people, no model."""

from __future__ import annotations

import numpy as np

from detector_service.localise import (
    LEFT_HIP,
    LEFT_SHOULDER,
    RIGHT_HIP,
    RIGHT_SHOULDER,
    Landmarks,
    Localiser,
    _first_run,
)
from shared.contracts import Region

JACKET = (40, 40, 45)
SHIRT = (235, 235, 230)
SIZE = 400


def _landmarks(facing_camera: bool = True) -> Landmarks:
    """Shoulders at y 0.3, hips at y 0.7, the chest's centre line at x 0.5; the person's left
    shoulder on the image's right when they face the camera."""
    xy = np.full((33, 2), -1.0)
    visibility = np.zeros(33)
    left, right = (0.65, 0.35) if facing_camera else (0.35, 0.65)
    for index, point in (
        (LEFT_SHOULDER, (left, 0.3)),
        (RIGHT_SHOULDER, (right, 0.3)),
        (LEFT_HIP, (left - 0.04, 0.7)),
        (RIGHT_HIP, (right + 0.04, 0.7)),
    ):
        xy[index] = point
        visibility[index] = 1.0
    return Landmarks(xy=xy, visibility=visibility)


def _torso(strip_from: float | None, strip_to: float = 0.7, width: float = 0.1) -> np.ndarray:
    """A dark jacket over the torso, with a light strip down its middle between the heights given."""
    image = np.full((SIZE, SIZE, 3), 200, np.uint8)
    image[int(0.25 * SIZE) : int(0.75 * SIZE), int(0.3 * SIZE) : int(0.7 * SIZE)] = JACKET
    if strip_from is not None:
        rows = slice(int(strip_from * SIZE), int(strip_to * SIZE))
        image[rows, int((0.5 - width / 2) * SIZE) : int((0.5 + width / 2) * SIZE)] = SHIRT
    return image


def _inner(image: np.ndarray, landmarks: Landmarks) -> list[float] | None:
    localiser = Localiser(image, None)
    found = localiser._inner(landmarks, torso=0.4)
    if found is None:
        return None
    assert found.region == Region.inner
    return found.box


def test_an_open_jacket_shows_the_top_under_it_from_the_collar_down() -> None:
    box = _inner(_torso(strip_from=0.27), _landmarks())
    assert box is not None
    x1, y1, x2, y2 = box
    assert 0.42 <= x1 <= 0.46 and 0.54 <= x2 <= 0.58, "as wide as the light strip"
    assert y1 <= 0.27 and 0.6 <= y2 <= 0.75, "from the collar to where the strip ends"


def test_one_colour_over_the_chest_has_no_inner_layer() -> None:
    assert _inner(_torso(strip_from=None), _landmarks()) is None


def test_a_print_in_the_middle_of_the_chest_is_not_a_layer() -> None:
    # it starts well below the neck opening
    assert _inner(_torso(strip_from=0.42, strip_to=0.6, width=0.16), _landmarks()) is None


def test_a_thin_stripe_at_the_collar_is_not_a_layer() -> None:
    assert _inner(_torso(strip_from=0.27, strip_to=0.3), _landmarks()) is None


def test_a_zip_down_a_closed_jacket_is_not_a_layer() -> None:
    assert _inner(_torso(strip_from=0.27, width=0.02), _landmarks()) is None


def test_a_back_view_has_no_inner_layer() -> None:
    assert _inner(_torso(strip_from=0.27), _landmarks(facing_camera=False)) is None


def test_runs_bridge_short_gaps_only() -> None:
    flags = [False, True, True, False, False, True, True, False, False, False, False, True]
    assert _first_run(flags, before=3, gap=3) == (1, 7)
    assert _first_run(flags, before=3, gap=1) == (1, 3)
    assert _first_run([False, False, True], before=2) is None
