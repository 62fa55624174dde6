"""make eval: do the recommended products look like what the person wears?

For every embedding variant (raw backbone, trained projection, quantised backbones...), with the
whole catalog embedded by that variant and searched exactly (the index service's filtered cosine
search, done here in NumPy so that variants are compared on the same footing):

- person photos (labels.json): each labelled garment is matched to the returned item that overlaps
  it most (IoU >= 0.5); its top-k recommendations are scored: category precision@k, article-family
  precision@k, colour-family precision@k (families: shared/vocabulary.py), gender consistency; plus
  the share of labelled garments that got an item. With colour reranking and with ``colour=match``.
- single-garment photos (labels.csv): category and article-family precision@10.
- distorted instances: catalog shots under realistic distortions (shared/distortions.py) must find
  their own product: recall@1 and recall@10.

Single-garment photos and distorted instances are answered as the gateway answers by default
(``served_search``: the colour rerank where it reranks); every query's recommendations put the
products whose catalog photo is the query photo's own first, found by keypoints as the index
service finds them (tools/photo_index.py, pipeline.photo_first).

    python -m tools.eval_retrieval --catalog ../shared/catalog/myntra --queries ../shared/queries/dev \
        --products ../shared/queries/consumer
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import io
import json
import random
import shutil
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from gateway.catalog import CatalogRow, read_catalog
from gateway.config import Settings
from gateway.ingest import CROP_VERSION, CatalogEmbedder, loaded_photo
from gateway.items import ResolvedItem, gender_filter
from gateway.main import make_clients
from gateway.pipeline import (
    DUPLICATES_KEPT,
    Analysis,
    Clients,
    Query,
    Recommender,
    Timings,
    colour_rerank_of,
    exact_match_vector,
    photo_first,
    rerank_pool,
)
from shared.boxes import box_iou
from shared.calibration import CARD_KEY, calibrated
from shared.clients import DetectorClient, EmbeddingClient
from shared.contracts import (
    CATEGORIES,
    CATEGORY_VOTE_K,
    Category,
    CropEmbedding,
    DetectResponse,
    GenderLabel,
    Hit,
    Keypoints,
    ProductPayload,
    VectorSpace,
)
from shared.distortions import distort
from shared.keypoints import unpack
from shared.service import InferencePool
from shared.splits import retrieval_held_out
from shared.vocabulary import article_family, colour_family
from tools.photo_features import labelled_photos
from tools.photo_index import PhotoIndex
from tools.reports import save_json, write_report
from tools.stack import ROOT, Stack, free_port, running
from tools.train_colours import held_out as colour_held_out

K = 10
RERANK_WEIGHTS = (0.05, 0.1, 0.2)  # colour-rerank settings measured (GATEWAY_COLOUR_RERANK)
# how each query is searched: as is, reranked towards its colour family, or only of that family
SEARCH_MODES: dict[str, dict[str, float]] = {
    "plain": {},
    **{f"colour rerank {w}": {"rerank_colour": w} for w in RERANK_WEIGHTS},
    "colour=match": {"match_colour": 1.0},
}
GATEWAY = Settings()  # the gateway's defaults: its colour rerank's pool and weight
SERVICES = ("detector-service", "gender-service", "embedding-service")
HEAD_CARD = ROOT / "embedding-service" / "embedding_service" / "assets" / "classifier.json"
CATEGORY_TAIL_CARD = HEAD_CARD.with_name("category-tail.json")


@dataclass
class Catalog:
    rows: list[CatalogRow]
    vectors: np.ndarray  # (N, D), unit length
    genders: np.ndarray
    categories: np.ndarray
    families: list[str | None]
    colour_families: list[str | None]
    instances: np.ndarray | None = None  # (N, D_instance), unit length, when the variant makes them
    exact_match: float | None = None  # the embedding service's calibration of its instance vectors
    photos: PhotoIndex | None = None  # the catalog photos' keypoints, as the index keeps them

    def search(
        self,
        vector: list[float],
        category: Category,
        gender: GenderLabel,
        match_colour: str | None = None,
        rerank_colour: float = 0.0,
        colour: str | None = None,
        k: int = K,
        views: list[list[float]] | None = None,
        excluded: int | None = None,
        space: VectorSpace = VectorSpace.look,
    ) -> list[int]:
        """Row indices of the best k, with the gateway's filters (gender or Unisex, the category),
        only of ``match_colour``'s family if given, reranked towards ``colour``'s if asked; with
        ``views``, each product scored by its best match to the vector or a view (as the index);
        compared with the products' vectors of ``space``."""
        allowed = self.categories == category.value
        if excluded is not None:
            allowed[excluded] = False
        genders = gender_filter(gender)
        if genders is not None:
            allowed &= np.isin(self.genders, genders)
        if match_colour is not None:
            wanted = colour_family(match_colour)
            allowed &= np.array([f == wanted for f in self.colour_families])
        queries = np.asarray([vector, *(views or [])], dtype=np.float32)
        stored = self.instances if space == VectorSpace.instance else self.vectors
        assert stored is not None, "an instance search of a catalog embedded without instance vectors"
        scores = np.where(allowed, (stored @ queries.T).max(axis=1), -np.inf)
        top = [int(i) for i in np.argsort(-scores)[: rerank_pool(k, GATEWAY) if rerank_colour else k]]
        top = [i for i in top if np.isfinite(scores[i])]
        if rerank_colour:  # as the gateway does: a bonus for the colour family among the pool
            family = colour_family(colour)
            top.sort(key=lambda i: -(scores[i] + rerank_colour * (self.colour_families[i] == family)))
        return top[:k]

    def nearest_instance(
        self, vector: list[float], category: Category, gender: GenderLabel, match_colour: str | None = None
    ) -> tuple[int, float] | None:
        """The row of the product nearest to ``vector`` by instance vector within the gateway's
        filters, and their cosine; None without instance vectors or without a product allowed."""
        if self.instances is None:
            return None
        found = self.search(
            vector, category, gender, match_colour=match_colour, k=1, space=VectorSpace.instance
        )
        return (found[0], float(self.instances[found[0]] @ np.asarray(vector))) if found else None

    def search_mode(
        self,
        mode: str,
        vector: list[float],
        category: Category,
        gender: GenderLabel,
        colour: str | None,
        views: list[list[float]] | None = None,
        excluded: int | None = None,
        space: VectorSpace = VectorSpace.look,
    ) -> list[int]:
        """``search`` as SEARCH_MODES[mode] asks, towards ``colour``; when nothing is of that
        colour, as plain."""
        options = SEARCH_MODES[mode]
        hits = self.search(
            vector,
            category,
            gender,
            match_colour=colour if options.get("match_colour") else None,
            rerank_colour=float(options.get("rerank_colour", 0.0)),
            colour=colour,
            views=views,
            excluded=excluded,
            space=space,
        )
        return hits or self.search(vector, category, gender, views=views, excluded=excluded, space=space)

    def neighbour_categories(
        self, vector: list[float], genders: list[str] | None, k: int
    ) -> list[Category | None]:
        """Categories of the k nearest products of these genders (no category filter)."""
        scores = self.vectors @ np.asarray(vector, dtype=np.float32)
        if genders is not None:
            scores = np.where(np.isin(self.genders, genders), scores, -np.inf)
        top = [int(i) for i in np.argsort(-scores)[:k] if np.isfinite(scores[i])]
        return [Category(self.categories[i]) if self.categories[i] else None for i in top]


