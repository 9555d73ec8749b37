"""Stage alarms: a stage that keeps failing is an alarm, not a log line.

One table (:data:`STAGE_ALARMS`) says, per stage, after how many consecutive failures an
alarm opens and what it tells the officer (zh-CN). :class:`StageHealth` counts failures and
successes per stage for one thread; the alarm is a row in ``alarms`` (``station.db``), so it
turns ``/health`` degraded and shows in ``zhichao status``, the live view and the closing
summary, and it survives a restart. It closes at the stage's next success.

A *state alarm* (:class:`StateAlarm`, :func:`hold_alarm`) is open while a condition of the
station's data holds (items the center refused, uploads failing for long) and closes when
it no longer does; its text names the current facts.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from zhichao.station.store import StationStore

LOG = logging.getLogger("zhichao.station")


@dataclass(frozen=True)
class StageAlarm:
    code: str
    after_failures: int  # consecutive failures that open the alarm
    message_zh: str


STAGE_ALARMS: dict[str, StageAlarm] = {
    "sealing": StageAlarm("sealing_failed", 2,
                          "证据封存连续失败，案件无法形成证据包，请立即检查"),
    "plates": StageAlarm("plate_reading_failed", 3,
                         "车牌识别连续失败，通行记录缺少车牌，请检查识别进程和摄像机"),
    "upload": StageAlarm("upload_failing", 5,
                         "向执法中心上传连续失败，记录在本地积压，请检查网络和中心服务"),
    "clips": StageAlarm("clips_failing", 3,
                        "视频片段（全过程记录）连续无法生成：摄像机视频流中断或编码失败，"
                        "案件证据包缺少视频，请检查摄像机视频流"),
    "scatter": StageAlarm("site_scatter_failed", 2,
                          "本车道称重离散度（σ(v)）连续无法汇总更新，超限判定沿用上次结果或保守先验，"
                          "请检查站点数据库和磁盘"),
    "retention": StageAlarm("retention_failed", 2,
                            "个人信息到期清理（非案件通行的号牌和图片）连续失败，超期个人信息仍保存在"
                            "站点，请检查磁盘和站点数据库（详见日志）"),
    "linking": StageAlarm("clock_offset_unsettled", 1,
                          "设备时钟偏差持续不稳定（设备或站点计算机处理滞后），图像与称重记录的关联"
                          "无法确认，相关车辆的号牌均转人工核对，请检查设备连接和站点计算机负载"),
    "journal": StageAlarm("journal_failed", 1,
                          "原始数据日志写入失败，站点崩溃时数据可能无法恢复，请检查磁盘"),
    # zhichao.station.diskspace: the data folder below evidence.min_free_mb, or a write
    # of the pipeline refused for want of space; commits wait until there is room
    "disk": StageAlarm("disk_full", 1,
                       "站点数据盘空间不足，通行记录暂停写入（已称重车辆在内存和原始数据日志中等待，"
                       "空间恢复后自动写入），请立即清理磁盘空间"),
}


class StageHealth:
    """Consecutive-failure counting for the stages one thread runs (it owns ``store``)."""

    def __init__(self, store: StationStore) -> None:
        self.store = store
        self.failures: dict[str, int] = {}
        self.open: set[str] = {
            stage for stage, a in STAGE_ALARMS.items()
            if any(r["code"] == a.code for r in store.active_alarms())}

    def failed(self, stage: str, detail: str) -> bool:
        """Count one failure; opens the stage's alarm at its threshold. True if open."""
        alarm = STAGE_ALARMS[stage]
        n = self.failures.get(stage, 0) + 1
        self.failures[stage] = n
        if n >= alarm.after_failures and stage not in self.open:
            self.store.raise_alarm(alarm.code, alarm.message_zh,
                                   f"{n} consecutive failures; last: {detail}"[:2000])
            self.open.add(stage)
            LOG.error("stage alarm opened", extra={"fields": {
                "stage": stage, "code": alarm.code, "failures": n, "detail": detail}})
        return stage in self.open

    def succeeded(self, stage: str) -> None:
        """The stage worked: reset its count and close its alarm."""
        self.failures[stage] = 0
        if stage in self.open:
            self.store.clear_alarm(STAGE_ALARMS[stage].code)
            self.open.discard(stage)
            LOG.info("stage alarm closed", extra={"fields": {
                "stage": stage, "code": STAGE_ALARMS[stage].code}})


@dataclass(frozen=True)
class StateAlarm:
    code: str
    message_zh: str  # str.format() template of the facts :func:`hold_alarm` is given


UPLOAD_REFUSED = StateAlarm(
    "upload_refused",
    "执法中心拒收 {count} 条上传（{codes}），这些记录未送达中心、保留在站点，需人工核查处理"
    "（zhichao sync status --outbox 数据目录/station.db 查看原因；排除原因后可重新上传）")
"""Items the center refused permanently; open while any is left in the outbox."""
UPLOAD_STALLED = StateAlarm(
    "upload_stalled",
    "有记录长时间无法送达执法中心（{why}），其余记录照常上传，请检查网络、中心服务和站点日志")
"""Items failing for long (many attempts, or the oldest pending item old)."""


def hold_alarm(store: StationStore, alarm: StateAlarm, holds: bool, detail: str = "",
               **facts: object) -> None:
    """Open ``alarm`` (its text filled with ``facts``) while ``holds``, close it otherwise.
    Changed facts replace the open alarm by one that names them."""
    active = [a for a in store.active_alarms() if a["code"] == alarm.code]
    if not holds:
        if active:
            store.clear_alarm(alarm.code)
            LOG.info("alarm closed", extra={"fields": {"code": alarm.code}})
        return
    message = alarm.message_zh.format(**facts)
    if active and active[0]["message_zh"] == message:
        return
    if active:
        store.clear_alarm(alarm.code)
    store.raise_alarm(alarm.code, message, detail[:2000])
    LOG.error("alarm opened", extra={"fields": {"code": alarm.code, "detail": detail}})
