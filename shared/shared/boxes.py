"""Box arithmetic on ``[x1, y1, x2, y2]`` lists (normalised or pixels alike)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def clip_box(box: Sequence[float] | np.ndarray) -> list[float]:
    """Clamp a normalised box to 0..1, with ordered corners, rounded to 4 decimals."""
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((min(max(x1, 0.0), 1.0), min(max(x2, 0.0), 1.0)))
    y1, y2 = sorted((min(max(y1, 0.0), 1.0), min(max(y2, 0.0), 1.0)))
    return [round(x1, 4), round(y1, 4), round(x2, 4), round(y2, 4)]


def box_area(box: Sequence[float]) -> float:
    return max(0.0, box[2] - box[0]) * max(0.0, box[3] - box[1])


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    inter = box_area([max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])])
    union = box_area(a) + box_area(b) - inter
    return inter / union if union > 0 else 0.0


def box_centre(box: Sequence[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def contains(box: Sequence[float], point: Sequence[float]) -> bool:
    return bool(box[0] <= point[0] <= box[2] and box[1] <= point[1] <= box[3])


def foreground_box(image: np.ndarray, threshold: float = 30.0) -> list[float]:
    """Box of what differs from the border colour: the product on a plain or flat-lay background.

    Falls back to the whole image when the background is not uniform enough to tell.
    """
    height, width = image.shape[:2]
    border = max(1, min(height, width) // 50)
    edges = np.concatenate(
        [
            image[:border].reshape(-1, 3),
            image[-border:].reshape(-1, 3),
            image[:, :border].reshape(-1, 3),
            image[:, -border:].reshape(-1, 3),
        ]
    ).astype(np.float64)
    background = np.median(edges, axis=0)
    if np.median(np.linalg.norm(edges - background, axis=1)) > threshold:
        return [0.0, 0.0, 1.0, 1.0]
    distance = np.linalg.norm(image.astype(np.float64) - background, axis=2)
    foreground = distance > threshold
    if foreground.mean() < 0.01:
        return [0.0, 0.0, 1.0, 1.0]
    rows = np.flatnonzero(foreground.mean(axis=1) > 0.01)
    cols = np.flatnonzero(foreground.mean(axis=0) > 0.01)
    if rows.size == 0 or cols.size == 0:
        return [0.0, 0.0, 1.0, 1.0]
    pad_x, pad_y = 0.02 * width, 0.02 * height
    return clip_box(
        [
            (cols[0] - pad_x) / width,
            (rows[0] - pad_y) / height,
            (cols[-1] + 1 + pad_x) / width,
            (rows[-1] + 1 + pad_y) / height,
        ]
    )
