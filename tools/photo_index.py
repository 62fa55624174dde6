"""make eval's stand-in for the index service's /duplicates: the catalog photos' keypoints in
memory, the photos sharing the most visual words and phrases with a query found as Qdrant finds
them (each shared term weighed by its IDF), then checked by the same geometric check
(shared/keypoints.py)."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from shared.keypoints import KEYPOINT, inliers, own_photos, terms, unpack


def qdrant_idf(photos: int, holding: np.ndarray) -> np.ndarray:
    """Qdrant's IDF of a word held by ``holding`` of ``photos`` photos (its sparse vectors'
    Modifier.Idf)."""
    return np.log((photos - holding + 0.5) / (holding + 0.5) + 1.0)


class PhotoIndex:
    def __init__(
        self,
        vocabulary: str,
        keypoints: Sequence[np.ndarray],
        photo_terms: Sequence[np.ndarray] | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.keypoints = list(keypoints)
        if photo_terms is None:
            photo_terms = [np.array(terms(k), np.uint32) for k in self.keypoints]
        self.terms = list(photo_terms)  # sparse indices are 32-bit: millions of them per catalog
        owners = [np.full(len(t), i, np.int32) for i, t in enumerate(self.terms)]
        flat = np.concatenate(self.terms) if self.terms else np.zeros(0, np.uint32)
        order = np.argsort(flat, kind="stable")
        self._terms = flat[order]
        self._owners = np.concatenate(owners)[order] if owners else np.zeros(0, np.int32)
        self._distinct, self._starts, counts = np.unique(self._terms, return_index=True, return_counts=True)
        self._ends = self._starts + counts  # each distinct term's rows in _terms: [start, end)
        self._idf = qdrant_idf(len(self.keypoints), counts)

    @classmethod
    def from_blobs(cls, vocabulary: str, blobs: Sequence[str]) -> PhotoIndex:
        return cls(vocabulary, [unpack(blob) for blob in blobs])

    def save(self, path: str) -> None:
        counts = np.array([len(k) for k in self.keypoints])
        records = np.concatenate(self.keypoints) if self.keypoints else np.zeros(0, KEYPOINT)
        term_counts = np.array([len(t) for t in self.terms])
        flat_terms = np.concatenate(self.terms) if self.terms else np.zeros(0, np.uint32)
        np.savez(
            path,
            vocabulary=self.vocabulary,
            counts=counts,
            records=records.view(np.uint8),
            term_counts=term_counts,
            terms=flat_terms,
        )

    @classmethod
    def load(cls, path: str) -> PhotoIndex:
        with np.load(path) as data:
            records = data["records"].view(KEYPOINT)
            bounds = np.cumsum([0, *data["counts"]])
            keypoints = [records[a:b] for a, b in itertools.pairwise(bounds)]
            term_bounds = np.cumsum([0, *data["term_counts"]])
            every_term = data["terms"]  # each data[...] reads the file's array again
            photo_terms = [every_term[a:b] for a, b in itertools.pairwise(term_bounds)]
            return cls(str(data["vocabulary"]), keypoints, photo_terms)

    def candidates(self, query: np.ndarray, allowed: np.ndarray, count: int) -> list[int]:
        """The ``count`` allowed photos of most shared IDF weight (ties: lower row first)."""
        scores = np.zeros(len(self.keypoints))
        # one search for all terms, in the index's own dtype: a Python int per call made numpy 2
        # cast the whole vocabulary each time (2 ms a term, minutes a photo)
        wanted = np.asarray(terms(query), dtype=self._distinct.dtype)
        at = np.searchsorted(self._distinct, wanted)
        held = at < len(self._distinct)
        held[held] = self._distinct[at[held]] == wanted[held]
        for term in at[held]:
            scores[self._owners[self._starts[term] : self._ends[term]]] += self._idf[term]
        scores = np.where(allowed & (scores > 0), scores, -math.inf)
        top = np.argsort(-scores, kind="stable")[:count]
        return [int(i) for i in top if np.isfinite(scores[i])]

    def duplicates(
        self, query: np.ndarray, allowed: np.ndarray, candidates: int, min_inliers: int, kept: int
    ) -> list[tuple[int, int]]:
        """(row, inliers) of the candidates that are the query photo's own (shared.keypoints.own_photos)."""
        rows = self.candidates(query, allowed, candidates)
        agreeing = [inliers(query, self.keypoints[row], min_inliers) for row in rows]
        return [(rows[i], agreeing[i]) for i in own_photos(agreeing, min_inliers, kept)]
