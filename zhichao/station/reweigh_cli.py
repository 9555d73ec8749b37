"""``zhichao reweigh list|link|listen``: static re-weighing (复检) at the station.

* ``list`` — the static scale's recorded readings (newest first): id, time (北京时间), weight,
  status flags, how it was called stable, the passage it is linked to.
* ``link`` — an officer links one stable reading to a passage, found by ``--passage`` or
  by ``--plate`` and ``--time`` (a time without offset is 北京时间). A reading flagged
  overload / unstable / net, never called stable, taken before the passage or more than
  ``static_scale.max_delay_s`` after it, or already linked, is refused with a zh-CN error.
  The link is sealed as a supplementary package at once when no station is running, else
  by the running station (it holds the evidence log).
* ``listen`` — read the scale and seal links without running the station (a station that
  runs reads the scale itself).

Exit codes: 0 done, 2 refused or bad input, 3 linked but not sealed yet (the station will).
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from zhichao.common import BEIJING
from zhichao.errors import ZhichaoError
from zhichao.evidence._util import parse_time
from zhichao.evidence.static_reading import reading_problem
from zhichao.station.config import StationConfig, load_config
from zhichao.station.errors import StoreError
from zhichao.station.static_scale import ReadingStore, certificate_of, reading_of
from zhichao.station.store import StationStore, utc_text


class RefusedError(ZhichaoError):
    """A link the rules refuse (message in zh-CN for the officer)."""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("reweigh", help="static re-weighing at the station (静态复检)",
                              description="静态复检：衡器读数、关联通行记录、封存补充证据包")
    sub = p.add_subparsers(dest="reweigh_command", metavar="ACTION")
    ls = sub.add_parser("list", help="the static scale's readings, newest first")
    ls.add_argument("--config", type=Path, help="station.toml")
    ls.add_argument("--limit", type=int, default=20)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(handler=_list)
    link = sub.add_parser("link", help="link a stable reading to a passage and seal it")
    link.add_argument("--config", type=Path, help="station.toml")
    link.add_argument("--passage", help="passage key (instead of --plate and --time)")
    link.add_argument("--plate", help="plate, e.g. 冀A12345")
    link.add_argument("--time", help="passage time, RFC 3339 (without offset: 北京时间)")
    link.add_argument("--window-s", type=float, default=120.0,
                      help="passages within this many seconds of --time (default 120)")
    link.add_argument("--reading", type=int, help="reading id (default: the one stable "
                      "reading after the passage)")
    link.add_argument("--officer", required=True, help="the officer who re-weighed (执法人员)")
    link.set_defaults(handler=_link)
    listen = sub.add_parser("listen", help="read the scale and seal links (no station)")
    listen.add_argument("--config", type=Path, help="station.toml")
    listen.add_argument("--duration-s", type=float, help="stop after this long")
    listen.set_defaults(handler=_listen)
    p.set_defaults(handler=lambda _args: (p.print_help(), 2)[1])


def _config(path: Path | None) -> StationConfig:
    """The station's configuration, with its database created if it is new."""

    cfg = load_config(path)
    if not cfg.static_scale.url:
        raise RefusedError("本站未配置静态复检衡器（station.toml 的 [static_scale]）")
    StationStore(cfg.data_dir / "station.db").close()  # the passages table exists
    return cfg


def _beijing(text: str) -> str:
    return parse_time(text, "time").astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def _list(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args.config)
        store = ReadingStore(cfg.data_dir / "station.db")
    except ZhichaoError as exc:
        return _error(exc)
    try:
        rows = store.recent(args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=1))
        return 0
    print("编号  时间（北京时间）      重量 kg    标志            稳定判定  关联通行 / 状态")
    for r in rows:
        flags = ",".join(json.loads(r["flags"])) or "—"
        print(f"{r['id']:>4}  {_beijing(r['reading_utc'])}  {r['weight_kg']:>9}  {flags:<14}  "
              f"{r['stable_by'] or '未稳定':<8}  {r['passage_key'] or '—'} / {r['status']}")
    return 0


