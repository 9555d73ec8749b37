"""Service settings: one typed object, names carrying their units.

Thresholds marked *guess* are operational choices, not law; each deployment sets them.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field

from zhichao.service.errors import ConfigError
from zhichao.service.workdays import DeadlinePolicy

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
    trust_forwarded_for: bool = False  # only behind a proxy that sets X-Forwarded-For

    def __post_init__(self) -> None:
        if self.secret_key in _PLACEHOLDER_SECRETS or len(self.secret_key) < 32:
            raise ConfigError("Settings.secret_key: set a random secret of at least 32 "
                              "characters (placeholders are refused)", "服务密钥未正确配置")

    @property
    def max_request_bytes(self) -> int:
        return self.attachment_max_count * self.attachment_max_bytes + 256 * 1024

    @classmethod
    def from_env(cls, **overrides: object) -> Settings:
        """Settings from ``ZHICHAO_DATABASE_URL``, ``ZHICHAO_SECRET_KEY``, … plus overrides."""
        values: dict[str, object] = {}
        if url := os.environ.get("ZHICHAO_DATABASE_URL"):
            values["database_url"] = url
        if key := os.environ.get("ZHICHAO_SECRET_KEY"):
            values["secret_key"] = key
        if schema := os.environ.get("ZHICHAO_DATABASE_SCHEMA"):
            values["database_schema"] = schema
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
