"""RFC 3161 trusted time-stamps on checkpoints.

A :class:`TimestampAuthority` turns a DER time-stamp *request* into a DER *response*.
:class:`HttpTsa` posts to a TSA URL (``application/timestamp-query``); :class:`OpensslTsa`
runs a local ``openssl ts -reply`` (for tests and for an agency's own offline TSA).
Verification uses ``rfc3161-client`` and never touches the network.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import tempfile
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import rfc3161_client
from cryptography import x509

from zhichao.evidence.errors import TimestampError


class TimestampAuthority(Protocol):
    def timestamp(self, request_der: bytes) -> bytes:
        """Return the DER TimeStampResp for ``request_der``; raise TimestampError on failure."""
        ...


@dataclass(frozen=True)
class HttpTsa:
    url: str
    timeout_s: float = 10.0

    def timestamp(self, request_der: bytes) -> bytes:
        req = urllib.request.Request(
            self.url, data=request_der, method="POST",
            headers={"Content-Type": "application/timestamp-query"},
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as resp:
                data: bytes = resp.read()
                return data
        except OSError as exc:
            raise TimestampError(f"TSA {self.url}: {exc}") from exc


@dataclass(frozen=True)
class OpensslTsa:
    """A local TSA run by ``openssl ts -reply -config CONFIG`` (cwd = the config's folder)."""

    config: Path
    openssl: str = "openssl"
    timeout_s: float = 10.0

    def timestamp(self, request_der: bytes) -> bytes:
        exe = shutil.which(self.openssl)
        if exe is None:
            raise TimestampError(f"{self.openssl}: not found; cannot run the local TSA")
        with tempfile.TemporaryDirectory() as tmp:
            query = Path(tmp) / "req.tsq"
            reply = Path(tmp) / "resp.tsr"
            query.write_bytes(request_der)
            try:
                result = subprocess.run(
                    [exe, "ts", "-reply", "-config", str(self.config.resolve()),
                     "-queryfile", str(query), "-out", str(reply)],
                    cwd=self.config.resolve().parent, capture_output=True, text=True,
                    timeout=self.timeout_s, check=False,
                )
            except subprocess.TimeoutExpired:
                raise TimestampError(f"openssl ts timed out after {self.timeout_s} s") from None
            if result.returncode != 0 or not reply.exists():
                raise TimestampError(f"openssl ts -reply failed: {result.stderr.strip()[-300:]}")
            return reply.read_bytes()


@dataclass(frozen=True)
class TimestampInfo:
    gen_time_utc: datetime
    serial_number: int
    policy: str
    message_sha256: str
    chain_verified: bool  # True only when checked against a trusted root


def request_timestamp(tsa: TimestampAuthority, data: bytes) -> bytes:
    """Time-stamp ``data`` (its SHA-256); returns the DER response after checking it."""
    request = (rfc3161_client.TimestampRequestBuilder().data(data)
               .hash_algorithm(rfc3161_client.HashAlgorithm.SHA256).nonce(nonce=True)
               .cert_request(cert_request=True).build())
    response_der = tsa.timestamp(request.as_bytes())
    try:
        response = rfc3161_client.decode_timestamp_response(response_der)
    except Exception as exc:  # the decoder raises several internal types
        raise TimestampError(f"TSA response is not a valid TimeStampResp: {exc}") from None
    if response.status != 0:
        raise TimestampError(f"TSA refused the request (status {response.status})")
    if response.tst_info.nonce != request.nonce:
        raise TimestampError("TSA response nonce does not match the request")
    if response.tst_info.message_imprint.message != hashlib.sha256(data).digest():
        raise TimestampError("TSA response imprint is not the SHA-256 of the data")
    return response_der


def verify_timestamp(token_der: bytes, data: bytes,
                     roots: list[x509.Certificate] | None = None) -> TimestampInfo:
    """Check that ``token_der`` time-stamps ``data``.

    With ``roots``, the TSA's signature and certificate chain are verified too
    (``chain_verified``); without, only the imprint is checked and the caller must say so.

    Raises
    ------
    TimestampError
        Malformed token, imprint mismatch, or (with roots) a signature/chain failure.
    """
    try:
        response = rfc3161_client.decode_timestamp_response(token_der)
    except Exception as exc:
        raise TimestampError(f"not a valid RFC 3161 response: {exc}") from None
    info = response.tst_info
    digest = hashlib.sha256(data).digest()
    if info.message_imprint.message != digest:
        raise TimestampError(
            f"time-stamp imprint {info.message_imprint.message.hex()} is not the SHA-256 "
            f"{digest.hex()} of the checkpoint"
        )
    chain_ok = False
    if roots:
        builder = rfc3161_client.VerifierBuilder()
        for root in roots:
            builder.add_root_certificate(root)
        for cert in response.signed_data.certificates:
            try:
                builder.add_intermediate_certificate(x509.load_der_x509_certificate(cert))
            except ValueError:
                continue
        try:
            builder.build().verify_message(response, data)
        except rfc3161_client.VerificationError as exc:
            raise TimestampError(f"time-stamp signature or chain does not verify: {exc}") from None
        chain_ok = True
    gen = info.gen_time
    if gen.tzinfo is None:
        gen = gen.replace(tzinfo=UTC)
    return TimestampInfo(gen.astimezone(UTC), int(info.serial_number), info.policy.dotted_string,
                         digest.hex(), chain_ok)
