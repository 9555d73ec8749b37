"""Service settings: one typed object, names carrying their units.

Thresholds marked *guess* are operational choices, not law; each deployment sets them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field, replace
from pathlib import Path

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
    attachment_max_bytes: int = 5 * 1024 * 1024  # guess
    attachment_max_count: int = 5  # guess
    statement_max_chars: int = 5000  # guess
    text_field_max_chars: int = 2000  # reasons, responses, summaries
    deadlines: DeadlinePolicy = field(default_factory=DeadlinePolicy)
    # 个人信息保护法 Art. 19: plates of passages that are not cases are removed after this
    # many days. UNCONFIRMED default (no legal period found); each deployment decides.
    passage_plate_retention_days: int = 30
    trust_forwarded_for: bool = False  # only behind a proxy that sets X-Forwarded-For
    # The center's evidence Merkle log for review events (行政处罚法 Art. 47). When set, the
    # app appends pending review events in the background every events_flush_interval_s.
    evidence_log_dir: str | None = None
    evidence_log_key_path: str | None = None  # Ed25519 private key (PEM) signing checkpoints
    evidence_log_key_name: str | None = None  # key name in the signed checkpoints
    evidence_log_origin: str | None = None  # needed only to create a new log
    events_flush_interval_s: float = 5.0  # guess; 0 turns the background flusher off

    def __post_init__(self) -> None:
        if self.secret_key in _PLACEHOLDER_SECRETS or len(self.secret_key) < 32:
            raise ConfigError("Settings.secret_key: set a random secret of at least 32 "
                              "characters (placeholders are refused)", "服务密钥未正确配置")
        if self.events_flush_interval_s < 0:
            raise ConfigError(f"Settings.events_flush_interval_s = "
                              f"{self.events_flush_interval_s}: must be 0 (off) or positive",
                              "审核事件写入间隔配置错误")
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
        return self.attachment_max_count * self.attachment_max_bytes + 256 * 1024

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ZHICHAO_DATABASE_URL``, ``ZHICHAO_SECRET_KEY``,
        ``ZHICHAO_DATABASE_SCHEMA``, ``ZHICHAO_EVIDENCE_LOG`` / ``_KEY`` / ``_KEY_NAME`` /
        ``_LOG_ORIGIN``, ``ZHICHAO_EVENTS_FLUSH_INTERVAL_S``, ``ZHICHAO_HOLIDAY_FILES``
        (``zhichao.holidays/1`` files separated by the OS path separator: the official
        schedules of years the calendar package lacks), plus overrides. ``holiday_files=``
        (a sequence of paths) may be given as an override too."""
        values: dict[str, object] = {}
        if url := os.environ.get("ZHICHAO_DATABASE_URL"):
            values["database_url"] = url
        if key := os.environ.get("ZHICHAO_SECRET_KEY"):
            values["secret_key"] = key
        if schema := os.environ.get("ZHICHAO_DATABASE_SCHEMA"):
            values["database_schema"] = schema
        for env, name in (("ZHICHAO_EVIDENCE_LOG", "evidence_log_dir"),
                          ("ZHICHAO_EVIDENCE_KEY", "evidence_log_key_path"),
                          ("ZHICHAO_EVIDENCE_KEY_NAME", "evidence_log_key_name"),
                          ("ZHICHAO_EVIDENCE_LOG_ORIGIN", "evidence_log_origin")):
            if value := os.environ.get(env):
                values[name] = value
        if interval := os.environ.get("ZHICHAO_EVENTS_FLUSH_INTERVAL_S"):
            try:
                values["events_flush_interval_s"] = float(interval)
            except ValueError:
                raise ConfigError(f"ZHICHAO_EVENTS_FLUSH_INTERVAL_S={interval!r}: not a "
                                  "number", "审核事件写入间隔须为数字") from None
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