class CatalogRecommender(Recommender):
    """The gateway's pipeline with the in-memory catalog standing in for the index service where
    it votes on a product photo's category (as the index would answer, exactly)."""

    def __init__(self, settings: Settings, clients: Clients, pool: InferencePool, catalog: Catalog) -> None:
        super().__init__(settings, clients, pool)
        self.catalog = catalog

    async def neighbour_categories(
        self, vector: list[float], genders: list[str] | None
    ) -> list[Category | None]:
        return self.catalog.neighbour_categories(vector, genders, CATEGORY_VOTE_K)

    async def _duplicates(self, detection: DetectResponse, query: Query, degraded: list[str]) -> list[Hit]:
        """As the index answers /duplicates, with the rows' numbers as product ids (row_hits)."""
        photos, settings = self.catalog.photos, self.settings
        if photos is None or detection.keypoints is None or settings.duplicate_inliers == 0:
            return []
        allowed = np.isin(self.catalog.categories, [c.value for c in query.categories])
        genders = gender_filter(query.gender) if query.gender != "auto" else None
        if genders is not None:
            allowed &= np.isin(self.catalog.genders, genders)
        found = await self.pool.run(
            photos.duplicates,
            unpack(detection.keypoints.data),
            allowed,
            settings.duplicate_candidates,
            max(settings.duplicate_inliers, 3),
            DUPLICATES_KEPT,
        )
        return [Hit(score=agreeing, product=row_payload(self.catalog, row)) for row, agreeing in found]


def row_payload(catalog: Catalog, row: int) -> ProductPayload:
    """A catalog row as a Hit's product, its number as the product id (for pipeline.photo_first)."""
    return ProductPayload(product_id=str(row), category=catalog.rows[row].category)


def with_photo_match(
    catalog: Catalog, hits: list[int], duplicates: list[Hit], item: ResolvedItem
) -> list[int]:
    """``hits`` (rows) with the query photo's own products first, as the gateway puts them."""
    ordered = photo_first(
        [Hit(score=0.0, product=row_payload(catalog, h)) for h in hits], duplicates, item, K
    )
    return [int(hit.product.product_id) for hit in ordered]


# --- catalog crops: the detector pass is made once and cached --------------------------------


def crops_dir(catalog: Path) -> Path:
    # by content, not modification time: a catalog copied or mounted again keeps its crops; and by
    # the way catalog photos are cut
    table = (catalog / "catalog.csv").read_bytes()
    named = f"{catalog.resolve()}:{CROP_VERSION}:".encode()
    key = hashlib.sha1(named + table).hexdigest()[:12]
    return ROOT / "data" / "cache" / "crops" / key


