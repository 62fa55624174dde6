"""The answer and embedding caches: the in-process LRU, and a real redis-server that these tests start,
stop, freeze and kill themselves (a request must never fail because of the cache)."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from gateway.cache import INSTANCE_KEY, MODEL_KEY, Cache, CachedEmbeddings, CacheMetrics, LruStore, _crop_key
from gateway.config import Settings
from gateway.main import build_app
from shared.contracts import Category, CropEmbedding, EmbedResponse, IndexPoint, ProductPayload
from shared.testing import running_app
from tests.conftest import PRODUCTS, Downstream, jpeg, stand_in_clients


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A redis-server on a loopback port, without persistence; ``kill`` and ``start`` again at will."""

    def __init__(self, port: int) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.fail("redis-server is not installed: `make install-test` installs the Debian package")
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        command = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "no", "--loglevel", "warning"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)
        client.close()

    def kill(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)  # in case a test froze it
            self.process.kill()
            self.process.wait()
            self.process = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=2, decode_responses=True)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer(free_port())
    server.start()
    try:
        yield server
    finally:
        server.kill()


@asynccontextmanager
async def gateway_app(
    downstream: Downstream, tmp_path: Path, **settings: object
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """A gateway in front of the stand-ins, ready; with its app, for its state (the versions)."""
    config = Settings(catalog_dir=tmp_path, **settings)  # type: ignore[arg-type]
    app = build_app(config, clients=stand_in_clients(downstream))
    async with running_app(app) as client:
        yield app, client


@asynccontextmanager
async def gateway(
    downstream: Downstream, tmp_path: Path, **settings: object
) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_app(downstream, tmp_path, **settings) as (_, client):
        yield client


async def recommend(client: httpx.AsyncClient, params: str = "", **headers: str) -> dict[str, Any]:
    return await recommend_photo(client, jpeg(), params, headers)


async def recommend_photo(
    client: httpx.AsyncClient, photo: bytes, params: str = "", headers: dict[str, str] | None = None
) -> dict[str, Any]:
    response = await client.post(f"/recommend{params}", files={"image": ("a.jpg", photo)}, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def metric(client: httpx.AsyncClient, name: str, **labels: str) -> float:
    text = (await client.get("/metrics")).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


@contextmanager
def timer() -> Iterator[list[float]]:
    elapsed: list[float] = []
    started = time.perf_counter()
    yield elapsed
    elapsed.append(time.perf_counter() - started)


# --- in-process LRU (no REDIS_URL) ---------------------------------------------------------------


async def test_a_repeated_request_is_answered_from_the_cache(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    first = await recommend(client)
    calls, searches = len(downstream.embedded), len(downstream.searches)
    second = await recommend(client, **{"X-Request-ID": "again"})
    assert first["cached"] is False and second["cached"] is True
    assert second["request_id"] == "again" != first["request_id"]
    assert set(second["timings_ms"]) == {"cache", "total"}
    assert (len(downstream.embedded), len(downstream.searches)) == (calls, searches), "nothing recomputed"
    assert second["items"] == first["items"] and second["persons"] == first["persons"]
    assert await metric(client, "gateway_cache_lookups_total", cache="answer", result="hit") == 1


async def test_other_parameters_miss_the_answer_but_reuse_the_crops(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await recommend(client)
    assert len(downstream.embedded) == 1
    searches = len(downstream.searches)
    answer = await recommend(client, "?k=2")
    assert answer["cached"] is False and len(downstream.searches) > searches, "searched again"
    assert len(downstream.embedded) == 1, "every crop came from the embedding cache"
    assert all(len(i["recommendations"]) <= 2 for i in answer["items"])


async def test_only_new_crops_are_sent_for_embedding(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await recommend(client, "?gender=Women")  # no person crop: the gender is given
    await recommend(client)  # the same garments plus the whole person for the gender service
    assert downstream.embedded == [4, 1]


async def test_a_new_embedding_model_is_not_answered_with_the_old_ones_vectors(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    await recommend(client, "?gender=Women")
    downstream.vector_model = "stand-in@1"  # the embedding service restarted with another model
    # the first crop not in the cache brings the new model's name: from then on the old model's
    # entries are not used (other k each time: the answer itself is not taken from the cache)
    await recommend_photo(client, jpeg(colour=(10, 90, 200)), "?gender=Women&k=2")
    await recommend(client, "?gender=Women&k=3")
    assert downstream.embedded == [4, 4, 4], "the first photo's crops were embedded again"
    await recommend(client, "?gender=Women&k=4")
    assert downstream.embedded == [4, 4, 4], "and are cached under the new model"


async def test_a_retrained_head_is_not_answered_with_the_old_ones_categories(
    client: httpx.AsyncClient, downstream: Downstream
) -> None:
    """The vectors stay comparable (same vector_model), but the cached items' categories were the
    old head's: the crops are keyed by the service's item_model."""
    await recommend(client, "?gender=Women")
    downstream.head = "head@1"  # the embedding service restarted with a retrained head
    await recommend_photo(client, jpeg(colour=(10, 90, 200)), "?gender=Women&k=2")
    await recommend(client, "?gender=Women&k=3")
    assert downstream.embedded == [4, 4, 4], "the first photo's crops were embedded again"
    await recommend(client, "?gender=Women&k=4")
    assert downstream.embedded == [4, 4, 4], "and are cached under the new item model"


@pytest.mark.parametrize(
    ("service", "knob", "value", "version"),
    [
        ("detector", "detector_version", "detector@1", "detector@1"),
        ("gender", "gender_version", "gender@1", "gender@1"),
        ("embedding", "head", "head@1", "stand-in@0+head@1"),
    ],
)
async def test_a_changed_model_answers_afresh_once_its_version_is_told(
    downstream: Downstream, tmp_path: Path, service: str, knob: str, value: str, version: str
) -> None:
    async with gateway_app(downstream, tmp_path) as (app, client):
        await recommend(client)
        assert (await recommend(client))["cached"] is True
        setattr(downstream, knob, value)  # the service restarted with another model or setting
        await app.state.versions.refresh()  # what the poller does every GATEWAY_VERSIONS_POLL_S
        assert app.state.versions.known[service] == version
        assert (await recommend(client))["cached"] is False, f"a new {service} model's answer"
        assert (await recommend(client))["cached"] is True, "kept under the new version"


async def test_an_answer_after_a_new_embedding_model_is_not_made_of_the_old_ones_crops(
    downstream: Downstream, tmp_path: Path
) -> None:
    async with gateway_app(downstream, tmp_path) as (app, client):
        await recommend(client, "?gender=Women")
        downstream.head = "head@1"
        await app.state.versions.refresh()
        assert (await recommend(client, "?gender=Women"))["cached"] is False
        assert downstream.embedded == [4, 4], "the crops embedded again by the new model"


async def test_products_ingested_straight_into_the_index_answer_afresh_within_a_poll(
    downstream: Downstream, tmp_path: Path
) -> None:
    async with gateway_app(downstream, tmp_path) as (app, client):
        await recommend(client)
        downstream.upserted["new-1"] = IndexPoint(  # as make ingest writes, past the catalog API
            vector=[0.0] * 8, product=ProductPayload(product_id="new-1", gender="Women")
        )
        await app.state.versions.refresh()
        assert (await recommend(client))["cached"] is False
        downstream.failing = {"index"}  # an index that cannot count keeps the count it told
        await app.state.versions.refresh()
        assert app.state.versions.known["index"] == f"{len(PRODUCTS) + 1} products"


async def test_a_service_that_cannot_tell_its_version_keeps_the_answers(
    downstream: Downstream, tmp_path: Path
) -> None:
    async with gateway_app(downstream, tmp_path) as (app, client):
        await recommend(client)
        downstream.failing = {"gender readyz"}
        await app.state.versions.refresh()
        assert app.state.versions.known["gender"] == "gender@0", "the last version told"
        assert (await recommend(client))["cached"] is True


async def test_the_versions_are_asked_again_every_poll(downstream: Downstream, tmp_path: Path) -> None:
    async with gateway(downstream, tmp_path, versions_poll_s=0.05) as client:
        await recommend(client)
        downstream.detector_version = "detector@1"
        deadline = time.monotonic() + 10
        while (await recommend(client))["cached"]:
            assert time.monotonic() < deadline, "the poller never told the new version"
            await asyncio.sleep(0.05)


async def test_no_cache_header_computes_afresh(client: httpx.AsyncClient, downstream: Downstream) -> None:
    await recommend(client)
    fresh = await recommend(client, **{"Cache-Control": "no-cache"})
    assert fresh["cached"] is False and len(downstream.embedded) == 2
    assert (await recommend(client))["cached"] is True


async def test_degraded_answers_are_not_kept(client: httpx.AsyncClient, downstream: Downstream) -> None:
    downstream.failing = {"index"}
    assert (await recommend(client))["degraded"] == ["index"]
    downstream.failing = set()
    answer = await recommend(client)
    assert answer["cached"] is False and answer["degraded"] == []


async def test_cached_image_urls_follow_the_request(client: httpx.AsyncClient) -> None:
    await recommend(client)
    client.base_url = httpx.URL("http://shop.example")
    answer = await recommend(client)
    urls = [r["image_url"] for i in answer["items"] for r in i["recommendations"]]
    assert answer["cached"] is True and urls and all(u.startswith("http://shop.example/") for u in urls)


async def test_unreadable_cache_entries_are_misses(downstream: Downstream, tmp_path: Path) -> None:
    async with gateway_app(downstream, tmp_path) as (app, client):
        await recommend(client)
        store = app.state.cache.store
        assert isinstance(store, LruStore)
        await store.set_many({key: b'{"not": "what was stored"}' for key in store.stored_keys()}, ttl_s=60)
        answer = await recommend(client)
        assert answer["cached"] is False and len(downstream.embedded) == 2
        assert (await recommend(client))["cached"] is True  # rewritten


async def test_a_zero_size_lru_turns_caching_off(downstream: Downstream, tmp_path: Path) -> None:
    async with gateway(downstream, tmp_path, cache_lru_size=0) as client:
        await recommend(client)
        assert (await recommend(client))["cached"] is False
        assert len(downstream.embedded) == 2


async def test_lru_evicts_the_least_recently_used_and_expires() -> None:
    now = [0.0]
    store = LruStore(2, clock=lambda: now[0])
    await store.set_many({"a": b"1", "b": b"2"}, ttl_s=10)
    assert await store.get_many(["a"]) == [b"1"]  # a is now the most recently used
    await store.set_many({"c": b"3"}, ttl_s=10)
    assert await store.get_many(["a", "b", "c"]) == [b"1", None, b"3"]
    now[0] = 10.0
    assert await store.get_many(["a", "c"]) == [None, None] and len(store) == 0


# --- Redis -------------------------------------------------------------------------------------


async def test_redis_holds_both_caches_for_every_gateway(
    redis_server: RedisServer, downstream: Downstream, tmp_path: Path
) -> None:
    async with gateway(downstream, tmp_path, redis_url=redis_server.url, cache_ttl_s=120) as one:
        assert (await recommend(one))["cached"] is False
    keys = sorted(redis_server.client().keys("stl:*"))
    assert (
        sum(":answer:" in k for k in keys) == 1
        and sum(":embedding:" in k for k in keys) == downstream.embedded[0]
    )
    answer_key = next(k for k in keys if ":answer:" in k)
    assert 0 < redis_server.client().ttl(answer_key) <= 120
    async with gateway(downstream, tmp_path, redis_url=redis_server.url) as other:  # a second replica
        assert (await recommend(other))["cached"] is True
        assert (await recommend(other, "?k=3"))["cached"] is False
    assert len(downstream.embedded) == 1, "the second gateway found every crop in Redis"


async def test_a_catalog_write_on_one_replica_renews_every_replicas_answers(
    redis_server: RedisServer, downstream: Downstream, tmp_path: Path
) -> None:
    options = {"redis_url": redis_server.url, "api_key": "k", "media_dir": tmp_path / "media"}
    async with (
        gateway(downstream, tmp_path, **options) as one,
        gateway(downstream, tmp_path, **options) as two,
    ):
        assert (await recommend(one))["cached"] is False
        assert (await recommend(two))["cached"] is True
        added = await one.post(
            "/catalog/products",
            headers={"X-API-Key": "k"},
            files={"image": ("p.jpg", jpeg(40, 60))},
            data={"metadata": json.dumps({"product_id": "new-1"})},
        )
        assert added.status_code == 201, added.text
        assert (await recommend(two))["cached"] is False, "the answer predates the new product"
        assert (await recommend(one))["cached"] is True


async def test_requests_succeed_when_redis_dies_and_caching_resumes(
    redis_server: RedisServer, downstream: Downstream, tmp_path: Path
) -> None:
    async with gateway(downstream, tmp_path, redis_url=redis_server.url, cache_retry_s=0.3) as client:
        await recommend(client)
        assert (await recommend(client))["cached"] is True
        redis_server.kill()
        for _ in range(3):
            answer = await recommend(client)
            assert answer["cached"] is False and answer["degraded"] == []
        assert await metric(client, "gateway_cache_errors_total", operation="get") >= 1
        assert await metric(client, "gateway_cache_lookups_total", cache="answer", result="skipped") >= 2
        redis_server.start()  # empty: nothing survives a restart without persistence
        await asyncio.sleep(0.4)
        await recommend(client)
        assert (await recommend(client))["cached"] is True


async def test_a_frozen_redis_costs_a_request_only_its_timeout(
    redis_server: RedisServer, downstream: Downstream, tmp_path: Path
) -> None:
    settings = {"redis_url": redis_server.url, "cache_timeout_s": 0.1, "cache_retry_s": 60}
    async with gateway(downstream, tmp_path, **settings) as client:
        await recommend(client, "?k=1")
        assert redis_server.process is not None
        redis_server.process.send_signal(signal.SIGSTOP)
        with timer() as first:
            assert (await recommend(client))["cached"] is False
        with timer() as later:  # the cache is skipped now, not waited for
            assert (await recommend(client))["cached"] is False
        assert first[0] < 2.0 and later[0] < 1.0, (first, later)
        assert await metric(client, "gateway_cache_errors_total", operation="get") == 1


async def test_an_unreachable_redis_leaves_requests_uncached(downstream: Downstream, tmp_path: Path) -> None:
    async with gateway(downstream, tmp_path, redis_url=f"redis://127.0.0.1:{free_port()}/0") as client:
        for _ in range(2):
            assert (await recommend(client))["cached"] is False
        assert await metric(client, "gateway_cache_errors_total", operation="get") >= 1


async def test_a_crop_cached_without_its_colour_is_embedded_again_when_the_colour_is_wanted() -> None:
    calls: list[tuple[int, bool]] = []

    class Service:
        async def embed(
            self, crops: list[bytes], colours: bool = True, instances: bool = True, products: object = ()
        ) -> EmbedResponse:
            calls.append((len(crops), colours))
            item = CropEmbedding(
                vector=[1.0, 0.0],
                category_scores={},
                article_types=[],
                colour="Red" if colours else None,
                colour_score=0.9 if colours else None,
            )
            return EmbedResponse(model="m", vector_model="vm", dim=2, items=[item] * len(crops))

    cache = Cache(LruStore(16), CacheMetrics(CollectorRegistry()), logging.getLogger("test"), retry_s=1.0)
    embeddings = CachedEmbeddings(Service(), cache, ttl_s=60)  # type: ignore[arg-type]
    assert (await embeddings.embed([b"crop"], colours=False)).items[0].colour is None
    assert (await embeddings.embed([b"crop"], colours=False)).items[0].colour is None
    assert (await embeddings.embed([b"crop"])).items[0].colour == "Red"
    assert (await embeddings.embed([b"crop"], colours=False)).items[0].colour == "Red"
    assert calls == [(1, False), (1, True)]


async def test_a_crop_cached_as_worn_is_embedded_again_as_a_product() -> None:
    """A product crop's categories come from the category tail, a worn one's from the head: each
    is cached apart."""
    calls: list[tuple[int, list[int]]] = []

    class Service:
        async def embed(
            self,
            crops: list[bytes],
            colours: bool = True,
            instances: bool = True,
            products: Sequence[int] = (),
        ) -> EmbedResponse:
            calls.append((len(crops), list(products)))
            items = [
                CropEmbedding(
                    vector=[1.0, 0.0],
                    category_scores={Category.dress if i in products else Category.topwear: 1.0},
                    article_types=[],
                    colour="Red",
                    colour_score=0.9,
                )
                for i in range(len(crops))
            ]
            return EmbedResponse(model="m", vector_model="vm", dim=2, items=items)

    cache = Cache(LruStore(16), CacheMetrics(CollectorRegistry()), logging.getLogger("test"), retry_s=1.0)
    embeddings = CachedEmbeddings(Service(), cache, ttl_s=60)  # type: ignore[arg-type]
    worn = await embeddings.embed([b"a", b"b"], instances=False)
    assert [list(item.category_scores) for item in worn.items] == [[Category.topwear]] * 2
    mixed = await embeddings.embed([b"b", b"a"], instances=False, products=[1])
    assert [list(item.category_scores) for item in mixed.items] == [[Category.topwear], [Category.dress]]
    again = await embeddings.embed([b"a"], instances=False, products=[0])
    assert list(again.items[0].category_scores) == [Category.dress]
    assert calls == [(2, []), (1, [0])], "crop a as a product once, then from the cache"


@pytest.mark.parametrize("instance_dim", [3, None], ids=["makes instance vectors", "makes none"])
async def test_a_crop_cached_without_its_instance_vector_is_embedded_again_when_it_is_wanted(
    instance_dim: int | None,
) -> None:
    calls: list[bool] = []

    class Service:
        async def embed(
            self, crops: list[bytes], colours: bool = True, instances: bool = True, products: object = ()
        ) -> EmbedResponse:
            calls.append(instances)
            item = CropEmbedding(
                vector=[1.0, 0.0],
                instance=[0.0, 0.0, 1.0] if instances and instance_dim else None,
                category_scores={},
                article_types=[],
                colour="Red",
                colour_score=0.9,
            )
            return EmbedResponse(
                model="m", vector_model="vm", dim=2, instance_dim=instance_dim, items=[item] * len(crops)
            )

    cache = Cache(LruStore(16), CacheMetrics(CollectorRegistry()), logging.getLogger("test"), retry_s=1.0)
    embeddings = CachedEmbeddings(Service(), cache, ttl_s=60)  # type: ignore[arg-type]
    assert (await embeddings.embed([b"crop"], instances=False)).items[0].instance is None
    answer = await embeddings.embed([b"crop"])
    assert answer.instance_dim == instance_dim
    await embeddings.embed([b"crop"], instances=False)
    if instance_dim:
        assert answer.items[0].instance == [0.0, 0.0, 1.0] and calls == [False, True]
    else:
        assert answer.items[0].instance is None and calls == [False], "nothing more to ask for"


async def test_a_replica_answering_from_the_cache_gives_the_services_exact_match_threshold() -> None:
    """The threshold comes with the service's answers; a replica that started after the crops were
    cached learns it, with the model's name, from what the first replica told the cache."""
    calls: list[int] = []

    class Service:
        async def embed(
            self, crops: list[bytes], colours: bool = True, instances: bool = True, products: object = ()
        ) -> EmbedResponse:
            calls.append(len(crops))
            item = CropEmbedding(
                vector=[1.0, 0.0],
                instance=[0.0, 1.0],
                category_scores={},
                article_types=[],
                colour="Red",
                colour_score=0.9,
            )
            return EmbedResponse(
                model="m",
                vector_model="vm",
                dim=2,
                instance_dim=2,
                exact_match=0.77,
                items=[item] * len(crops),
            )

    cache = Cache(LruStore(16), CacheMetrics(CollectorRegistry()), logging.getLogger("test"), retry_s=1.0)
    first = CachedEmbeddings(Service(), cache, ttl_s=60)  # type: ignore[arg-type]
    assert (await first.embed([b"crop"])).exact_match == 0.77
    assert (await first.embed([b"crop"])).exact_match == 0.77, "from the cache too"
    started_later = CachedEmbeddings(Service(), cache, ttl_s=60)  # type: ignore[arg-type]
    answer = await started_later.embed([b"crop"])
    assert calls == [1], "both answered from the cache"
    assert answer.exact_match == 0.77 and answer.instance_dim == 2 and answer.vector_model == "vm"
    # a cache filled by a gateway from before the threshold: the model and its crops, no threshold
    older = Cache(LruStore(16), CacheMetrics(CollectorRegistry()), logging.getLogger("test"), retry_s=1.0)
    crop = (await first.embed([b"crop"])).items[0].model_dump_json().encode()
    await older.set_many(
        {MODEL_KEY: b"vm", INSTANCE_KEY: b"2", _crop_key("vm", b"crop", product=False): crop}, 60
    )
    after_upgrade = CachedEmbeddings(Service(), older, ttl_s=60)  # type: ignore[arg-type]
    assert (await after_upgrade.embed([b"crop"])).exact_match == 0.77, "asked the service once"
    assert (await after_upgrade.embed([b"crop"])).exact_match == 0.77 and calls == [1, 1]
