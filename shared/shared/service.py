"""What every service has: health and readiness, Prometheus metrics, JSON errors, request ids,
a bounded inference pool and background model loading."""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import pydantic_core
from fastapi import FastAPI, HTTPException, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.images import ImageError, ImageTooLarge
from shared.logs import request_id_var
from shared.memory import reuse_freed_memory
from shared.settings import ServiceSettings

T = TypeVar("T")
D = TypeVar("D")  # a decoded image: an array or a PIL image

REQUEST_ID_HEADER = "X-Request-ID"
# the detector's and the embedding service's switch for colour naming (the clients send it)
ColoursQuery = Annotated[
    bool,
    Query(
        description="Name each garment's dominant colour; false skips it (catalog ingestion: the catalog names them)"
    ),
]
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Busy(Exception):
    """The inference queue is full: answer 503 instead of queueing without bound."""


class Readiness:
    """Not ready until ``mark_ready``; ``mark_failed`` records why loading failed."""

    def __init__(self) -> None:
        self.ready = False
        self.reason = "loading"

    def mark_ready(self) -> None:
        self.ready, self.reason = True, "ready"

    def mark_failed(self, reason: str) -> None:
        self.ready, self.reason = False, reason


class InferencePool:
    """A fixed number of worker threads plus a bounded number of waiting calls."""

    def __init__(self, workers: int, max_waiting: int, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._slots = threading.BoundedSemaphore(workers + max_waiting)

    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        if not self._slots.acquire(blocking=False):
            raise Busy("too many requests are waiting for inference; try again shortly")
        try:
            call = functools.partial(fn, *args, **kwargs)
            return await asyncio.get_running_loop().run_in_executor(self._executor, call)
        finally:
            self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class ServiceMetrics:
    """Per-app registry so that several apps can live in one test process."""

    def __init__(self, service: str) -> None:
        prefix = service.removesuffix("-service").replace("-", "_")
        self.prefix = prefix
        self.registry = CollectorRegistry()
        self.requests = Counter(
            f"{prefix}_requests_total",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_duration = Histogram(
            f"{prefix}_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.inference_duration = Histogram(
            f"{prefix}_inference_duration_seconds",
            "Model or index work per call",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


def error_response(status: int, error: str, detail: Any) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": error, "detail": detail})


def _http_error_name(status: int) -> str:
    return {
        400: "bad_request",
        401: "unauthorized",
        404: "not_found",
        409: "conflict",
        413: "payload_too_large",
        422: "validation_error",
        503: "unavailable",
    }.get(status, "error")


def create_app(
    *,
    service: str,
    title: str,
    version: str,
    logger: logging.Logger,
    load: Callable[[FastAPI], Awaitable[None]] | None = None,
    startup: Callable[[FastAPI], Awaitable[None]] | None = None,
    shutdown: Callable[[FastAPI], Awaitable[None]] | None = None,
    description: str = "",
    keep_freed_buffers: bool = True,
) -> FastAPI:
    """A FastAPI app with the common routes and handlers.

    ``startup``/``shutdown`` run in the lifespan (clients, pools); ``load`` runs in the background
    after startup and marks the service ready when it returns, or records the failure.
    ``keep_freed_buffers``: reuse freed photo-sized buffers (see shared.memory) for services
    that handle images.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if keep_freed_buffers:
            reuse_freed_memory()
        if startup:
            await startup(app)
        task = asyncio.create_task(_load_in_background(app)) if load else None
        if not load:
            app.state.readiness.mark_ready()
        try:
            yield
        finally:
            if task and not task.done():
                task.cancel()
            if shutdown:
                await shutdown(app)

    async def _load_in_background(app: FastAPI) -> None:
        assert load is not None
        started = time.perf_counter()
        try:
            await load(app)
        except Exception as exc:  # a failed load keeps the service alive but unready, with the reason
            logger.exception("loading failed")
            app.state.readiness.mark_failed(f"loading failed: {exc}")
            return
        app.state.readiness.mark_ready()
        logger.info("ready", extra={"load_seconds": round(time.perf_counter() - started, 3)})

    app = FastAPI(title=title, version=version, description=description, lifespan=lifespan)
    app.router.route_class = RustJSONRoute
    app.state.readiness = Readiness()
    app.state.metrics = ServiceMetrics(service)
    app.state.logger = logger
    _add_common_routes(app)
    _add_error_handlers(app, logger)
    _add_request_middleware(app, logger)
    return app


class RustJSONRequest(Request):
    """A request whose JSON body is parsed by pydantic-core (Rust) rather than ``json.loads``: the
    1280 floats of a vector took json.loads about 0.3 ms, longer than the /persons work itself."""

    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            try:
                self._json = pydantic_core.from_json(body)
            except ValueError as exc:  # FastAPI turns this one into its 422 "json_invalid"
                raise json.JSONDecodeError(str(exc), body.decode(errors="replace"), 0) from exc
        return self._json


class RustJSONRoute(APIRoute):
    """FastAPI's route with ``RustJSONRequest``: validation, errors and OpenAPI stay FastAPI's."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            return await handler(RustJSONRequest(request.scope, request.receive))

        return handle


def create_pooled_app(
    *,
    service: str,
    settings: ServiceSettings,
    logger: logging.Logger,
    load: Callable[[], Any],
    description: str,
    close: Callable[[], Any] | None = None,
    keep_freed_buffers: bool = True,
) -> FastAPI:
    """A model or index service: ``app.state.pool`` runs the work, ``load`` runs in it at start-up,
    and at shutdown the service turns unready before ``close`` releases what ``load`` opened."""

    async def startup(app: FastAPI) -> None:
        app.state.pool = InferencePool(settings.inference_threads, settings.max_waiting, service)

    async def load_in_pool(app: FastAPI) -> None:
        await app.state.pool.run(load)

    async def shutdown(app: FastAPI) -> None:
        app.state.readiness.mark_failed("shutting down")
        if close is not None:  # not through the pool: closing must happen even when its queue is full
            await asyncio.to_thread(close)
        app.state.pool.shutdown()

    return create_app(
        service=service,
        title=service,
        version="0.1.0",
        logger=logger,
        load=load_in_pool,
        startup=startup,
        shutdown=shutdown,
        description=description,
        keep_freed_buffers=keep_freed_buffers,
    )


async def analyse_upload(
    request: Request,
    upload: UploadFile,
    analyse: Callable[[D], T],
    *,
    decode: Callable[..., D],
    operation: str,
    max_bytes: int,
    max_pixels: int,
    at_least: int | None = None,
) -> T:
    """Read an uploaded image, then ``decode`` it (``decode_image`` or ``decode_picture``, with the
    size limits; see ``decode_image`` for ``at_least``) and ``analyse`` it in one job of the app's
    pool: one hand-over between the event loop and the pool per request, not two.
    ``<service>_inference_duration_seconds`` times the analysis alone."""
    data = await read_upload(upload, max_bytes)
    return await _decode_and_analyse(
        request,
        operation,
        functools.partial(decode, data, max_bytes=max_bytes, max_pixels=max_pixels, at_least=at_least),
        analyse,
    )


async def analyse_uploads(
    request: Request,
    uploads: list[UploadFile],
    analyse: Callable[[list[D]], T],
    *,
    decode: Callable[..., D],
    operation: str,
    max_count: int,
    max_bytes: int,
    max_pixels: int,
    at_least: int | None = None,
) -> T:
    """``analyse_upload`` for a batch of images in one request: 413 past ``max_count`` images, and
    an image that cannot be decoded is named by its position."""
    if len(uploads) > max_count:
        raise HTTPException(413, f"{len(uploads)} images in one request; the limit is {max_count}")
    blobs = [await read_upload(upload, max_bytes) for upload in uploads]

    def decode_all() -> list[D]:
        images = []
        for index, blob in enumerate(blobs):
            try:
                images.append(decode(blob, max_bytes=max_bytes, max_pixels=max_pixels, at_least=at_least))
            except ImageError as exc:
                raise type(exc)(f"image {index}: {exc}") from exc
        return images

    return await _decode_and_analyse(request, operation, decode_all, analyse)


async def _decode_and_analyse(
    request: Request, operation: str, decode: Callable[[], D], analyse: Callable[[D], T]
) -> T:
    """``decode`` then ``analyse`` in one job of the app's pool; the operation's
    ``<service>_inference_duration_seconds`` times the analysis alone."""
    pool: InferencePool = request.app.state.pool
    timer = request.app.state.metrics.inference_duration.labels(operation)

    def job() -> T:
        decoded = decode()
        with timer.time():
            return analyse(decoded)

    return await pool.run(job)


def _add_common_routes(app: FastAPI) -> None:
    @app.get("/healthz", tags=["ops"], summary="The process is alive")
    async def healthz() -> dict[str, str]:
        return {"status": "alive"}

    @app.get("/readyz", tags=["ops"], summary="Models or index are loaded")
    async def readyz(request: Request) -> JSONResponse:
        readiness: Readiness = request.app.state.readiness
        extra_check = getattr(request.app.state, "readiness_check", None)
        ready, reason = readiness.ready, readiness.reason
        details: dict[str, Any] = {}
        if ready and extra_check is not None:
            ready, reason, details = await extra_check()
        status = 200 if ready else 503
        return JSONResponse(status_code=status, content={"ready": ready, "reason": reason, **details})

    @app.get("/metrics", tags=["ops"], summary="Prometheus metrics")
    async def metrics(request: Request) -> Response:
        registry = request.app.state.metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI, logger: logging.Logger) -> None:
    @app.exception_handler(RequestValidationError)
    async def on_validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        return error_response(422, "validation_error", errors)

    @app.exception_handler(HTTPException)
    async def on_http_error(_: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.detail, dict) and "error" in exc.detail:
            return JSONResponse(status_code=exc.status_code, content=exc.detail, headers=exc.headers)
        response = error_response(exc.status_code, _http_error_name(exc.status_code), exc.detail)
        if exc.headers:
            response.headers.update(exc.headers)
        return response

    @app.exception_handler(ImageError)
    async def on_image_error(_: Request, exc: ImageError) -> JSONResponse:
        return error_response(exc.status, exc.code, str(exc))

    @app.exception_handler(Busy)
    async def on_busy(_: Request, exc: Busy) -> JSONResponse:
        response = error_response(503, "busy", str(exc))
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(Exception)
    async def on_unexpected(_: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error")
        return error_response(500, "internal_error", f"{type(exc).__name__}: {exc}")


def _add_request_middleware(app: FastAPI, logger: logging.Logger) -> None:
    app.add_middleware(ObserveRequests, logger=logger)  # type: ignore[arg-type]


class ObserveRequests:
    """Request id (taken from the caller or made), Server-Timing, metrics and one log line per
    request. Plain ASGI rather than ``@app.middleware("http")``: that runs the app in a task of its
    own behind memory streams, about a millisecond per request on this CPU."""

    def __init__(self, app: ASGIApp, logger: logging.Logger) -> None:
        self.app = app
        self.logger = logger

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = Headers(scope=scope).get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        token = request_id_var.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_observed(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = MutableHeaders(scope=message)
                headers[REQUEST_ID_HEADER] = request_id
                # the time this service took, from the request's arrival to its answer (body included)
                headers["Server-Timing"] = f"app;dur={(time.perf_counter() - started) * 1000:.1f}"
            await send(message)

        try:
            await self.app(scope, receive, send_observed)
        finally:
            self._observe(scope, status, time.perf_counter() - started)
            request_id_var.reset(token)

    def _observe(self, scope: Scope, status: int, elapsed: float) -> None:
        route_path = getattr(scope.get("route"), "path", "unmatched")
        metrics: ServiceMetrics = scope["app"].state.metrics
        metrics.requests.labels(scope["method"], route_path, str(status)).inc()
        metrics.request_duration.labels(scope["method"], route_path).observe(elapsed)
        if route_path not in ("/healthz", "/readyz", "/metrics"):
            self.logger.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "ms": round(elapsed * 1000, 1),
                },
            )


async def require_ready(request: Request) -> None:
    """Route dependency: 503 while the model or index is still loading (async: FastAPI would run a
    plain function in a worker thread, a hand-over per request for a flag check)."""
    readiness: Readiness = request.app.state.readiness
    if not readiness.ready:
        raise HTTPException(status_code=503, detail=f"not ready: {readiness.reason}")


async def read_upload(upload: UploadFile, max_bytes: int) -> bytes:
    """Read an uploaded file, refusing it with 413 as soon as it passes ``max_bytes``."""
    chunks: list[bytes] = []
    size = 0
    while chunk := await upload.read(1024 * 1024):
        size += len(chunk)
        if size > max_bytes:
            raise ImageTooLarge(f"the upload is over the limit of {max_bytes} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def serve(app_path: str, settings: ServiceSettings) -> None:
    """Run a service's app with uvicorn, logging through the service's JSON logger."""
    import uvicorn

    uvicorn.run(
        app_path,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
