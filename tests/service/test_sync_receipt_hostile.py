"""A receipt is parsed only once it is known to be the center's, and strictly."""

from __future__ import annotations

import base64

import pytest

from zhichao.evidence.signing import generate_key
from zhichao.sync.errors import ReceiptError
from zhichao.sync.wire import check_receipt, sign_receipt


def test_a_deep_or_unsigned_receipt_is_a_receipt_error() -> None:
    center = generate_key()
    deep = b"[" * 100_000 + b"]" * 100_000
    b64 = base64.b64encode(deep).decode()
    forged = base64.b64encode(bytes(64)).decode()
    with pytest.raises(ReceiptError, match="signature"):
        check_receipt(b64, forged, center.public_key(), item_sha256="a" * 64,
                      station_id="S001")
    signed = base64.b64encode(center.sign(deep)).decode()
    with pytest.raises(ReceiptError, match="nested"):  # signed, still not a crash
        check_receipt(b64, signed, center.public_key(), item_sha256="a" * 64,
                      station_id="S001")


def test_a_good_receipt_still_passes() -> None:
    center = generate_key()
    data, sig = sign_receipt({"item_sha256": "a" * 64, "station_id": "S001"}, center)
    body = check_receipt(base64.b64encode(data).decode(), sig, center.public_key(),
                         item_sha256="a" * 64, station_id="S001")
    assert body["station_id"] == "S001"
