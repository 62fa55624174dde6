"""Caches in front of the /recommend pipeline: whole answers (keyed by the image bytes and every query
parameter) and per-crop embeddings (keyed by the crop's bytes), in Redis when ``REDIS_URL`` is set,
else in an in-process LRU. A cache never fails a request: a Redis error is logged, counted in
``gateway_cache_errors_total`` and the request goes on uncached; after a failure Redis is left alone
for ``cache_retry_s`` so that a dead or slow Redis does not cost every request a timeout."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel
from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from gateway.config import Settings
from gateway.pipeline import Clients, Embedder, Query
from shared.clients import DownstreamError
from shared.contracts import CropEmbedding, EmbedResponse, RecommendResponse
from shared.logs import request_id_var

M = TypeVar("M", bound=BaseModel)
KEY_PREFIX = "stl:v1"
MODEL_KEY = f"{KEY_PREFIX}:embedding-model"  # the item_model the cached crops are of
VECTOR_KEY = f"{KEY_PREFIX}:embedding-vector-model"  # its vector_model
INSTANCE_KEY = f"{KEY_PREFIX}:embedding-instance-dim"  # the size of its instance vectors (0: none)
EXACT_KEY = f"{KEY_PREFIX}:embedding-exact-match"  # its instance vectors' calibration ("": none)
# Set while a request asked for a fresh answer (Cache-Control: no-cache): no cache is read, both are written.
_fresh: ContextVar[bool] = ContextVar("cache_fresh", default=False)


class Store(Protocol):
    """Bytes by key with a time to live; may raise on any call (the Cache catches it)."""

    name: str

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]: ...

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None: ...

    async def aclose(self) -> None: ...


class LruStore:
    """In-process, least recently used entries go first once ``max_entries`` are held."""

    name = "lru"

    def __init__(self, max_entries: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        return [self._get(key) for key in keys]

    def _get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        expires = self._clock() + ttl_s
        for key, value in items.items():
            self._entries[key] = (expires, value)
            self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def stored_keys(self) -> list[str]:
        return list(self._entries)

    async def aclose(self) -> None:
        self._entries.clear()


class RedisStore:
    """Redis through its asyncio client: one MGET per lookup, one pipelined SET EX batch per store.
    No retries and short socket timeouts: a failure surfaces at once and the Cache skips Redis."""

    name = "redis"

    def __init__(self, url: str, timeout_s: float) -> None:
        self.client = Redis.from_url(
            url,
            socket_timeout=timeout_s,
            socket_connect_timeout=timeout_s,
            retry=Retry(NoBackoff(), 0),
        )

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        values = await self.client.mget(list(keys))
        return [v.encode() if isinstance(v, str) else v for v in values]

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        async with self.client.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, ex=ttl_s)
            await pipe.execute()

    async def aclose(self) -> None:
        await self.client.aclose()


class CacheMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.lookups = Counter(
            "gateway_cache_lookups_total",
            "Cache lookups by cache (answer, embedding) and result (hit, miss, skipped: cache unavailable)",
            ["cache", "result"],
            registry=registry,
        )
        self.errors = Counter(
            "gateway_cache_errors_total",
            "Cache calls that failed (the request went on uncached)",
            ["operation"],
            registry=registry,
        )


class Cache:
    """A Store that never raises: failures are logged and counted, then the store is skipped for
    ``retry_s`` seconds (misses, writes dropped)."""

    def __init__(
        self,
        store: Store | None,
        metrics: CacheMetrics,
        logger: logging.Logger,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.metrics = metrics
        self.logger = logger
        self.retry_s = retry_s
        self._clock = clock
        self._down_until: float | None = None

    @property
    def backend(self) -> str:
        return self.store.name if self.store is not None else "off"

    async def get_many(self, cache: str, keys: Sequence[str]) -> list[bytes | None]:
        """The values of ``keys`` (None: not cached); all None when the request wants a fresh answer."""
        if not keys or self.store is None or _fresh.get():
            return [None] * len(keys)
        if not self._usable():
            self.metrics.lookups.labels(cache, "skipped").inc(len(keys))
            return [None] * len(keys)
        try:
            values = await self.store.get_many(keys)
        except Exception as exc:  # any failure of the cache leaves the request uncached, never failed
            self._failed("get", exc)
            self.metrics.lookups.labels(cache, "skipped").inc(len(keys))
            return [None] * len(keys)
        self._recovered()
        hits = sum(v is not None for v in values)
        self.metrics.lookups.labels(cache, "hit").inc(hits)
        self.metrics.lookups.labels(cache, "miss").inc(len(keys) - hits)
        return values

    async def set_many(self, items: Mapping[str, bytes], ttl_s: int) -> None:
        if not items or not self._usable():
            return
        assert self.store is not None
        try:
            await self.store.set_many(items, ttl_s)
        except Exception as exc:
            self._failed("set", exc)
            return
        self._recovered()

    async def aclose(self) -> None:
        if self.store is not None:
            await self.store.aclose()

    def _usable(self) -> bool:
        if self.store is None:
            return False
        return self._down_until is None or self._clock() >= self._down_until

    def _failed(self, operation: str, exc: Exception) -> None:
        self.metrics.errors.labels(operation).inc()
        if self._down_until is None:  # log the transition, not every request of an outage
            self.logger.warning(
                "cache unavailable: going on uncached",
                extra={
                    "backend": self.backend,
                    "operation": operation,
                    "error": f"{type(exc).__name__}: {exc}",
                },
            )
        self._down_until = self._clock() + self.retry_s

    def _recovered(self) -> None:
        if self._down_until is not None:
            self.logger.info("cache available again", extra={"backend": self.backend})
            self._down_until = None


def build_cache(settings: Settings, registry: CollectorRegistry, logger: logging.Logger) -> Cache:
    """Redis when a URL is set, else an in-process LRU (none when its size is 0)."""
    store: Store | None
    if settings.redis_url:
        store = RedisStore(settings.redis_url, settings.cache_timeout_s)
    elif settings.cache_lru_size > 0:
        store = LruStore(settings.cache_lru_size)
    else:
        store = None
    logger.info("cache", extra={"backend": store.name if store else "off"})
    return Cache(store, CacheMetrics(registry), logger, settings.cache_retry_s)


@contextmanager
def fresh(enabled: bool) -> Iterator[None]:
    """Within this block (and the tasks it starts) caches are written but not read."""
    token = _fresh.set(enabled)
    try:
        yield
    finally:
        _fresh.reset(token)


def digest(*parts: bytes) -> str:
    hasher = hashlib.sha256()
    for part in parts:
        hasher.update(len(part).to_bytes(8, "little"))
        hasher.update(part)
    return hasher.hexdigest()


def _crop_key(item_model: str, crop: bytes, product: bool) -> str:
    """A product crop's categories come from the category tail, a worn one's from the head."""
    kind = ":product" if product else ""
    return f"{KEY_PREFIX}:embedding:{item_model}{kind}:{digest(crop)}"


class CachedEmbeddings:
    """The embedding client behind a per-crop cache: only crops not seen before are sent. Entries
    are kept under the item_model that made them (the last the service gave, shared with the other
    replicas through the cache; its vector_model from a service that names no item_model), so that
    after a model change (a retrained head or category tail too) the old model's entries are no
    longer used once a crop not cached brings the new name, or ModelVersions' poll does."""

    def __init__(self, inner: Embedder, cache: Cache, ttl_s: int) -> None:
        self.inner = inner
        self.cache = cache
        self.ttl_s = ttl_s
        self.item_model = ""  # learnt from the service's answers: what the keys are under
        self.vector_model = ""  # likewise
        self.backbone = ""  # likewise (the cached items do not hold it)
        self.instance_dim: int | None = None  # likewise
        self.exact_match: float | None = None  # likewise: the calibration of its instance vectors
        self.instance_facts_known = False  # both above, once an answer or the peers told them
        self.peers_asked = False  # whether the facts above were read from the cache yet
        self.facts_shared = False  # whether this replica wrote them there yet

    async def embed(
        self,
        crops: Sequence[bytes],
        colours: bool = True,
        instances: bool = True,
        products: Sequence[int] = (),
    ) -> EmbedResponse:
        """``colours``, ``instances``, ``products``: as the service's; an entry cached without its
        colour, or without its instance vector while the service makes them, is fetched again."""
        if not self.peers_asked:  # a replica starting: what its peers learnt, if anything
            self.peers_asked = True
            known, vectors, instance_dim, exact = await self.cache.get_many(
                "embedding", [MODEL_KEY, VECTOR_KEY, INSTANCE_KEY, EXACT_KEY]
            )
            # the service's own word (model_told) goes before its peers'
            self.item_model = self.item_model or (known.decode() if known else "")
            # a cache filled by a gateway from before item_model keyed the crops by vector_model
            self.vector_model = (vectors or known or b"").decode()
            told_dim = instance_dim is not None and instance_dim.isdigit()
            if told_dim:
                self.instance_dim = int(instance_dim or 0) or None
            self.exact_match = _threshold(exact)
            self.instance_facts_known = told_dim and exact is not None
        model = self.item_model
        shown = set(products)
        keys = [_crop_key(model, crop, i in shown) for i, crop in enumerate(crops)]
        items = [_parse(CropEmbedding, v) for v in await self.cache.get_many("embedding", keys)]
        # a replica that cannot learn the instance facts from its peers asks the service once
        unknown = instances and not self.instance_facts_known
        missing = [
            i
            for i, item in enumerate(items)
            if unknown or item is None or self._lacks(item, colours, instances)
        ]
        served_by = "cache"
        if missing:
            fetched = await self.inner.embed(
                [crops[i] for i in missing],
                colours,
                instances,
                [place for place, i in enumerate(missing) if i in shown],
            )
            made_by = fetched.item_model or fetched.vector_model
            changed = made_by != model or fetched.exact_match != self.exact_match
            self.instance_dim, self.exact_match = fetched.instance_dim, fetched.exact_match
            self.instance_facts_known = True
            if changed or not self.facts_shared:  # told to the other replicas
                self.facts_shared = True
                facts = {
                    MODEL_KEY: made_by,
                    VECTOR_KEY: fetched.vector_model,
                    INSTANCE_KEY: str(fetched.instance_dim or 0),
                    EXACT_KEY: "" if fetched.exact_match is None else str(fetched.exact_match),
                }
                await self.cache.set_many({k: v.encode() for k, v in facts.items()}, GENERATION_TTL_S)
            self.vector_model = fetched.vector_model
            if made_by != model:
                self.item_model = made_by
                if len(missing) < len(crops):  # the cached ones are of the model before
                    return await self.embed(crops, colours, instances, products)
                keys = [_crop_key(made_by, crop, i in shown) for i, crop in enumerate(crops)]
            served_by = fetched.model
            self.backbone = fetched.backbone
            for i, item in zip(missing, fetched.items, strict=True):
                items[i] = item
            stored = {
                keys[i]: item.model_dump_json().encode()
                for i, item in zip(missing, fetched.items, strict=True)
            }
            await self.cache.set_many(stored, self.ttl_s)
        found = [item for item in items if item is not None]
        return EmbedResponse(
            model=served_by,
            vector_model=self.vector_model,
            item_model=self.item_model,
            backbone=self.backbone,
            dim=len(found[0].vector) if found else 0,
            instance_dim=self.instance_dim,
            exact_match=self.exact_match,
            items=found,
        )

    def _lacks(self, item: CropEmbedding, colours: bool, instances: bool) -> bool:
        """Whether a cached item lacks what is asked: its colour, or its instance vector (unless the
        service is known to make none)."""
        if colours and item.colour is None:
            return True
        makes_instances = self.instance_dim is not None or not self.instance_facts_known
        return instances and item.instance is None and makes_instances

    def model_told(self, item_model: str) -> None:
        """The service's item_model as its /readyz tells it (ModelVersions): from now on crops are
        looked up under it, so that an answer made after a model change is not made of the old
        model's crops."""
        self.item_model = item_model

    async def ready(self) -> tuple[bool, str]:
        return await self.inner.ready()

    async def readiness(self) -> tuple[bool, str, dict[str, Any]]:
        return await self.inner.readiness()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _threshold(cached: bytes | None) -> float | None:
    try:
        return float(cached) if cached else None
    except ValueError:
        return None