def parse_officer_time(text: str) -> datetime:
    """RFC 3339; a time without offset is 北京时间 (what the officer reads)."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise RefusedError(f"时间 {text!r} 格式无效（例：2026-12-06T10:30:00+08:00）") from None
    return (t if t.tzinfo is not None else t.replace(tzinfo=BEIJING)).astimezone(
        UTC)


def find_passage(store: ReadingStore, passage_key: str | None, plate_text: str | None,
                 time_text: str | None, window_s: float = 120.0) -> dict[str, Any]:
    """The one passage the officer named (by key, or by plate and time)."""
    db = store.db
    if passage_key:
        row = db.execute("SELECT * FROM passages WHERE passage_key = ?",
                         (passage_key,)).fetchone()
        if row is None:
            raise RefusedError(f"未找到通行记录 {passage_key}")
        return dict(row)
    if not plate_text or not time_text:
        raise RefusedError("请给出通行记录编号，或同时给出号牌和通行时间")
    from zhichao.service.ingest import normalise_plate

    plate = normalise_plate(plate_text)
    t = parse_officer_time(time_text)
    lo, hi = t - timedelta(seconds=window_s), t + timedelta(seconds=window_s)
    rows = [dict(r) for r in db.execute(  # text bounds to the second, then exactly
        "SELECT * FROM passages WHERE time_utc >= ? AND time_utc <= ? ORDER BY time_utc",
        (utc_text(lo)[:19], utc_text(hi)[:19] + "~"))]
    found = [r for r in rows if normalise_plate(r["plate"]) == plate
             and lo <= parse_time(r["time_utc"], "passage.time_utc") <= hi]
    if not found:
        raise RefusedError(f"未找到号牌 {plate} 在 {t.astimezone(BEIJING):%Y-%m-%d %H:%M:%S}"
                           f"（北京时间）前后 {window_s:g} 秒内的通行记录")
    if len(found) > 1:
        keys = "、".join(r["passage_key"] for r in found)
        raise RefusedError(f"号牌 {plate} 在该时段有 {len(found)} 条通行记录（{keys}），"
                           "请指定通行记录编号")
    return found[0]


def choose_reading(store: ReadingStore, cfg: StationConfig, passage: dict[str, Any],
                   reading_id: int | None) -> dict[str, Any]:
    """The reading to link, checked: a weight, after the passage, in time, not taken."""
    t_pass = parse_time(passage["time_utc"], "passage.time_utc")
    max_delay = timedelta(seconds=cfg.static_scale.max_delay_s)
    cert = certificate_of(cfg)
    if reading_id is None:
        free = [r for r in store.between(t_pass, t_pass + max_delay)
                if r["status"] == "free" and reading_problem(reading_of(r, cert)) is None]
        if not free:
            raise RefusedError("通行之后没有可关联的稳定读数（请先完成静态称重，"
                               "或用 --reading 指定读数编号）")
        if len(free) > 1:
            ids = "、".join(f"#{r['id']} {r['weight_kg']} kg" for r in free)
            raise RefusedError(f"通行之后有多个稳定读数（{ids}），请用 --reading 指定")
        return free[0]
    row = store.get(reading_id)
    if row is None:
        raise RefusedError(f"读数 #{reading_id} 不存在")
    problem = reading_problem(reading_of(row, cert))
    if problem is not None:
        raise RefusedError(f"读数 #{reading_id}（{row['weight_kg']} kg）不能关联：{problem}")
    if row["status"] != "free":
        raise RefusedError(f"读数 #{reading_id} 已关联到通行 {row['passage_key']}")
    t = parse_time(row["reading_utc"], "reading_utc")
    if t < t_pass:
        raise RefusedError(f"读数 #{reading_id} 早于通行时间，不是该车此次通行的复检")
    if t - t_pass > max_delay:
        raise RefusedError(f"读数 #{reading_id} 晚于通行 {(t - t_pass).total_seconds():.0f} 秒，"
                           f"超过 static_scale.max_delay_s = {max_delay.total_seconds():g} 秒")
    return row


def link_reading(cfg: StationConfig, officer: str, *, passage_key: str | None = None,
                 plate: str | None = None, time_text: str | None = None,
                 window_s: float = 120.0, reading_id: int | None = None
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Link a reading to a passage (the CLI and the console form); (reading, passage).
    Raises :class:`RefusedError` with the zh-CN reason."""
    if not officer.strip():
        raise RefusedError("复检执法人员不能为空")
    db = cfg.data_dir / "station.db"
    try:  # the link reads the newest schema (purge_started_utc): upgrade a database no
        StationStore(db).close()  # station start has upgraded yet (a no-op when current)
    except StoreError as exc:
        raise RefusedError(f"站点数据库无法打开或升级，不能关联复检：{exc}") from exc
    store = ReadingStore(db)
    try:
        passage = find_passage(store, passage_key, plate, time_text, window_s)
        if passage.get("purge_started_utc"):
            raise RefusedError(f"通行 {passage['passage_key']} 已超过个人信息保存期限，号牌和图片"
                               "已删除（或正在删除），不能再关联复检")
        earlier = store.passage_reweighs(passage["passage_key"])
        if earlier:
            raise RefusedError(f"通行 {passage['passage_key']} 已有复检读数 "
                               f"#{earlier[0]['id']}（{earlier[0]['status']}）")
        row = choose_reading(store, cfg, passage, reading_id)
        try:
            linked = store.link(row["id"], passage["passage_key"], officer.strip())
        except sqlite3.Error as exc:  # e.g. the database changed under it: no traceback
            raise RefusedError(f"站点数据库出错，复检未关联：{exc}") from exc
        if not linked:
            raise RefusedError(f"读数 #{row['id']} 已被关联，或通行 {passage['passage_key']} "
                               "已到个人信息保存期限")
    finally:
        store.close()
    return row, passage


