"""The product vector index: one Qdrant Edge shard (the Qdrant engine, in-process) in a local folder.

Thread safety. The Rust engine synchronises itself (a WAL mutex, segment read/write locks), but the
Python binding keeps the GIL for the whole of every call (measured: a Python thread does not run
during a query, an upsert, a flush or an optimise), so calls never overlap in practice, and ``close``
takes the shard away from under any call that is still waiting. ``VectorIndex`` therefore runs every
engine call under one lock: no parallelism is lost (there is none to lose while the GIL is held), an
upsert and its flush form one unit, and a call that comes after ``close`` gets ``IndexUnavailable``
instead of an engine error.

By default no HNSW graph is built: at catalog scale (about 10k products) the exact scan of the
appendable segment answers a filtered query in a few milliseconds with perfect recall, while
``optimize()`` holds the GIL, and so freezes the whole service including /healthz, for tens of seconds
per 10k vectors. With INDEX_HNSW the graph (and, with INDEX_QUANTIZATION=int8, the int8 copy of the
vectors) is built at start-up before the service is ready, and again on POST /optimize after an
ingestion: for stores of 100k products and more (make bench-index).

Each product has two vectors: its look vector (the unnamed vector "": kind, shape and colour, what
recommendations compare) and, with INDEX_INSTANCE_DIM > 0, optionally its instance vector (the named
vector "instance", which finds the very product: ``SearchRequest.space``). Its catalog photo's
keypoints (``IndexPoint.keypoints``) are kept as the sparse vector "keypoints" of its visual words
and phrases (shared.keypoints.terms), by which /duplicates finds the photos sharing the most with a
query photo, and in the payload
field of the same name, by which it then checks them geometrically (shared/shared/keypoints.py).
Reads return the product's own fields only (PRODUCT_FIELDS), never the keypoints.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qdrant_edge import (
    CountRequest,
    Distance,
    EdgeConfig,
    EdgeOptimizersConfig,
    EdgeShard,
    EdgeSparseVectorParams,
    EdgeVectorParams,
    FacetRequest,
    FieldCondition,
    Filter,
    HasIdCondition,
    HnswIndexConfig,
    MatchAny,
    Modifier,
    PayloadSchemaType,
    Point,
    QuantizationSearchParams,
    Query,
    QueryRequest,
    RecommendQuery,
    ScalarQuantizationConfig,
    ScalarType,
    ScrollRequest,
    SearchParams,
    SparseVector,
    UpdateOperation,
)

from index_service.config import RESCORE_OVERSAMPLING, Settings
from shared.contracts import (
    FACET_FIELDS,
    Category,
    DuplicatesRequest,
    FacetCounts,
    Hit,
    IndexPoint,
    ProductPage,
    ProductPayload,
    ProductUpdate,
    RecommendRequest,
    SearchFilter,
    SearchRequest,
    SnapshotInfo,
    VectorSpace,
)
from shared.keypoints import inliers, own_photos, terms, unpack

if TYPE_CHECKING:
    from qdrant_edge import ConditionType

# Point ids are uuid5(PRODUCT_NAMESPACE, product_id): stable, so upserting a product again replaces it.
PRODUCT_NAMESPACE = uuid.UUID("767c5d9a-9ad4-4943-a133-143db59f98ef")
# "shelf": gender and category in one keyword (shelf_of), what /recommend filters on together
SHELF = "shelf"
KEYWORD_FIELDS = (
    "product_id",
    "gender",
    "category",
    "article_type",
    "colour",
    "usage",
    "embedding_model",
    SHELF,
    "keypoint_vocabulary",
)
FACET_LIMIT = 1000  # distinct values reported per attribute
ENGINE_CONFIG_FILE = "edge_config.json"  # written by the engine into every store it creates
LOOK_VECTOR = ""  # Qdrant's unnamed (default) vector
INSTANCE_VECTOR = "instance"
# the sparse vector of a photo's words and phrases, and the payload field of its keypoints
KEYPOINTS = "keypoints"
KEYPOINT_VOCABULARY = "keypoint_vocabulary"
PRODUCT_FIELDS = list(ProductPayload.model_fields)  # what reads return of a point's payload


# A filter matching fewer products than full_scan_threshold (kilobytes of vectors: ~3,300 products
# at 768 dimensions; Qdrant's default) is answered by an exact scan of them through the payload
# index: the graph, cut by a narrow filter, misses most of them (make bench-index at 300k, filters
# of 0.5-2% of the products: recall@10 0.85 with 1,000, 0.94 with 10,000)
HNSW = HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=10_000)


INT8_QUANTILE = 0.99  # int8's range covers this share of the values: the rare extremes are clipped


def engine_config(
    dim: int, int8: bool, hnsw: bool, instance_dim: int = 0, keypoints: bool = True
) -> EdgeConfig:
    """The store's vectors (cosine; with int8, the quantised copy in RAM and the originals on disk)
    and, with ``hnsw``, the graph (make bench-index measures this very configuration). With an
    ``instance_dim``, the instance vectors beside the look vectors, configured alike; with
    ``keypoints``, the photos' visual words and phrases, weighed by their rarity (IDF)."""
    look = vector_params(dim, int8)
    vectors = (
        {LOOK_VECTOR: look, INSTANCE_VECTOR: vector_params(instance_dim, int8)} if instance_dim else look
    )
    sparse = {KEYPOINTS: EdgeSparseVectorParams(modifier=Modifier.Idf)} if keypoints else None
    if not hnsw:
        return EdgeConfig(vectors=vectors, sparse_vectors=sparse)
    return EdgeConfig(
        vectors=vectors,
        sparse_vectors=sparse,
        hnsw_config=HNSW,
        optimizers=EdgeOptimizersConfig(indexing_threshold=100),  # kilobytes: index all but tiny segments
    )


