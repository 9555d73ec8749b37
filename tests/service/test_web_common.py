"""Shared helpers of the web tests (no tests here): a simulated lane weighed by the core,
each overloaded vehicle sealed into a real evidence package and registered as a case, and
a console app with one account per role.

The chain is the real one: ``zhichao.devices.sim`` writes a raw recording, the weighing
core weighs it, ``zhichao.evidence.package.seal_package`` seals each overloaded vehicle
with synthetic photos (the evidence tests' photos) and the recording as its waveform, and
``zhichao.service.ingest.register_ingested_package`` opens the case from the manifest
bytes actually on disk.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from tests.evidence.conftest import case_dict
from tests.service.conftest import PASSWORD, TEST_POLICY
from zhichao.devices.recording import read_recording
from zhichao.devices.sim.lane import SimOptions, simulate
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import generate_key
from zhichao.service import accounts, ingest
from zhichao.service.center.tables import register_station
from zhichao.service.db import transaction
from zhichao.service.models import Case, Device, User
from zhichao.service.settings import Settings
from zhichao.service.web import WebSettings, create_console_app
from zhichao.testing.cases import verified_check

SIM_SEED = 28  # this seed's four trucks include three overloaded ones by the default deduction
SIM_START = datetime(2026, 3, 2, 1, 0, tzinfo=UTC)
VIN = "LFWADRJF1J7654321"
FILE_NO = "330100765432"
INJECT = '<script>alert("x")</script><img src=x onerror=alert(1)>'
STAFF_ROLES = tuple(accounts.ROLES_ZH)


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _clips(base: Path, t: datetime) -> list[dict[str, Any]]:
    import numpy as np

    from zhichao.evidence.clip import encode_clip

    frames = []
    for i in range(30):
        img = np.full((180, 320, 3), 70, np.uint8)
        img[60:120, 10 * i:10 * i + 40] = (0, 190, 230)  # a yellow block driving across
        frames.append((i / 10, img))
    encode_clip(frames, base / "front.mp4", fps=10)
    window = {"start_utc": _utc(t - timedelta(seconds=1.5)),
              "end_utc": _utc(t + timedelta(seconds=1.5))}
    return [{"camera_id": "CAM-F", "path": "front.mp4", **window},
            {"camera_id": "CAM-R", "missing_reason": "the camera's stream gave no frame "
             "in the window", **window}]


@dataclass
class Lane:
    """Sealed packages of the simulated overloads, ready to register."""

    packages: list[Path]
    records: list[dict[str, Any]]  # the overloads, one per package
    others: list[dict[str, Any]] = field(default_factory=list)  # the lane's other passages


#: where the front photo's plate read lies (``zhichao.testing.cases.photo``: 320 × 200 px)
FRONT_READ_BOX_PX = [100.0, 100.0, 220.0, 130.0]


def plate_reads(plate: str, captured_utc: str) -> list[dict[str, Any]]:
    """The station's record of the reads behind a plate: one on the front photo (CAM-F),
    one by a camera whose photo the package does not hold."""
    model = {"text": plate, "char_confidences": [0.99] * len(plate), "province": plate[0],
             "province_confidence": 0.97}
    return [{"camera": camera, "captured_utc": captured_utc, "box_px": FRONT_READ_BOX_PX,
             "text": plate, "raw_text": plate, "char_confidences": [0.98] * len(plate),
             "colour": "yellow", "layout": "single", "plate_model": model}
            for camera in ("CAM-F", "CAM-R9")]


def simulated_packages(root: Path, plates: list[str], *, clips: bool = False) -> Lane:
    """Simulate a truck lane, weigh it, seal each overloaded vehicle (one plate each);
    with ``clips`` each package also holds a front camera clip (H.264/MP4) and says that
    the rear camera's is missing."""
    from zhichao.weighing.stream import weigh_recording

    opts = SimOptions(trucks_only=True, abnormal_fraction=0.0, load_profile="overloaded",
                      site_id="ZJ-G60-K123", lane_id="2", start_utc=SIM_START)
    rec_path = simulate(4, SIM_SEED, root / "sim", opts, vehicles_per_recording=4)[0]
    vehicles = [v.to_dict() for v in weigh_recording(read_recording(rec_path))]
    over = [v for v in vehicles if v["overloaded"] and v["limit_kg"]]
    assert len(over) >= len(plates), f"seed {SIM_SEED}: only {len(over)} overloads"
    # the least overloaded first: the last one (cases[2]) is the clearest, a fine proposed
    over.sort(key=lambda v: v["gross_weight_kg"] / v["limit_kg"])
    station = Station("S001", "zhichao-station-S001", generate_key())
    log = MerkleLog(root / "log", origin=station.origin, create=True, fsync=False)
    packages: list[Path] = []
    try:
        for k, (plate, record) in enumerate(zip(plates, over, strict=False)):
            base = root / f"in{k}"
            base.mkdir()
            shutil.copyfile(rec_path, base / "lane2.npz")
            t = datetime.fromisoformat(record["time_utc"].replace("Z", "+00:00"))
            case = case_dict(base)
            case.update({
                "vehicle": record,
                "plate": {"text": plate, "colour": "黄", "confidence": 0.99, "accepted": True,
                          "reads": plate_reads(plate, _utc(t))},
                "registration": {"plate_text": plate, "axle_count": record["axle_count"],
                                 "total_mass_kg": record["limit_kg"],
                                 "owner_name_zh": "温岭某某物流有限公司"},
                "clocks": {"reference_zh": "站内参考时钟（NTP 授时，已核验）",
                           "measured_utc": _utc(t - timedelta(minutes=5)),
                           "offsets_ms": {"WIM-ZJ-0007": 3.0, "CAM-F": -12.0, "CAM-S": 8.0},
                           "reference_check": verified_check(_utc(t - timedelta(minutes=5)))},
            })
            case["device"]["certificate_valid_from"] = "2026-01-01T00:00:00+08:00"
            case["device"]["certificate_valid_to"] = "2027-01-01T00:00:00+08:00"
            for image, dt in zip(case["images"], (0.0, 0.5, 1.5, 0.0), strict=True):
                image["capture_utc"] = _utc(t + timedelta(seconds=dt))
                if image["role"] == "side":
                    image["axle_count_visible"] = record["axle_count"]
            if clips:
                case["videos"] = _clips(base, t)
            result = seal_package(CaseInputs.from_json(case), root / f"pkg{k}",
                                  station=station, log=log, base_dir=base,
                                  renderer=lambda *_: {})
            packages.append(result.directory)
    finally:
        log.close()
    return Lane(packages, over[:len(plates)],
                [v for v in vehicles if not (v["overloaded"] and v["limit_kg"])])


