"""Checking the station's time source, recording each check, and what covers a passage.

A :class:`ClockMonitor` checks the reference clock at start and every
``clock.check_interval_s`` (at most an hour; a failed check is retried after
:data:`RETRY_S`) in a thread of its own, so a slow or silent server never stalls weighing:

* a real lane: each configured NTP server is asked once (:mod:`.timesource`) and each
  configured gpsd is listened to once (:mod:`.gpsd`: a GNSS fix, the offset from its PPS,
  else from TOFF or TPV with a larger error bound). Each answer gives an interval for the
  true offset (:func:`interval_ms`): NTP and PPS symmetric, offset ∓ error bound; TOFF and
  TPV one-sided, [offset − ept, offset + error bound] (the serial latency is not
  corrected). One rule for every source, with M = ``clock.max_offset_ms``: the check fails
  as ``servers_disagree`` when two answers' intervals are more than M apart (which one is
  right is not known), else it judges the answer with the smallest error bound
  (:func:`judge`): ``good`` when its whole interval lies within [−M, +M],
  ``offset_exceeded`` (the clock shown off) when the whole interval lies outside it,
  ``bound_exceeded`` otherwise (the clock not shown right, nor shown off); no source
  configured, none answering, a kiss-o'-death, an unsynchronised server or a receiver
  without a fix fail it;
* a simulated lane: the reference is the simulator's published clock; the check reads the
  published clock again and passes when the station's is the same (offset 0 by
  construction: the source is stated as 模拟授时, never as NTP or GNSS).

Every check is a line of ``<data>/clock/checks.jsonl`` (fsynced; times UTC): reference
time of the check, source (``ntp``, ``gnss``, ``sim``), server, offset, delay, stratum,
GNSS device, fix mode, satellites and method, error bound, result, detail.
A failing check opens the alarm ``clock_unverified`` (health degraded); the next good one
closes it (:meth:`ClockMonitor.sync_alarm`, called from the pipeline thread, the store's
only writer). A passage is covered (:meth:`ClockMonitor.covering`) by the latest check at
or before it, when that check was good and at most ``check_interval_s`` + 300 s old and
no later check known at commit found the clock off; its package's clock record carries
that check (verified) or says why none covers it (not verified: the gate sends the case
to manual review, ``clock_not_verified``).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from zhichao.evidence._util import format_time, parse_time
from zhichao.evidence.inputs import TIME_SOURCE_ZH, ClockSync, ReferenceCheck
from zhichao.evidence.notice_text import beijing_time_zh
from zhichao.station.clock import Clock, PublishedSimClock, SimClock
from zhichao.station.config import ClockSection
from zhichao.station.errors import TimeSourceError
from zhichao.station.gpsd import GnssReading, NoFixError, gpsd_label, query_gpsd
from zhichao.station.store import StationStore
from zhichao.station.timesource import (
    KissOfDeathError,
    NoReplyError,
    SntpReply,
    UnsynchronisedError,
    query,
)

LOG = logging.getLogger("zhichao.station")
CHECKS_FILE = Path("clock") / "checks.jsonl"
CLOCK_ALARM = "clock_unverified"
CLOCK_ALARM_ZH = ("站内时钟未能核验（授时服务器无应答、拒绝服务、未同步，卫星接收机未定位，"
                  "或时钟偏差超限），新案件将转人工复核，请检查授时")
AGE_MARGIN_S = 300.0  # a check under way or retried (a choice; the gate allows the same)
RETRY_S = 60.0  # after a failed check
KEEP_CHECKS = 500  # in memory (the file keeps every check)

RESULT_ZH = {
    "good": "核验通过",
    "offset_exceeded": "时钟偏差超出容限（计入误差范围仍超出）",
    "bound_exceeded": "误差范围超出容限（无法证明时钟偏差在容限内）",
    "servers_disagree": "各授时源结果不一致（误差范围相距超过容限）",
    "unreachable": "授时服务器无应答",
    "refused": "授时服务器拒绝服务（kiss-o'-death）",
    "unsynchronised": "授时服务器自身未同步",
    "no_fix": "卫星接收机未定位（无 GNSS 时间）",
    "bad_reply": "授时服务器应答无效",
    "no_source": "未配置授时源（[clock] servers / gnss）",
    "sim_mismatch": "与模拟器发布的时钟不一致",
}
#: results that show the clock off (not only unchecked): a passage before them is not
#: covered by an earlier good check (``bound_exceeded`` is not one: see :func:`judge`)
CLOCK_OFF = frozenset({"offset_exceeded", "servers_disagree", "sim_mismatch"})
METHOD_ZH = {"pps": "秒脉冲 PPS", "toff": "串口时间（无秒脉冲）", "tpv": "定位报文时间（无秒脉冲）"}
#: when no source answered, the failure the record names: a server that refused, is
#: unsynchronised or has no fix says more than one that is silent
FAILURE_ORDER = ("refused", "unsynchronised", "no_fix", "bad_reply", "unreachable")


@dataclass(frozen=True)
class CheckRecord:
    """One check of the time source (a line of ``checks.jsonl``)."""

    checked_utc: datetime  # the reference clock's time at the check
    source: str  # "ntp" | "gnss" | "sim" | "none"
    server: str
    result: str  # a key of RESULT_ZH
    max_offset_ms: float
    offset_ms: float | None = None  # source minus station clock
    delay_ms: float | None = None  # NTP round trip
    stratum: int | None = None  # NTP
    error_bound_ms: float | None = None
    detail: str = ""
    replies: tuple[dict[str, Any], ...] = ()
    device: str = ""  # GNSS: the receiver, as gpsd names it
    fix_mode: int | None = None  # GNSS: 2 (2D) or 3 (3D)
    satellites: int | None = None  # GNSS: used in the fix, when gpsd says
    method: str = ""  # GNSS: "pps" | "toff" | "tpv" (see zhichao.station.gpsd)

    @property
    def good(self) -> bool:
        return self.result == "good"

    def to_json(self) -> dict[str, Any]:
        return {"checked_utc": format_time(self.checked_utc), "source": self.source,
                "server": self.server, "result": self.result,
                "result_zh": RESULT_ZH.get(self.result, self.result),
                "offset_ms": self.offset_ms, "delay_ms": self.delay_ms,
                "stratum": self.stratum, "error_bound_ms": self.error_bound_ms,
                "device": self.device, "fix_mode": self.fix_mode,
                "satellites": self.satellites, "method": self.method,
                "max_offset_ms": self.max_offset_ms, "detail": self.detail,
                "replies": list(self.replies)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CheckRecord:
        return cls(checked_utc=parse_time(raw["checked_utc"], "checked_utc"),
                   source=str(raw["source"]), server=str(raw.get("server") or ""),
                   result=str(raw["result"]), max_offset_ms=float(raw["max_offset_ms"]),
                   offset_ms=raw.get("offset_ms"), delay_ms=raw.get("delay_ms"),
                   stratum=raw.get("stratum"), error_bound_ms=raw.get("error_bound_ms"),
                   detail=str(raw.get("detail") or ""),
                   replies=tuple(raw.get("replies") or ()),
                   device=str(raw.get("device") or ""), fix_mode=raw.get("fix_mode"),
                   satellites=raw.get("satellites"), method=str(raw.get("method") or ""))


def _reply_json(r: SntpReply | GnssReading) -> dict[str, Any]:
    if isinstance(r, GnssReading):
        return r.to_json()
    return {"source": "ntp", "server": r.server, "offset_ms": round(r.offset_s * 1000, 3),
            "delay_ms": round(r.delay_s * 1000, 3), "stratum": r.stratum, "leap": r.leap,
            "root_delay_ms": round(r.root_delay_s * 1000, 3),
            "root_dispersion_ms": round(r.root_dispersion_s * 1000, 3),
            "error_bound_ms": round(r.error_bound_s * 1000, 3),
            "reference_id": r.reference_id}


#: why a source gave no answer, by its error (the first matching class wins)
FAILURE_OF: tuple[tuple[type[TimeSourceError], str], ...] = (
    (KissOfDeathError, "refused"), (UnsynchronisedError, "unsynchronised"),
    (NoFixError, "no_fix"), (NoReplyError, "unreachable"), (TimeSourceError, "bad_reply"))


def _ask(cfg: ClockSection) -> tuple[list[SntpReply | GnssReading], list[tuple[str, str, str]]]:
    """Every configured source once: the answers, and (result, source, detail) of the
    sources that gave none."""
    answers: list[SntpReply | GnssReading] = []
    failures: list[tuple[str, str, str]] = []
    asks: list[tuple[str, Callable[[], SntpReply | GnssReading]]] = [
        *(("ntp", lambda s=server: query(s, cfg.timeout_s)) for server in cfg.servers),
        *(("gnss", lambda a=address: query_gpsd(a, cfg.gnss_timeout_s))
          for address in cfg.gnss)]
    for source, ask in asks:
        try:
            answers.append(ask())
        except TimeSourceError as exc:
            result = next(r for kind, r in FAILURE_OF if isinstance(exc, kind))
            failures.append((result, source, str(exc)))
    return answers, failures


def interval_ms(r: SntpReply | GnssReading) -> tuple[float, float]:
    """Where the true offset (source minus station clock) lies, (low, high) in ms: NTP
    symmetric, offset ∓ error bound; GNSS as :attr:`GnssReading.interval_s` says (PPS
    symmetric, TOFF and TPV one-sided)."""
    if isinstance(r, GnssReading):
        low_s, high_s = r.interval_s
    else:
        low_s, high_s = r.offset_s - r.error_bound_s, r.offset_s + r.error_bound_s
    return low_s * 1000, high_s * 1000


def judge(intervals_ms: list[tuple[float, float]], best: tuple[float, float],
          max_ms: float) -> str:
    """The result of a check whose answers gave ``intervals_ms`` and whose judged answer
    (smallest error bound) gave ``best``, against the tolerance ±``max_ms``."""
    gap_ms = max(low for low, _ in intervals_ms) - min(high for _, high in intervals_ms)
    if gap_ms > max_ms:  # two answers more than the tolerance apart: which is right?
        return "servers_disagree"
    low, high = best
    if -max_ms <= low and high <= max_ms:
        return "good"
    if high < -max_ms or low > max_ms:  # whatever the true offset, it is beyond
        return "offset_exceeded"
    return "bound_exceeded"  # not shown off, but not shown right either


def source_check(cfg: ClockSection, now: Callable[[], datetime]) -> CheckRecord:
    """Ask every configured source once; judge the best answer (see the module)."""
    max_ms = cfg.max_offset_ms
    if not cfg.servers and not cfg.gnss:
        return CheckRecord(now(), "none", "", "no_source", max_ms,
                           detail="no [clock] servers or gnss configured")
    answers, failures = _ask(cfg)
    at = now()
    detail = "; ".join(d for _, _, d in failures)
    if not answers:
        result, source, _ = min(failures, key=lambda f: FAILURE_ORDER.index(f[0]))
        names = [*cfg.servers, *(gpsd_label(g) for g in cfg.gnss)]
        return CheckRecord(at, source, ", ".join(names), result, max_ms, detail=detail)
    best = min(answers, key=lambda r: r.error_bound_s)
    offset_ms, bound_ms = best.offset_s * 1000, best.error_bound_s * 1000
    result = judge([interval_ms(r) for r in answers], interval_ms(best), max_ms)
    replies = tuple(_reply_json(r) for r in answers)
    if isinstance(best, GnssReading):
        return CheckRecord(at, "gnss", best.server, result, max_ms,
                           offset_ms=round(offset_ms, 3), error_bound_ms=round(bound_ms, 3),
                           detail="; ".join(d for d in (best.detail, detail) if d),
                           replies=replies, device=best.device, fix_mode=best.mode,
                           satellites=best.satellites, method=best.method)
    return CheckRecord(at, "ntp", best.server, result, max_ms,
                       offset_ms=round(offset_ms, 3),
                       delay_ms=round(best.delay_s * 1000, 3), stratum=best.stratum,
                       error_bound_ms=round(bound_ms, 3), detail=detail, replies=replies)


def sim_check(clock: Clock, cfg: ClockSection) -> CheckRecord:
    """The simulated lane: the station's clock against the simulator's published one."""
    at = clock.now()
    if isinstance(clock, PublishedSimClock):
        fresh = PublishedSimClock(clock.devices_file)
        if not fresh.ready:
            return CheckRecord(at, "sim", str(clock.devices_file), "sim_mismatch",
                               cfg.max_offset_ms, detail="the simulator's clock is not "
                               "published any more")
        wall_s = time.time()
        offset_ms = (fresh.at_wall(wall_s) - clock.at_wall(wall_s)).total_seconds() * 1000
        server = str(clock.devices_file.name)
    else:
        offset_ms, server = 0.0, "in-process SimClock"
    result = "good" if abs(offset_ms) <= cfg.max_offset_ms else "sim_mismatch"
    return CheckRecord(at, "sim", server, result, cfg.max_offset_ms,
                       offset_ms=round(offset_ms, 3), delay_ms=0.0, error_bound_ms=0.0,
                       detail="verified against the simulator's published clock")


class ClockMonitor:
    """Checks (own thread), the record of checks, the alarm and passage coverage."""

    def __init__(self, cfg: ClockSection, clock: Clock, data_dir: Path) -> None:
        self.cfg = cfg
        self.clock = clock
        self.path = data_dir / CHECKS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self.checks: list[CheckRecord] = self._load()
        self._last_mono: float | None = None
        self._last_ref: datetime | None = None
        self._alarm_open: bool | None = None  # unknown until the first sync_alarm

    @property
    def simulated(self) -> bool:
        return isinstance(self.clock, SimClock | PublishedSimClock)

    @property
    def max_age_s(self) -> float:
        return self.cfg.check_interval_s + AGE_MARGIN_S

    def _load(self) -> list[CheckRecord]:
        """The checks of earlier runs (they cover passages replayed at a restart)."""
        out: list[CheckRecord] = []
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return out
        if text and not text.endswith("\n"):  # torn by a kill: the next check starts a line
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n")
        for line in text.splitlines()[-KEEP_CHECKS:]:
            try:
                out.append(CheckRecord.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a kill
        return out

    # ------------------------------------------------------------------ checking
    def check_now(self) -> CheckRecord:
        """Check the time source once and record the check."""
        rec = sim_check(self.clock, self.cfg) if self.simulated else source_check(
            self.cfg, self.clock.now)
        line = json.dumps(rec.to_json(), ensure_ascii=False) + "\n"
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        with self._lock:
            self.checks.append(rec)
            del self.checks[:-KEEP_CHECKS]
            self._last_mono, self._last_ref = time.monotonic(), rec.checked_utc
        (LOG.info if rec.good else LOG.warning)("clock check", extra={"fields": rec.to_json()})
        return rec

    def due(self) -> bool:
        """A check is due: none yet this run, or the interval (after a failure
        :data:`RETRY_S`) passed on the reference clock or the monotonic clock."""
        if not self.clock.ready:
            return False  # a simulated lane's clock is published when the station connects
        with self._lock:
            if self._last_mono is None or self._last_ref is None or not self.checks:
                return True
            wait_s = self.cfg.check_interval_s if self.checks[-1].good else min(
                RETRY_S, self.cfg.check_interval_s)
            return (time.monotonic() - self._last_mono >= wait_s
                    or (self.clock.now() - self._last_ref).total_seconds() >= wait_s)

    def run(self, stop: threading.Event) -> None:
        """The checking thread: a check whenever one is due, until ``stop``."""
        while not stop.is_set():
            if self.due():
                try:
                    self.check_now()
                except OSError:  # the record cannot be written: retried, logged loudly
                    LOG.exception("clock check not recorded")
                    stop.wait(RETRY_S)
            stop.wait(0.1)

    def last(self) -> CheckRecord | None:
        with self._lock:
            return self.checks[-1] if self.checks else None

    def verified_now(self) -> tuple[str | None, str]:
        """Whether the reference clock counts as verified now (retention's gate): the latest
        check was made by this process, was good and is at most :attr:`max_age_s` old on
        the monotonic clock. ``(None, "")`` when verified, else ``(reason, reason_zh)``."""
        with self._lock:
            last = self.checks[-1] if self.checks else None
            last_mono = self._last_mono
        if last is None or last_mono is None:
            return "no_check", "本次运行尚无授时核验"
        if not last.good:
            return (f"check_failed: {last.result}",
                    f"最近一次授时核验未通过：{RESULT_ZH.get(last.result, last.result)}")
        age_s = time.monotonic() - last_mono
        if age_s > self.max_age_s:
            return (f"check_too_old: {age_s:.0f} s",
                    f"最近一次授时核验已过 {age_s:.0f} 秒（上限 {self.max_age_s:.0f} 秒）")
        return None, ""

    # ------------------------------------------------------------------ the alarm
    def sync_alarm(self, store: StationStore) -> None:
        """Open ``clock_unverified`` after a failed check, close it after a good one
        (pipeline thread: the store's only writer)."""
        last = self.last()
        if last is None:
            return
        if self._alarm_open is None:
            self._alarm_open = any(a["code"] == CLOCK_ALARM for a in store.active_alarms())
        if not last.good and not self._alarm_open:
            store.raise_alarm(CLOCK_ALARM, CLOCK_ALARM_ZH,
                              f"{format_time(last.checked_utc)} {last.source} {last.server}: "
                              f"{last.result} {last.detail}"[:2000])
            self._alarm_open = True
            LOG.error("clock alarm opened", extra={"fields": last.to_json()})
        elif last.good and self._alarm_open:
            store.clear_alarm(CLOCK_ALARM)
            self._alarm_open = False
            LOG.info("clock alarm closed", extra={"fields": last.to_json()})

    # ------------------------------------------------------------------ coverage
    def covering(self, passage_utc: datetime) -> ReferenceCheck:
        """The check that covers a passage at ``passage_utc`` (reference time), or why
        none does."""
        with self._lock:
            checks = list(self.checks)
        before = [c for c in checks if c.checked_utc <= passage_utc]
        after = [c for c in checks if c.checked_utc > passage_utc]
        if not before:
            return _unverified("no_check", "通行前无授时核验记录")
        c = before[-1]
        claim = ReferenceCheck(
            True, c.source, server=c.server, checked_utc=c.checked_utc,
            offset_ms=c.offset_ms, delay_ms=c.delay_ms, stratum=c.stratum,
            error_bound_ms=c.error_bound_ms, max_offset_ms=c.max_offset_ms,
            max_age_s=self.max_age_s)
        age_s = (passage_utc - c.checked_utc).total_seconds()
        if not c.good:
            return replace(claim, verified=False, reason=f"check_failed: {c.result}",
                           reason_zh=f"通行前最近一次核验未通过：{RESULT_ZH[c.result]}")
        if age_s > self.max_age_s:
            return replace(claim, verified=False, reason=f"check_too_old: {age_s:.0f} s",
                           reason_zh=f"通行前最近一次核验已过 {age_s:.0f} 秒"
                                     f"（上限 {self.max_age_s:.0f} 秒）")
        if after and after[0].result in CLOCK_OFF:
            return replace(claim, verified=False,
                           reason=f"next_check_failed: {after[0].result}",
                           reason_zh=f"通行后的下一次核验发现{RESULT_ZH[after[0].result]}")
        return claim

    def clock_sync(self, passage_utc: datetime, offsets_ms: dict[str, float]) -> ClockSync:
        """A package's clock record: the devices' offsets and the covering check."""
        check = self.covering(passage_utc)
        return ClockSync(reference_zh(check), self.clock.now(), offsets_ms, check)

    def status_json(self) -> dict[str, Any]:
        """For ``/health`` and ``zhichao status``."""
        last = self.last()
        return {"simulated": self.simulated, "servers": list(self.cfg.servers),
                "gnss": [gpsd_label(g) for g in self.cfg.gnss],
                "check_interval_s": self.cfg.check_interval_s,
                "last_check": None if last is None else last.to_json()}


def _unverified(reason: str, reason_zh: str) -> ReferenceCheck:
    return ReferenceCheck(False, "", reason=reason, reason_zh=reason_zh)


def reference_zh(check: ReferenceCheck) -> str:
    """The clock claim a package makes (zh-CN)."""
    if check.verified:
        return f"站内参考时钟（{TIME_SOURCE_ZH.get(check.source, check.source)}，已核验）"
    return f"时钟未核验（{check.reason_zh}）"


def last_check(data_dir: Path) -> dict[str, Any] | None:
    """The newest recorded check (``zhichao status``, without a running station)."""
    try:
        lines = (data_dir / CHECKS_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    for line in reversed(lines):
        try:
            out: dict[str, Any] = json.loads(line)
            return out
        except ValueError:
            continue
    return None


def clock_line(check: dict[str, Any] | None) -> str:
    """``zhichao status``: the last check of the time source (zh-CN, 北京时间)."""
    if check is None:
        return "授时核验：尚无记录（站点运行时开始核验）"
    result = str(check.get("result"))
    offset = check.get("offset_ms")
    fix = ""
    if check.get("fix_mode") is not None:  # GNSS: the fix, the satellites, how offset came
        sats = check.get("satellites")
        fix = (f"（{check['fix_mode']}D 定位" + ("" if sats is None else f"，{sats} 颗卫星")
               + f"，{METHOD_ZH.get(str(check.get('method')), '—')}）")
    return (f"授时核验：{beijing_time_zh(check.get('checked_utc'))} "
            f"{TIME_SOURCE_ZH.get(str(check.get('source')), '未配置授时源')} "
            f"{check.get('server') or ''}{fix} — {RESULT_ZH.get(result, result)}"
            + ("" if offset is None else f"，偏差 {offset} ms")
            + ("" if result == "good" else "（新案件将转人工复核）"))