def vector_params(dim: int, int8: bool) -> EdgeVectorParams:
    """One vector's storage: cosine; with int8, the quantised copy in RAM and the originals on disk."""
    return EdgeVectorParams(
        size=dim,
        distance=Distance.Cosine,
        on_disk=True if int8 else None,
        quantization_config=ScalarQuantizationConfig(ScalarType.Int8, quantile=INT8_QUANTILE, always_ram=True)
        if int8
        else None,
    )


def search_params(
    hnsw_ef: int, int8: bool, hnsw: bool, rescore: float = RESCORE_OVERSAMPLING
) -> SearchParams | None:
    """With int8, ``rescore`` times k candidates rescored with the original vectors (0: none)."""
    if not hnsw and not int8:
        return None
    return SearchParams(
        hnsw_ef=hnsw_ef,
        quantization=QuantizationSearchParams(rescore=rescore > 0, oversampling=rescore or None)
        if int8
        else None,
    )


class InvalidInput(ValueError):
    """A vector or product the index cannot take (answered with 422)."""


class IndexUnavailable(Exception):
    """The store is not open: still loading, failed to load, or closed (answered with 503)."""


class UnknownProducts(LookupError):
    """Products named by a request are not in the index (answered with 404)."""

    def __init__(self, product_ids: Sequence[str]) -> None:
        super().__init__(f"not in the index: {', '.join(repr(p) for p in product_ids)}")
        self.product_ids = list(product_ids)


NO_KEYPOINTS = (
    "keeps no keypoints (it was made before they were): delete it and index the catalog again "
    "(make clean-index ingest) to find photos by them"
)


class NoKeypoints(Exception):
    """The store was made without the keypoints' sparse vector (answered with 409)."""


class ReadOnly(Exception):
    """This service serves a read-only copy of the store (answered with 403)."""


class IndexLoadError(Exception):
    """The store could not be opened; the message says why and what to do."""


def point_id(product_id: str) -> uuid.UUID:
    return uuid.uuid5(PRODUCT_NAMESPACE, product_id)


