"""A photo's local features, and the geometric check that tells the very photo from a look-alike.

The detector service finds a photo's ORB keypoints and names each by its visual word (a packaged
vocabulary); the index service keeps every catalog photo's keypoints and finds the photos that
share the most words and phrases with a query (a sparse vector; a phrase is a pair of words of
neighbouring keypoints, far rarer by chance than a word, see terms), then checks each: the keypoints that share a
word and a close descriptor must also agree on one affine map from the query to the catalog photo.
A catalog photo that passes is the query's own photo, cropped, turned, tilted, lit or compressed
differently (a shopper's screenshot of a store's product, make eval's distorted products); a
photo of another product of the same kind shares words but not their places.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

# ``copy``: which size of the photo found the keypoint (0: the largest; a catalog photo's keypoints
# are found at several, a posted photo's at one); its position is in the largest's pixels all the same
KEYPOINT = np.dtype(
    [("x", "<f4"), ("y", "<f4"), ("word", "<u4"), ("copy", "u1"), ("descriptor", "u1", (32,))]
)
MAX_DISTANCE = 64  # of 256 descriptor bits: a keypoint's match must also look alike
PER_WORD = 4  # keypoints of one word taken from each photo: repeated texture adds nothing
HYPOTHESES = 256
MIN_SCALE = 0.2  # of an affine map's area ratio, as a side: a product photo is not shrunk further
TOLERANCE = 6.0  # pixels (points are in an image of at most 448 px a side)
# of the agreeing keypoints, the spread across their narrowest direction (px, as a standard deviation):
# printed words match printed words along their line (a T-shirt's slogan on a backpack's logo: with
# 920 photos of products the catalog lacks, posted keypoints at two sizes, 16 catalog photos agree
# on 22 to 26 keypoints, 13 of them spread under 10 px); a product's own photo agrees across its
# area (under 10 px for 2 of 272 distorted products' own photos found)
MIN_SPREAD = 10.0
# of the best catalog photo's agreeing keypoints, what another needs to count as the posted photo's
# too: the catalog shoots some products on one model in one pose (a jacket in two colours over the
# same jeans, jeans in two washes), and those photos agree with each other's copies on the face,
# the jeans and the outline (ORB sees no colour). make eval's 300 distorted products, scratch: other
# products' photos (not the very same image) passed with 65 of them, with 8 at 0.6 of the best;
# the own photo was found as often at any share up to 0.7
NEAR_BEST = 0.6
PHRASE_NEIGHBOURS = 6  # each keypoint's nearest ones (of the same copy) that it makes a phrase with
PHRASES_FROM = 1 << 31  # sparse indices from here on are phrases; below, words

_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def pack(
    points: np.ndarray, words: np.ndarray, descriptors: np.ndarray, copies: np.ndarray | None = None
) -> str:
    """Keypoints as one base64 string: (N, 2) positions, (N,) words, (N, 32) ORB descriptors and
    (N,) the size of the photo that found each (default: all the one size)."""
    packed = np.zeros(len(words), dtype=KEYPOINT)
    packed["x"], packed["y"] = points[:, 0], points[:, 1]
    packed["word"] = words
    packed["copy"] = 0 if copies is None else copies
    packed["descriptor"] = descriptors
    return base64.b64encode(packed.tobytes()).decode("ascii")


def unpack(blob: str) -> np.ndarray:
    """The keypoints of ``pack``; ValueError when the string is not such a record."""
    try:
        raw = base64.b64decode(blob, validate=True)
    except ValueError as exc:
        raise ValueError("keypoints are not base64") from exc
    if len(raw) % KEYPOINT.itemsize:
        raise ValueError(f"keypoints are not whole records of {KEYPOINT.itemsize} bytes")
    return np.frombuffer(raw, dtype=KEYPOINT)


def terms(keypoints: np.ndarray) -> list[int]:
    """A photo's sparse vector's indices (each 1), ascending: its distinct visual words, then its
    phrases. A catalog photo shares tens of words with any posted photo by chance (clutter behind a
    product makes many of the posted photo's), so the own photo of a small product on a busy ground
    is often not among those sharing the most; pairs of words of neighbouring keypoints are rarely
    shared by chance (make eval's 300 distorted products, scratch: the own photo among the 30 sharing
    the most for 0.847 by words alone, 0.89 by words and phrases)."""
    words = np.unique(keypoints["word"]).astype(np.int64)
    listed: list[int] = np.concatenate([words, phrases(keypoints)]).tolist()
    return listed


def phrases(keypoints: np.ndarray) -> np.ndarray:
    """Distinct phrases (ascending, from PHRASES_FROM): each keypoint's word paired with the words of
    its PHRASE_NEIGHBOURS nearest keypoints found at the same size, in either order, hashed to 31
    bits."""
    found: list[np.ndarray] = []
    for copy in np.unique(keypoints["copy"]):
        group = keypoints[keypoints["copy"] == copy]
        neighbours = min(PHRASE_NEIGHBOURS, len(group) - 1)
        if neighbours < 1:
            continue
        across = group["x"][:, None] - group["x"][None, :]  # not one (n, n, 2) array summed: 4x slower
        down = group["y"][:, None] - group["y"][None, :]
        distance = across * across + down * down
        np.fill_diagonal(distance, np.inf)
        nearest = np.argpartition(distance, neighbours - 1, axis=1)[:, :neighbours]
        words = group["word"].astype(np.uint64)
        first, second = np.repeat(words, neighbours), words[nearest].ravel()
        low, high = np.minimum(first, second), np.maximum(first, second)
        found.append((low * np.uint64(0x9E3779B1) + high) & np.uint64(PHRASES_FROM - 1))
    if not found:
        return np.zeros(0, np.int64)
    return np.unique(np.concatenate(found)).astype(np.int64) + PHRASES_FROM


def correspondences(query: np.ndarray, candidate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (query, candidate) of keypoints of the same word whose descriptors differ in at
    most MAX_DISTANCE bits; each query keypoint keeps its closest candidate keypoint (of the first
    PER_WORD of its word on either side)."""
    q_index, c_index = _same_word_pairs(query["word"], candidate["word"])
    if not len(q_index):
        return q_index, c_index
    distance = _BITS[query["descriptor"][q_index] ^ candidate["descriptor"][c_index]].sum(
        axis=1, dtype=np.int32
    )
    close = distance <= MAX_DISTANCE
    q_index, c_index, distance = q_index[close], c_index[close], distance[close]
    order = np.lexsort((distance, q_index))  # by query keypoint, closest first
    first = np.ones(len(order), dtype=bool)
    first[1:] = q_index[order][1:] != q_index[order][:-1]
    return q_index[order][first], c_index[order][first]


def _same_word_pairs(query_words: np.ndarray, candidate_words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every (query, candidate) pair of keypoints of one word, at most PER_WORD of each side's."""
    q_index, q_rank = _ranked_by_word(query_words)
    c_index, c_rank = _ranked_by_word(candidate_words)
    q_index, c_index = q_index[q_rank < PER_WORD], c_index[c_rank < PER_WORD]
    q_words, c_words = query_words[q_index], candidate_words[c_index]
    starts = np.searchsorted(c_words, q_words)
    ends = np.searchsorted(c_words, q_words, side="right")
    counts = ends - starts
    pairs_q = np.repeat(q_index, counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    pairs_c = c_index[np.repeat(starts, counts) + offsets]
    return pairs_q.astype(np.int64), pairs_c.astype(np.int64)


def _ranked_by_word(words: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints sorted by word, and each one's rank within its word."""
    order = np.argsort(words, kind="stable")
    sorted_words = words[order]
    starts = np.searchsorted(sorted_words, sorted_words)
    return order, np.arange(len(order)) - starts


def inliers(query: np.ndarray, candidate: np.ndarray, needed: int = 3, tolerance: float = TOLERANCE) -> int:
    """How many keypoints of the two photos one affine map carries onto each other (RANSAC over
    the correspondences; counted once per keypoint on either side). 0 when fewer than ``needed``
    keypoints correspond at all (no map could carry that many: the check is skipped), and when
    those it carries lie along a line (spread under MIN_SPREAD across it: words, not a photo)."""
    q_index, c_index = correspondences(query, candidate)
    if len(q_index) < max(needed, 3):
        return 0
    source = np.stack([query["x"][q_index], query["y"][q_index]], axis=1).astype(np.float64)
    target = np.stack([candidate["x"][c_index], candidate["y"][c_index]], axis=1).astype(np.float64)
    agree = _best_consensus(source, target, tolerance)
    if _narrowest_spread(source[agree]) < MIN_SPREAD:
        return 0
    return min(len(np.unique(q_index[agree])), len(np.unique(c_index[agree])))


def own_photos(agreeing: Sequence[int], min_inliers: int, kept: int) -> list[int]:
    """Which of the checked catalog photos (their agreeing keypoints, as ``inliers`` counts them)
    count as the posted photo's own, most keypoints first, at most ``kept``: at least
    ``min_inliers``, and at least NEAR_BEST of the most (the others only share its model and pose)."""
    passed = [i for i, count in enumerate(agreeing) if count >= min_inliers]
    most = max((agreeing[i] for i in passed), default=0)
    near = [i for i in passed if agreeing[i] >= NEAR_BEST * most]
    return sorted(near, key=lambda i: -agreeing[i])[:kept]


def _narrowest_spread(points: np.ndarray) -> float:
    """The standard deviation of ``points`` (N, 2) across their narrowest direction (0 for fewer
    than three)."""
    if len(points) < 3:
        return 0.0
    return float(np.sqrt(max(np.linalg.eigvalsh(np.cov(points.T))[0], 0.0)))


def _best_consensus(source: np.ndarray, target: np.ndarray, tolerance: float) -> np.ndarray:
    """The correspondences within ``tolerance`` of the best of HYPOTHESES affine maps, each fitted
    to three of them (repeatable: the draws are seeded; a draw that repeats one is unsolvable and
    dropped)."""
    rng = np.random.default_rng(0)
    count = len(source)
    picks = rng.integers(0, count, (HYPOTHESES, 3))
    linear, shift = _affine_maps(source[picks], target[picks])
    area = linear[:, 0, 0] * linear[:, 1, 1] - linear[:, 0, 1] * linear[:, 1, 0]
    kept = (area > MIN_SCALE**2) & (area < MIN_SCALE**-2)  # no mirror, no collapse
    if not kept.any():
        return np.zeros(count, dtype=bool)
    linear, shift = linear[kept].astype(np.float32), shift[kept].astype(np.float32)
    misses = source.astype(np.float32) @ linear + shift[:, None, :] - target.astype(np.float32)[None]
    within = np.einsum("hnj,hnj->hn", misses, misses) <= tolerance**2
    return within[within.sum(axis=1).argmax()]


def _affine_maps(points: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The affine maps x' = x @ linear + shift carrying each triple of ``points`` (H, 3, 2) onto
    its ``images``, those of collinear triples left out: linear (H', 2, 2), shift (H', 2). Solved in
    closed form (the inverse of the 2x2 of edges), as numpy's batched solver takes about 3 us a
    system, most of the check's time."""
    corner, corner_image = points[:, 0], images[:, 0]
    edges = points[:, 1:] - corner[:, None]  # rows: second and third point less the first
    edge_images = images[:, 1:] - corner_image[:, None]
    det = edges[:, 0, 0] * edges[:, 1, 1] - edges[:, 0, 1] * edges[:, 1, 0]
    solvable = np.abs(det) > 1e-6
    edges, edge_images, det = edges[solvable], edge_images[solvable], det[solvable]
    inverse = (
        np.stack(
            [
                np.stack([edges[:, 1, 1], -edges[:, 0, 1]], axis=1),
                np.stack([-edges[:, 1, 0], edges[:, 0, 0]], axis=1),
            ],
            axis=1,
        )
        / det[:, None, None]
    )
    linear = inverse @ edge_images
    shift = corner_image[solvable] - np.einsum("hj,hjk->hk", corner[solvable], linear)
    return linear, shift