async def build_crops(catalog: Path, rows: list[CatalogRow], stack: Stack, folder: Path) -> None:
    detector = DetectorClient("detector", stack.url("detector-service"), 60)
    embedding = EmbeddingClient("embedding", stack.url("embedding-service"), 60)
    embedder = CatalogEmbedder(catalog, detector, embedding, Settings())
    folder.mkdir(parents=True, exist_ok=True)
    slots = asyncio.Semaphore(4)

    async def one(index: int, row: CatalogRow) -> None:
        async with slots:
            (folder / f"{index}.jpg").write_bytes((await embedder.crop(row)).product)

    try:
        for start in range(0, len(rows), 64):
            await asyncio.gather(*(one(i, rows[i]) for i in range(start, min(start + 64, len(rows)))))
            sys.stderr.write(f"\rcropping catalog {min(start + 64, len(rows))}/{len(rows)}")
        sys.stderr.write("\n")
        (folder / "manifest.json").write_text(json.dumps([r.product_id for r in rows]))
        (folder / "done").write_text(str(len(rows)))
    finally:
        await detector.aclose()
        await embedding.aclose()


async def photo_index(catalog: Path, rows: list[CatalogRow], stack: Stack, folder: Path) -> PhotoIndex:
    """The catalog photos' keypoints as ingestion finds them (in the copy the detector is sent),
    cached beside the crops by the detector's vocabulary."""
    detector = DetectorClient("detector", stack.url("detector-service"), 120)
    settings = Settings()

    async def keypoints_of(chunk: list[CatalogRow]) -> list[Keypoints]:
        copies = [loaded_photo((catalog / row.image).read_bytes(), settings, wanted=True)[1] for row in chunk]
        return await detector.keypoints_many([copy for copy in copies if copy is not None])

    try:
        vocabulary = (await keypoints_of(rows[:1]))[0].vocabulary
        cached = folder / f"keypoints-{hashlib.sha1(vocabulary.encode()).hexdigest()[:12]}.npz"
        if cached.exists():
            return PhotoIndex.load(str(cached))
        blobs: list[str] = []
        for start in range(0, len(rows), 32):
            blobs += [k.data for k in await keypoints_of(rows[start : start + 32])]
            sys.stderr.write(f"\rkeypoints of catalog photos {len(blobs)}/{len(rows)}")
        sys.stderr.write("\n")
    finally:
        await detector.aclose()
    index = PhotoIndex.from_blobs(vocabulary, blobs)
    index.save(str(cached))
    return index


async def embed_catalog(rows: list[CatalogRow], folder: Path, stack: Stack) -> Catalog:
    client = EmbeddingClient("embedding", stack.url("embedding-service"), 120)
    embedded: list[CropEmbedding] = []
    exact_match = None
    try:
        for start in range(0, len(rows), 64):
            crops = [(folder / f"{i}.jpg").read_bytes() for i in range(start, min(start + 64, len(rows)))]
            colours = any(row.colour is None for row in rows[start : start + 64])  # as ingestion asks
            answer = await client.embed(crops, colours)
            embedded += answer.items
            exact_match = answer.exact_match
    finally:
        await client.aclose()
    with_instances = all(item.instance is not None for item in embedded)
    return Catalog(
        rows=rows,
        vectors=np.asarray([item.vector for item in embedded], dtype=np.float32),
        instances=np.asarray([item.instance for item in embedded], dtype=np.float32)
        if with_instances
        else None,
        exact_match=exact_match,
        genders=np.array([r.gender or "" for r in rows]),
        categories=np.array([r.category.value if r.category else "" for r in rows]),
        families=[article_family(r.article_type) for r in rows],
        colour_families=[colour_family(r.colour) for r in rows],
    )


# --- queries -----------------------------------------------------------------------------------


def means_by_mode(scores: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, float | None]]:
    """Per search mode, each measure's mean over the queries as ``<measure>_p@K``."""
    return {
        mode: {f"{k}_p@{K}": round(float(np.mean(v)), 4) if v else None for k, v in row.items()}
        for mode, row in scores.items()
    }


def precision(hits: list[int], good: list[bool]) -> float:
    return float(np.mean([good[i] for i in hits])) if hits else 0.0


async def person_photos(recommender: Recommender, catalog: Catalog, queries: Path) -> dict[str, Any]:
    item_colour_right: list[bool] = []
    item_article_right: list[bool] = []
    scores: dict[str, dict[str, list[float]]] = {
        m: {k: [] for k in ("category", "family", "colour", "gender")} for m in SEARCH_MODES
    }
    labelled = matched = 0
    for entry in json.loads((queries / "labels.json").read_text()):
        found = await analyse(recommender, (queries / entry["path"]).read_bytes())
        for person in entry["persons"]:
            for garment in person["garments"]:
                labelled += 1
                item = best_item(found, garment["box"])
                if item is None:
                    continue
                matched += 1
                item_colour_right.append(colour_family(item.colour) == colour_family(garment["colour"]))
                item_article_right.append(
                    article_family(item.article_type) == article_family(garment["article_type"])
                )
                gender = found.genders[item.person].label if item.person is not None else "unknown"
                family, colour_label = (
                    article_family(garment["article_type"]),
                    colour_family(garment["colour"]),
                )
                # which catalog products count as right, for every search mode alike
                good = {
                    "category": [c == garment["category"] for c in catalog.categories],
                    "family": [f == family for f in catalog.families],
                    "colour": [f == colour_label for f in catalog.colour_families],
                    "gender": [g in (person["gender"], "Unisex") for g in catalog.genders],
                }
                space, vector, views = item.query_vectors(recommender.settings.instance_search)
                for mode, row in scores.items():
                    hits = catalog.search_mode(
                        mode, vector, item.category, gender, item.colour, views=views, space=space
                    )
                    matching = item.colour if SEARCH_MODES[mode].get("match_colour") else None
                    hits = with_exact_match(catalog, recommender.settings, item, gender, hits, matching)
                    hits = with_photo_match(catalog, hits, found.duplicates, item)
                    for measure, right in good.items():
                        row[measure].append(precision(hits, right))
    return {
        "garments": labelled,
        "with_item": round(matched / labelled, 4) if labelled else None,
        "item_colour_family_accuracy": round(float(np.mean(item_colour_right)), 4)
        if item_colour_right
        else None,
        "item_article_family_accuracy": round(float(np.mean(item_article_right)), 4)
        if item_article_right
        else None,
        **means_by_mode(scores),
    }