def check_vector(vector: Sequence[float], dim: int, where: str, kind: str = "vectors") -> None:
    if len(vector) != dim:
        raise InvalidInput(f"{where} has {len(vector)} values; this index stores {dim}-dimensional {kind}")
    with np.errstate(over="ignore"):
        values = np.asarray(vector, dtype=np.float32)
    if not np.isfinite(values).all():
        raise InvalidInput(f"{where} contains NaN or infinite values (or values too large for float32)")
    if not values.any():
        raise InvalidInput(f"{where} is all zeros: it has no direction to compare by cosine similarity")


def check_product_id(product_id: str, where: str) -> None:
    if not product_id.strip():
        raise InvalidInput(f"{where} is empty")


def refuse_without_instances(instance_dim: int, what: str) -> None:
    if instance_dim == 0:
        raise InvalidInput(f"{what}: this index stores no instance vectors (INDEX_INSTANCE_DIM=0)")


def check_points(points: Sequence[IndexPoint], dim: int, instance_dim: int) -> None:
    """Each point's product id, vector, instance vector and keypoints (InvalidInput names the bad
    one)."""
    for position, point in enumerate(points):
        check_product_id(point.product.product_id, f"points[{position}].product.product_id")
        check_vector(point.vector, dim, f"points[{position}].vector")
        if point.instance is not None:
            where = f"points[{position}].instance"
            refuse_without_instances(instance_dim, f"{where} is given")
            check_vector(point.instance, instance_dim, where, "instance vectors")
        if point.keypoints is not None:
            checked_keypoints(point.keypoints.data, point.keypoints.count, f"points[{position}].keypoints")


def checked_keypoints(data: str, count: int, where: str) -> np.ndarray:
    try:
        keypoints = unpack(data)
    except ValueError as exc:
        raise InvalidInput(f"{where}.data: {exc}") from exc
    if len(keypoints) != count:
        raise InvalidInput(f"{where}.data holds {len(keypoints)} keypoints, count says {count}")
    return keypoints


def point_vectors(
    point: IndexPoint, instance_dim: int, sparse: Callable[[list[int]], Any] | None = None
) -> list[float] | dict[str, Any]:
    """What a point stores: its look vector alone in a store of one vector, else its vectors by name
    (a product without an instance vector has only its look vector; with ``sparse``, the maker of
    the backend's sparse vectors, its photo's visual words and phrases too)."""
    photo_terms = terms(unpack(point.keypoints.data)) if point.keypoints and sparse else []
    if instance_dim == 0 and not photo_terms:
        return point.vector
    vectors: dict[str, Any] = {LOOK_VECTOR: point.vector}
    if point.instance is not None and instance_dim:
        vectors[INSTANCE_VECTOR] = point.instance
    if photo_terms and sparse is not None:
        vectors[KEYPOINTS] = sparse(photo_terms)
    return vectors


def edge_terms(indices: list[int]) -> SparseVector:
    return SparseVector(indices, [1.0] * len(indices))  # presence: the store weighs each term by IDF


def shelf_of(gender: str, category: str) -> str:
    """The products of one gender and category: a keyword of its own because Qdrant links the
    products of each indexed value among themselves in the HNSW graph. A search filtered on the
    shelf (two of them: the person's gender and Unisex) walks a graph that holds together; the
    same filter as two conditions (gender and category) walks one cut to pieces by their
    intersection (make bench-index, 1M x 768 int8, ef 128: recall@10 0.88 as two conditions,
    0.98 as shelves)."""
    return f"{gender}/{category}"


def product_payload(product: ProductPayload) -> dict[str, Any]:
    payload = product.model_dump(mode="json", exclude_none=True)
    if product.gender is not None and product.category is not None:
        payload[SHELF] = shelf_of(product.gender, product.category.value)
    return payload


def point_payload(point: IndexPoint, keypoints: bool) -> dict[str, Any]:
    """The product's payload and, when the store keeps keypoints, its photo's."""
    payload = product_payload(point.product)
    if keypoints and point.keypoints is not None:
        payload[KEYPOINTS] = point.keypoints.data
        payload[KEYPOINT_VOCABULARY] = point.keypoints.vocabulary
    return payload


def photo_fields(payload: Mapping[str, Any]) -> dict[str, Any]:
    """What a product's payload holds of its photo (kept when its attributes are changed)."""
    return {field: payload[field] for field in (KEYPOINTS, KEYPOINT_VOCABULARY) if field in payload}


