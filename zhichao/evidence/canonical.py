"""RFC 8785 JSON Canonicalization Scheme (JCS).

Only the JSON data model is accepted: ``None``, ``bool``, ``int``, ``float`` (finite),
``str``, ``list``/``tuple`` and ``dict`` with ``str`` keys. Keys are sorted by their UTF-16
code units, strings use the minimal JSON escapes, numbers use the ECMAScript
``Number.prototype.toString`` form. Integers beyond 2**53 are refused, because a verifier
written in another language (JavaScript, a court's tool) would read them differently.
"""

from __future__ import annotations

import math
from typing import Any

from zhichao.evidence.errors import CanonicalisationError

_MAX_SAFE_INT = 2**53 - 1

_ESCAPES = {
    0x08: "\\b",
    0x09: "\\t",
    0x0A: "\\n",
    0x0C: "\\f",
    0x0D: "\\r",
    0x22: '\\"',
    0x5C: "\\\\",
}


def _string(value: str) -> str:
    out = ['"']
    for ch in value:
        code = ord(ch)
        if code in _ESCAPES:
            out.append(_ESCAPES[code])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            raise CanonicalisationError(f"lone surrogate U+{code:04X} in string {value[:40]!r}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _number(value: float) -> str:
    """ECMAScript Number::toString for a finite double."""
    if not math.isfinite(value):
        raise CanonicalisationError(f"number {value!r} is not finite; JSON cannot hold it")
    if value == 0:
        return "0"
    if value < 0:
        return "-" + _number(-value)
    # repr() gives the shortest round-tripping digits; split them into digits and exponent.
    mantissa, _, exp_text = repr(value).partition("e")
    exponent = int(exp_text) if exp_text else 0
    int_part, _, frac_part = mantissa.partition(".")
    digits = (int_part + frac_part).lstrip("0")
    # Position of the decimal point relative to the start of `digits` (ES "n").
    lead_zeros = len(int_part + frac_part) - len((int_part + frac_part).lstrip("0"))
    n = len(int_part) - lead_zeros + exponent
    digits = digits.rstrip("0") or "0"
    k = len(digits)
    if k <= n <= 21:
        return digits + "0" * (n - k)
    if 0 < n <= 21:
        return digits[:n] + "." + digits[n:]
    if -6 < n <= 0:
        return "0." + "0" * (-n) + digits
    e = n - 1
    sign = "+" if e >= 0 else "-"
    head = digits[0] + ("." + digits[1:] if k > 1 else "")
    return f"{head}e{sign}{abs(e)}"


def _encode(value: Any, out: list[str], path: str) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > _MAX_SAFE_INT:
            raise CanonicalisationError(f"integer at {path} exceeds 2**53-1: {value}")
        out.append(str(value))
    elif isinstance(value, float):
        try:
            out.append(_number(value))
        except CanonicalisationError as exc:
            raise CanonicalisationError(f"{exc} (at {path})") from None
    elif isinstance(value, str):
        out.append(_string(value))
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, f"{path}[{i}]")
        out.append("]")
    elif isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalisationError(f"object key {key!r} at {path} is not a string")
        keys = sorted(value, key=lambda k: k.encode("utf-16-be"))
        out.append("{")
        for i, key in enumerate(keys):
            if i:
                out.append(",")
            out.append(_string(key))
            out.append(":")
            _encode(value[key], out, f"{path}.{key}")
        out.append("}")
    else:
        raise CanonicalisationError(
            f"value of type {type(value).__name__} at {path} is not JSON data"
        )


def canonicalize(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``.

    Raises
    ------
    CanonicalisationError
        For non-JSON data, non-finite numbers, unsafe integers or lone surrogates.
    """
    out: list[str] = []
    _encode(value, out, "$")
    return "".join(out).encode("utf-8")
