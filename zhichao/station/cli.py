"""``zhichao config check FILE``, ``zhichao status`` and ``zhichao retention station``
(operator commands)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from zhichao.evidence.notice_text import beijing_time_zh
from zhichao.station.config import load_config, wim_url_kind
from zhichao.station.errors import StationError


def register(subparsers: Any) -> None:
    config = subparsers.add_parser("config", help="station configuration tools")
    sub = config.add_subparsers(dest="config_command", metavar="ACTION")
    check = sub.add_parser("check", help="validate a station.toml")
    check.add_argument("file", type=Path)
    check.set_defaults(handler=_check)
    config.set_defaults(handler=lambda _a: (config.print_help(), 2)[1])
    status = subparsers.add_parser("status", help="the station's state for the operator")
    status.add_argument("--config", type=Path, help="station.toml (default: embedded)")
    status.add_argument("--data-dir", type=Path, help="override station.data_dir")
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_status)
    ret = _retention_tasks(subparsers).add_parser(
        "station", help="remove the plates and frames of a station's passages that are no "
                        "case, past retention.passage_days (default 30, unconfirmed)",
        description="个人信息到期清理（站点）：删除超过保存期限的非案件通行记录的号牌和图片；"
                    "案件、复检和未上传的记录不动。可在站点运行时执行。")
    ret.add_argument("--config", type=Path, help="station.toml (default: embedded)")
    ret.add_argument("--data-dir", type=Path, help="override station.data_dir")
    ret.add_argument("--days", type=int, help="override retention.passage_days")
    ret.add_argument("--dry-run", action="store_true",
                     help="count what would be removed; change nothing")
    ret.add_argument("--json", action="store_true")
    ret.set_defaults(handler=_retention)


def _retention_tasks(subparsers: Any) -> Any:
    """The tasks of ``zhichao retention`` (the service's ``run`` is there when the service
    is installed; a station-only install gets the command from here)."""
    existing = subparsers.choices.get("retention")
    if existing is None:
        ret = subparsers.add_parser("retention", help="personal data retention (个人信息保护法 "
                                                      "Art. 19)")
        return ret.add_subparsers(dest="retention_command", metavar="TASK", required=True)
    for action in existing._actions:  # argparse keeps a parser's sub-commands here
        if isinstance(action, argparse._SubParsersAction):
            return action
    raise RuntimeError("zhichao retention has no tasks")  # a programming error


def _check(args: argparse.Namespace) -> int:
    try:
        cfg = load_config(args.file)
    except StationError as exc:
        print(f"配置无效 (invalid): {exc}", file=sys.stderr)
        return 1
    kind = "模拟车道" if cfg.simulated else {
        "samples": "原始采样，本系统称重", "records": "称重控制器上报车辆记录，本系统复算"}[
        wim_url_kind(cfg.wim.url)]
    print(f"{args.file}: 配置有效 (valid) — 站点 {cfg.station.station_id}，"
          f"车道 {cfg.lane.lane_id}，称重设备 {cfg.wim.url}（{kind}），"
          f"相机 {len(cfg.cameras)} 台；非案件通行的号牌和图片保存 "
          f"{cfg.retention.passage_days} 天（未确认，个人信息保护法第十九条）")
    return 0


def _status(args: argparse.Namespace) -> int:
    from zhichao.station.clockcheck import clock_line, last_check
    from zhichao.station.store import StationStore
    from zhichao.station.upload import upload_status
    from zhichao.station.view import upload_line

    try:
        cfg = load_config(args.config)
    except StationError as exc:
        print(f"zhichao status: {exc}", file=sys.stderr)
        return 2
    data = args.data_dir.resolve() if args.data_dir else cfg.data_dir
    db = data / "station.db"
    if not db.exists():
        print(f"zhichao status: 此处尚无站点数据库（站点未在此运行过）{db} does not exist "
              "(the station has not run here)", file=sys.stderr)
        return 1
    store = StationStore(db, readonly=True)
    try:
        out: dict[str, Any] = {"data_dir": str(data), "counts": store.counts(),
                               "alarms": store.active_alarms(),
                               "recent": store.recent_passages(5),
                               "retention": store.retention_runs(1)}
    finally:
        store.close()
    live: dict[str, Any] | None = None
    if cfg.http.metrics_port:
        url = f"http://{cfg.http.host}:{cfg.http.metrics_port}/health"
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                live = json.loads(r.read())
        except urllib.error.HTTPError as exc:
            live = json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            live = None
    out["running"] = live
    out["upload"] = upload_status(cfg, data)
    out["clock_check"] = last_check(data)
    if args.json:
        print(json.dumps(out, ensure_ascii=False, indent=1))
        return 0
    c = out["counts"]
    print(f"数据目录 {data}")
    print("运行状态：" + ("运行中" if live else "未运行（或健康检查端口不可达）"))
    print(f"通行 {c['passages']}，超限 {c['overloaded']}，无图像 {c['no_frame']}，"
          f"案件 {c['cases']}（已封存 {c['sealed']}，待封存 {c['pending_seal']}），"
          f"待上传 {out['upload']['pending']}，数据缺口 {c['gaps']}")
    print(upload_line(out["upload"]))
    print(clock_line(out["clock_check"]))
    print(retention_line(cfg.retention.passage_days, c.get("purged", 0), out["retention"]))
    waiting_zh = ((live or {}).get("retention") or {}).get("waiting_zh")
    if waiting_zh:
        print(f"个人信息清理：{waiting_zh}")
    device = (live or {}).get("device") or {}
    if device:
        print(f"称重设备 {device.get('device_id')}：" + (
            "当前可用于执法" if device.get("usable_now") else "当前不可用于执法（" + "；".join(
                r["text_zh"] for r in device.get("reasons", [])) + "）")
            + f"，漂移监测已观测 {device.get('drift_trucks_seen', 0)} 辆货车")
    for a in out["alarms"]:
        print(f"告警 {beijing_time_zh(a['time_utc'])} {a['code']}：{a['message_zh']}"
              f"（详情 detail：{a['detail']}）")
    if not out["alarms"]:
        print("无告警")
    return 0


def retention_line(days: int, purged: int, runs: list[dict[str, Any]]) -> str:
    """One line for the operator: the period, passages purged, the newest audit record."""
    line = f"个人信息保存期限 {days} 天（未确认）：已清理非案件通行 {purged} 条"
    if runs:
        r = runs[0]
        line += (f"，最近一次 {beijing_time_zh(r['time_utc'])}清理通行 "
                 f"{r['passages_purged']} 条、图片 "
                 f"{r['frames_removed'] + r['unlinked_frames_deleted']} 张，待上传暂缓 "
                 f"{r['held_undelivered']} 条")
    return line


def retention_clock_warning(check: dict[str, Any] | None) -> str:
    """``zhichao retention station`` deletes by this machine's clock: a warning (zh-CN) when
    the station's last check of its time source (``clock/checks.jsonl``) is not good."""
    if check is not None and check.get("result") == "good":
        return ""
    return ("警告：站点最近一次授时核验" + ("无记录" if check is None else "未通过")
            + "，本命令按本机时钟判断到期，请先确认本机时钟正确（运行中的站点在时钟未核验时"
            "暂停清理）")