def verified(request: DuplicatesRequest, query: np.ndarray, candidates: Sequence[Any]) -> list[Hit]:
    """The candidates (scored points of either backend, their payload holding KEYPOINTS) that are
    the ``query`` photo's own (shared.keypoints.own_photos: enough of its keypoints carried onto
    theirs by one affine map, and near the best), scored by how many, best first."""
    payloads = [dict(point.payload or {}) for point in candidates]
    agreeing = [inliers(query, unpack(p.pop(KEYPOINTS, "")), request.min_inliers) for p in payloads]
    return [
        Hit(score=agreeing[i], product=ProductPayload.model_validate(payloads[i]))
        for i in own_photos(agreeing, request.min_inliers, request.k)
    ]


def query_keypoints(request: DuplicatesRequest) -> np.ndarray:
    """The request's keypoints, unpacked once for both the word search and the check."""
    return checked_keypoints(request.keypoints.data, request.keypoints.count, "keypoints")


def filter_values(search_filter: SearchFilter | None, vocabulary: str | None = None) -> dict[str, list[str]]:
    """Payload field -> the values it may take; a field the filter leaves null is not a condition.
    Gender and category asked together are asked as shelves (shelf_of): the same products. With a
    ``vocabulary``, the keypoints' must be it."""
    if search_filter is None:
        return {KEYPOINT_VOCABULARY: [vocabulary]} if vocabulary else {}
    wanted: dict[str, Sequence[str] | None] = {
        "gender": search_filter.genders,
        "category": search_filter.categories,
        "article_type": search_filter.article_types,
        "colour": search_filter.colours,
    }
    values = {field: [str(v) for v in values] for field, values in wanted.items() if values is not None}
    if "gender" in values and "category" in values:
        genders, categories = values.pop("gender"), values.pop("category")
        values[SHELF] = [shelf_of(g, c) for g in genders for c in categories]
    if vocabulary:
        values[KEYPOINT_VOCABULARY] = [vocabulary]
    return values


def absent(product_ids: Sequence[str], present: set[str]) -> list[str]:
    """The products whose point id (as text) is not among ``present``."""
    return [p for p in product_ids if str(point_id(p)) not in present]


def check_writable(settings: Settings) -> None:
    if settings.read_only:
        raise ReadOnly("this index-service serves a read-only copy (INDEX_READ_ONLY); write to the primary")


def checked_vectors(request: SearchRequest, dim: int, instance_dim: int) -> list[list[float]]:
    """The request's vector and views, each checked against the space it searches (InvalidInput
    names the bad one)."""
    kind = "vectors"
    if request.space is VectorSpace.instance:
        refuse_without_instances(instance_dim, "an instance search (space=instance)")
        dim, kind = instance_dim, "instance vectors"
    check_vector(request.vector, dim, "vector", kind)
    for position, view in enumerate(request.views):
        check_vector(view, dim, f"views[{position}]", kind)
    return [request.vector, *request.views]


def vector_using(space: VectorSpace) -> str | None:
    """The stored vector a search in ``space`` compares with (None: the unnamed look vector)."""
    return INSTANCE_VECTOR if space is VectorSpace.instance else None


def to_hit(point: Any) -> Hit:
    """A scored point of either backend, with its product."""
    return Hit(score=point.score, product=ProductPayload.model_validate(point.payload))


def best_per_product(found: Sequence[Sequence[Hit]], k: int) -> list[Hit]:
    """The ``k`` best products of one or more searches for one item, each scored by its best hit
    (one search's hits come back as they are: the sort is stable)."""
    best: dict[str, Hit] = {}
    for hits in found:
        for hit in hits:
            kept = best.get(hit.product.product_id)
            if kept is None or hit.score > kept.score:
                best[hit.product.product_id] = hit
    return sorted(best.values(), key=lambda hit: -hit.score)[:k]