def served_search(
    catalog: Catalog, settings: Settings, item: ResolvedItem, gender: GenderLabel, duplicates: list[Hit]
) -> list[int]:
    """An item's recommendations as the gateway answers by default (colour=any): searched by the
    vectors it is searched by, reranked towards its colour where the gateway reranks, the query
    photo's own products (``duplicates``) first."""
    space, vector, views = item.query_vectors(settings.instance_search)
    rerank = colour_rerank_of(space, "any", settings)
    hits = catalog.search(
        vector, item.category, gender, rerank_colour=rerank, colour=item.colour, views=views, space=space
    )
    hits = with_exact_match(catalog, settings, item, gender, hits)
    return with_photo_match(catalog, hits, duplicates, item)


def with_exact_match(
    catalog: Catalog,
    settings: Settings,
    item: ResolvedItem,
    gender: GenderLabel,
    hits: list[int],
    match_colour: str | None = None,
) -> list[int]:
    """``hits`` of an item searched by its look, with its very product first as the gateway puts it
    (pipeline.exact_first): the nearest product by instance vector, when its cosine reaches the
    item's exact-match threshold, within the same filters."""
    exact = exact_match_vector(item, settings)
    if exact is None or item.exact_match is None:
        return hits
    nearest = catalog.nearest_instance(exact, item.category, gender, match_colour)
    if nearest is None or nearest[1] < item.exact_match:
        return hits
    best = nearest[0]
    return [best, *[h for h in hits if h != best]][: len(hits)]


def best_item(found: Analysis, box: list[float]) -> Any:
    overlaps = [(box_iou(box, item.box), item) for item in found.items]
    best = max(overlaps, key=lambda pair: pair[0], default=(0.0, None))
    return best[1] if best[0] >= 0.5 else None


async def analyse(recommender: Recommender, data: bytes) -> Analysis:
    return await recommender.analyse(Query(data, K, "auto", set(CATEGORIES)), Timings(), [])


def photos_learnt(folder: Path, cards: tuple[Path, ...] = (HEAD_CARD, CATEGORY_TAIL_CARD)) -> set[str]:
    """The images of ``folder``'s labels.csv that the served classifier head or category tail
    learnt from (their cards name them; train_head --photos, train_category), which make eval
    must not measure them on."""
    learnt: set[str] = set()
    for card in cards:
        photos = json.loads(card.read_text()).get("photos") if card.exists() else None
        if photos and photos.get("folder") == folder.resolve().name:
            learnt |= set(photos["images"])
    return learnt


async def product_photos(
    recommender: Recommender, catalog: Catalog, folder: Path, limit: int | None
) -> dict[str, Any]:
    photos = labelled_photos(folder)
    learnt = photos_learnt(folder)
    photos = [p for p in photos if p.image not in learnt][:limit]
    category_p, family_p, category_right = [], [], []
    best_cosines: list[float] = []  # each photo's nearest product by instance vector (not its own)
    confusion: dict[str, Counter[str]] = defaultdict(Counter)  # labelled -> named category
    for photo in photos:
        found = await analyse(recommender, (folder / photo.image).read_bytes())
        truth = photo.category.value
        if not found.items:
            category_p.append(0.0)
            family_p.append(0.0)
            category_right.append(False)
            confusion[truth]["no item"] += 1
            continue
        item = max(found.items, key=lambda i: (i.box[2] - i.box[0]) * (i.box[3] - i.box[1]))
        confusion[truth][item.category.value] += 1
        best_cosines += nearest_instance_cosine(catalog, item)
        hits = served_search(catalog, recommender.settings, item, "unknown", found.duplicates)
        category_p.append(precision(hits, [c == truth for c in catalog.categories]))
        family = article_family(photo.label)
        family_p.append(precision(hits, [f == family for f in catalog.families]))
        category_right.append(item.category.value == truth)
    return {
        "photos": len(photos),
        "left_out_as_learnt_by_the_head": len(learnt),
        f"category_p@{K}": round(float(np.mean(category_p)), 4),
        f"family_p@{K}": round(float(np.mean(family_p)), 4),
        "item_category_accuracy": round(float(np.mean(category_right)), 4),
        "category_confusion": {truth: dict(named) for truth, named in sorted(confusion.items())},
        # the exact-match threshold these photos of products the catalog does not hold allow
        "exact_match_calibrated": calibrated(best_cosines),
    }


