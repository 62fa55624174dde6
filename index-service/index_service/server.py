"""The index on a Qdrant server or cluster (INDEX_QDRANT_URL), through qdrant-client: the same
operations and answers as the embedded store (``model.VectorIndex``), for stores that outgrow one
disk. The collection is created on first use with the configured shards and replication factor and
keyword payload indexes; every write waits for the server to apply it. ``:memory:`` or a folder
path instead of a URL runs qdrant-client's local mode (used by the congruence tests). As there, a
product's look vector is the unnamed vector "" and, with INDEX_INSTANCE_DIM > 0, its instance vector
(when it has one) the named vector "instance", and its photo's visual words and phrases the sparse vector
"keypoints" (IDF-weighted by the server) beside its keypoints in the payload."""

from __future__ import annotations

import functools
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from qdrant_client import QdrantClient, models

from index_service.config import Settings
from index_service.model import (
    FACET_LIMIT,
    INSTANCE_VECTOR,
    INT8_QUANTILE,
    KEYPOINTS,
    KEYWORD_FIELDS,
    LOOK_VECTOR,
    NO_KEYPOINTS,
    PRODUCT_FIELDS,
    SHELF,
    IndexLoadError,
    IndexUnavailable,
    NoKeypoints,
    UnknownProducts,
    absent,
    best_per_product,
    check_points,
    check_writable,
    checked_vectors,
    decode_offset,
    filter_values,
    photo_fields,
    point_id,
    point_payload,
    point_vectors,
    product_payload,
    query_keypoints,
    shelf_of,
    to_hit,
    vector_using,
    vectors_mismatch,
    verified,
)
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
)
from shared.keypoints import terms

F = TypeVar("F", bound=Callable[..., Any])


def serialised_when_local(method: F) -> F:
    """qdrant-client's local mode is not thread-safe (a server is): one call at a time there."""

    @functools.wraps(method)
    def wrapper(self: ServerIndex, *args: Any, **kwargs: Any) -> Any:
        with self._local_lock():
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


def server_terms(indices: list[int]) -> models.SparseVector:
    return models.SparseVector(indices=indices, values=[1.0] * len(indices))


def server_filter(
    search_filter: SearchFilter | None, excluded: Sequence[uuid.UUID] = (), vocabulary: str | None = None
) -> models.Filter | None:
    must: list[models.Condition] = [
        models.FieldCondition(key=field, match=models.MatchAny(any=values))
        for field, values in filter_values(search_filter, vocabulary).items()
    ]
    must_not: list[models.Condition] = (
        [models.HasIdCondition(has_id=[str(i) for i in excluded])] if excluded else []
    )
    if not must and not must_not:
        return None
    return models.Filter(must=must or None, must_not=must_not or None)