def _link(args: argparse.Namespace) -> int:
    try:
        cfg = _config(args.config)
        row, passage = link_reading(cfg, args.officer, passage_key=args.passage,
                                    plate=args.plate, time_text=args.time,
                                    window_s=args.window_s, reading_id=args.reading)
    except ZhichaoError as exc:
        return _error(exc)
    print(f"已关联 linked: 读数 #{row['id']} {row['weight_kg']} kg → 通行 "
          f"{passage['passage_key']}（动态 {passage['gross_weight_kg']} kg）")
    return _seal_now(cfg, passage["passage_key"])


def _seal_now(cfg: StationConfig, passage_key: str) -> int:
    """Seal at once if no station holds the log; else the station does (exit 3)."""
    from zhichao.evidence.errors import LogError
    from zhichao.station.reweigh_stage import ReweighStage
    from zhichao.station.sealing import Sealer

    try:
        sealer = Sealer(cfg)
    except LogError:
        print("站点正在运行：复检补充证据包将由站点封存并上传 (the running station seals it)")
        return 3
    store = StationStore(cfg.data_dir / "station.db")
    stage = ReweighStage(cfg, store, sealer)
    try:
        stage.seal_pending()
        rows = stage.readings.passage_reweighs(passage_key)
    finally:
        stage.close()
        store.close()
        sealer.close()
    row = rows[0]
    if row["status"] != "sealed":
        print(f"尚未封存 not sealed yet: {row['error'] or '原始案件证据包尚未封存，稍后封存'}")
        return 3
    manifest = json.loads((Path(row["package_dir"]) / "manifest.json").read_bytes())
    _print_decision(manifest)
    print(f"补充证据包 package: {row['package_dir']}")
    return 0


def _print_decision(manifest: dict[str, Any]) -> None:
    d = manifest["case"]["decision"]
    e = d["eligibility"]
    a = e["assessment"] or {}
    print(f"判定 decision: {e['status']} {e['status_zh']}（以静态复检重量为证据）")
    print(f"  静态 static {a.get('gross_kg')} kg，动态 WIM {a.get('wim_gross_kg')} kg；"
          f"限值 {a.get('limit_kg')} kg；允差 {a.get('tolerance_kg')} kg；"
          f"超限 {a.get('excess_kg')} kg")
    for r in e["reasons"]:
        if r["severity"] != "info":
            print(f"  [{r['severity']}] {r['code']}: {r['message_zh']}")
    p = d["penalty"]
    print("  拟处罚 proposed: " + ("无" if p is None else f"{p['outcome_zh']} {p['fine_yuan']} 元"))


def _listen(args: argparse.Namespace) -> int:
    from zhichao.evidence.errors import LogError
    from zhichao.station.reweigh_stage import ReweighStage
    from zhichao.station.sealing import Sealer

    try:
        cfg = _config(args.config)
        sealer = Sealer(cfg)
    except LogError:
        return _error(RefusedError("站点正在运行，衡器由站点读取"))
    except ZhichaoError as exc:
        return _error(exc)
    store = StationStore(cfg.data_dir / "station.db")
    stage = ReweighStage(cfg, store, sealer)
    stage.start_reader()
    stop = threading.Event()
    deadline = None if args.duration_s is None else time.monotonic() + args.duration_s
    try:
        while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
            stage.step()
            stop.wait(0.5)
        stage.step()
    except KeyboardInterrupt:
        pass
    finally:
        stage.close()
        store.close()
        sealer.close()
    return 0


def _error(exc: BaseException) -> int:
    print(f"错误 error: {exc}", file=sys.stderr)
    return 2