def nearest_instance_cosine(catalog: Catalog, item: ResolvedItem) -> list[float]:
    """The instance cosine of the item's nearest product of its category (as an exact match looks
    for it, gender unknown), or nothing when either lacks instance vectors."""
    if item.instance is None:
        return []
    nearest = catalog.nearest_instance(item.instance, item.category, "unknown")
    return [nearest[1]] if nearest else []


async def distorted(recommender: Recommender, catalog: Catalog, folder: Path, count: int) -> dict[str, Any]:
    rng = random.Random(11)
    # only products the trained projections never saw: a store's new products
    candidates = [
        i for i, r in enumerate(catalog.rows) if r.category is not None and retrieval_held_out(r.product_id)
    ]
    chosen = rng.sample(candidates, min(count, len(candidates)))
    ranks: list[int | None] = []
    category_found = 0
    for index in chosen:
        row = catalog.rows[index]
        view = distort(Image.open(folder / row.image), random.Random(index))
        buffer = io.BytesIO()
        view.save(buffer, format="JPEG", quality=92)
        found = await analyse(recommender, buffer.getvalue())
        # a product shown as an item of the photo's own (pipeline.unshown_own_photos) comes first in it
        shown_own = [int(hit.product.product_id) for hit in found.photo_items]
        category_found += any(item.category == row.category for item in found.items) or index in shown_own
        best = 0 if index in shown_own else None
        for item in found.items:
            gender = found.genders[item.person].label if item.person is not None else "unknown"
            hits = served_search(catalog, recommender.settings, item, gender, found.duplicates)
            if index in hits:
                rank = hits.index(index)
                best = rank if best is None else min(best, rank)
        ranks.append(best)
    found_at = [r for r in ranks if r is not None]
    return {
        "products": len(chosen),
        "recall@1": round(sum(r == 0 for r in found_at) / len(chosen), 4),
        f"recall@{K}": round(len(found_at) / len(chosen), 4),
        "item_of_its_category": round(category_found / len(chosen), 4),
    }


async def catalog_products(stack: Stack, catalog: Catalog, folder: Path, count: int) -> dict[str, Any]:
    """Catalog products the colour namer never learnt from, each a query (itself left out): its
    colour named from its crop as a query's is, then the colour-family and article-family
    precision@k of what is found, plain, colour-reranked and with ``colour=match``. The colour
    rerank's trade-off, on many more items than the person photos hold."""
    rng = random.Random(13)
    candidates = [
        i
        for i, r in enumerate(catalog.rows)
        if r.category is not None and r.colour and colour_held_out(r.product_id)
    ]
    chosen = sorted(rng.sample(candidates, min(count, len(candidates))))
    client = EmbeddingClient("embedding", stack.url("embedding-service"), 120)
    named: list[str | None] = []
    try:
        for start in range(0, len(chosen), 64):
            crops = [(folder / f"{i}.jpg").read_bytes() for i in chosen[start : start + 64]]
            named += [item.colour for item in (await client.embed(crops, True)).items]
    finally:
        await client.aclose()
    scores: dict[str, dict[str, list[float]]] = {m: {"colour": [], "family": []} for m in SEARCH_MODES}
    for index, colour in zip(chosen, named, strict=True):
        row = catalog.rows[index]
        category = row.category
        assert category is not None
        gender = shopper_gender(row)
        vector = catalog.vectors[index].tolist()
        own_colour, own_family = colour_family(row.colour), catalog.families[index]
        good = {
            "colour": [f == own_colour for f in catalog.colour_families],
            "family": [f == own_family for f in catalog.families],
        }
        for mode, measured in scores.items():
            hits = catalog.search_mode(mode, vector, category, gender, colour, excluded=index)
            for measure, right in good.items():
                measured[measure].append(precision(hits, right))
    named_right = [
        colour_family(c) == colour_family(catalog.rows[i].colour) for i, c in zip(chosen, named, strict=True)
    ]
    return {
        "products": len(chosen),
        "colour_family_named_right": round(float(np.mean(named_right)), 4) if named_right else None,
        **means_by_mode(scores),
    }


def unseen_products(catalog: Catalog) -> dict[str, Any]:
    """Every catalog product no training sees (``retrieval_held_out``: neither the projections nor
    the whitening were fitted on them) as a query, itself left out: the article-family precision@k
    of what the gateway's filters find. A look-alike measure fair to every variant, on twenty times
    as many items as the dev photos' garments."""
    family: list[float] = []
    for index, row in enumerate(catalog.rows):
        own = catalog.families[index]
        if row.category is None or own is None or not retrieval_held_out(row.product_id):
            continue
        hits = catalog.search(
            catalog.vectors[index].tolist(), row.category, shopper_gender(row), excluded=index
        )
        family.append(precision(hits, [f == own for f in catalog.families]))
    return {"products": len(family), "family_p@10": round(float(np.mean(family)), 4) if family else None}


def shopper_gender(row: CatalogRow) -> GenderLabel:
    """The gender filter a shopper of this product's gender searches with (none for Unisex)."""
    return "Men" if row.gender == "Men" else "Women" if row.gender == "Women" else "unknown"


@contextmanager
def variant_stack(env: dict[str, str]) -> Iterator[Stack]:
    stack = Stack(services=SERVICES, ports={s: free_port() for s in SERVICES}, env=env)
    with running(stack, timeout_s=600):
        yield stack


