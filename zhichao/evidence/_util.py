"""Small helpers shared by the evidence modules (times, decimals, hashing)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from zhichao.evidence.errors import InputError


def parse_time(value: Any, where: str) -> datetime:
    """Parse an RFC 3339 timestamp with an explicit offset into a tz-aware UTC datetime.

    Raises
    ------
    InputError
        If ``value`` is not a string, not RFC 3339, or has no UTC offset.
    """
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise InputError(f"{where}: datetime {value!r} has no time zone")
        return value.astimezone(UTC)
    if not isinstance(value, str):
        raise InputError(f"{where}: expected an RFC 3339 timestamp, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise InputError(f"{where}: {value!r} is not an RFC 3339 timestamp") from None
    if parsed.tzinfo is None:
        raise InputError(f"{where}: {value!r} has no UTC offset (must end in Z or ±hh:mm)")
    return parsed.astimezone(UTC)


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` (the weighing core's format)."""
    if moment.tzinfo is None:
        raise InputError(f"datetime {moment!r} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def to_decimal(value: Any, where: str) -> Decimal:
    """Exact decimal of a JSON number (via its shortest text form, so 0.1 stays 0.1)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InputError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise InputError(f"{where}: {value!r} is not a number") from None
    if not result.is_finite():
        raise InputError(f"{where}: {value!r} is not finite")
    return result


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
