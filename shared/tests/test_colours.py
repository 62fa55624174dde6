from __future__ import annotations

import numpy as np

from shared.colours import NEIGHBOURS_ASSET, ColourNeighbours, crop_colour, srgb_to_lab


def test_neighbours_vote_by_family_then_name() -> None:
    labs = srgb_to_lab(np.array([[30, 40, 75]] * 9 + [[50, 100, 185]] * 4 + [[25, 25, 28]] * 2))
    vocabulary = ("Black", "Blue", "Navy Blue")
    names = np.array([2] * 9 + [1] * 4 + [0] * 2)
    neighbours = ColourNeighbours(labs, names, vocabulary)
    assert neighbours.name(srgb_to_lab(np.array([[35, 45, 80]]))[0]) == "Navy Blue"


def test_packaged_neighbours_name_plain_garments() -> None:
    assert NEIGHBOURS_ASSET.exists(), "run make train-colours"
    red = np.zeros((64, 48, 3), np.uint8)
    red[:] = (190, 25, 35)
    white_background = np.full((96, 96, 3), 255, np.uint8)
    white_background[16:80, 24:72] = (35, 70, 150)
    assert crop_colour(red)[0] in ("Red", "Maroon")
    assert crop_colour(white_background)[0] in ("Blue", "Navy Blue")
