"""make eval's stand-in for the index service's /duplicates: the catalog photos' keypoints in
memory, the photos sharing the most visual words with a query found as Qdrant finds them (each
shared word weighed by its IDF), then checked by the same geometric check (shared/keypoints.py)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from shared.keypoints import KEYPOINT, inliers, unpack


def qdrant_idf(photos: int, holding: np.ndarray) -> np.ndarray:
    """Qdrant's IDF of a word held by ``holding`` of ``photos`` photos (its sparse vectors'
    Modifier.Idf)."""
    return np.log((photos - holding + 0.5) / (holding + 0.5) + 1.0)


class PhotoIndex:
    def __init__(self, vocabulary: str, keypoints: Sequence[np.ndarray]) -> None:
        self.vocabulary = vocabulary
        self.keypoints = list(keypoints)
        words = [np.unique(k["word"]).astype(np.int64) for k in self.keypoints]
        owners = np.concatenate([np.full(len(w), i) for i, w in enumerate(words)]) if words else np.zeros(0)
        flat = np.concatenate(words) if words else np.zeros(0, np.int64)
        order = np.argsort(flat, kind="stable")
        self._words, self._owners = flat[order], owners[order].astype(np.int64)
        self._distinct, self._starts, counts = np.unique(self._words, return_index=True, return_counts=True)
        self._idf = qdrant_idf(len(self.keypoints), counts)

    @classmethod
    def from_blobs(cls, vocabulary: str, blobs: Sequence[str]) -> PhotoIndex:
        return cls(vocabulary, [unpack(blob) for blob in blobs])

    def save(self, path: str) -> None:
        counts = np.array([len(k) for k in self.keypoints])
        records = np.concatenate(self.keypoints) if self.keypoints else np.zeros(0, KEYPOINT)
        np.savez(path, vocabulary=self.vocabulary, counts=counts, records=records.view(np.uint8))

    @classmethod
    def load(cls, path: str) -> PhotoIndex:
        with np.load(path) as data:
            records = data["records"].view(KEYPOINT)
            bounds = np.cumsum([0, *data["counts"]])
            keypoints = [records[a:b] for a, b in itertools.pairwise(bounds)]
            return cls(str(data["vocabulary"]), keypoints)

    def candidates(self, query: np.ndarray, allowed: np.ndarray, count: int) -> list[int]:
        """The ``count`` allowed photos of most shared IDF weight (ties: lower row first)."""
        scores = np.zeros(len(self.keypoints))
        for word in np.unique(query["word"]).astype(np.int64):
            at = np.searchsorted(self._distinct, word)
            if at == len(self._distinct) or self._distinct[at] != word:
                continue
            start = self._starts[at]
            end = self._starts[at + 1] if at + 1 < len(self._starts) else len(self._words)
            scores[self._owners[start:end]] += self._idf[at]
        scores = np.where(allowed & (scores > 0), scores, -math.inf)
        top = np.argsort(-scores, kind="stable")[:count]
        return [int(i) for i in top if np.isfinite(scores[i])]

    def duplicates(
        self, query: np.ndarray, allowed: np.ndarray, candidates: int, min_inliers: int, kept: int
    ) -> list[tuple[int, int]]:
        """(row, inliers) of the candidates that pass the check, most inliers first."""
        rows = self.candidates(query, allowed, candidates)
        checked = [(row, inliers(query, self.keypoints[row], min_inliers)) for row in rows]
        passed = sorted((pair for pair in checked if pair[1] >= min_inliers), key=lambda pair: -pair[1])
        return passed[:kept]