# the fact in each service's /readyz that names the models (and settings) its answers are made by
VERSION_FACTS = {"detector": "model_version", "gender": "model_version", "embedding": "item_model"}


class ModelVersions:
    """The versions of the models behind an answer, as the services' /readyz tell them
    (VERSION_FACTS), and the number of products indexed, asked every ``poll_s``: they are part of
    every whole answer's key, so a retrained or reconfigured model, or a catalog ingested straight
    into the index, answers afresh within a poll instead of after the answers' TTL. A service that
    cannot be asked keeps what it last told: a blip must not empty the cache."""

    def __init__(self, clients: Clients, poll_s: float, logger: logging.Logger) -> None:
        self.clients = clients
        self.poll_s = poll_s
        self.logger = logger
        self.known: dict[str, str] = {}

    def key_part(self) -> bytes:
        return json.dumps(sorted(self.known.items()), separators=(",", ":")).encode()

    async def refresh(self) -> None:
        names = list(VERSION_FACTS)
        told, products = await asyncio.gather(
            asyncio.gather(*(getattr(self.clients, name).readiness() for name in names)),
            self._products(),
        )
        if products is not None:
            self.known["index"] = f"{products} products"
        for name, (ready, _, facts) in zip(names, told, strict=True):
            version = facts.get(VERSION_FACTS[name])
            if not ready or not isinstance(version, str) or not version:
                continue
            if self.known.get(name, version) != version:
                self.logger.info("model changed", extra={"service": name, "version": version})
            self.known[name] = version
            if name == "embedding" and isinstance(self.clients.embedding, CachedEmbeddings):
                self.clients.embedding.model_told(version)

    async def _products(self) -> int | None:
        """How many products the index holds (None: it cannot tell now). A catalog written to the
        index directly (make ingest) changes it, not the catalog's generation."""
        try:
            return await self.clients.index.count()
        except DownstreamError:
            return None

    async def keep_polling(self) -> None:
        """Ask again every ``poll_s`` (the gateway asks once itself at start-up)."""
        while True:
            await asyncio.sleep(self.poll_s)
            try:
                await self.refresh()
            except Exception:  # never let the poller die: the versions would freeze
                self.logger.exception("asking the services' model versions failed")


