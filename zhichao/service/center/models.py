"""Center-side tables of the sync (own ``DeclarativeBase``; SQLite and PostgreSQL).

The tables are created without a schema; :class:`zhichao.service.center.store.CenterStore`
maps them into a PostgreSQL schema of its choice with ``schema_translate_map`` (so tests and
deployments can keep them apart from the service core's tables).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class SyncBase(DeclarativeBase):
    """Base of the sync tables only (the service core has its own)."""


class SyncStation(SyncBase):
    """A station the center trusts, and the last checkpoint of its log it accepted."""

    __tablename__ = "sync_station"

    station_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_name: Mapped[str] = mapped_column(String(200))
    public_key_pem: Mapped[str] = mapped_column(Text)
    key_sha256: Mapped[str] = mapped_column(String(64))
    log_origin: Mapped[str] = mapped_column(String(200))
    registered_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    accepted_size: Mapped[int] = mapped_column(BigInteger, default=0)
    accepted_root: Mapped[bytes | None] = mapped_column(LargeBinary(32), nullable=True)
    accepted_note: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    fork_alarm_utc: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                            nullable=True)


class SyncStationKey(SyncBase):
    """A station's replaced public key: trusted only for what it sealed, the log entries
    below ``valid_below_log_size`` (migration 0011)."""

    __tablename__ = "sync_station_key"

    station_id: Mapped[str] = mapped_column(ForeignKey("sync_station.station_id"),
                                            primary_key=True)
    key_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    key_name: Mapped[str] = mapped_column(String(200))
    public_key_pem: Mapped[str] = mapped_column(Text)
    replaced_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    valid_below_log_size: Mapped[int] = mapped_column(BigInteger)


class SyncPackage(SyncBase):
    """An accepted evidence package, stored content-addressed under the store directory."""

    __tablename__ = "sync_package"
    __table_args__ = (UniqueConstraint("station_id", "log_index",
                                       name="uq_sync_package_log_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    manifest_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("sync_station.station_id"))
    package_id: Mapped[str] = mapped_column(String(200))
    content_sha256: Mapped[str] = mapped_column(String(64))
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    log_index: Mapped[int] = mapped_column(BigInteger)
    checkpoint_size: Mapped[int] = mapped_column(BigInteger)
    stored_path: Mapped[str] = mapped_column(Text)
    received_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_signature: Mapped[str] = mapped_column(String(100))
    hook_delivered: Mapped[bool] = mapped_column(Boolean, default=False)


class SyncPassage(SyncBase):
    """An accepted passage record with the station's signature over it."""

    __tablename__ = "sync_passage"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    record_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    station_id: Mapped[str] = mapped_column(ForeignKey("sync_station.station_id"))
    record: Mapped[bytes] = mapped_column(LargeBinary)
    station_signature: Mapped[str] = mapped_column(String(100))
    time_utc: Mapped[str] = mapped_column(String(40))
    received_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    receipt: Mapped[bytes] = mapped_column(LargeBinary)
    receipt_signature: Mapped[str] = mapped_column(String(100))
    hook_delivered: Mapped[bool] = mapped_column(Boolean, default=False)


class SyncQuarantine(SyncBase):
    """A refused upload kept for investigation (the bytes are under ``quarantine/``)."""

    __tablename__ = "sync_quarantine"
    __table_args__ = (UniqueConstraint("content_sha256", "code", name="uq_sync_quarantine"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    station_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    claimed_sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    content_sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    code: Mapped[str] = mapped_column(String(64))
    message_zh: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text)
    stored_path: Mapped[str] = mapped_column(Text)
    received_utc: Mapped[datetime] = mapped_column(DateTime(timezone=True))
