"""The center's ingest HTTP API: a FastAPI router and a factory for a standalone app.

Mount :func:`sync_router` in the main service app, or run :func:`create_center_app` as its
own process (``zhichao center serve``). Routes (prefix ``/sync/v1``, see
:mod:`zhichao.sync.wire`):

* ``PUT /packages/{manifest_sha256}`` — one packed evidence package;
* ``POST /passages`` — a batch of signed passage records;
* ``POST /stations/{station_id}/checkpoints`` — the station's latest signed checkpoint;
* ``GET /stations/{station_id}`` — the center's view of a station's log (accepted size,
  root and checkpoint, counts, fork alarm);
* ``GET /health`` — liveness and counts (``hook_pending``: accepted items the accept hook
  has not taken yet).

Refusals are JSON ``{"code", "message_zh", "message_en", "permanent", ...}`` with the
status from :data:`zhichao.sync.wire.REFUSALS`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from zhichao.evidence import strict_json
from zhichao.evidence.errors import EvidenceError
from zhichao.service.center.store import (
    DEFAULT_MAX_PACKAGE_BYTES,
    AcceptHook,
    CenterStore,
    Outcome,
    ProofClaim,
    make_engine,
)
from zhichao.service.objectstore import PackageFiles
from zhichao.sync.wire import (
    API_PREFIX,
    HEADER_PROOF,
    HEADER_PROOF_FROM,
    HEADER_PROOF_TO,
    PROTOCOL,
    REFUSALS,
    refusal_body,
)

_SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_CHECKPOINT_BYTES = 64 * 1024


def _json(outcome: Outcome) -> JSONResponse:
    return JSONResponse(outcome.body, status_code=outcome.status)


def _refused(code: str, detail: str = "") -> JSONResponse:
    return JSONResponse(refusal_body(code, detail), status_code=REFUSALS[code][0])


def sync_router(store: CenterStore) -> APIRouter:
    """The ingest routes bound to ``store``."""
    router = APIRouter(prefix=API_PREFIX, tags=["sync"])

    @router.put("/packages/{manifest_sha256}")
    async def put_package(manifest_sha256: str, request: Request) -> JSONResponse:
        if not _SHA.match(manifest_sha256):
            return _refused("request.malformed", "manifest_sha256 must be 64 lowercase hex")
        try:
            proof = ProofClaim.parse(request.headers.get(HEADER_PROOF_FROM),
                                     request.headers.get(HEADER_PROOF_TO),
                                     request.headers.get(HEADER_PROOF))
        except ValueError as exc:
            return _refused("log.proof_malformed", str(exc))
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > store.max_package_bytes:
            return _refused("package.too_large", f"{declared} > {store.max_package_bytes}")
        chunks: list[bytes] = []
        total = 0
        async for chunk in request.stream():
            total += len(chunk)
            if total > store.max_package_bytes:
                return _refused("package.too_large", f"> {store.max_package_bytes}")
            chunks.append(chunk)
        spooled = await run_in_threadpool(store.spool, chunks)
        if isinstance(spooled, Outcome):
            return _json(spooled)
        path, content_sha = spooled
        outcome = await run_in_threadpool(store.ingest_package, manifest_sha256, path,
                                          content_sha, proof)
        return _json(outcome)

    @router.post("/passages")
    async def post_passages(request: Request) -> JSONResponse:
        try:
            body: Any = strict_json.loads(await request.body(), "request body")
            station_id = strict_json.string(body, "station_id", "request body")
            items = strict_json.member(body, "items", "request body")
            if not isinstance(items, list):
                raise TypeError("items must be a list")
        except (EvidenceError, TypeError) as exc:
            return _refused("request.malformed", str(exc))
        return _json(await run_in_threadpool(store.ingest_passages, station_id, items))

    @router.post("/stations/{station_id}/checkpoints")
    async def post_checkpoint(station_id: str, request: Request) -> JSONResponse:
        try:
            proof = ProofClaim.parse(request.headers.get(HEADER_PROOF_FROM),
                                     request.headers.get(HEADER_PROOF_TO),
                                     request.headers.get(HEADER_PROOF))
        except ValueError as exc:
            return _refused("log.proof_malformed", str(exc))
        note = await request.body()
        if len(note) > MAX_CHECKPOINT_BYTES:
            return _refused("request.malformed", f"checkpoint over {MAX_CHECKPOINT_BYTES} bytes")
        return _json(await run_in_threadpool(store.ingest_checkpoint, station_id, note, proof))

    @router.get("/stations/{station_id}")
    def get_station(station_id: str) -> JSONResponse:
        view = store.station_view(station_id)
        if view is None:
            return _refused("station.unknown", station_id)
        return JSONResponse(view)

    @router.get("/health")
    def health() -> dict[str, Any]:
        return {"protocol": PROTOCOL, "status": "ok", **store.counts()}

    return router


def create_center_app(database_url: str, store_dir: Path, center_key: Ed25519PrivateKey, *,
                      schema: str | None = None, hook: AcceptHook | None = None,
                      max_package_bytes: int = DEFAULT_MAX_PACKAGE_BYTES,
                      create_tables: bool = True, files: PackageFiles | None = None
                      ) -> FastAPI:
    """A standalone center app: its own engine, store and tables.

    ``hook`` receives each newly accepted item (:class:`~zhichao.service.center.store.Accepted`)
    after it is committed; see docs/sync.md. Items the hook failed on are offered again
    at start-up. ``files`` keeps accepted packages (default: ``store_dir/packages``; an
    :class:`~zhichao.service.objectstore.S3Packages` for replicas on several machines).
    """
    engine = make_engine(database_url)
    store = CenterStore(engine, store_dir, center_key, schema=schema, hook=hook,
                        max_package_bytes=max_package_bytes, files=files)
    if create_tables:
        store.create_tables()
    store.redeliver()
    app = FastAPI(title="zhichao center ingest", version=PROTOCOL)
    app.state.sync_store = store
    app.include_router(sync_router(store))
    return app

