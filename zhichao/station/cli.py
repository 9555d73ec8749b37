"""``zhichao config check FILE`` and ``zhichao status`` (operator commands)."""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

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
          f"相机 {len(cfg.cameras)} 台")
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
        print(f"zhichao status: {db} does not exist (the station has not run here)",
              file=sys.stderr)
        return 1
    store = StationStore(db, readonly=True)
    try:
        out: dict[str, Any] = {"data_dir": str(data), "counts": store.counts(),
                               "alarms": store.active_alarms(),
                               "recent": store.recent_passages(5)}
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
    device = (live or {}).get("device") or {}
    if device:
        print(f"称重设备 {device.get('device_id')}：" + (
            "当前可用于执法" if device.get("usable_now") else "当前不可用于执法（" + "；".join(
                r["text_zh"] for r in device.get("reasons", [])) + "）")
            + f"，漂移监测已观测 {device.get('drift_trucks_seen', 0)} 辆货车")
    for a in out["alarms"]:
        print(f"告警 {a['time_utc']} {a['code']}：{a['message_zh']}（{a['detail']}）")
    if not out["alarms"]:
        print("无告警")
    return 0
