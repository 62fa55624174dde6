"""A photo's ORB keypoints, each named by its visual word, for finding the very photo again
(shared/shared/keypoints.py tells how the index service uses them).

The vocabulary is two levels of binary centres (make train-keypoints, fit_vocabulary.py): a
descriptor takes the nearest of the first level's centres, then the nearest of that centre's
second-level ones, by Hamming distance; its word is the pair's number.

A posted photo's keypoints are found at one size, a catalog photo's at three (CATALOG_SIDES): a
shopper's copy often shows the product smaller than the store's shot does (a screenshot of a page,
a product on a bed), and ORB's pyramid only goes down from the size it is given, so the catalog
photo's keypoints must also be found as the smaller copy shows them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from shared.contracts import Keypoints
from shared.keypoints import PHRASE_NEIGHBOURS, pack

SIDE = 448  # the photo's longer side as ORB sees it (catalog shots of 224 px are doubled)
FEATURES = 500
# make eval's distorted products (scratch, 300 held-out, on clutter for 0.58 of them): the own
# catalog photo passes the check on 20 keypoints for 0.72 of them with keypoints at 448 px alone,
# 0.86 with 448 and 280, 0.92 with these three; photos of products the catalog lacks: none of 920
CATALOG_SIDES = (SIDE, 320, 224)
# a posted photo's keypoints are also found at 640 px: a product shown small in it (on a bed, in a
# page) then has more of its own (make eval's 300 distorted products, scratch: the own photo found
# for 0.893 against 0.877 at 448 alone; shared.keypoints.MIN_SPREAD keeps the printed words the
# larger size also finds from passing)
POSTED_SIDES = (SIDE, 640)


def orb() -> cv2.ORB:
    # small patches and a low corner threshold: garments on plain ground have few strong corners
    return cv2.ORB.create(nfeatures=FEATURES, fastThreshold=10, edgeThreshold=15, patchSize=15)


def orb_features(image: np.ndarray, detector: cv2.ORB, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """(N, 2) positions (pixels of the image scaled to SIDE, whatever ``side`` ORB saw it at) and
    (N, 32) descriptors of an RGB image's keypoints."""
    height, width = image.shape[:2]
    scale = side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = cv2.cvtColor(cv2.resize(image, size, interpolation=cv2.INTER_CUBIC), cv2.COLOR_RGB2GRAY)
    everywhere = np.full(grey.shape, 255, np.uint8)
    found, descriptors = detector.detectAndCompute(grey, everywhere)
    if descriptors is None:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    points = np.array([k.pt for k in found], np.float32).reshape(-1, 2) * np.float32(SIDE / side)
    return points, descriptors


def features_at(image: np.ndarray, sides: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """orb_features at each of ``sides``, together (positions all in the SIDE frame, so one affine
    map carries a copy's keypoints onto whichever size matched them), and each one's size (its index
    in ``sides``: phrases pair keypoints of one size)."""
    found = [orb_features(image, orb(), side) for side in sides]
    copies = np.concatenate([np.full(len(p), i, np.uint8) for i, (p, _) in enumerate(found)])
    return np.concatenate([p for p, _ in found]), np.concatenate([d for _, d in found]), copies


def signs(descriptors: np.ndarray) -> np.ndarray:
    """Descriptors' bits as ±1 floats: the Hamming distance of two is (256 - a·b) / 2."""
    return np.unpackbits(descriptors, axis=-1).astype(np.float32) * 2 - 1


class Vocabulary:
    def __init__(self, path: Path) -> None:
        with np.load(path) as data:
            self.first = signs(data["first"])  # (K1, 256)
            self.second = signs(data["second"])  # (K1, K2, 256)
        # the catalog's sizes and the phrases are in the name: an index filled otherwise is filled again
        sides = "+".join(str(side) for side in CATALOG_SIDES)
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
        self.name = f"orb{FEATURES}-{self.words}w-{sides}-p{PHRASE_NEIGHBOURS}@{digest}"

    @property
    def words(self) -> int:
        return self.second.shape[0] * self.second.shape[1]

    def assign(self, descriptors: np.ndarray) -> np.ndarray:
        """Each descriptor's word (uint32)."""
        bits = signs(descriptors)
        first = (bits @ self.first.T).argmax(axis=1)  # the largest dot product is the nearest
        words = np.empty(len(bits), np.uint32)
        for centre in np.unique(first):
            chosen = first == centre
            nearest = (bits[chosen] @ self.second[centre].T).argmax(axis=1)
            words[chosen] = centre * self.second.shape[1] + nearest
        return words


class KeypointFinder:
    """ORB detectors are not thread-safe: one is made per call (0.1 ms)."""

    def __init__(self, vocabulary_path: Path) -> None:
        self.vocabulary_path = vocabulary_path
        self.vocabulary: Vocabulary | None = None

    def load(self) -> None:
        self.vocabulary = Vocabulary(self.vocabulary_path)

    def predict(self, image: np.ndarray, catalog: bool = False) -> Keypoints:
        """A posted photo's keypoints (at POSTED_SIDES), or with ``catalog`` a catalog photo's (at
        CATALOG_SIDES)."""
        if self.vocabulary is None:
            raise RuntimeError("keypoint vocabulary not loaded")
        points, descriptors, copies = features_at(image, CATALOG_SIDES if catalog else POSTED_SIDES)
        words = self.vocabulary.assign(descriptors)
        return Keypoints(
            vocabulary=self.vocabulary.name, count=len(words), data=pack(points, words, descriptors, copies)
        )
