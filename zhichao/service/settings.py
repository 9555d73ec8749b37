"""Service settings: one typed object, names carrying their units.

Thresholds marked *guess* are operational choices, not law; each deployment sets them.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from zhichao.service.errors import ConfigError
from zhichao.service.workdays import DeadlinePolicy, load_year_calendar

_PLACEHOLDER_SECRETS = {"", "changethis", "secret", "changeme"}


@dataclass(frozen=True)
class Settings:
    database_url: str = "sqlite:///zhichao-service.db"
    database_schema: str | None = None  # PostgreSQL only: tables live in this schema
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    migrate_on_start: bool = True
    session_ttl_s: int = 8 * 3600  # guess: one working shift
    owner_token_ttl_s: int = 30 * 60  # guess
    owner_query_min_duration_ms: int = 250  # every owner query answers no sooner than this
    owner_query_per_client_per_minute: int = 10  # guess
    owner_query_per_plate_per_hour: int = 30  # guess; stops spreading one plate over clients
    login_per_client_per_minute: int = 20  # guess
    # Login throttling (login_throttle.py): after login_free_failures failed logins, each
    # further attempt waits login_delay_base_s, doubling per failure up to the caps; a
    # delay, never a lock (the per-account cap is short so strangers cannot shut a person
    # out; clients that logged into the account before skip the per-account delay).
    login_free_failures: int = 3  # guess
    login_delay_base_s: float = 1.0  # guess
    login_delay_max_per_account_s: float = 60.0  # guess
    login_delay_max_per_client_s: float = 900.0  # guess
    attachment_max_bytes: int = 5 * 1024 * 1024  # guess
    attachment_max_count: int = 5  # guess
    statement_max_chars: int = 5000  # guess
    max_json_request_bytes: int = 64 * 1024  # guess; every body but uploads (body_limit.py)
    text_field_max_chars: int = 2000  # reasons, responses, summaries
    deadlines: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    # Reverse proxies whose X-Forwarded-For is believed (IP addresses or networks, "*" for
    # any peer): none by default, so a forged header from a client changes nothing.
    # ``zhichao serve --forwarded-allow-ips`` hands them to uvicorn, which then sets the
    # request's client to the address the nearest untrusted hop gave.
    forwarded_allow_ips: tuple[str, ...] = ()
    # 个人信息保护法 Art. 19: plates of passages that are not cases are removed after this
    # many days. UNCONFIRMED default (no legal period found); each deployment decides.
    passage_plate_retention_days: int = 30
    # How long passage rows (weights, class, verdict: the monthly statistics) are kept. When
    # set, retention drops whole months of passages past it that hold no case (PostgreSQL,
    # partitioned by month); unset (default): rows are kept, only plates are removed.
    passage_row_retention_days: int | None = None
    # The center's evidence Merkle log for review events (行政处罚法 Art. 47). When set, the
    # app appends pending review events in the background every events_flush_interval_s.
    evidence_log_dir: str | None = None
    evidence_log_key_path: str | None = None  # Ed25519 private key (PEM) signing checkpoints
    evidence_log_key_name: str | None = None  # key name in the signed checkpoints
    evidence_log_origin: str | None = None  # needed only to create a new log
    events_flush_interval_s: float = 5.0  # guess; 0 turns the background flusher off
    # Owner queries go to owner_access_log; every this many seconds the app seals the new
    # rows into one audit-chain entry (access_log.py). Each replica may seal; 0 turns the
    # app's sealer off (then run ``zhichao audit seal`` from elsewhere, or rows stay
    # unsealed). guess: 1 s bounds what is not yet in the chain to about a second.
    owner_access_seal_interval_s: float = 1.0
    # Shared request limits (ratelimit.py): with several replicas, set a Redis URL so each
    # limit holds in total; None keeps the counts in this process (the embedded default).
    redis_url: str | None = None

    def __post_init__(self) -> None:
        if self.secret_key in _PLACEHOLDER_SECRETS or len(self.secret_key) < 32:
            raise ConfigError("Settings.secret_key: set a random secret of at least 32 "
                              "characters (placeholders are refused)", "服务密钥未正确配置")
        if self.events_flush_interval_s < 0:
            raise ConfigError(f"Settings.events_flush_interval_s = "
                              f"{self.events_flush_interval_s}: must be 0 (off) or positive",
                              "审核事件写入间隔配置错误")
        if self.owner_access_seal_interval_s < 0:
            raise ConfigError(f"Settings.owner_access_seal_interval_s = "
                              f"{self.owner_access_seal_interval_s}: must be 0 (off) or "
                              "positive", "车主查询记录封存间隔配置错误")
        _check_forwarded_allow_ips(self.forwarded_allow_ips)
        if self.login_free_failures < 0 or self.login_delay_base_s <= 0 \
                or self.login_delay_max_per_account_s < 0 or self.login_delay_max_per_client_s < 0:
            raise ConfigError("Settings.login_*: free failures >= 0, base delay > 0, caps >= 0",
                              "登录限速配置错误")
        if self.max_json_request_bytes < 1024:
            raise ConfigError("Settings.max_json_request_bytes: at least 1024",
                              "请求大小上限配置错误")
        if self.evidence_log_dir is not None and (not self.evidence_log_key_path
                                                  or not self.evidence_log_key_name):
            raise ConfigError("Settings.evidence_log_dir is set: evidence_log_key_path and "
                              "evidence_log_key_name are needed too",
                              "已配置证据日志，但缺少签名密钥或密钥名称")

    @property
    def events_flusher_enabled(self) -> bool:
        """Whether the app appends review events to the evidence log in the background."""
        return self.evidence_log_dir is not None and self.events_flush_interval_s > 0

    @property
    def max_request_bytes(self) -> int:
        """The largest body of an upload route (owner statements with attachments)."""
        return self.attachment_max_count * self.attachment_max_bytes + 256 * 1024

    @property
    def trust_forwarded_for(self) -> bool:
        """Always False: the app never reads ``X-Forwarded-For`` itself. The ASGI server
        applies it, and only for connections from :attr:`forwarded_allow_ips`, so
        ``request.client`` already is the real client (kept so that code written against
        the old flag stays safe)."""
        return False

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ZHICHAO_DATABASE_URL``, ``ZHICHAO_SECRET_KEY``,
        ``ZHICHAO_DATABASE_SCHEMA``, ``ZHICHAO_FORWARDED_ALLOW_IPS`` (comma-separated),
        ``ZHICHAO_REDIS_URL`` (shared rate limits, ratelimit.py),
        ``ZHICHAO_EVIDENCE_LOG`` / ``_KEY`` / ``_KEY_NAME`` /
        ``_LOG_ORIGIN``, ``ZHICHAO_EVENTS_FLUSH_INTERVAL_S``,
        ``ZHICHAO_OWNER_ACCESS_SEAL_INTERVAL_S``, ``ZHICHAO_HOLIDAY_FILES``
        (``zhichao.holidays/1`` files separated by the OS path separator: the official
        schedules of years the calendar package lacks), plus overrides. ``holiday_files=``
        (a sequence of paths) may be given as an override too."""
        values: dict[str, object] = {}
        if url := os.environ.get("ZHICHAO_DATABASE_URL"):
            values["database_url"] = url
        if key := os.environ.get("ZHICHAO_SECRET_KEY"):
            values["secret_key"] = key
        if redis_url := os.environ.get("ZHICHAO_REDIS_URL"):
            values["redis_url"] = redis_url
        if schema := os.environ.get("ZHICHAO_DATABASE_SCHEMA"):
            values["database_schema"] = schema
        if proxies := os.environ.get("ZHICHAO_FORWARDED_ALLOW_IPS"):
            values["forwarded_allow_ips"] = parse_forwarded_allow_ips(proxies)
        for env, name in (("ZHICHAO_EVIDENCE_LOG", "evidence_log_dir"),
                          ("ZHICHAO_EVIDENCE_KEY", "evidence_log_key_path"),
                          ("ZHICHAO_EVIDENCE_KEY_NAME", "evidence_log_key_name"),
                          ("ZHICHAO_EVIDENCE_LOG_ORIGIN", "evidence_log_origin")):
            if value := os.environ.get(env):
                values[name] = value
        for env, name, zh in (
                ("ZHICHAO_EVENTS_FLUSH_INTERVAL_S", "events_flush_interval_s",
                 "审核事件写入间隔须为数字"),
                ("ZHICHAO_OWNER_ACCESS_SEAL_INTERVAL_S", "owner_access_seal_interval_s",
                 "车主查询记录封存间隔须为数字")):
            if interval := os.environ.get(env):
                try:
                    values[name] = float(interval)
                except ValueError:
                    raise ConfigError(f"{env}={interval!r}: not a number", zh) from None
        raw_files = overrides.pop("holiday_files", None)
        holiday_files: list[str] = [str(p) for p in raw_files] if isinstance(
            raw_files, (list, tuple)) else []
        env_files = os.environ.get("ZHICHAO_HOLIDAY_FILES")
        if raw_files is None and env_files:
            holiday_files = [p for p in env_files.split(os.pathsep) if p]
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)  # type: ignore[arg-type]
        if holiday_files:
            settings = settings.with_holiday_files([Path(p) for p in holiday_files])
        return settings

    def with_holiday_files(self, paths: list[Path]) -> Settings:
        """These settings with the official schedules in ``paths`` added to the deadline
        policy (a file that cannot be read, or two files for one year, is refused)."""
        years = {c.year for c in self.deadlines.supplements}
        added = []
        for path in paths:
            cal = load_year_calendar(path)
            if cal.year in years:
                raise ConfigError(f"{path}: a holiday schedule for {cal.year} is already loaded",
                                  f"{cal.year}年节假日安排重复加载")
            years.add(cal.year)
            added.append(cal)
        deadlines = replace(self.deadlines,
                            supplements=(*self.deadlines.supplements, *added))
        return replace(self, deadlines=deadlines)


def parse_forwarded_allow_ips(text: str) -> tuple[str, ...]:
    """``"10.0.0.5, 10.1.0.0/16"`` → ``("10.0.0.5", "10.1.0.0/16")`` (checked)."""
    hosts = tuple(part.strip() for part in text.split(",") if part.strip())
    _check_forwarded_allow_ips(hosts)
    return hosts


def uvicorn_proxy_options(forwarded_allow_ips: tuple[str, ...]) -> dict[str, Any]:
    """uvicorn's ``proxy_headers`` and ``forwarded_allow_ips`` for these proxies (none:
    proxy headers off; uvicorn's own default would believe them from loopback)."""
    return {"proxy_headers": bool(forwarded_allow_ips),
            "forwarded_allow_ips": ",".join(forwarded_allow_ips)}


def _check_forwarded_allow_ips(hosts: tuple[str, ...]) -> None:
    for host in hosts:
        if host == "*":
            continue
        try:
            ipaddress.ip_network(host, strict=False)
        except ValueError:
            raise ConfigError(f"forwarded_allow_ips: {host!r} is not an IP address or network",
                              f"可信代理地址无效：{host!r}（须为 IP 地址或网段）") from None
