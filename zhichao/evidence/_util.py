"""Small helpers shared by the evidence modules (times, decimals, hashing)."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from decimal import Decimal
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
        return _utc(value, where, value)
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
    return _utc(parsed, where, value)


def _utc(moment: datetime, where: str, value: Any) -> datetime:
    """``moment`` in UTC; a time whose UTC form is outside years 1–9999 (0001-01-01T00:00
    at +01:00) is an input error, not an ``OverflowError``."""
    try:
        return moment.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InputError(f"{where}: {value!r} is out of range in UTC") from None


def format_time(moment: datetime) -> str:
    """RFC 3339 UTC with microseconds and ``Z`` (the weighing core's format)."""
    if moment.tzinfo is None:
        raise InputError(f"datetime {moment!r} has no time zone")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


MAX_DECIMAL_EXPONENT = 60
"""A figure beyond 10^±60 is no weight, length or amount; refused so that arithmetic on
it (``decimal`` traps ``Overflow`` near 10^999999) cannot raise."""


def to_decimal(value: Any, where: str) -> Decimal:
    """Exact decimal of a JSON number (via its shortest text form, so 0.1 stays 0.1).

    Raises
    ------
    InputError
        Not a number, not finite, or beyond 10^±:data:`MAX_DECIMAL_EXPONENT`.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str | Decimal):
        raise InputError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        result = Decimal(str(value))
    except (ArithmeticError, ValueError):  # InvalidOperation; int of > 4300 digits
        raise InputError(f"{where}: {_short(value)} is not a number") from None
    if not result.is_finite():
        raise InputError(f"{where}: {_short(value)} is not finite")
    if result and abs(result.adjusted()) > MAX_DECIMAL_EXPONENT:
        raise InputError(f"{where}: {_short(value)} is out of range")
    return result


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, int) or abs(value) < 10 ** 60 else "integer"
    return text if len(text) <= 80 else text[:77] + "..."


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()
