"""The live terminal view of ``zhichao run`` (rich) and the closing summary (zh-CN)."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from zhichao.common import BEIJING
from zhichao.station.clockcheck import clock_line
from zhichao.weighing.overload import VERDICT_ZH

FRAME_ZH = {"linked": "已关联", "no_frame": "无图像", "ambiguous_frame": "图像不确定"}


def _kg(x: Any) -> str:
    return "—" if x is None else f"{x:,.0f}"


def upload_pending(health: dict[str, Any]) -> int:
    up = health.get("upload") or {}
    return int(up.get("pending", health["counts"]["outbox_pending"]))


def upload_line(up: dict[str, Any]) -> str:
    """The upload state in zh-CN (center, backlog, refusals, last receipt)."""
    refused = int(up.get("refused") or 0)
    refused_zh = f"，被拒收 {refused} 条（需人工处理，见 zhichao sync status）" if refused else ""
    if not up.get("center_url"):
        if up.get("local_service"):
            return (f"未配置执法中心 (station.center_url)：通行与案件经同步接口登记到本站业务库"
                    f"（网页控制台），待登记 {up.get('pending', 0)} 条{refused_zh}")
        return f"未配置执法中心 (station.center_url)，待上传 {up.get('pending', 0)} 条只在本地积累"
    last = up.get("last_upload_utc") or "尚无"
    line = (f"上传至 {up['center_url']}：待上传 {up.get('pending', 0)} 条{refused_zh}，"
            f"最近成功上传 {last}")
    if up.get("last_error"):
        line += f"；最近错误 {str(up['last_error'])[:120]}"
    return line


def render(health: dict[str, Any], recent: list[dict[str, Any]], started_s: float) -> Group:
    c = health["counts"]
    elapsed = max(time.time() - started_s, 1e-9)
    head = Table.grid(padding=(0, 2))
    head.add_row(
        Text(f"站点 {health['station_id']}", style="bold"),
        f"数据时间 {health.get('stream_time_utc') or '—'}",
        f"通行 {c['passages']}", Text(f"超限 {c['overloaded']}", style="bold red"),
        f"已封存 {c['sealed']}", f"待封存 {c['pending_seal']}",
        f"待上传 {upload_pending(health)}",
        f"吞吐 {health['run_passages'] / elapsed * 60:.1f} 辆/分")
    wim = health.get("wim") or {}
    dev = Table.grid(padding=(0, 2))
    offs = ", ".join(f"{k} {v:+.0f} ms" for k, v in health["clock_offsets_ms"].items())
    dev.add_row(
        Text("称重设备 " + ("在线" if wim.get("connected") else "离线"),
             style="green" if wim.get("connected") else "red"),
        f"设备错误 {wim.get('errors', 0)}", f"时钟偏差 {offs}")
    dev.add_row(upload_line(health.get("upload") or {}))
    if "clock_check" in health:
        dev.add_row(clock_line(health["clock_check"].get("last_check")))
    for a in health.get("alarms") or []:
        dev.add_row(Text(f"告警 {a['code']}：{a['message_zh']}", style="bold red"))
    device = health.get("device") or {}
    if device and not device.get("usable_now", True):
        dev.add_row(Text("称重设备当前不可用于执法：" + "；".join(
            r["text_zh"] for r in device.get("reasons", [])), style="bold red"))
    if health.get("sealing_stopped"):
        dev.add_row(Text("证据封存已停止：" + str(health["sealing_stopped"]), style="bold red"))
    t = Table(title="最近通行车辆", expand=True)
    for col in ("时间（北京时间）", "车牌", "轴数", "总重 kg", "限值 kg", "结论", "图像", "标记"):
        t.add_column(col)
    for r in reversed(recent):
        style = "red" if r["overloaded"] else None
        t.add_row(beijing_clock(r["time_utc"]), r.get("plate") or "—", str(r["axles"]),
                  _kg(r["gross_kg"]), _kg(r["limit_kg"]),
                  VERDICT_ZH.get(r["verdict"], r["verdict"]),
                  FRAME_ZH.get(r["frame"], r["frame"]), ",".join(r["flags"][:3]),
                  style=style)
    return Group(head, dev, t)


def summary_lines(health: dict[str, Any], elapsed_s: float) -> list[str]:
    c = health["counts"]
    rate = health["run_passages"] / max(elapsed_s, 1e-9)
    lines = [
        f"本次运行：{health['run_passages']} 辆通行，用时 {elapsed_s:.1f} s（{rate:.2f} 辆/s）",
        f"数据库合计：通行 {c['passages']}，超限 {c['overloaded']}，无图像 {c['no_frame']}，"
        f"案件 {c['cases']}（已封存 {c['sealed']}，待封存 {c['pending_seal']}），"
        f"待上传 {upload_pending(health)}，数据缺口 {c['gaps']}",
        upload_line(health.get("upload") or {}),
        "时钟偏差：" + ", ".join(f"{k} {v:+.1f} ms"
                             for k, v in health["clock_offsets_ms"].items()),
    ]
    if "clock_check" in health:
        lines.append(clock_line(health["clock_check"].get("last_check")))
    for a in health.get("alarms") or []:
        lines.append(f"告警 {a['code']}：{a['message_zh']}")
    if health.get("sealing_stopped"):
        lines.append(f"告警：证据封存已停止（{health['sealing_stopped']}）")
    rec = health.get("recovery") or {}
    if rec:
        lines.append("启动恢复：" + "，".join(f"{RECOVERY_ZH.get(k, k)} {v}"
                                         for k, v in rec.items()))
    return lines


RECOVERY_ZH = {
    "removed_partial": "删除未完成的证据包", "completed_partial": "补全的证据包",
    "log_repaired": "日志修复", "quarantined": "隔离的证据包",
    "supplements_sealed": "已封存复检补充包",
    "log_entries_without_package": "无对应证据包的日志条目",
    "waveform_temporaries_removed": "删除的波形临时文件",
    "completed_on_start": "启动时补记已封存的案件",
}
"""What start-up recovery did, in the operator's words (``Sealer.recover``)."""


def beijing_clock(time_utc: str) -> str:
    """The clock time of a UTC ISO 8601 time in 北京时间 (HH:MM:SS.mmm), for the live table
    whose column says so."""
    moment = datetime.fromisoformat(time_utc.replace("Z", "+00:00"))
    return moment.astimezone(BEIJING).strftime("%H:%M:%S.%f")[:12]