def register(sessions: sessionmaker[Session], package: Path) -> Case:
    raw = (package / "manifest.json").read_bytes()
    with transaction(sessions) as s:
        case = ingest.register_ingested_package(s, json.loads(raw), package,
                                                manifest_sha256=hashlib.sha256(raw).hexdigest())
    assert isinstance(case, Case), "the sealed overload must open a case"
    return case


@dataclass
class Web:
    app: FastAPI
    sessions: sessionmaker[Session]
    users: dict[str, User]
    settings: Settings
    lane: Lane
    cases: list[Case] = field(default_factory=list)


PLATES = ["浙J1W001", "浙J1W002", "浙J1W003"]


def make_web(tmp: Path, lane: Lane, *, url: str | None = None, schema: str | None = None,
             cookie_secure: bool = False, **settings_kw: Any) -> Web:
    """A console app on its own database, with its own copies of the sealed packages."""
    copies = []
    for package in lane.packages:
        copies.append(Path(shutil.copytree(package, tmp / "store" / package.name)))
    lane = Lane(copies, lane.records, lane.others)
    settings = Settings(database_url=url or f"sqlite:///{tmp / 'web.db'}", database_schema=schema,
                        **{"owner_query_min_duration_ms": 20, "deadlines": TEST_POLICY,
                           "login_per_client_per_minute": 1000,
                           "owner_query_per_client_per_minute": 1000, **settings_kw})
    app = create_console_app(settings, web=WebSettings(cookie_secure=cookie_secure))
    sessions = app.state.sessions
    # The center's register of station keys: the key the lane above sealed with (this
    # fixture made the packages itself); the integrity view checks against it.
    register_station(app.state.engine, "S001", (lane.packages[0] / "station.pub").read_bytes())
    users: dict[str, User] = {}
    with transaction(sessions) as s:
        for role in STAFF_ROLES:
            users[role] = accounts.create_user(
                s, username=f"{role.replace('_', '')[:10]}{uuid.uuid4().hex[:6]}",
                password=PASSWORD, display_name_zh=f"测试{accounts.ROLES_ZH[role]}",
                roles=[role], station_id="S001" if role == "station_operator" else None)
    web = Web(app, sessions, users, settings, lane)
    for plate, package in zip(PLATES, lane.packages, strict=True):
        web.cases.append(register(sessions, package))
        with transaction(sessions) as s:
            ingest.upsert_vehicle(s, plate=plate, plate_colour="黄", vin=VIN,
                                  licence_file_number=FILE_NO,
                                  owner_name_zh="温岭某某物流有限公司", owner_phone="13800000000")
    with transaction(sessions) as s:
        for record in lane.others:  # not overloaded (or undecidable): passages, no case
            ingest.register_passage(s, record, station_id="S001", device_id="WIM-ZJ-0007")
        device = s.get(Device, "WIM-ZJ-0007")
        assert device is not None
        device.health = "ok"
        device.certificate_valid_from = datetime(2025, 12, 31, 16, tzinfo=UTC)
        device.certificate_valid_to = datetime(2026, 12, 31, 16, tzinfo=UTC)
    return web


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([0-9a-f]{64})"', html)
    assert match, "page has no CSRF token"
    return match.group(1)


def version_of(html: str) -> int:
    match = re.search(r'name="expected_version" value="(\d+)"', html)
    assert match, "page has no version field"
    return int(match.group(1))


_LANES: dict[str, Lane] = {}


def shared_lane(tmp_path_factory: Any) -> Lane:
    """The simulated, sealed packages, made once per test session."""
    if "lane" not in _LANES:
        _LANES["lane"] = simulated_packages(tmp_path_factory.mktemp("simlane"), PLATES)
    return _LANES["lane"]


def past_statement_period(sessions: sessionmaker[Session], case_id: int) -> None:
    """Move a case's statement and hearing deadlines into the past (the only way a test
    can let the statutory periods run out without waiting for them)."""
    with transaction(sessions) as s:
        row = s.get(Case, case_id)
        assert row is not None
        past = datetime.now(UTC).date() - timedelta(days=30)
        row.statement_due = past
        if row.hearing_request_due is not None:
            row.hearing_request_due = past