GENERATION_KEY = f"{KEY_PREFIX}:catalog-generation"
GENERATION_TTL_S = 30 * 86400  # far beyond any answer's TTL
Compute = Callable[[Query, Callable[[str], str]], Awaitable[RecommendResponse]]


class AnswerCache:
    """Whole /recommend answers. A cached answer gets the request's own id and image URLs, says
    ``cached: true`` and times only the lookup; answers that name a degraded stage are not kept.
    Keys carry the catalog's generation, which every catalog API write renews (in the shared store,
    so every gateway replica sees it): an added or removed product is never hidden by an old answer;
    and the services' model versions (``versions``)."""

    def __init__(self, cache: Cache, settings: Settings, versions: ModelVersions) -> None:
        self.cache = cache
        self.versions = versions
        self.ttl_s = settings.cache_ttl_s
        # settings that change an answer are part of its key, so gateways configured apart never share one
        self._config = json.dumps(
            [
                settings.analysis_side,
                settings.crop_side,
                settings.colour_rerank,
                settings.colour_rerank_pool,
                settings.product_windows,
            ],
            separators=(",", ":"),
        ).encode()

    def key(self, query: Query, generation: bytes = b"0") -> str:
        params = json.dumps(
            [query.k, query.gender, sorted(query.categories), query.colour], separators=(",", ":")
        ).encode()
        models = self.versions.key_part()
        return f"{KEY_PREFIX}:answer:{digest(query.data, params, self._config, generation, models)}"

    async def catalog_changed(self) -> None:
        await self.cache.set_many({GENERATION_KEY: uuid.uuid4().hex.encode()}, GENERATION_TTL_S)

    async def _generation(self) -> bytes:
        (value,) = await self.cache.get_many("generation", [GENERATION_KEY])
        return value or b"0"

    async def recommend(
        self, query: Query, image_url: Callable[[str], str], compute: Compute, no_cache: bool = False
    ) -> RecommendResponse:
        started = time.perf_counter()
        key = self.key(query, await self._generation())
        with fresh(no_cache):
            (value,) = await self.cache.get_many("answer", [key])
            cached = _parse(RecommendResponse, value)
            if cached is not None:
                return _from_cache(cached, image_url, started)
            answer = await compute(query, image_url)
        if not answer.degraded:
            await self.cache.set_many({key: answer.model_dump_json().encode()}, self.ttl_s)
        return answer


def _parse(model: type[M], value: bytes | None) -> M | None:
    """A cached value, or None when there is none or it is not what this version reads (a miss)."""
    if value is None:
        return None
    try:
        return model.model_validate_json(value)
    except ValueError:
        return None


def _from_cache(
    answer: RecommendResponse, image_url: Callable[[str], str], started: float
) -> RecommendResponse:
    answer.request_id = request_id_var.get() or uuid.uuid4().hex
    answer.cached = True
    for item in answer.items:
        for recommendation in item.recommendations:
            recommendation.image_url = image_url(recommendation.product_id)
    elapsed = round((time.perf_counter() - started) * 1000, 1)
    answer.timings_ms = {"cache": elapsed, "total": elapsed}
    return answer
