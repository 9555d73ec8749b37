"""Writing the station's passages and packages through the service core, beside its store.

The station's own SQLite store stays the crash-safe record; this link copies into the
service database (``zhichao.service``: SQLAlchemy models, Alembic-migrated) with the
service's own functions, like an outbox: every second the rows committed since the last
synced id are registered (``register_passage`` with ``source_key`` = the passage key;
``register_ingested_package`` for each sealed, verified package, which opens the case in
``technical_review`` when one is due). Both functions are idempotent, so a kill between the
two databases is repaired by the next sync. The web console serves the same database.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

from zhichao.common import write_atomic
from zhichao.station.config import StationConfig
from zhichao.station.store import StationStore

LOG = logging.getLogger("zhichao.station.service")
# demo accounts exist only on a simulated lane, and none administers the service
DEMO_ROLES = ("station_operator", "technical_reviewer", "legal_reviewer", "decision_maker",
              "auditor")
DEMO_ACCOUNTS_FILE = "demo-accounts.json"
RETIRED_DEMO_USERS = ("demo.administrator",)  # created by earlier versions; disabled


def _secret(path: Path) -> str:
    if path.exists():
        return path.read_text(encoding="utf-8").strip()
    value = secrets.token_urlsafe(32)
    write_atomic(path, value.encode(), mode=0o600)
    return value


class ServiceLink:
    def __init__(self, cfg: StationConfig) -> None:
        from zhichao.service.db import make_engine, session_factory, upgrade
        from zhichao.service.settings import Settings

        self.cfg = cfg
        url = f"sqlite:///{cfg.data_dir / 'service.db'}"
        self.settings = Settings(database_url=url,
                                 secret_key=_secret(cfg.data_dir / "service-secret.txt"),
                                 migrate_on_start=False)
        self.engine = make_engine(url)
        upgrade(self.engine)
        self.sessions = session_factory(self.engine)

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

    def sync(self, store: StationStore) -> dict[str, int]:
        """Register what the store committed since the last sync; returns counts."""
        from zhichao.service.ingest import (
            normalise_colour,
            normalise_plate,
            register_ingested_package,
            register_passage,
        )

        done = {"passages": 0, "packages": 0}
        last_p = int(store.get_meta("service_passage_id") or 0)
        last_c = int(store.get_meta("service_case_id") or 0)
        rows = store.db.execute(
            "SELECT id, passage_key, record, plate, plate_colour FROM passages WHERE id > ? "
            "AND passage_key NOT IN (SELECT passage_key FROM cases) ORDER BY id LIMIT 500",
            (last_p,)).fetchall()
        max_p = store.db.execute("SELECT COALESCE(MAX(id), 0) FROM passages").fetchone()[0]
        cases = store.db.execute(
            "SELECT id, package_dir, manifest_sha256 FROM cases WHERE status = 'sealed' AND "
            "id > ? ORDER BY id LIMIT 100", (last_c,)).fetchall()
        if not rows and not cases:
            return done
        with self.sessions() as s:
            for r in rows:
                register_passage(s, json.loads(r["record"]),
                                 station_id=self.cfg.station.station_id,
                                 plate=normalise_plate(r["plate"]),
                                 plate_colour=normalise_colour(r["plate_colour"]),
                                 device_id=self.cfg.device.device_id,
                                 source_key=f"station:{r['passage_key']}")
                done["passages"] += 1
            for c in cases:
                pkg = Path(c["package_dir"])
                manifest: dict[str, Any] = json.loads((pkg / "manifest.json").read_text("utf-8"))
                register_ingested_package(s, manifest, pkg, manifest_sha256=c["manifest_sha256"])
                done["packages"] += 1
            s.commit()
        # passages with a case are registered through their package
        new_p = rows[-1]["id"] if len(rows) == 500 else max(max_p, last_p)
        with store.transaction() as con:
            store.set_meta(con, "service_passage_id", str(new_p))
            if cases:
                store.set_meta(con, "service_case_id", str(cases[-1]["id"]))
        return done