class ServerIndex:
    """Products as points of one collection on a Qdrant server or cluster."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.dim = settings.vector_dim
        self.instance_dim = settings.instance_dim
        self.collection = settings.qdrant_collection
        self.keypoints = True  # whether the collection keeps photos' keypoints (one made before them: not)
        self._client: QdrantClient | None = None
        self._local = not (settings.qdrant_url or "").startswith(("http://", "https://"))
        self._lock = threading.RLock()

    def _local_lock(self) -> AbstractContextManager[object]:
        return self._lock if self._local else nullcontext()

    def load(self) -> None:
        client = self._connect()
        try:
            if not client.collection_exists(self.collection):
                self._create(client)
            self._refuse_other_vectors(client)
            sparse = client.get_collection(self.collection).config.params.sparse_vectors or {}
            self.keypoints = KEYPOINTS in sparse
            existing = set(client.get_collection(self.collection).payload_schema)
            for field in () if self._local else KEYWORD_FIELDS:  # local mode has no payload indexes
                if field not in existing:
                    client.create_payload_index(
                        self.collection, field, models.PayloadSchemaType.KEYWORD, wait=True
                    )
            if SHELF not in existing:  # a collection made before shelves (always, in local mode)
                self._add_shelves(client)
        except Exception as exc:
            client.close()
            if isinstance(exc, IndexLoadError):
                raise
            raise IndexLoadError(
                f"cannot use collection {self.collection!r} at {self.settings.qdrant_url}: {exc}"
            ) from exc
        self._client = client

    def _add_shelves(self, client: QdrantClient) -> None:
        """model._add_shelves for a collection: the shelf of every product, gender and category
        at a time."""
        genders = client.facet(self.collection, "gender", limit=FACET_LIMIT, exact=True).hits
        for gender in (str(hit.value) for hit in genders):
            for category in Category:
                client.set_payload(
                    self.collection,
                    {SHELF: shelf_of(gender, category.value)},
                    points=models.Filter(
                        must=[
                            models.FieldCondition(key="gender", match=models.MatchValue(value=gender)),
                            models.FieldCondition(
                                key="category", match=models.MatchValue(value=category.value)
                            ),
                        ]
                    ),
                    wait=True,
                )

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _connect(self) -> QdrantClient:
        location = self.settings.qdrant_url or ""
        if location == ":memory:":
            return QdrantClient(location=":memory:")
        if self._local:
            return QdrantClient(path=location)
        key = self.settings.qdrant_api_key.get_secret_value() if self.settings.qdrant_api_key else None
        return QdrantClient(url=location, api_key=key, timeout=int(self.settings.qdrant_timeout_s))

    def _create(self, client: QdrantClient) -> None:
        quantization = (
            models.ScalarQuantization(
                scalar=models.ScalarQuantizationConfig(
                    type=models.ScalarType.INT8, quantile=INT8_QUANTILE, always_ram=True
                )
            )
            if self.settings.quantization == "int8"
            else None
        )
        look = models.VectorParams(size=self.dim, distance=models.Distance.COSINE)
        vectors: models.VectorParams | dict[str, models.VectorParams] = look
        if self.instance_dim:
            instance = models.VectorParams(size=self.instance_dim, distance=models.Distance.COSINE)
            vectors = {LOOK_VECTOR: look, INSTANCE_VECTOR: instance}
        client.create_collection(
            self.collection,
            vectors_config=vectors,
            sparse_vectors_config={KEYPOINTS: models.SparseVectorParams(modifier=models.Modifier.IDF)},
            shard_number=self.settings.qdrant_shards,
            replication_factor=self.settings.qdrant_replication_factor,
            quantization_config=quantization,
        )

    def _refuse_other_vectors(self, client: QdrantClient) -> None:
        vectors = client.get_collection(self.collection).config.params.vectors
        if isinstance(vectors, models.VectorParams):  # a collection of the unnamed vector alone
            stored = {LOOK_VECTOR: vectors.size}
        else:
            stored = {name: params.size for name, params in (vectors or {}).items()}
        fresh_start = f"delete the collection {self.collection!r} and index the catalog again"
        mismatch = vectors_mismatch(stored, self.settings, f"collection {self.collection!r}", fresh_start)
        if mismatch:
            raise IndexLoadError(mismatch)

    @property
    def client(self) -> QdrantClient:
        if self._client is None:
            raise IndexUnavailable("the index is not connected")
        return self._client

    @serialised_when_local
    def optimize(self) -> int:
        """The server builds its graphs itself; this answers how far it has got (the look vectors and
        the instance vectors together, as the edge store counts)."""
        return int(self.client.get_collection(self.collection).indexed_vectors_count or 0)

    @serialised_when_local
    def snapshot(self) -> SnapshotInfo:
        """A snapshot of the collection on the server (its snapshots folder)."""
        made = self.client.create_snapshot(self.collection, wait=True)
        if made is None:
            raise IndexUnavailable("the Qdrant server made no snapshot")
        return SnapshotInfo(path=made.name, bytes=made.size, points=self.count())

    @serialised_when_local
    def upsert(self, points: Sequence[IndexPoint]) -> int:
        check_points(points, self.dim, self.instance_dim)
        check_writable(self.settings)
        latest = {point.product.product_id: point for point in points}
        sparse = server_terms if self.keypoints else None
        batch = [
            models.PointStruct(
                id=str(point_id(pid)),
                vector=point_vectors(p, self.instance_dim, sparse),
                payload=point_payload(p, self.keypoints),
            )
            for pid, p in latest.items()
        ]
        self.client.upsert(self.collection, batch, wait=True)
        return len(batch)

    def _search_params(self) -> models.SearchParams | None:
        """As the edge store searches: the same HNSW breadth, int8 candidates rescored (local mode
        has no graph to search)."""
        if self._local:
            return None
        oversampling = self.settings.int8_rescore
        rescore = models.QuantizationSearchParams(rescore=oversampling > 0, oversampling=oversampling or None)
        return models.SearchParams(
            hnsw_ef=self.settings.hnsw_ef,
            quantization=rescore if self.settings.quantization == "int8" else None,
        )

    @serialised_when_local
    def search(self, request: SearchRequest) -> list[Hit]:
        wanted, params = server_filter(request.filter), self._search_params()
        using = vector_using(request.space)
        found = self.client.query_batch_points(
            self.collection,
            [
                models.QueryRequest(
                    query=vector,
                    using=using,
                    filter=wanted,
                    params=params,
                    limit=request.k,
                    with_payload=PRODUCT_FIELDS,
                )
                for vector in checked_vectors(request, self.dim, self.instance_dim)
            ],
        )
        return best_per_product([[to_hit(p) for p in response.points] for response in found], request.k)

    @serialised_when_local
    def duplicates(self, request: DuplicatesRequest) -> list[Hit]:
        if not self.keypoints:
            raise NoKeypoints(f"collection {self.collection!r} {NO_KEYPOINTS}")
        keypoints = query_keypoints(request)
        query_terms = terms(keypoints)
        if not query_terms:
            return []
        found = self.client.query_points(
            self.collection,
            query=server_terms(query_terms),
            using=KEYPOINTS,
            query_filter=server_filter(request.filter, vocabulary=request.keypoints.vocabulary),
            limit=request.candidates,
            with_payload=[*PRODUCT_FIELDS, KEYPOINTS],
        ).points
        return verified(request, keypoints, found)

    @serialised_when_local
    def get(self, product_id: str) -> ProductPayload | None:
        records = self.client.retrieve(
            self.collection, [str(point_id(product_id))], with_payload=PRODUCT_FIELDS
        )
        return ProductPayload.model_validate(records[0].payload) if records else None

    @serialised_when_local
    def count(self, search_filter: SearchFilter | None = None) -> int:
        return self.client.count(self.collection, count_filter=server_filter(search_filter), exact=True).count

    @serialised_when_local
    def delete(self, product_ids: Sequence[str]) -> tuple[int, list[str]]:
        check_writable(self.settings)
        unique = list(dict.fromkeys(product_ids))
        present = {
            str(r.id) for r in self.client.retrieve(self.collection, [str(point_id(p)) for p in unique])
        }
        missing = absent(unique, present)
        if present:
            self.client.delete(self.collection, models.PointIdsList(points=list(present)), wait=True)
        return len(unique) - len(missing), missing

    @serialised_when_local
    def update(self, product_id: str, changes: ProductUpdate) -> ProductPayload:
        check_writable(self.settings)
        records = self.client.retrieve(self.collection, [str(point_id(product_id))], with_payload=True)
        if not records:
            raise UnknownProducts([product_id])
        fields = changes.model_dump(mode="json", exclude_unset=True)
        payload = {**(records[0].payload or {}), **fields}
        updated = ProductPayload.model_validate(payload)
        self.client.overwrite_payload(
            self.collection,
            product_payload(updated) | photo_fields(payload),
            points=[str(point_id(product_id))],
            wait=True,
        )
        return updated

    @serialised_when_local
    def page(self, limit: int, offset: str | None, search_filter: SearchFilter | None = None) -> ProductPage:
        start = decode_offset(offset)
        records, next_id = self.client.scroll(
            self.collection,
            scroll_filter=server_filter(search_filter),
            limit=limit,
            offset=str(start) if start else None,
            with_payload=PRODUCT_FIELDS,
        )
        return ProductPage(
            products=[ProductPayload.model_validate(r.payload) for r in records],
            next_offset=None if next_id is None else str(next_id),
        )

    @serialised_when_local
    def recommend(self, request: RecommendRequest) -> list[Hit]:
        examples = list(dict.fromkeys([*request.positive, *request.negative]))
        ids = [point_id(p) for p in examples]
        found_ids = {str(r.id) for r in self.client.retrieve(self.collection, [str(i) for i in ids])}
        missing = absent(examples, found_ids)
        if missing:
            raise UnknownProducts(missing)
        query = models.RecommendQuery(
            recommend=models.RecommendInput(
                positive=[str(point_id(p)) for p in request.positive],
                negative=[str(point_id(p)) for p in request.negative],
                strategy=models.RecommendStrategy.BEST_SCORE,
            )
        )
        found = self.client.query_points(
            self.collection,
            query=query,
            using=None,  # the examples' look vectors (the unnamed vector)
            query_filter=server_filter(request.filter, excluded=ids),
            search_params=self._search_params(),
            limit=request.k,
            with_payload=PRODUCT_FIELDS,
        ).points
        return [to_hit(p) for p in found]

    @serialised_when_local
    def facets(self) -> FacetCounts:
        counts = {
            field: {
                str(hit.value): int(hit.count)
                for hit in self.client.facet(self.collection, field, limit=FACET_LIMIT, exact=True).hits
            }
            for field in FACET_FIELDS
        }
        return FacetCounts(total=self.count(), counts=counts)
