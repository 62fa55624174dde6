"""Model-free parts: anchors, box decoding, weighted NMS, letterboxing, crops, labels, weights."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from gender_service.blazeface import (
    FULL_RANGE,
    SHORT_RANGE,
    Face,
    anchor_centres,
    decode,
    letterbox,
    weighted_nms,
)
from gender_service.model import face_crop, face_square, fraction_outside, gender_label, normalised_box
from gender_service.tfjs import decode_weight


def _face(box: tuple[float, float, float, float], score: float = 0.9) -> Face:
    return Face(box=box, score=score, keypoints=np.zeros((6, 2)))


def test_full_range_anchors_cover_the_grid_in_output_order() -> None:
    anchors = anchor_centres(FULL_RANGE)
    assert anchors.shape == (2304, 2)  # 48×48 cells of 4 pixels, one anchor each
    assert anchors[0].tolist() == [2.0, 2.0]
    assert anchors[1].tolist() == [6.0, 2.0]  # row-major: x moves first
    assert anchors[48].tolist() == [2.0, 6.0]
    assert anchors[2303].tolist() == [190.0, 190.0]


def test_short_range_anchors_cover_both_grids_in_output_order() -> None:
    anchors = anchor_centres(SHORT_RANGE)
    assert anchors.shape == (896, 2)
    assert anchors[0].tolist() == anchors[1].tolist() == [4.0, 4.0]  # 16×16 grid, 2 per cell
    assert anchors[2].tolist() == [12.0, 4.0]
    assert anchors[511].tolist() == [124.0, 124.0]
    assert anchors[512].tolist() == [8.0, 8.0]  # 8×8 grid, 6 per cell
    assert anchors[895].tolist() == [120.0, 120.0]


def test_decode_centres_boxes_and_keypoints_on_the_anchor() -> None:
    anchors = np.array([[100.0, 50.0]], np.float32)
    regressors = np.zeros((1, 16), np.float32)
    regressors[0, :4] = [4.0, -2.0, 40.0, 20.0]
    regressors[0, 4:6] = [-10.0, -5.0]  # first keypoint
    scores, boxes, keypoints = decode(np.array([0.0], np.float32), regressors, anchors)
    assert scores[0] == pytest.approx(0.5)
    assert boxes[0].tolist() == pytest.approx([84.0, 38.0, 124.0, 58.0])
    assert keypoints[0, 0].tolist() == pytest.approx([90.0, 45.0])
    assert keypoints[0, 1].tolist() == pytest.approx([100.0, 50.0])


def test_decode_survives_extreme_logits() -> None:
    with np.errstate(all="raise"):
        scores, _, _ = decode(np.array([-1e6, 1e6], np.float32), np.zeros((2, 16)), np.zeros((2, 2)))
    assert scores.tolist() == pytest.approx([0.0, 1.0])


def test_weighted_nms_merges_overlaps_and_keeps_separate_faces() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float64)
    scores = np.array([0.6, 0.9, 0.8])
    keypoints = np.zeros((3, 6, 2))
    merged = weighted_nms(scores, boxes, keypoints)
    assert [score for score, _, _ in merged] == [0.9, 0.8]
    first_box = merged[0][1]
    assert first_box[0] == pytest.approx((0 * 0.6 + 1 * 0.9) / 1.5)  # score-weighted mean
    assert merged[1][1].tolist() == [50, 50, 60, 60]


def test_weighted_nms_of_nothing_is_nothing() -> None:
    assert weighted_nms(np.zeros(0), np.zeros((0, 4)), np.zeros((0, 6, 2))) == []


def test_letterbox_keeps_the_shape_and_pads_black() -> None:
    boxed = letterbox(Image.new("RGB", (100, 200), (255, 255, 255)), 192)
    assert boxed.pixels.shape == (192, 192, 3)
    assert boxed.scale == pytest.approx(192 / 200)
    assert boxed.pixels[:, :96].min() == 255  # the image: 96×192 at the top left
    assert boxed.pixels[:, 97:].max() == 0


def test_letterbox_of_a_sliver_is_at_least_one_pixel() -> None:
    boxed = letterbox(Image.new("RGB", (3000, 1)), 192)
    assert boxed.pixels.shape == (192, 192, 3)


def test_face_square_adds_the_margin_around_the_centre() -> None:
    assert face_square(_face((100, 100, 200, 180)), margin=0.2) == (80, 70, 220, 210)


def test_face_crop_pads_outside_the_image_with_black() -> None:
    crop = face_crop(Image.new("RGB", (100, 100), (200, 200, 200)), _face((-50, -50, 50, 50)), margin=0.0)
    assert crop.shape == (224, 224, 3) and crop.dtype == np.float32
    assert crop[:100, :100].max() == 0  # outside the image
    assert crop[130:, 130:].min() == 200  # inside


def test_fraction_outside_the_frame() -> None:
    assert fraction_outside(_face((10, 10, 50, 50)), 100, 100) == 0.0
    assert fraction_outside(_face((10, -10, 50, 30)), 100, 100) == pytest.approx(0.25)
    assert fraction_outside(_face((200, 200, 250, 250)), 100, 100) == 1.0


def test_normalised_box_is_clipped_to_the_image() -> None:
    assert normalised_box(_face((-10, 20, 60, 120)), 100, 100) == [0.0, 0.2, 0.6, 1.0]


@pytest.mark.parametrize(
    ("probability", "expected"),
    [(0.95, ("Men", 0.95)), (0.1, ("Women", 0.9)), (0.55, ("unknown", 0.0)), (0.42, ("unknown", 0.0))],
)
def test_gender_label(probability: float, expected: tuple[str, float]) -> None:
    assert gender_label(probability, min_confidence=0.6) == expected


def test_decode_weight_widens_float16_and_dequantises_uint8() -> None:
    half = np.array([1.5, -2.0], np.float16).tobytes()
    entry = {"name": "w", "shape": [2], "dtype": "float32", "quantization": {"dtype": "float16"}}
    values, used = decode_weight(half, 0, entry)
    assert values.dtype == np.float32 and values.tolist() == [1.5, -2.0] and used == 4
    quantised = bytes([0, 10, 255])
    entry = {
        "name": "q",
        "shape": [3],
        "dtype": "float32",
        "quantization": {"dtype": "uint8", "scale": 0.5, "min": -1.0},
    }
    values, used = decode_weight(quantised, 0, entry)
    assert values.tolist() == pytest.approx([-1.0, 4.0, 126.5]) and used == 3
