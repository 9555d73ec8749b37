"""Supervision benchmark: a 案卷评查 campaign, the monthly figures and the 年报 on a
database of a given size.

    python3 benchmarks/supervision_bench.py [--url sqlite:///… | postgresql+psycopg://…]
        [--passages 100000] [--cases 300] [--sites 4] [--devices 8]

Loads one year (2025, China time) of passages spread over the sites and devices (bulk
insert), and ``--cases`` cases registered from one real sealed package (the evidence
stage's test fixture, documents skipped). Then times: opening a campaign (candidates and
the seeded draw), scoring ten files and closing it (report, hash, evidence-log outbox), the
report's CSV and PDF, one month's figures (by site and total), the 年报 (by site, total
and twelve months) and its PDF. PostgreSQL tables go into a fresh schema, dropped at the end.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import random
import secrets
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.service import accounts, ingest, monthly, supervision  # noqa: E402
from zhichao.service import supervision_reports as reports  # noqa: E402
from zhichao.service.db import session_factory, transaction  # noqa: E402
from zhichao.service.models import Device, Passage, ReviewCampaign, User  # noqa: E402
from zhichao.testing.cases import seal_plain_case  # noqa: E402
from zhichao.testing.databases import scratch_database  # noqa: E402

YEAR_START = datetime(2024, 12, 31, 16, tzinfo=UTC)  # 2025-01-01 00:00 China time


def load(sessions: Any, root: Path, *, passages: int, cases: int, sites: int,
         devices: int) -> None:
    sealed = seal_plain_case(root)
    manifest, package = sealed.manifest, sealed.directory
    rng = random.Random(7)
    with transaction(sessions) as s:
        for _ in range(cases):
            m = copy.deepcopy(manifest)
            m["package_id"] = f"{m['package_id']}-{secrets.token_hex(5)}"
            digest = hashlib.sha256(json.dumps(m, sort_keys=True).encode()).hexdigest()
            ingest.register_ingested_package(s, m, package, manifest_sha256=digest)
        for d in range(devices):
            s.add(Device(device_id=f"BENCH-{d:02d}", health="ok"))
    rows = []
    for i in range(passages):
        rows.append({"source_key": f"bench-{i}", "station_id": "S001",
                     "site_id": f"SITE-{i % sites}", "lane_code": "1",
                     "device_id": f"BENCH-{i % devices}",
                     "time_utc": YEAR_START + timedelta(seconds=rng.randrange(365 * 86400)),
                     "overloaded": rng.random() < 0.05,
                     "vehicle_class": rng.choice(("two_axle", "combination_6_axle")),
                     "flags": []})
    with transaction(sessions) as s:
        for start in range(0, len(rows), 5000):
            s.execute(Passage.__table__.insert(), rows[start:start + 5000])


def timed(label: str, fn: Callable[[], Any], out: list[tuple[str, float]]) -> Any:
    t0 = time.perf_counter()
    result = fn()
    out.append((label, time.perf_counter() - t0))
    return result


def run(sessions: Any) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    with transaction(sessions) as s:
        chief = accounts.create_user(s, username="bench-chief", password=secrets.token_urlsafe(18),
                                     display_name_zh="监督", roles=["supervisor"])
        rev = accounts.create_user(s, username="bench-rev", password=secrets.token_urlsafe(18),
                                   display_name_zh="评查", roles=["supervisor"])
        ids = (chief.id, rev.id)
    with transaction(sessions) as s:
        c = timed("open campaign (candidates + seeded draw)", lambda: supervision.open_campaign(
            s, s.get(User, ids[0]), title="基准", period_start=date(2025, 1, 1),
            period_end=date(2025, 12, 31), site_ids=[], states=[], reviewer_ids=[ids[1]],
            seed="bench-seed-0001"), out)
        cid = c.id
        sample = [r.case_id for r in supervision.sample(s, c)]
    met = {k: True for k in supervision.CHECKLIST}
    with transaction(sessions) as s:
        c = s.get(ReviewCampaign, cid)
        timed(f"score {len(sample)} files", lambda: [supervision.score_case(
            s, c, s.get(User, ids[1]), case_id=i, checklist=met, problems=None,
            correction=None) for i in sample], out)
    with transaction(sessions) as s:
        c = s.get(ReviewCampaign, cid)
        timed("close campaign (report, hash, outbox)",
              lambda: supervision.close_campaign(s, c, s.get(User, ids[0])), out)
        rep = reports.campaign_report(s, c)
    timed("campaign report CSV", lambda: reports.campaign_csv(rep), out)
    timed("campaign report PDF", lambda: reports.campaign_pdf(rep), out)
    now = datetime(2026, 2, 1, tzinfo=UTC)
    with transaction(sessions) as s:
        timed("one month's figures (by site + total)",
              lambda: monthly.monthly_report(s, 2025, 6, now=now), out)
        year = timed("年报 (by site + total + 12 months)",
                     lambda: monthly.annual_report(s, 2025, now=now), out)
    timed("年报 PDF", lambda: monthly.report_pdf(year), out)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default=None, help="default: a temporary SQLite file")
    ap.add_argument("--passages", type=int, default=100_000)
    ap.add_argument("--cases", type=int, default=300)
    ap.add_argument("--sites", type=int, default=4)
    ap.add_argument("--devices", type=int, default=8)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        url = args.url or f"sqlite:///{root / 'bench.db'}"
        with scratch_database(url) as (engine, _):
            sessions = session_factory(engine)
            t0 = time.perf_counter()
            load(sessions, root, passages=args.passages, cases=args.cases, sites=args.sites,
                 devices=args.devices)
            print(f"backend {engine.dialect.name}; load {args.passages} passages, "
                  f"{args.cases} cases: {time.perf_counter() - t0:.1f} s")
            for label, seconds in run(sessions):
                print(f"| {label} | {seconds * 1000:.0f} ms |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
