"""End-to-end fixtures: the five real services as processes on loopback, a few hundred catalog
products ingested into a fresh index, and the labelled photos of ../shared/queries/dev."""

from __future__ import annotations

import asyncio
import csv
import json
import random
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from gateway.config import Settings
from gateway.ingest import IngestReport, ingest
from tools.stack import SPECS, Stack, free_port, running

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
CATALOG = SHARED / "catalog" / "myntra"
DEV = SHARED / "queries" / "dev"
CONSUMER = SHARED / "queries" / "consumer"
PER_GROUP = 22
API_KEY = "e2e-catalog-key"


def require_shared_data() -> None:
    if not (CATALOG / "catalog.csv").exists() or not (DEV / "labels.json").exists():
        pytest.skip("../shared data is not available")


def sample_catalog(folder: Path) -> int:
    """A catalog folder with a few hundred products: up to PER_GROUP of each (category, gender)."""
    with (CATALOG / "catalog.csv").open(newline="") as handle:
        reader = csv.DictReader(handle)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    groups: dict[tuple[str, str], list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        kind = "outerwear" if row["articleType"] in ("Jackets", "Blazers") else row["category"]
        kind = kind or ("accessories" if row["masterCategory"] == "Accessories" else "")
        if kind:
            groups[(kind, row["gender"])].append(row)
    random.seed(7)
    chosen = [
        r for key in sorted(groups) for r in random.sample(groups[key], min(PER_GROUP, len(groups[key])))
    ]
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "images").symlink_to(CATALOG / "images", target_is_directory=True)
    with (folder / "catalog.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(chosen)
    return len(chosen)


class E2E:
    def __init__(self, stack: Stack, catalog: Path, products: int, report: IngestReport) -> None:
        self.stack = stack
        self.catalog = catalog
        self.products = products
        self.report = report
        self.gateway = stack.url("gateway")

    def settings(self) -> Settings:
        return self.stack.gateway_settings()

    def recommend(
        self, path: Path | bytes, params: str = "", name: str = "photo.jpg", gateway: str | None = None
    ) -> httpx.Response:
        data = path if isinstance(path, bytes) else path.read_bytes()
        filename = name if isinstance(path, bytes) else path.name
        url = f"{gateway or self.gateway}/recommend{params}"
        return httpx.post(url, files={"image": (filename, data)}, timeout=60)

    @contextmanager
    def variant(
        self, services: tuple[str, ...], env: dict[str, str], down: tuple[str, ...] = ()
    ) -> Iterator[Stack]:
        """Extra processes of some services (say a gateway and a differently configured detector)
        that use the session's other services; those named in ``down`` point at a closed port."""
        ports = {**self.stack.ports, **{name: free_port() for name in services + down}}
        extra = Stack(
            services=services,
            ports=ports,
            env={**self.stack.env, **env},
            log_dir=self.stack.log_dir,
            alive_is_enough=("gateway",) if down else (),
        )
        with running(extra, timeout_s=300):
            yield extra


@pytest.fixture(scope="session")
def e2e(tmp_path_factory: pytest.TempPathFactory) -> Iterator[E2E]:
    require_shared_data()
    work = tmp_path_factory.mktemp("e2e")
    catalog = work / "catalog"
    products = sample_catalog(catalog)
    stack = Stack(
        ports={spec.name: free_port() for spec in SPECS},
        env={
            "INDEX_PATH": str(work / "index"),
            "GATEWAY_CATALOG_DIR": str(catalog),
            "GATEWAY_MEDIA_DIR": str(work / "media"),
            "GATEWAY_API_KEY": API_KEY,
        },
        log_dir=work / "logs",
    )
    with running(stack, timeout_s=600):
        settings = stack.gateway_settings()
        report = asyncio.run(ingest(catalog, settings, progress=False))
        yield E2E(stack, catalog, products, report)


@pytest.fixture(scope="session")
def dev_labels() -> list[dict[str, object]]:
    require_shared_data()
    return list(json.loads((DEV / "labels.json").read_text()))
