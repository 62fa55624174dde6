"""Start the five services as local processes (each from its own virtual environment), wait until
they are ready, and stop them cleanly. Used by `make run`, `make ingest`, the end-to-end tests,
the benchmark and the training commands.

    python -m tools.stack run --catalog ../shared/catalog/myntra
    python -m tools.stack ingest --catalog ../shared/catalog/myntra
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:  # the gateway's package is not in every tool's environment (bench-index)
    from gateway.config import Settings as GatewaySettings

ROOT = Path(__file__).resolve().parents[1]
logger = logging.getLogger("stack")


@dataclass(frozen=True)
class ServiceSpec:
    name: str
    package: str
    port: int
    env_prefix: str


SPECS = (
    ServiceSpec("index-service", "index_service", 8004, "INDEX_"),
    ServiceSpec("embedding-service", "embedding_service", 8003, "EMBEDDING_"),
    ServiceSpec("gender-service", "gender_service", 8002, "GENDER_"),
    ServiceSpec("detector-service", "detector_service", 8001, "DETECTOR_"),
    ServiceSpec("gateway", "gateway", 8000, "GATEWAY_"),
)
BY_NAME = {spec.name: spec for spec in SPECS}
DOWNSTREAM_SETTING = {
    "detector-service": "GATEWAY_DETECTOR_URL",
    "gender-service": "GATEWAY_GENDER_URL",
    "embedding-service": "GATEWAY_EMBEDDING_URL",
    "index-service": "GATEWAY_INDEX_URL",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Stack:
    """Processes for some or all services on loopback. ``ports`` defaults to the standard ones."""

    services: tuple[str, ...] = tuple(spec.name for spec in SPECS)
    ports: dict[str, int] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = ROOT / "data" / "logs"
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    alive_is_enough: tuple[str, ...] = ()  # wait for /healthz only (their downstreams are meant to be down)

    def port(self, name: str) -> int:
        return self.ports.get(name, BY_NAME[name].port)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port(name)}"

    def gateway_env(self) -> dict[str, str]:
        """GATEWAY_* URLs of the downstream services, for a gateway or a client of them."""
        return {setting: self.url(name) for name, setting in DOWNSTREAM_SETTING.items()}

    def gateway_settings(self) -> GatewaySettings:
        """The gateway's settings pointed at this stack's services (for tools that run its pipeline)."""
        from gateway.config import Settings

        return Settings(**{k.removeprefix("GATEWAY_").lower(): v for k, v in self.gateway_env().items()})

    def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for spec in SPECS:
            if spec.name in self.services:
                self._spawn(spec)

    def _spawn(self, spec: ServiceSpec) -> None:
        python = ROOT / ".venv" / spec.name / "bin" / "python"
        if not python.exists():
            raise RuntimeError(f"{python} is missing: run `make install`")
        env = {**os.environ, **self.gateway_env(), **self.env}
        env[f"{spec.env_prefix}PORT"] = str(self.port(spec.name))
        env[f"{spec.env_prefix}HOST"] = "127.0.0.1"
        env["PYTHONUNBUFFERED"] = "1"
        log = (self.log_dir / f"{spec.name}.log").open("ab")
        self.processes[spec.name] = subprocess.Popen(
            [str(python), "-m", spec.package], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()

    def wait_ready(self, timeout_s: float = 300.0) -> None:
        deadline = time.monotonic() + timeout_s
        pending = [name for name in self.services if name in self.processes]
        with httpx.Client(timeout=2.0) as client:
            while pending:
                for name in list(pending):
                    process = self.processes[name]
                    if process.poll() is not None:
                        raise RuntimeError(
                            f"{name} exited with {process.returncode}; see {self.log_path(name)}"
                        )
                    probe = "/healthz" if name in self.alive_is_enough else "/readyz"
                    try:
                        response = client.get(f"{self.url(name)}{probe}")
                    except httpx.HTTPError:
                        continue
                    if response.status_code == 200:
                        pending.remove(name)
                    elif "loading failed" in response.text:
                        raise RuntimeError(f"{name} failed to load: {response.text}")
                if pending and time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout_s:.0f}s: {pending}")
                time.sleep(0.3)

    def log_path(self, name: str) -> Path:
        return self.log_dir / f"{name}.log"

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()


@contextmanager
def running(stack: Stack, timeout_s: float = 300.0) -> Iterator[Stack]:
    stack.start()
    try:
        stack.wait_ready(timeout_s)
        yield stack
    finally:
        stack.stop()


def reachable(urls: Iterable[str]) -> bool:
    try:
        with httpx.Client(timeout=2.0) as client:
            return all(client.get(f"{url}/readyz").status_code == 200 for url in urls)
    except httpx.HTTPError:
        return False


def index_count(url: str) -> int:
    response = httpx.get(f"{url}/count", timeout=10.0)
    response.raise_for_status()
    return int(response.json()["count"])


def other_model_products(stack: Stack) -> int:
    """How many indexed products have vectors of another model than the embedding service's (a
    backbone or projection changed since they were ingested): their vectors no longer compare."""
    current = httpx.get(f"{stack.url('embedding-service')}/readyz", timeout=10.0).json()["vector_model"]
    facets = httpx.get(f"{stack.url('index-service')}/facets", timeout=60.0)
    facets.raise_for_status()
    made_by = facets.json()["counts"].get("embedding_model", {})
    return sum(count for model, count in made_by.items() if model != current)


def other_vocabulary_photos(stack: Stack, count: int) -> int | None:
    """How many indexed products lack keypoints named by the detector's vocabulary (ingested before
    photos had keypoints, or before make train-keypoints): their photos are not found by them. None
    when the store keeps no keypoints at all (made before them: only a new store can); 0 when the
    gateway matches no photos by keypoints (GATEWAY_DUPLICATE_INLIERS=0)."""
    if stack.gateway_settings().duplicate_inliers == 0:
        return 0  # photos are not matched by keypoints: none are stored
    index = httpx.get(f"{stack.url('index-service')}/readyz", timeout=10.0).json()
    if not index.get("keypoints", False):
        return None
    current = httpx.get(f"{stack.url('detector-service')}/readyz", timeout=10.0).json()["vocabulary"]
    facets = httpx.get(f"{stack.url('index-service')}/facets", timeout=60.0)
    facets.raise_for_status()
    return count - int(facets.json()["counts"].get("keypoint_vocabulary", {}).get(current, 0))


def run_ingestion(stack: Stack, catalog: Path, limit: int | None = None) -> int:
    from gateway.ingest import ingest, log_report

    report = asyncio.run(ingest(catalog, stack.gateway_settings(), limit))
    log_report(report)
    return 0 if not report.failed else 2


def command_run(args: argparse.Namespace) -> int:
    catalog = args.catalog.resolve()
    stack = Stack(env={"GATEWAY_CATALOG_DIR": str(catalog)})
    logger.info("starting services", extra={"logs": str(stack.log_dir)})
    stopping = False

    def request_stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    with running(stack):
        count = index_count(stack.url("index-service"))
        stale = other_model_products(stack)
        unnamed = other_vocabulary_photos(stack, count)
        if unnamed is None:
            logger.warning(
                "the index was made before photos had keypoints: a shopper's copy of a catalog photo "
                "is not matched to it; run `make clean-index run` to index the catalog again"
            )
        if count == 0:
            logger.info("the index is empty: ingesting the catalog", extra={"catalog": str(catalog)})
            run_ingestion(stack, catalog)
        elif stale:
            logger.info(
                "the index holds products embedded by another model: ingesting the catalog again",
                extra={"catalog": str(catalog), "products_of_other_models": stale},
            )
            run_ingestion(stack, catalog)
        elif unnamed:
            logger.info(
                "the index holds photos without keypoints of the detector's vocabulary: ingesting the "
                "catalog again",
                extra={"catalog": str(catalog), "products_without_them": unnamed},
            )
            run_ingestion(stack, catalog)
        else:
            logger.info("index already holds products", extra={"count": count})
        url = stack.url("gateway")
        sys.stdout.write(
            f"\nShop The Look is running at {url}  (API docs: {url}/docs)\n"
            f"  try: curl -F image=@../shared/queries/dev/ootd_model_model_8.png '{url}/recommend'\n"
            "Press Ctrl-C to stop.\n"
        )
        sys.stdout.flush()
        while not stopping:
            dead = [n for n, p in stack.processes.items() if p.poll() is not None]
            if dead:
                logger.error("a service exited", extra={"services": dead, "logs": str(stack.log_dir)})
                return 1
            time.sleep(0.5)
    logger.info("stopped")
    return 0


def command_ingest(args: argparse.Namespace) -> int:
    catalog = args.catalog.resolve()
    stack = Stack(services=("index-service", "embedding-service", "detector-service"))
    needed = [stack.url(name) for name in stack.services]
    if reachable(needed):
        return run_ingestion(stack, catalog, args.limit)
    with running(stack):
        return run_ingestion(stack, catalog, args.limit)


def main(argv: list[str] | None = None) -> int:
    from shared.logs import configure_logging

    configure_logging("stack")
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="start everything; ingest the catalog if the index is empty")
    run.add_argument("--catalog", type=Path, required=True)
    ingest = commands.add_parser("ingest", help="ingest a catalog (starting the services it needs)")
    ingest.add_argument("--catalog", type=Path, required=True)
    ingest.add_argument("--limit", type=int, default=None)
    args = parser.parse_args(argv)
    return {"run": command_run, "ingest": command_ingest}[args.command](args)


if __name__ == "__main__":
    raise SystemExit(main())