async def evaluate_variant(
    stack: Stack, args: argparse.Namespace, rows: list[CatalogRow], folder: Path
) -> dict[str, Any]:
    started = time.perf_counter()
    catalog = await embed_catalog(rows, folder, stack)
    embed_seconds = time.perf_counter() - started
    catalog.photos = await photo_index(args.catalog, rows, stack, folder)
    settings = stack.gateway_settings()
    clients = make_clients(settings)
    recommender = CatalogRecommender(settings, clients, InferencePool(2, 64, "eval"), catalog)
    try:
        result: dict[str, Any] = {
            "dim": int(catalog.vectors.shape[1]),
            "instance_dim": int(catalog.instances.shape[1]) if catalog.instances is not None else None,
            "catalog_embed_per_second": round(len(rows) / embed_seconds, 1),
        }
        if args.products:  # first: they calibrate the exact match of a variant the service has not
            result["product_photos"] = await product_photos(
                recommender, catalog, args.products, args.product_limit
            )
        result["exact_match"] = settle_exact_match(recommender, catalog, result.get("product_photos", {}))
        result |= {
            "person_photos": await person_photos(recommender, catalog, args.queries),
            "distorted": await distorted(recommender, catalog, args.catalog, args.distorted),
            "catalog_products": await catalog_products(stack, catalog, folder, args.catalog_queries),
            "unseen_products": unseen_products(catalog),
        }
    finally:
        await clients.aclose()
    return result


def settle_exact_match(recommender: Recommender, catalog: Catalog, photos: dict[str, Any]) -> dict[str, Any]:
    """Which exact-match threshold the variant's worn garments are measured with, and where it
    comes from: GATEWAY_EXACT_MATCH if set, else the embedding service's calibration (the served
    projection's card), else the one its product photos just gave, which the recommender is then
    set to (so that a trained projection is measured as it would be served once adopted), else
    none."""
    measured = photos.get("exact_match_calibrated")
    if recommender.settings.exact_match is not None:
        return {"threshold": recommender.settings.exact_match, "from": "GATEWAY_EXACT_MATCH"}
    if catalog.exact_match is not None:
        return {"threshold": catalog.exact_match, "from": "the instance projection's card"}
    if measured is not None:
        recommender.settings = recommender.settings.model_copy(update={"exact_match": measured["threshold"]})
        return {"threshold": measured["threshold"], "from": "the product photos measured"}
    return {"threshold": None, "from": "none: no calibration, no exact match"}


MODELS = ROOT / "models" / "embedding"
CANDIDATE = MODELS / "projection-candidate.npz"
WHITENED = MODELS / "projection-whitened.npz"
TRAINED = {"candidate": CANDIDATE, "whitened": WHITENED}  # what --adopt chooses from
ASSETS = ROOT / "embedding-service" / "embedding_service" / "assets"
PACKAGED = ASSETS / "projection.npz"
PACKAGED_INSTANCE = ASSETS / "instance.npz"
BACKBONE = MODELS / "efficientnet_lite0.onnx"  # the embedding service's default (make models)
NO_INSTANCE = {"EMBEDDING_INSTANCE_PROJECTION": "none"}  # every item searched by the look vector


def both_vectors(projection: Path) -> dict[str, str]:
    """A trained projection as the look and the instance vector: its person-photo figures say what
    it is worth as the look vector, its product-photo figures as the instance vector."""
    return {"EMBEDDING_PROJECTION": str(projection), "EMBEDDING_INSTANCE_PROJECTION": str(projection)}


VARIANTS: dict[str, dict[str, str]] = {
    "raw": {"EMBEDDING_PROJECTION": "none", **NO_INSTANCE},
    "served": {},  # the service's defaults: the packaged projection and instance projection, if any
    "candidate": both_vectors(CANDIDATE),
    "whitened": both_vectors(WHITENED),
    "pca": {"EMBEDDING_PROJECTION": str(MODELS / "projection-pca.npz"), **NO_INSTANCE},
    "fp16": {"EMBEDDING_BACKBONE_PATH": str(BACKBONE.with_suffix(".fp16.onnx"))},  # make quantise
    "int8": {"EMBEDDING_BACKBONE_PATH": str(BACKBONE.with_suffix(".int8.onnx"))},
}
# the person-photo answers as served: with the gateway's default colour reranking
SERVED_RERANK = GATEWAY.colour_rerank
SERVED_MODE = f"colour rerank {SERVED_RERANK:g}" if SERVED_RERANK in RERANK_WEIGHTS else "plain"
# what decides which trained projection makes the look vector, by which worn garments are searched
# (and more-like-this): look-alikes of person photos' garments and of catalog products no training saw
# (product photos are searched by the instance vector: INSTANCE_DECIDING)
DECIDING = (
    ("person_photos", SERVED_MODE, "family_p@10"),
    ("person_photos", SERVED_MODE, "colour_p@10"),
    ("unseen_products", None, "family_p@10"),
)
# what decides which trained projection makes the instance vectors, by which product photos (items
# worn by no one) are searched: finding the very product, and look-alikes of a shopper's photo
INSTANCE_DECIDING = (
    ("distorted", None, "recall@10"),
    ("distorted", None, "recall@1"),
    ("product_photos", None, "family_p@10"),
)