def engine_filter(
    search_filter: SearchFilter, excluded: Sequence[uuid.UUID] = (), vocabulary: str | None = None
) -> Filter | None:
    """Each listed field must take one of its values; the ``excluded`` points never match; with a
    ``vocabulary``, only photos whose keypoints it named."""
    conditions: list[ConditionType] = [
        FieldCondition(field, match=MatchAny(values))
        for field, values in filter_values(search_filter, vocabulary).items()
    ]
    exclusions: list[ConditionType] = [HasIdCondition(set(excluded))] if excluded else []
    if not conditions and not exclusions:
        return None
    return Filter(must=conditions or None, must_not=exclusions or None)


def decode_offset(offset: str | None) -> uuid.UUID | None:
    if offset is None:
        return None
    try:
        return uuid.UUID(offset)
    except ValueError as exc:
        raise InvalidInput(f"offset {offset!r} is not one this index handed out (use next_offset)") from exc


def stored_config(path: Path) -> dict[str, Any] | None:
    """The engine's configuration recorded in the store at ``path`` ({} when it cannot be read as
    one), or None when there is no store there yet."""
    try:
        text = (path / ENGINE_CONFIG_FILE).read_text()
    except OSError:
        return None
    try:
        config = json.loads(text)
    except ValueError:
        return {}
    return config if isinstance(config, dict) else {}


def stores_keypoints(path: Path) -> bool:
    """Whether the store at ``path`` has the keypoints' sparse vector (one made before them has
    not; True when there is no store yet: a new one is made with it)."""
    config = stored_config(path)
    return config is None or KEYPOINTS in (config.get("sparse_vectors") or {})


def stored_vector_sizes(path: Path) -> dict[str, int] | None:
    """The size of each vector (by name) recorded in an existing store, or None when there is none
    to read."""
    try:
        config = stored_config(path)
        return (
            {str(name): int(params["size"]) for name, params in config["vectors"].items()} if config else None
        )
    except (KeyError, TypeError, AttributeError, ValueError):
        return None


def vectors_mismatch(
    stored: Mapping[str, int], settings: Settings, store: str, fresh_start: str
) -> str | None:
    """Why a store holding ``stored`` (vector name -> size) cannot be opened with these settings, or
    None when they agree; ``store`` names it, ``fresh_start`` says how to start it afresh."""
    look = stored.get(LOOK_VECTOR)
    if look is not None and look != settings.vector_dim:
        return (
            f"vector dimension mismatch: {store} holds {look}-dimensional vectors but INDEX_VECTOR_DIM "
            f"is {settings.vector_dim}; set INDEX_VECTOR_DIM={look}, or {fresh_start}"
        )
    instance = stored.get(INSTANCE_VECTOR, 0)
    if instance != settings.instance_dim:
        held = f"{instance}-dimensional instance vectors" if instance else "no instance vectors"
        return (
            f"instance vector mismatch: {store} holds {held} but INDEX_INSTANCE_DIM is "
            f"{settings.instance_dim}; set INDEX_INSTANCE_DIM={instance}, or {fresh_start}"
        )
    return None


def explain_open_failure(path: Path, settings: Settings, error: Exception) -> str:
    message = str(error)
    if "WouldBlock" in message:
        return (
            f"the store at {path} is already in use: another index-service process (or another open "
            f"index in this process) holds its write-ahead-log lock, and only one may open it at a time; "
            f"stop the other one or set INDEX_PATH to another folder (engine: {message})"
        )
    if "incompatible" in message.lower():
        return (
            f"the store at {path} does not match INDEX_VECTOR_DIM={settings.vector_dim} and "
            f"INDEX_INSTANCE_DIM={settings.instance_dim} with cosine distance (vector dimensions or "
            f"distance differ; engine: {message})"
        )
    return f"cannot open the store at {path}: {message}"


