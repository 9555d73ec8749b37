"""Passage records the center cannot store or register are refused one by one
(``passage.malformed``, permanent) before any receipt; never a 5xx for the batch."""

from __future__ import annotations

import base64
import sqlite3
from typing import Any

import pytest
from sqlalchemy import event

from tests.service.sync_helpers import StationKit
from tests.sync.conftest import Center
from zhichao.service.center import store as center_store
from zhichao.sync.wire import sign_passage

# valid RFC 3339, 45 characters: more than sync_passage.time_utc (String(40)) holds
LONG_TIME = "2025-06-01T08:00:00.123456789012345678+08:00"


def _items(kit: StationKit, records: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for record in records:
        data, sig = sign_passage(record, kit.key)
        out.append({"record_b64": base64.b64encode(data).decode(), "signature": sig})
    return out


def _post(center: Center, kit: StationKit, records: list[dict[str, Any]]) -> list[Any]:
    answer = center.client.post("/sync/v1/passages", json={
        "station_id": kit.station_id, "items": _items(kit, records)})
    assert answer.status_code == 200, answer.text
    return [r.get("code") or r["status"] for r in answer.json()["results"]]


def test_fields_the_center_cannot_store_or_register_are_refused_per_item(
        center: Center, kit: StationKit) -> None:
    records = kit.passages(9)
    records[1]["time_utc"] = LONG_TIME
    records[2]["time_utc"] = "2025-06-01 10:03:04 北京时间"
    records[3]["time_utc"] = "2025-06-01T10:03:04+08:00"  # not UTC
    records[4]["time_utc"] = "2025-02-30T10:03:04Z"
    del records[5]["site_id"]
    records[6]["lane_id"] = None
    records[7]["verdict"] = "x" * 33
    records[8]["format"] = "x" * 101
    assert _post(center, kit, records) == ["accepted"] + ["passage.malformed"] * 8
    assert center.store.counts()["passages"] == 1
    assert len(center.hooked) == 1
    # refused before any receipt, and again the same way (permanent, nothing kept)
    assert _post(center, kit, records) == ["duplicate"] + ["passage.malformed"] * 8
    assert center.store.counts()["quarantined"] == 0


def test_other_formats_need_only_format_and_a_utc_time(center: Center, kit: StationKit
                                                       ) -> None:
    records = [{"format": "t/1", "time_utc": "2025-06-01T10:03:04Z"},
               {"format": "t/1", "time_utc": "2025-06-01T10:03:04.123456789+00:00"},
               {"format": "t/1", "time_utc": "2025-06-01T10:03:04.1234567890Z"}]
    assert _post(center, kit, records) == ["accepted", "accepted", "passage.malformed"]


def test_a_record_the_database_refuses_fails_only_itself(
        center: Center, kit: StationKit, monkeypatch: pytest.MonkeyPatch) -> None:
    """Were a value to pass the checks and still not fit its column (PostgreSQL:
    ``StringDataRightTruncation``; SQLite made to refuse it), the batch is ingested one
    by one: that record is ``passage.malformed``, the others get their receipts."""
    monkeypatch.setattr(center_store, "check_passage_record", lambda *_a, **_k: None)
    if center.db.url.startswith("sqlite"):
        def refuse(_conn: Any, _cursor: Any, _statement: str, parameters: Any,
                   _context: Any, _many: bool) -> None:
            rows = parameters if isinstance(parameters, list) else [parameters]
            if any(LONG_TIME in (row.values() if isinstance(row, dict) else row)
                   for row in rows):
                raise sqlite3.DataError("string or blob too big")
        event.listen(center.store.engine, "before_cursor_execute", refuse)
    records = kit.passages(4)
    records[1]["time_utc"] = LONG_TIME
    assert _post(center, kit, records) == ["accepted", "passage.malformed", "accepted",
                                           "accepted"]
    assert center.store.counts()["passages"] == 3
    assert len(center.hooked) == 3