def measure(result: dict[str, Any], path: tuple[str, str | None, str]) -> float:
    section = result.get(path[0], {})
    if path[1] is not None:
        section = section.get(path[1], {})
    return float(section.get(path[2]) or 0.0)


def adopt_projection(report: dict[str, Any]) -> str:
    """Install, as the look vector's projection, the trained projection (of TRAINED, among the
    variants measured) that beats the raw backbone on the most DECIDING measures, and as the
    instance projection the one that beats it on the most INSTANCE_DECIDING; each only if that is
    most of them, else none (the look vector is then the raw backbone's; product photos are
    searched by it too)."""
    look = adopt(report, DECIDING, PACKAGED)
    instance = adopt(report, INSTANCE_DECIDING, PACKAGED_INSTANCE, calibrate=True)
    return f"look vector: {look}; instance vector: {instance}"


def write_calibration(card: Path, result: dict[str, Any], photos: str) -> None:
    """The exact-match threshold the adopted instance projection's product photos gave, into its
    card (where the embedding service reads it); none measured (no PRODUCTS): none written, so
    that no threshold of another projection's cosines is kept."""
    facts = json.loads(card.read_text()) if card.exists() else {}
    measured = result.get("product_photos", {}).get("exact_match_calibrated")
    facts.pop(CARD_KEY, None)
    if measured is not None:
        facts[CARD_KEY] = {**measured, "photos_folder": photos}
    card.write_text(json.dumps(facts, indent=2) + "\n")


def adopt(
    report: dict[str, Any],
    deciding: tuple[tuple[str, str | None, str], ...],
    target: Path,
    calibrate: bool = False,
) -> str:
    """Install at ``target`` the trained projection that beats the raw backbone on most of
    ``deciding`` (of two that win as many, the better on its first), or remove what is there; with
    ``calibrate`` (an instance projection), its card gets the exact-match threshold measured."""
    raw = report["variants"]["raw"]
    wins = {
        name: sum(measure(report["variants"][name], p) > measure(raw, p) for p in deciding)
        for name in TRAINED
        if name in report["variants"]
    }
    # equal wins: the better on the first measure
    best = max(wins, key=lambda n: (wins[n], measure(report["variants"][n], deciding[0])), default=None)
    if best is not None and wins[best] * 2 > len(deciding):
        shutil.copy(TRAINED[best], target)
        shutil.copy(TRAINED[best].with_suffix(".json"), target.with_suffix(".json"))
        if calibrate:
            card = target.with_suffix(".json")
            write_calibration(card, report["variants"][best], str(report.get("product_photos", "")))
        return f"adopted {best}, which wins {wins[best]} of {len(deciding)} measures against the raw backbone"
    target.unlink(missing_ok=True)
    target.with_suffix(".json").unlink(missing_ok=True)
    return f"none adopted: the trained projections win {wins} of {len(deciding)} measures"


def confusion_table(report: dict[str, Any]) -> list[str]:
    """The served variant's category for each consumer photo against its label (rows: labels)."""
    variants = report["variants"]
    result: dict[str, Any] = variants.get("served") or next(iter(variants.values()), {})
    confusion = result.get("product_photos", {}).get("category_confusion")
    if not confusion:
        return []
    named = sorted({name for row in confusion.values() for name in row})
    lines = [
        "",
        "Consumer photos, category named (columns) against the label (rows), variant "
        f"{'served' if 'served' in variants else next(iter(variants))}:",
        "",
        "| label | " + " | ".join(named) + " |",
        "|---" * (len(named) + 1) + "|",
    ]
    lines += [
        f"| {truth} | " + " | ".join(str(row.get(name, 0)) for name in named) + " |"
        for truth, row in confusion.items()
    ]
    return lines


def _photos_measured(report: dict[str, Any]) -> str:
    variants = list(report["variants"].values())
    measured: dict[str, Any] = variants[0].get("product_photos", {}) if variants else {}
    left_out = measured.get("left_out_as_learnt_by_the_head")
    if not left_out:
        return ""
    return f" ({measured['photos']} of them; the {left_out} the classifier head learnt from left out)"