def _retention(args: argparse.Namespace) -> int:
    import dataclasses

    from zhichao.station.clockcheck import last_check
    from zhichao.station.retention import Retention, RetentionError
    from zhichao.station.store import StationStore

    try:
        cfg = load_config(args.config)
        if args.data_dir is not None:
            cfg = dataclasses.replace(cfg, station=dataclasses.replace(
                cfg.station, data_dir=str(args.data_dir.resolve())))
        if args.days is not None and args.days < 1:
            raise StationError("--days: the period must be at least 1 day")
        db = cfg.data_dir / "station.db"
        if not db.exists():
            raise StationError(f"此处尚无站点数据库（站点未在此运行过）{db} does not exist "
                               "(the station has not run here)")
        store = StationStore(db)  # SQLite transactions: safe beside a running station
    except StationError as exc:
        print(f"zhichao retention station: {exc}", file=sys.stderr)
        return 2
    clock_warning = retention_clock_warning(last_check(cfg.data_dir))
    if clock_warning:
        print(clock_warning, file=sys.stderr)
    try:
        retention = Retention(cfg, store, days=args.days)
        run = (retention.run(dry_run=True) if args.dry_run
               else retention.run_all(trigger="cli"))
    except RetentionError as exc:
        print(f"个人信息到期清理失败（retention failed）：{exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    if args.json:
        print(json.dumps(run.to_json(), ensure_ascii=False, indent=1))
        return 0
    verb = "将清理（试运行，未改动）" if args.dry_run else "已清理"
    print(f"截止时间 {beijing_time_zh(run.cutoff_utc)}（保存期限 {run.passage_days} 天，"
          f"未确认）：{verb}"
          f"非案件通行 {run.passages_purged} 条（图片 {run.frames_removed} 张），未关联图片 "
          f"{run.unlinked_frames_deleted} 张；尚未上传、暂缓清理 {run.held_undelivered} 条")
    return 0
