"""Create the product collection in the Qdrant cluster, sharded and replicated, unless it exists.

Runs as the index-service's init container (standard library only), so the index service never
starts against a collection that Qdrant would otherwise create with one shard and no replica. It
waits until the cluster has QDRANT_PEERS peers, so that the shards and their replicas are spread
over all of them. Idempotent: several pods may run it at once.

Environment: QDRANT_URL, QDRANT_COLLECTION, QDRANT_SHARDS, QDRANT_REPLICATION_FACTOR, QDRANT_PEERS,
INDEX_VECTOR_DIM, INDEX_INSTANCE_DIM (0: no instance vectors), QDRANT_WAIT_S.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import urllib.error
import urllib.request
from typing import Any

# The index service makes the "shelf" index itself: when it does, it also gives the products already
# stored (by an earlier version) their shelf; an index made here would keep it from doing so.
KEYWORD_FIELDS = (
    "product_id",
    "gender",
    "category",
    "article_type",
    "colour",
    "usage",
    "embedding_model",
    "keypoint_vocabulary",
)
# the catalog photos' visual words, weighed by their rarity: how /duplicates finds a photo's own
SPARSE_VECTORS = {"keypoints": {"modifier": "idf"}}
logger = logging.getLogger("ensure-collection")


class QdrantError(Exception):
    pass


def call(base: str, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Status and parsed JSON body of one Qdrant REST call (HTTP errors are answers, not raised)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        f"{base}{path}", data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def wait_for_peers(base: str, peers: int, deadline: float) -> None:
    while True:
        try:
            status, body = call(base, "GET", "/cluster")
            seen = len((body or {}).get("result", {}).get("peers", {})) if status == 200 else 0
        except (OSError, ValueError) as exc:
            status, seen = 0, 0
            logger.info("qdrant not reachable yet: %s", exc)
        if seen >= peers:
            return
        if time.monotonic() > deadline:
            raise QdrantError(f"the cluster has {seen} of {peers} peers (last status {status})")
        time.sleep(2)


def vectors_config(dim: int, instance_dim: int) -> dict[str, Any]:
    """The look vector (unnamed, "") and, with an ``instance_dim``, the instance vector beside it:
    the layout the index service expects (index_service.server)."""
    look = {"size": dim, "distance": "Cosine"}
    if not instance_dim:
        return look
    return {"": look, "instance": {"size": instance_dim, "distance": "Cosine"}}


def ensure(base: str, name: str, dim: int, instance_dim: int, shards: int, replication: int) -> bool:
    """Create the collection if missing (True when this call created it), then its payload indexes."""
    status, _ = call(base, "GET", f"/collections/{name}")
    created = False
    if status == 404:
        spec = {
            "vectors": vectors_config(dim, instance_dim),
            "sparse_vectors": SPARSE_VECTORS,
            "shard_number": shards,
            "replication_factor": replication,
            "write_consistency_factor": 1,
        }
        status, body = call(base, "PUT", f"/collections/{name}", spec)
        if status not in (200, 409):  # 409: another pod created it first
            raise QdrantError(f"creating {name} failed: HTTP {status} {body}")
        created = status == 200
    elif status != 200:
        raise QdrantError(f"reading {name} failed: HTTP {status}")
    for field in KEYWORD_FIELDS:
        status, body = call(
            base, "PUT", f"/collections/{name}/index", {"field_name": field, "field_schema": "keyword"}
        )
        if status != 200:
            raise QdrantError(f"indexing {field} failed: HTTP {status} {body}")
    return created


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    env = os.environ
    base = env.get("QDRANT_URL", "http://qdrant:6333").rstrip("/")
    name = env.get("QDRANT_COLLECTION", "products")
    try:
        wait_for_peers(
            base, int(env.get("QDRANT_PEERS", "1")), time.monotonic() + float(env.get("QDRANT_WAIT_S", "600"))
        )
        created = ensure(
            base,
            name,
            dim=int(env.get("INDEX_VECTOR_DIM", "1280")),
            instance_dim=int(env.get("INDEX_INSTANCE_DIM", "768")),
            shards=int(env.get("QDRANT_SHARDS", "1")),
            replication=int(env.get("QDRANT_REPLICATION_FACTOR", "1")),
        )
    except QdrantError as exc:
        logger.error("%s", exc)
        return 1
    logger.info("collection %s %s", name, "created" if created else "already there")
    return 0


if __name__ == "__main__":
    sys.exit(main())
