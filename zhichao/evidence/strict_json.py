"""JSON that came from outside: a package's files, an upload, a history bundle.

``json.loads`` raises more than ``JSONDecodeError`` on hostile input — ``RecursionError``
for deep nesting, a plain ``ValueError`` for an integer of more than 4 300 digits — and it
accepts what a sealed file never holds: ``NaN`` and ``Infinity``, ``1e400`` (read as
``inf``, on which ``int()`` raises ``OverflowError``), a key twice (the last one wins,
while another reader may take the first). :func:`loads` turns all of these into one
:class:`~zhichao.evidence.errors.InputError` naming where, and refuses nesting deeper than
:data:`MAX_DEPTH` (so later recursive code cannot overflow either). The accessors check
types exactly: :func:`integer` wants ``type(x) is int`` — neither ``True`` nor ``1.0`` nor
``"1"`` is an index.

Every untrusted JSON document of the verifier and of the center's ingest goes through
here.
"""

from __future__ import annotations

import json
import math
from typing import Any

from zhichao.evidence.errors import InputError

MAX_DEPTH = 64
"""Deepest nesting accepted (a manifest is about 8 levels deep)."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]!r} is out of range")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"key {key[:40]!r} appears twice in one object")
        result[key] = value
    return result


def _check_depth(value: Any, where: str, max_depth: int) -> None:
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, dict | list):
            if depth > max_depth:
                raise InputError(f"{where}: JSON nested deeper than {max_depth} levels")
            children = item.values() if isinstance(item, dict) else item
            pending.extend((child, depth + 1) for child in children)


def loads(data: bytes | str, where: str, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse untrusted JSON (``data``: UTF-8 bytes or text).

    Raises
    ------
    InputError
        Not UTF-8, not JSON, a key twice, a non-finite or too long number, or nesting
        deeper than ``max_depth``; the message starts with ``where``.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite_float,
                           object_pairs_hook=_unique_keys)
    except RecursionError:
        raise InputError(f"{where}: JSON nested too deeply") from None
    except (ValueError, OverflowError, TypeError) as exc:  # JSONDecodeError, Unicode…
        raise InputError(f"{where}: not valid JSON ({str(exc)[:200]})") from None
    _check_depth(value, where, max_depth)
    return value


def member(value: Any, key: str, where: str) -> Any:
    """``value[key]`` of a JSON object. Raises :class:`InputError` if it is no object or
    has no such key."""
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {_kind(value)}")
    if key not in value:
        raise InputError(f"{where}: {key!r} is missing")
    return value[key]


def integer(value: Any, key: str, where: str, *, minimum: int | None = 0) -> int:
    """``value[key]`` as an integer, exactly (not a bool, a float or a string)."""
    item = member(value, key, where)
    if type(item) is not int:
        raise InputError(f"{where}.{key}: expected an integer, got {_kind(item)}")
    if minimum is not None and item < minimum:
        raise InputError(f"{where}.{key}: {item} is below {minimum}")
    return item


def string(value: Any, key: str, where: str) -> str:
    """``value[key]`` as a string."""
    item = member(value, key, where)
    if not isinstance(item, str):
        raise InputError(f"{where}.{key}: expected a string, got {_kind(item)}")
    return item


def strings(value: Any, key: str, where: str) -> list[str]:
    """``value[key]`` as a list of strings."""
    item = member(value, key, where)
    if not isinstance(item, list) or not all(isinstance(s, str) for s in item):
        raise InputError(f"{where}.{key}: expected a list of strings")
    return item


def objects(value: Any, key: str, where: str) -> list[dict[str, Any]]:
    """``value[key]`` as a list of JSON objects."""
    item = member(value, key, where)
    if not isinstance(item, list) or not all(isinstance(o, dict) for o in item):
        raise InputError(f"{where}.{key}: expected a list of objects")
    return item


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "null"}.get(
                type(value), type(value).__name__)


__all__ = ["MAX_DEPTH", "integer", "loads", "member", "objects", "string", "strings"]