class VectorIndex:
    """Products as points (cosine, ``vector_dim``, and ``instance_dim`` instance vectors) with keyword
    payload indexes, in ``settings.path``."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.path = settings.path
        self.dim = settings.vector_dim
        self.instance_dim = settings.instance_dim
        self.keypoints = True  # whether the store keeps photos' keypoints (one made before them: not)
        self._lock = threading.Lock()
        self._shard: EdgeShard | None = None
        self._closed = False

    # --- lifecycle -----------------------------------------------------------------------------

    def load(self) -> None:
        """Open the store, creating it on first use, and make sure its payload indexes exist."""
        with self._lock:
            if self._closed:
                raise IndexLoadError("the index was closed before it finished loading")
            if self._shard is not None:
                return
            self._restore_snapshot()
            shard = self._open_store()
            try:
                ensure_payload_indexes(shard)
                if self.settings.hnsw:
                    shard.optimize()
            except Exception:
                shard.close()
                raise
            self._shard = shard

    def close(self) -> None:
        """Flush and release the store (and its lock on the folder); later calls get IndexUnavailable."""
        with self._lock:
            self._closed = True
            shard, self._shard = self._shard, None
            if shard is None:
                return
            try:
                shard.flush()
            finally:
                shard.close()

    def _open_store(self) -> EdgeShard:
        self._refuse_other_vectors()
        self.keypoints = stores_keypoints(self.path)
        config = self._engine_config()
        try:
            if (self.path / ENGINE_CONFIG_FILE).exists():
                return EdgeShard.load(str(self.path), config)
            self.path.mkdir(parents=True, exist_ok=True)
            return EdgeShard.create(str(self.path), config)
        except Exception as exc:  # the engine raises plain Exception with a descriptive message
            raise IndexLoadError(explain_open_failure(self.path, self.settings, exc)) from exc

    def _engine_config(self) -> EdgeConfig:
        int8 = self.settings.quantization == "int8"
        return engine_config(self.dim, int8, self.settings.hnsw, self.instance_dim, self.keypoints)

    def _search_params(self) -> SearchParams | None:
        settings = self.settings
        return search_params(
            settings.hnsw_ef, settings.quantization == "int8", settings.hnsw, settings.int8_rescore
        )

    def _restore_snapshot(self) -> None:
        """Unpack INDEX_RESTORE_SNAPSHOT into an empty INDEX_PATH (a replica's start)."""
        snapshot = self.settings.restore_snapshot
        if snapshot is None or (self.path / ENGINE_CONFIG_FILE).exists():
            return
        if not snapshot.is_file():
            raise IndexLoadError(f"INDEX_RESTORE_SNAPSHOT {snapshot} is not a file")
        partial = self.path.with_name(self.path.name + ".restoring")
        shutil.rmtree(partial, ignore_errors=True)
        with tarfile.open(snapshot) as archive:
            archive.extractall(partial, filter="data")
        partial.replace(self.path)

    def _refuse_other_vectors(self) -> None:
        stored = stored_vector_sizes(self.path)
        if stored is None:
            return
        fresh_start = "delete the store (make clean-index) and index the catalog again"
        mismatch = vectors_mismatch(stored, self.settings, f"the store at {self.path}", fresh_start)
        if mismatch:
            raise IndexLoadError(mismatch)

    @contextmanager
    def _store(self) -> Iterator[EdgeShard]:
        """The open shard, held under the lock for the duration of the block."""
        with self._lock:
            if self._shard is None:
                state = "closed" if self._closed else "not loaded"
                raise IndexUnavailable(f"the index is {state}")
            yield self._shard

    # --- operations ----------------------------------------------------------------------------

    def optimize(self) -> int:
        """Build the HNSW graph (and int8 copy) for what was written since; blocks every call meanwhile.
        Answers the number of vectors in the graphs: the look vectors' and the instance vectors'
        together (the engine counts no other way)."""
        with self._store() as shard:
            shard.optimize()
            return int(shard.info().indexed_vectors_count)

    def snapshot(self) -> SnapshotInfo:
        """A consistent copy of the store (flushed, written under the lock) as a tar in INDEX_SNAPSHOT_DIR,
        for read-only replicas (INDEX_RESTORE_SNAPSHOT) and backups."""
        target = self.settings.snapshot_dir
        target.mkdir(parents=True, exist_ok=True)
        name = f"index-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}-{uuid.uuid4().hex[:6]}.tar"
        partial = target / (name + ".partial")
        with self._store() as shard:
            shard.flush()
            points = shard.count(CountRequest(exact=True))
            with tarfile.open(partial, "w") as archive:
                for item in sorted(self.path.iterdir()):
                    archive.add(item, arcname=item.name)
        partial.replace(target / name)
        return SnapshotInfo(path=str(target / name), bytes=(target / name).stat().st_size, points=points)

    def upsert(self, points: Sequence[IndexPoint]) -> int:
        """Insert or replace one point per product (the last one wins); durable when it returns."""
        check_writable(self.settings)
        check_points(points, self.dim, self.instance_dim)
        latest = {point.product.product_id: point for point in points}
        sparse = edge_terms if self.keypoints else None
        batch = [
            Point(
                point_id(product_id),
                point_vectors(point, self.instance_dim, sparse),
                point_payload(point, self.keypoints),
            )
            for product_id, point in latest.items()
        ]
        with self._store() as shard:
            shard.update(UpdateOperation.upsert_points(batch))
            shard.flush()
        return len(batch)

    def search(self, request: SearchRequest) -> list[Hit]:
        """The ``k`` products nearest to the vector (or to its nearest view) among those the filter
        allows, best first, by their vectors of the request's space."""
        vectors = checked_vectors(request, self.dim, self.instance_dim)
        wanted, params = engine_filter(request.filter), self._search_params()
        using = vector_using(request.space)
        found = []
        with self._store() as shard:
            for vector in vectors:
                query = QueryRequest(
                    limit=request.k,
                    query=Query.Nearest(vector, using=using),
                    filter=wanted,
                    params=params,
                    with_payload=PRODUCT_FIELDS,
                    with_vector=False,
                )
                found.append([to_hit(point) for point in shard.query(query)])
        return best_per_product(found, request.k)

    def duplicates(self, request: DuplicatesRequest) -> list[Hit]:
        """The products whose catalog photo is the query photo's own (shared/shared/keypoints.py):
        the ``candidates`` sharing the most visual words and phrases with it, checked geometrically."""
        if not self.keypoints:
            raise NoKeypoints(f"the store at {self.path} {NO_KEYPOINTS}")
        keypoints = query_keypoints(request)
        query_terms = terms(keypoints)
        if not query_terms:
            return []
        wanted = engine_filter(request.filter, vocabulary=request.keypoints.vocabulary)
        query = QueryRequest(
            limit=request.candidates,
            query=Query.Nearest(edge_terms(query_terms), using=KEYPOINTS),
            filter=wanted,
            with_payload=[*PRODUCT_FIELDS, KEYPOINTS],
            with_vector=False,
        )
        with self._store() as shard:
            found = shard.query(query)
        return verified(request, keypoints, found)  # outside the lock: the check is numpy's, not the engine's

    def get(self, product_id: str) -> ProductPayload | None:
        with self._store() as shard:
            records = shard.retrieve([point_id(product_id)], with_payload=PRODUCT_FIELDS, with_vector=False)
        return ProductPayload.model_validate(records[0].payload) if records else None

    def count(self, search_filter: SearchFilter | None = None) -> int:
        wanted = engine_filter(search_filter) if search_filter else None
        with self._store() as shard:
            return shard.count(CountRequest(exact=True, filter=wanted))

    def delete(self, product_ids: Sequence[str]) -> tuple[int, list[str]]:
        """Remove the products; durable when it returns. Answers (removed, ids that were not there)."""
        check_writable(self.settings)
        unique = list(dict.fromkeys(product_ids))
        with self._store() as shard:
            present = {str(r.id) for r in shard.retrieve([point_id(p) for p in unique], False, False)}
            missing = absent(unique, present)
            if present:
                shard.update(UpdateOperation.delete_points([uuid.UUID(i) for i in present]))
                shard.flush()
        return len(unique) - len(missing), missing

    def update(self, product_id: str, changes: ProductUpdate) -> ProductPayload:
        """Change some attributes of a stored product, keeping its vectors; durable when it returns."""
        check_writable(self.settings)
        fields = changes.model_dump(mode="json", exclude_unset=True)
        with self._store() as shard:
            records = shard.retrieve([point_id(product_id)], with_payload=True, with_vector=False)
            if not records:
                raise UnknownProducts([product_id])
            payload = {**(records[0].payload or {}), **fields}
            updated = ProductPayload.model_validate(payload)
            kept = photo_fields(payload)
            shard.update(
                UpdateOperation.overwrite_payload([point_id(product_id)], product_payload(updated) | kept)
            )
            shard.flush()
        return updated

    def page(self, limit: int, offset: str | None, search_filter: SearchFilter | None = None) -> ProductPage:
        """Products in a stable order (by point id), ``limit`` at a time."""
        request = ScrollRequest(
            offset=decode_offset(offset),
            limit=limit,
            filter=engine_filter(search_filter) if search_filter else None,
            with_payload=PRODUCT_FIELDS,
            with_vector=False,
        )
        with self._store() as shard:
            records, next_id = shard.scroll(request)
        return ProductPage(
            products=[ProductPayload.model_validate(r.payload) for r in records],
            next_offset=None if next_id is None else str(next_id),
        )

    def recommend(self, request: RecommendRequest) -> list[Hit]:
        """Nearest to the positive examples and away from the negative ones, examples excluded (by the
        look vectors)."""
        examples = list(dict.fromkeys([*request.positive, *request.negative]))
        ids = [point_id(p) for p in examples]
        with self._store() as shard:
            records = shard.retrieve(
                list[int | uuid.UUID | str](ids), with_payload=False, with_vector=[LOOK_VECTOR]
            )
            vectors = {str(r.id): _dense(r.vector) for r in records}
            missing = absent(examples, set(vectors))
            if missing:
                raise UnknownProducts(missing)
            query = QueryRequest(
                limit=request.k,
                query=Query.RecommendBestScore(
                    RecommendQuery(
                        [vectors[str(point_id(p))] for p in request.positive],
                        [vectors[str(point_id(p))] for p in request.negative],
                    )
                ),
                filter=engine_filter(request.filter, excluded=ids),
                params=self._search_params(),
                with_payload=PRODUCT_FIELDS,
                with_vector=False,
            )
            found = shard.query(query)
        return [to_hit(point) for point in found]

    def facets(self) -> FacetCounts:
        with self._store() as shard:
            total = shard.count(CountRequest(exact=True))
            counts = {
                field: {
                    str(hit.value): int(hit.count)
                    for hit in shard.facet(FacetRequest(field, limit=FACET_LIMIT, exact=True)).hits
                }
                for field in FACET_FIELDS
            }
        return FacetCounts(total=total, counts=counts)


def ensure_payload_indexes(shard: EdgeShard) -> None:
    """The keyword indexes of KEYWORD_FIELDS that the store lacks (and, with the shelf's, the
    shelves of the products already stored)."""
    existing = set(shard.info().payload_schema)
    missing = [field for field in KEYWORD_FIELDS if field not in existing]
    for field in missing:
        shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
    if SHELF in missing:
        _add_shelves(shard)
    if missing:
        shard.flush()


def _add_shelves(shard: EdgeShard) -> None:
    """Give the products of a store made before shelves existed their shelf (filters on gender and
    category together look for it), one gender and category at a time."""
    genders = [
        str(hit.value) for hit in shard.facet(FacetRequest("gender", limit=FACET_LIMIT, exact=True)).hits
    ]
    for gender in genders:
        for category in Category:
            shelf = Filter(
                must=[
                    FieldCondition("gender", match=MatchAny([gender])),
                    FieldCondition("category", match=MatchAny([category.value])),
                ]
            )
            shard.update(
                UpdateOperation.set_payload_by_filter(shelf, {SHELF: shelf_of(gender, category.value)})
            )


def _dense(vector: Any) -> list[float]:
    """The unnamed dense vector of a retrieved record (the engine answers a dict of named vectors)."""
    if isinstance(vector, dict):
        vector = vector[""]
    return [float(v) for v in vector]
