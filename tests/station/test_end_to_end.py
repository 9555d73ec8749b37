"""The station for 1 000 simulated vehicles, against the simulator's truth.

``zhichao run`` is started as a real process with its simulated lane (its own process: WIM
unit over TCP loopback speaking ZSF/1, three cameras pushing JPEG frames). Plates are read
by the shipped detector and recogniser from the rendered frames; to fit the 2-core budget
only plate *candidates* are read (trucks whose gross weight is ≥ 0.9 × their limit, or whose
verdict is not clearly legal) and the PDF documents are not rendered (packages are sealed,
logged and verified all the same). Speeds are 30–90 km/h at 40× real time.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from tests.station.conftest import passages, query, truth, write_config
from zhichao.evidence.signing import load_private_key
from zhichao.evidence.verify import verify_package
from zhichao.weighing.stream import ABNORMAL_FLAGS

pytestmark = [
    pytest.mark.slow,  # minutes of simulated traffic or processes
    # the whole-lane tests run on one worker, one after the other: side by side on a
    # 2-core machine one starved the other once (docs/station.md, known weaknesses)
    pytest.mark.xdist_group("whole_lane"),
]

N_VEHICLES = 1000


def _match(rows: list[dict], t: dict) -> list[dict]:
    tt = datetime.fromisoformat(t["time_utc"])
    return [r for r in rows if abs((datetime.fromisoformat(r["time_utc"]) - tt)
                                   .total_seconds()) < 0.1]


def test_thousand_vehicles_against_truth(tmp_path: Path) -> None:
    data = tmp_path / "station"
    cfg_path = tmp_path / "station.toml"
    write_config(cfg_path, data, vehicles=N_VEHICLES, speed=40.0)
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path),
                          "--vehicles", str(N_VEHICLES), "--no-view"],
                         capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    db = data / "station.db"
    rows = passages(db)
    cases = {r[0]: r for r in query(db, "SELECT passage_key, status, package_dir, review_state "
                                        "FROM cases")}
    vehicles = truth(data)
    assert len(vehicles) == N_VEHICLES
    assert len(rows) >= 0.97 * N_VEHICLES
    pub = load_private_key(data / "station-key.pem").public_key()
    over = [t for t in vehicles if t["overloaded_truth"]]
    checked = plates_right = plates_review = no_frame = within_allowance = flagged = 0
    for t in over:
        m = _match(rows, t)
        assert len(m) <= 1, f"truth vehicle {t['n']} weighed twice"
        if not m:
            continue  # merged with a close follower or not weighable: see the legal check
        p = m[0]
        if p["passage_key"] not in cases:
            # measured within the allowance or uncertain: no case, by law
            within_allowance += 1
            assert p["verdict"] != "overloaded"
            continue
        if set(json.loads(p["flags"])) & ABNORMAL_FLAGS:
            flagged += 1  # e.g. two close trucks merged: sealed, but only a human decides
            continue
        checked += 1
        assert p["axle_count"] == t["axle_count"]
        assert abs(p["gross_weight_kg"] - t["gross_weight_kg"]) <= 0.1 * t["gross_weight_kg"]
        _key, status, pkg, review = cases[p["passage_key"]]
        assert status == "sealed" and review == "queued"
        report = verify_package(Path(pkg), key=pub, log_dir=data / "evidence" / "log")
        assert report.ok, report.text()
        if p["frame_status"] != "linked":
            no_frame += 1
        elif p["plate_accepted"]:
            assert p["plate"] == t["plate"], (p["plate"], t["plate"])
            plates_right += 1
        else:
            plates_review += 1
    # nothing for legal trucks: no unflagged case for a vehicle whose true gross is within
    # its limit (a flagged one — merged, abnormal driving — is for a human to reject)
    legal_cases = legal_flagged = 0
    for t in vehicles:
        if t["overloaded_truth"]:
            continue
        for p in _match(rows, t):
            if p["passage_key"] in cases:
                if set(json.loads(p["flags"])) & ABNORMAL_FLAGS:
                    legal_flagged += 1
                else:
                    legal_cases += 1
    assert legal_cases == 0
    clearly_over = [t for t in over if t["gross_weight_kg"] > 1.15 * t["limit_kg"]
                    and not t["abnormal"]]
    cased = sum(any(p["passage_key"] in cases for p in _match(rows, t)) for t in clearly_over)
    human = sum(any(p["passage_key"] not in cases and p["review_required"]
                    for p in _match(rows, t)) for t in clearly_over)
    # each clearly overloaded truck is a case, or (class undecidable, verdict uncertain)
    # a passage marked for a human: never silently dropped
    assert cased + human >= 0.95 * len(clearly_over)
    # every sealed package that is not UNUSABLE is a case in the service's review queue
    station_cases = query(db, "SELECT package_id, eligibility FROM cases WHERE status = "
                              "'sealed'")
    queue = dict(query(data / "service.db", "SELECT package_id, state FROM cases"))
    due = [pid for pid, elig in station_cases if elig != "UNUSABLE"]
    assert due and all(queue.get(pid) == "technical_review" for pid in due)
    assert query(data / "service.db", "SELECT COUNT(*) FROM passages")[0][0] == len(rows)
    # no drift injected: the drift monitor raised nothing and flagged nothing
    assert query(db, "SELECT COUNT(*) FROM alarms WHERE code = 'calibration_drift'")[0][0] == 0
    assert query(db, "SELECT COUNT(*) FROM passages WHERE flags LIKE "
                     "'%calibration_drift%'")[0][0] == 0
    drift = json.loads(query(db, "SELECT value FROM meta WHERE key = 'drift_state'")[0][0])
    print(f"\nE2E: {len(due)} cases in the service review queue; {len(rows)} passages for "
          f"{N_VEHICLES} vehicles; {len(over)} truly overloaded,"
          f" {checked} sealed+verified cases checked, plates right {plates_right}, "
          f"to review {plates_review}, no frame {no_frame}, within allowance "
          f"{within_allowance}, flagged for review {flagged}; legal trucks with a flagged case "
          f"{legal_flagged}; clearly over {len(clearly_over)} → cased {cased}, marked for a human "
          f"{human}; drift monitor: {drift['trucks_seen']} trucks observed, no alarm")
    # With no pooled site history the default deduction is the cautious physics prior
    # (docs/evidence.md "Safety and detection"): most overloads are marked for a human
    # (checked above: every clearly overloaded truck is a case or marked), few become cases.
    # The plate policy accepts only agreeing reads and never a wrong one (asserted above);
    # on the simulator's plate font about half are accepted (docs/vision.md).
    assert checked >= 30
    assert plates_right >= 0.4 * checked
    assert no_frame <= 0.08 * checked
