"""Where the product is on a photo without a person: plain and textured backgrounds."""

from __future__ import annotations

import numpy as np

from shared.boxes import box_iou, foreground_box


def _tiles(height: int = 300, width: int = 400, tile: int = 60) -> np.ndarray:
    """Cream floor tiles with grey grout, and a little noise: a floor under a garment laid on it."""
    rng = np.random.default_rng(3)
    floor = np.full((height, width, 3), (228, 220, 205), np.float64)
    floor[::tile] = floor[1::tile] = (150, 150, 150)
    floor[:, ::tile] = floor[:, 1::tile] = (150, 150, 150)
    floor += rng.normal(0, 4, floor.shape)
    return np.clip(floor, 0, 255).astype(np.uint8)


def test_a_product_on_a_plain_background_is_boxed() -> None:
    canvas = np.full((300, 200, 3), 250, np.uint8)
    canvas[100:200, 50:150] = (30, 60, 160)
    assert box_iou(foreground_box(canvas), [0.25, 1 / 3, 0.75, 2 / 3]) > 0.8


def test_a_garment_laid_on_tiles_is_boxed() -> None:
    photo = _tiles()
    photo[60:260, 120:300] = (170, 40, 40)  # a red shirt
    photo[150:160, 120:300] = (20, 20, 60)  # with a navy stripe the size of the grout
    assert box_iou(foreground_box(photo), [0.3, 0.2, 0.75, 260 / 300]) > 0.8


def test_a_floor_alone_or_a_garment_filling_the_frame_is_the_whole_photo() -> None:
    assert foreground_box(_tiles()) == [0.0, 0.0, 1.0, 1.0]
    rng = np.random.default_rng(0)
    print_all_over = rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)
    assert foreground_box(print_all_over) == [0.0, 0.0, 1.0, 1.0]
