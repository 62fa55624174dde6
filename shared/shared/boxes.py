"""Box arithmetic on ``[x1, y1, x2, y2]`` lists (normalised or pixels alike)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
from PIL import Image


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


WHOLE_IMAGE = (0.0, 0.0, 1.0, 1.0)


def foreground_box(image: np.ndarray, threshold: float = 30.0) -> list[float]:
    """Box of what differs from the border colour: the product on a plain background, or, when
    that finds nothing smaller than the photo, laid on a floor, a bed or a table
    (``textured_foreground_box``); the whole image when nothing stands out."""
    box = _plain_foreground_box(image, threshold)
    return textured_foreground_box(image, threshold) if tuple(box) == WHOLE_IMAGE else box


def border_pixels(image: np.ndarray, width: int) -> np.ndarray:
    """(N, 3) pixels of the strips ``width`` pixels wide along the image's four edges."""
    return np.concatenate(
        [
            image[:width].reshape(-1, 3),
            image[-width:].reshape(-1, 3),
            image[:, :width].reshape(-1, 3),
            image[:, -width:].reshape(-1, 3),
        ]
    )


def _plain_foreground_box(image: np.ndarray, threshold: float) -> list[float]:
    """Box of what differs from the border's median colour; the whole image when the border is not
    uniform or nothing differs."""
    height, width = image.shape[:2]
    edges = border_pixels(image, max(1, min(height, width) // 50)).astype(np.float64)
    background = np.median(edges, axis=0)
    if np.median(np.linalg.norm(edges - background, axis=1)) > threshold:
        return list(WHOLE_IMAGE)
    distance = np.linalg.norm(image.astype(np.float64) - background, axis=2)
    foreground = distance > threshold
    if foreground.mean() < 0.01:
        return list(WHOLE_IMAGE)
    rows = np.flatnonzero(foreground.mean(axis=1) > 0.01)
    cols = np.flatnonzero(foreground.mean(axis=0) > 0.01)
    if rows.size == 0 or cols.size == 0:
        return list(WHOLE_IMAGE)
    pad_x, pad_y = 0.02 * width, 0.02 * height
    return clip_box(
        [
            (cols[0] - pad_x) / width,
            (rows[0] - pad_y) / height,
            (cols[-1] + 1 + pad_x) / width,
            (rows[-1] + 1 + pad_y) / height,
        ]
    )


TEXTURE_SIDE = 128  # pixels enough to box a garment on a textured background
BACKGROUND_COLOURS = 4  # tiles and grout, wood grain, a patterned sheet


def textured_foreground_box(image: np.ndarray, threshold: float = 30.0) -> list[float]:
    """Box of what differs from every colour of the border: a garment photographed on tiles, wood
    or a sheet. The border's colours are its k-means centres; the box spans the longest runs of rows
    and of columns holding foreground (gaps of up to a tenth closed: a stripe may match the floor).
    The whole image when too little stands out or the runs are slivers."""
    height, width = image.shape[:2]
    scale = min(1.0, TEXTURE_SIDE / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    small = np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BOX), dtype=np.float64)
    rows, cols = small.shape[:2]
    edges = border_pixels(small, max(1, min(rows, cols) // 25))
    centres = _kmeans_centres(edges, BACKGROUND_COLOURS)
    distance = np.sqrt(((small[:, :, None, :] - centres[None, None]) ** 2).sum(axis=-1)).min(axis=-1)
    foreground = distance > threshold
    if foreground.mean() < 0.02:
        return list(WHOLE_IMAGE)
    top, bottom = _longest_run(foreground.mean(axis=1) > 0.05)
    left, right = _longest_run(foreground.mean(axis=0) > 0.05)
    if bottom - top < 0.1 * rows or right - left < 0.1 * cols:
        return list(WHOLE_IMAGE)
    return clip_box([left / cols - 0.02, top / rows - 0.02, right / cols + 0.02, bottom / rows + 0.02])


def _kmeans_centres(pixels: np.ndarray, clusters: int, iterations: int = 10) -> np.ndarray:
    """k-means centres of (N, 3) colours, started from pixels at evenly spaced ranks of brightness."""
    ranks = np.linspace(0, len(pixels) - 1, clusters).astype(int)
    centres = pixels[np.argsort(pixels.sum(axis=1))[ranks]].copy()
    for _ in range(iterations):
        nearest = ((pixels[:, None, :] - centres[None]) ** 2).sum(axis=-1).argmin(axis=1)
        for cluster in range(clusters):
            members = pixels[nearest == cluster]
            if len(members):
                centres[cluster] = members.mean(axis=0)
    return centres


def _longest_run(on: np.ndarray, gap: float = 0.1) -> tuple[int, int]:
    """(start, end) of the longest run of True, once gaps of up to ``gap`` of the length are closed."""
    on = on.copy()
    indices = np.flatnonzero(on)
    for start, end in itertools.pairwise(indices):
        if 1 < end - start <= gap * len(on):
            on[start:end] = True
    best, start_at = (0, 0), None
    for index, value in enumerate([*on.tolist(), False]):
        if value and start_at is None:
            start_at = index
        elif not value and start_at is not None:
            if index - start_at > best[1] - best[0]:
                best = (start_at, index)
            start_at = None
    return best