def exact_match_summary(result: dict[str, Any]) -> str:
    """How worn garments looked for their very product, and what the product photos allow."""
    used = result.get("exact_match") or {}
    measured = result.get("product_photos", {}).get("exact_match_calibrated")
    threshold = used.get("threshold")
    text = (
        f"exact match of worn garments at {threshold} ({used.get('from')})" if threshold else "no exact match"
    )
    if measured:
        text += (
            f"; the product photos' calibration {measured['threshold']} (their best instance cosine "
            f"reached by at most 1 in {round(1 / (1 - measured['quantile']))} of {measured['photos']}; "
            f"highest {measured['best_cosine_max']})"
        )
    return text


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Retrieval evaluation",
        "",
        f"Catalog `{report['catalog']}` ({report['products']} products), "
        f"person photos `{report['queries']}`, product photos `{report['product_photos']}`"
        + _photos_measured(report)
        + ".",
        "",
    ]
    header = (
        "| variant | dim | category P@10 | family P@10 | colour P@10 | gender | "
        + " | ".join(f"rerank {w}: colour / family P@10" for w in RERANK_WEIGHTS)
        + " | colour=match: colour / family P@10 | consumer category P@10 | consumer family P@10 "
        "| distorted R@1 | distorted R@10 | catalog crops/s |"
    )
    lines += [header, "|---" * (header.count("|") - 1) + "|"]
    for name, result in report["variants"].items():
        people = result["person_photos"]
        plain, match = people["plain"], people["colour=match"]
        reranked = " | ".join(
            f"{people[f'colour rerank {w}']['colour_p@10']} / {people[f'colour rerank {w}']['family_p@10']}"
            for w in RERANK_WEIGHTS
        )
        products = result.get("product_photos", {})
        lines.append(
            f"| {name} | {result['dim']} | {plain['category_p@10']} | {plain['family_p@10']} | {plain['colour_p@10']} | "
            f"{plain['gender_p@10']} | {reranked} | {match['colour_p@10']} / {match['family_p@10']} | "
            f"{products.get('category_p@10')} | {products.get('family_p@10')} | "
            f"{result['distorted']['recall@1']} | {result['distorted']['recall@10']} | "
            f"{result.get('catalog_embed_per_second')} |"
        )
    for name, result in report["variants"].items():
        people = result["person_photos"]
        lines.append(
            f"- {name}: labelled garments with an item {people['with_item']}; their colour family right "
            f"{people['item_colour_family_accuracy']}, article family right {people['item_article_family_accuracy']}; "
            f"distorted products given an item of their category {result['distorted'].get('item_of_its_category')}"
        )
    for name, result in report["variants"].items():
        lines.append(f"- {name}: {exact_match_summary(result)}")
    for name, result in report["variants"].items():
        unseen = result.get("unseen_products")
        if unseen:
            lines.append(
                f"- {name}: {unseen['products']} catalog products no training saw as queries, "
                f"family P@10 {unseen['family_p@10']}"
            )
    for name, result in report["variants"].items():
        own = result.get("catalog_products")
        if own:
            modes = [m for m, value in own.items() if isinstance(value, dict)]
            lines.append(
                f"- {name}: {own['products']} catalog products as queries (colour family named right "
                f"{own['colour_family_named_right']}), colour / family P@10: "
                + ", ".join(f"{m} {own[m]['colour_p@10']} / {own[m]['family_p@10']}" for m in modes)
            )
    lines += confusion_table(report)
    lines += [
        "",
        "catalog crops/s: the embedding service end to end (decode, backbone, heads; colours only for "
        "batches holding a product the catalog gives no colour, as ingestion asks) while the catalog is "
        "embedded; the backbone alone is timed by `make quantise`.",
        "",
    ]
    return "\n".join(lines) + "\n"


def carry_over(report: dict[str, Any], earlier: dict[str, Any], keep: bool) -> None:
    """From an earlier report on the same data: the projections' decision (what was adopted then is
    what is installed, until --adopt), and with ``keep`` its variants."""
    if any(earlier.get(k) != report[k] for k in ("catalog", "products", "queries", "product_photos")):
        return
    if keep:
        report["variants"] = earlier["variants"]
    if "decision" in earlier:
        report["decision"] = earlier["decision"]


def main() -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--queries", type=Path, required=True, help="person photos with labels.json")
    parser.add_argument("--products", type=Path, default=None, help="single-garment photos with labels.csv")
    parser.add_argument("--product-limit", type=int, default=None)
    parser.add_argument("--distorted", type=int, default=300, help="catalog products to distort")
    parser.add_argument(
        "--catalog-queries",
        type=int,
        default=800,
        help="catalog products, unseen by the colour namer, as queries",
    )
    parser.add_argument("--variants", default="raw,served", help=f"comma list of {', '.join(VARIANTS)}")
    parser.add_argument(
        "--crops-only", action="store_true", help="make the catalog crop cache, print its path"
    )
    parser.add_argument(
        "--adopt", action="store_true", help="serve the trained projection that wins, if one does"
    )
    parser.add_argument("--output", type=Path, default=ROOT / "reports" / "eval.json")
    parser.add_argument(
        "--keep", action="store_true", help="keep the other variants of an earlier report on the same data"
    )
    args = parser.parse_args()
    rows = read_catalog(args.catalog)
    folder = crops_dir(args.catalog)
    report: dict[str, Any] = {
        "catalog": str(args.catalog),
        "products": len(rows),
        "queries": str(args.queries),
        "product_photos": str(args.products),
        "variants": {},
    }
    carry_over(report, json.loads(args.output.read_text()) if args.output.exists() else {}, args.keep)
    if args.crops_only:
        if not (folder / "done").exists():
            with variant_stack(VARIANTS["raw"]) as stack:
                asyncio.run(build_crops(args.catalog, rows, stack, folder))
        sys.stdout.write(f"{folder}\n")
        return 0
    for name in args.variants.split(","):
        env = VARIANTS[name]
        with variant_stack(env) as stack:
            if not (folder / "done").exists():
                asyncio.run(build_crops(args.catalog, rows, stack, folder))
            report["variants"][name] = asyncio.run(evaluate_variant(stack, args, rows, folder))
        save_json(args.output, report)  # each variant as soon as it is measured
    if args.adopt:
        report["decision"] = adopt_projection(report)
    table = markdown(report) + (f"\nProjections: {report['decision']}.\n" if "decision" in report else "")
    write_report(args.output, report, table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
