"""The station's own service (its web console's database), fed through the sync wire.

A passage reaches a service database one way only: the station's outbox → the sync
stage's uploader → a center's ingest (:mod:`zhichao.service.center`) → its accept hook
(:class:`~zhichao.service.center.service_hook.ServiceHook`). With ``station.center_url``
that center is the enforcement center. Without one, the station runs the same center code
for its own console: :class:`LocalService` opens ``<data>/service.db`` (the service's
Alembic migrations, which also hold the sync tables), trusts the station's public key,
signs receipts with a key of its own (``<data>/local-center-key.pem``, 0600) and serves
the center's ingest routes (:func:`~zhichao.service.center.server.sync_router`) on a
loopback port chosen by the kernel; the station's uploader pushes to it like to any
center. Packages land in ``<data>/local-center/`` as the center stores them.

Demo accounts exist only on a simulated lane (:meth:`LocalService.demo_accounts`), made
with the service's own account function, never an administrator, their passwords in
``<data>/demo-accounts.json`` (0600), never printed.
"""

from __future__ import annotations

import json
import logging
import secrets
import socket
import threading
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao.common import write_atomic
from zhichao.evidence.signing import generate_key, load_private_key, private_pem, public_pem
from zhichao.station.config import StationConfig
from zhichao.station.errors import StationError
from zhichao.station.upload import UploadTarget

LOG = logging.getLogger("zhichao.station.service")
# demo accounts exist only on a simulated lane, and none administers the service
DEMO_ROLES = ("station_operator", "technical_reviewer", "legal_reviewer", "decision_maker",
              "auditor")
DEMO_ACCOUNTS_FILE = "demo-accounts.json"
RETIRED_DEMO_USERS = ("demo.administrator",)  # created by earlier versions; disabled
LOCAL_CENTER_KEY = "local-center-key.pem"
LOCAL_CENTER_DIR = "local-center"
SERVE_START_S = 30.0


def _secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(32)
    write_atomic(path, value.encode(), mode=0o600)
    return value


def _center_key(path: Path) -> Ed25519PrivateKey:
    if path.exists():
        return load_private_key(path)
    key = generate_key()
    write_atomic(path, private_pem(key), mode=0o600)
    return key


class LocalService:
    """The service database behind the station's console and the center that feeds it."""

    def __init__(self, cfg: StationConfig) -> None:
        from zhichao.service.db import make_engine, session_factory, upgrade
        from zhichao.service.settings import Settings

        self.cfg = cfg
        self.url = f"sqlite:///{cfg.data_dir / 'service.db'}"
        self.settings = Settings(database_url=self.url,
                                 secret_key=_secret(cfg.data_dir / "service-secret.txt"),
                                 migrate_on_start=False)
        self.engine = make_engine(self.url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ the center
    def serve_center(self, station_key: Ed25519PrivateKey, key_name: str) -> UploadTarget:
        """Serve the center's ingest routes for this station on loopback; where to upload."""
        import uvicorn
        from fastapi import FastAPI

        from zhichao.service.center.server import sync_router
        from zhichao.service.center.service_hook import ServiceHook
        from zhichao.service.center.store import CenterStore, make_engine

        center_key = _center_key(self.cfg.data_dir / LOCAL_CENTER_KEY)
        store = CenterStore(make_engine(self.url), self.cfg.data_dir / LOCAL_CENTER_DIR,
                            center_key, hook=ServiceHook.for_engine(self.engine))
        store.create_tables()
        # the station is this service's only source: its own key is the one to trust
        store.register_station(self.cfg.station.station_id,
                               public_pem(station_key.public_key()), key_name=key_name,
                               replace_key=True)
        store.redeliver()
        app = FastAPI(title="zhichao station service ingest")
        app.include_router(sync_router(store))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run,
                                        kwargs={"sockets": [sock]},
                                        name="station-service-ingest", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + SERVE_START_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise StationError("本站业务库接收服务未能启动 (the station's service ingest "
                                   "did not start on loopback)")
            time.sleep(0.02)
        return UploadTarget(f"http://127.0.0.1:{port}", center_key.public_key(), local=True)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5.0)

    # ------------------------------------------------------------------ demo accounts
    def demo_accounts(self) -> tuple[Path, list[tuple[str, str]]] | None:
        """On a simulated lane: the demo accounts (created on first start) as the file that
        holds their passwords (``<data>/demo-accounts.json``, readable only by this user,
        0600) and their (username, role) — passwords are never printed. None on a real
        lane: accounts there are made with ``zhichao users add``."""
        from zhichao.service.accounts import ROLES_ZH, create_user
        from zhichao.service.models import User

        if not self.cfg.simulated:
            return None
        path = self.cfg.data_dir / DEMO_ACCOUNTS_FILE
        known: dict[str, str] = {}
        if path.exists():
            known = json.loads(path.read_text(encoding="utf-8"))
        for name in RETIRED_DEMO_USERS:
            known.pop(name, None)
        out = []
        with self.sessions() as s:
            for name in RETIRED_DEMO_USERS:
                for u in s.query(User).filter(User.username == name):
                    u.active = False
            for role in DEMO_ROLES:
                name = f"demo.{role.split('_')[0]}"
                password = known.get(name) or f"demo-{secrets.token_urlsafe(9)}"
                exists = s.query(User).filter(User.username == name).first()
                if exists is None:
                    create_user(s, username=name, password=password,
                                display_name_zh=f"演示{ROLES_ZH[role]}", roles=[role],
                                station_id=self.cfg.station.station_id)
                    known[name] = password
                out.append((name, ROLES_ZH[role]))
            s.commit()
        write_atomic(path, json.dumps(known, ensure_ascii=False, indent=1).encode(),
                     mode=0o600)
        return path, out


def open_local_service(cfg: StationConfig) -> LocalService | None:
    """The station's service, or None where the service stage is not installed."""
    try:
        return LocalService(cfg)
    except ImportError:
        return None
