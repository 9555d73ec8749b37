"""The station's uploader: drains the outbox to the center, idempotently, with back-off.

* Items go oldest first. A package is sent with the RFC 6962 consistency proof between its
  checkpoint and the center's last accepted checkpoint of this station (the uploader
  learns that size from ``GET /stations/{id}`` and from every answer; a ``409
  log.proof_needed`` names the sizes the center wants and the upload is repeated with
  that proof at once, a bounded number of times).
* An answer with a receipt is checked against the center's public key and the item's
  hash before the item is marked done; a receipt that does not verify leaves the item
  pending.
* The center down or failing (connection error, time-out, 5xx): the uploader stops the
  round and waits ``min(max_s, base_s · 2^n) · U(½, 1)`` (exponential back-off with
  jitter, bounded by ``max_s``) before trying again; nothing is dropped, the outbox only
  grows. Item-specific temporary refusals (station not registered yet) back off per item.
  A 5xx while the center's health check answers (asked at most once a round) may be the
  center failing on that request only: the first package a round fails on backs off
  alone; a passage batch is searched by halves until the failing record is alone and
  backs off alone, so one record never holds up the others. A failure that is not
  isolated (a second package in the round, both halves of a batch: the center fails on
  every write, e.g. its disk is full, while its read-only health check answers) is the
  center failing: the round stops with the center's back-off. A 413 batch is sent in
  halves.
* Retry times are wall-clock instants; one further ahead than ``max_s`` (a clock set
  back since) is due at once.
* A permanent refusal (tampered package, fork, …) marks the item refused with the
  center's code and zh-CN reason; it stays in the outbox for a human.
* When no package is due, the newest checkpoint of the station log is sent (with its
  consistency proof), so the center's view of the log covers entries that are not
  packages (review events) and a fork is seen as early as possible.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from zhichao.common import Backoff
from zhichao.evidence.errors import LogError
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.verify_log import STATION_ORIGIN_PREFIX
from zhichao.station.sync_outbox import Item, Outbox
from zhichao.sync.errors import ReceiptError, SyncError
from zhichao.sync.wire import (
    API_PREFIX,
    HEADER_PROOF,
    HEADER_PROOF_FROM,
    HEADER_PROOF_TO,
    check_receipt,
)

log = logging.getLogger(__name__)


# back-off between upload attempts (jittered: the uploader passes its rng). Guesses, not
# measured: a station on a mobile link should not hammer a recovering center, nor wait
# more than a minute.
UPLOAD_BACKOFF = Backoff(initial_s=0.5, max_s=60.0)


@dataclass
class PushSummary:
    accepted: int = 0
    duplicates: int = 0
    refused: int = 0
    failures: int = 0
    center_failures: int = 0
    refusals: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicates": self.duplicates,
                "refused": self.refused, "failures": self.failures,
                "center_failures": self.center_failures, "refusals": self.refusals}


class _CenterDownError(SyncError):
    """The center did not answer usefully (connection error, time-out, 5xx)."""


class _CenterFailedError(_CenterDownError):
    """The center answered 5xx: it is failing, or failing on this request only."""


@dataclass
class _Round:
    """What one round (:meth:`Uploader.step`) learnt of the center."""

    healthy: bool | None = None  # its health check's answer, asked at most once a round
    failed_packages: int = 0  # packages it failed on (5xx) while healthy
    split_logged: bool = False


class Uploader:
    """Drain ``outbox`` to the center at ``center_url``; receipts checked with ``center_key``.

    ``log_dir`` is the station's Merkle log (opened read-only per upload, so the sealing
    process keeps writing it); without it no consistency proofs can be sent. ``client``
    replaces the HTTP client (e.g. an in-process ASGI client).
    """

    def __init__(self, outbox: Outbox, center_url: str, center_key: Ed25519PublicKey, *,
                 log_dir: Path | None, backoff: Backoff | None = None, timeout_s: float = 30.0,
                 passage_batch: int = 200, rng: random.Random | None = None,
                 client: httpx.Client | None = None) -> None:
        self.outbox = outbox
        self.base_url = center_url.rstrip("/") + API_PREFIX
        self.center_key = center_key
        self.log_dir = log_dir
        self.backoff = backoff or UPLOAD_BACKOFF
        self.passage_batch = passage_batch
        self.rng = rng or random.Random()
        self.client = client or httpx.Client(timeout=timeout_s)
        self.summary = PushSummary()
        self._accepted: dict[str, int] = {}
        self._center_failures = 0
        self._center_retry_at = 0.0
        self._checkpoint_sent = 0
        self._round = _Round()

    def close(self) -> None:
        self.client.close()

    # ---------------------------------------------------------------- loop
    def run(self, *, until_empty: bool = False, max_runtime_s: float | None = None,
            poll_s: float = 1.0, stop: threading.Event | None = None) -> PushSummary:
        """Upload until the outbox is empty (``until_empty``), ``max_runtime_s`` passes or
        ``stop`` is set; otherwise forever, polling for new items every ``poll_s``."""
        deadline = None if max_runtime_s is None else time.monotonic() + max_runtime_s
        while not (stop is not None and stop.is_set()):
            if deadline is not None and time.monotonic() >= deadline:
                break
            now = time.time()
            if self._center_retry_at - now > self.backoff.max_s:
                self._center_retry_at = now  # the clock was set back meanwhile
            if now < self._center_retry_at:
                self._sleep(min(self._center_retry_at - now, poll_s), stop)
                continue
            progressed = self.step()
            if until_empty and self.outbox.depth() == 0:
                break
            if not progressed:
                nxt = self.outbox.next_due_s(max_delay_s=self.backoff.max_s)
                wait = poll_s if nxt is None else max(0.0, min(poll_s, nxt - time.time()))
                self._sleep(max(wait, 0.01), stop)
        return self.summary

    @staticmethod
    def _sleep(seconds: float, stop: threading.Event | None) -> None:
        if stop is not None:
            stop.wait(seconds)
        else:
            time.sleep(seconds)

    def step(self) -> bool:
        """One round over the due items; true if any item was finished or tried."""
        self._round = _Round()
        tried = False
        try:
            for item in self._due("package", 50):
                tried = True
                self._package(item)
            while True:
                batch = self._due("passage", self.passage_batch)
                if not batch:
                    break
                tried = True
                self._passages(batch)
                if len(batch) < self.passage_batch:
                    break
            if not self._due("package", 1):
                tried = self._checkpoint() or tried
        except _CenterDownError as exc:
            self._center_failures += 1
            self.summary.center_failures += 1
            delay = self.backoff.delay_s(self._center_failures, self.rng)
            self._center_retry_at = time.time() + delay
            log.warning("center unavailable (%s); retrying in %.2f s", exc, delay)
            return True
        self._center_failures = 0
        return tried

    def _due(self, kind: str, limit: int) -> list[Item]:
        # an item put off further than the longest back-off was put off by a clock since
        # set back: due now, so a clock step never delays an upload more than that
        return self.outbox.due(kind, limit, max_delay_s=self.backoff.max_s)

    def _center_healthy(self) -> bool:
        """Does the center answer its health check (after a 5xx: is it down, or failing
        on that request only)? Asked once a round: the answer is kept for the round."""
        if self._round.healthy is None:
            try:
                answer = self.client.get(self.base_url + "/health")
                self._round.healthy = answer.status_code == 200
            except httpx.HTTPError:
                self._round.healthy = False
        return self._round.healthy

    # ---------------------------------------------------------------- packages
    def _accepted_size(self, station_id: str) -> int:
        if station_id not in self._accepted:
            resp = self._request("GET", f"/stations/{station_id}")
            if resp.status_code == 200:
                self._accepted[station_id] = int(resp.json()["accepted_size"])
            else:
                return 0
        return self._accepted[station_id]

    def _proof_headers(self, item: Item, accepted: int) -> dict[str, str]:
        size = item.log_size or 0
        if accepted in (0, size) or self.log_dir is None:
            return {}
        first, second = sorted((size, accepted))
        for attempt in range(5):
            try:
                with MerkleLog(self.log_dir, read_only=True) as mlog:
                    if second > mlog.size:
                        raise SyncError(f"center accepted size {second} exceeds the station "
                                        f"log size {mlog.size} (log lost or forked?)")
                    proof = mlog.consistency_proof(first, second)
                break
            except LogError:  # the sealing process is mid-append: read again
                if attempt == 4:
                    raise
                time.sleep(0.05)
        return {HEADER_PROOF_FROM: str(first), HEADER_PROOF_TO: str(second),
                HEADER_PROOF: ",".join(h.hex() for h in proof)}

    def _package(self, item: Item) -> None:
        try:
            accepted = self._accepted_size(item.station_id)
            for _ in range(4):
                headers = self._proof_headers(item, accepted)
                resp = self._request("PUT", f"/packages/{item.item_sha256}",
                                     content=item.payload,
                                     headers={"Content-Type": "application/zip", **headers})
                body = self._body(resp)
                if resp.status_code == 409 and body.get("code") == "log.proof_needed":
                    accepted = int(body["accepted_size"])
                    self._accepted[item.station_id] = accepted
                    continue
                break
        except (SyncError, LogError, ValueError, KeyError) as exc:
            if isinstance(exc, _CenterFailedError) and self._center_healthy():
                # a center that is up but fails on this package: it backs off alone, the
                # items behind it go on; failing on a second package in the round, the
                # center is failing (not one package): the round stops with its back-off
                self._round.failed_packages += 1
                if self._round.failed_packages > 1:
                    raise _CenterFailedError(f"{exc} on a second package this round") from None
            elif isinstance(exc, _CenterDownError):
                raise
            self._item_failed(item, str(exc))
            return
        if self._finish(item, resp, body) and item.log_size is not None:
            self._accepted[item.station_id] = max(accepted, item.log_size)

    # ---------------------------------------------------------------- checkpoints
    def _latest_checkpoint(self) -> tuple[str, int, bytes] | None:
        """(station id, size, note) of the newest checkpoint stored in the station log."""
        if self.log_dir is None:
            return None
        sizes = [int(p.stem) for p in (self.log_dir / "checkpoints").glob("*.txt")
                 if p.stem.isdigit()]
        if not sizes:
            return None
        size = max(sizes)
        if size <= self._checkpoint_sent:
            return None
        try:
            origin = str(json.loads((self.log_dir / "log.json").read_text())["origin"])
            note = (self.log_dir / "checkpoints" / f"{size}.txt").read_bytes()
        except (OSError, ValueError, KeyError):
            return None
        if not origin.startswith(STATION_ORIGIN_PREFIX):
            return None
        return origin[len(STATION_ORIGIN_PREFIX):], size, note

    def _checkpoint(self) -> bool:
        """Send the log's newest checkpoint once the package queue is empty, so the center's
        view of the log also covers entries that are not packages (review events)."""
        latest = self._latest_checkpoint()
        if latest is None:
            return False
        station_id, size, note = latest
        accepted = self._accepted_size(station_id)
        if size <= accepted:
            self._checkpoint_sent = size
            return False
        fake = Item(0, "", "checkpoint", station_id, f"checkpoint {size}", size, b"", None, 0)
        try:
            headers = self._proof_headers(fake, accepted)
        except (SyncError, LogError) as exc:
            if isinstance(exc, _CenterDownError):
                raise
            log.warning("cannot prove checkpoint %d: %s", size, exc)
            return False
        resp = self._request("POST", f"/stations/{station_id}/checkpoints", content=note,
                             headers=headers)
        body = self._body(resp)
        if resp.status_code == 200:
            self._accepted[station_id] = int(body.get("accepted_size", size))
            self._checkpoint_sent = size
        elif resp.status_code == 409 and "accepted_size" in body:
            self._accepted[station_id] = int(body["accepted_size"])
        else:
            log.error("center refused checkpoint %d: %s %s", size, body.get("code"),
                      body.get("message_zh"))
            self._checkpoint_sent = size  # do not repeat a refused checkpoint
        return True

    # ---------------------------------------------------------------- passages
    def _passages(self, batch: list[Item]) -> None:
        for station_id in sorted({i.station_id for i in batch}):
            self._send_passages(station_id, [i for i in batch if i.station_id == station_id])

    def _send_passages(self, station_id: str, items: list[Item]) -> None:
        """Send ``items`` in one request; a batch the center fails on while its health
        check answers is searched for the failing record (:meth:`_isolate`)."""
        error = self._post_passages(station_id, items)
        if error is not None:
            self._isolate(station_id, items, error)

    def _post_passages(self, station_id: str, items: list[Item]
                       ) -> _CenterFailedError | None:
        """One request for ``items`` and its answers recorded; returns the 5xx if the center
        failed on it while its health check answers (if not, the round stops). A batch the
        center finds too large (413) is sent in halves."""
        payload = {"station_id": station_id, "items": [
            {"record_b64": base64.b64encode(i.payload).decode(), "signature": i.signature}
            for i in items]}
        try:
            resp = self._request("POST", "/passages", json=payload)
        except _CenterFailedError as exc:
            if not self._center_healthy():
                raise
            return exc
        if resp.status_code == 413 and len(items) > 1:
            self._log_split("found too large", len(items))
            half = len(items) // 2
            self._send_passages(station_id, items[:half])
            self._send_passages(station_id, items[half:])
            return None
        body = self._body(resp)
        results = body.get("results")
        with self.outbox.batch():
            if resp.status_code != 200 or not isinstance(results, list) or \
                    len(results) != len(items):
                for item in items:
                    self._finish(item, resp, body)
                return None
            for item, result in zip(items, results, strict=True):
                self._finish(item, resp, result if isinstance(result, dict) else {})
        return None

    def _isolate(self, station_id: str, items: list[Item], error: _CenterFailedError
                 ) -> None:
        """``items`` failed as one request (``error``) while the center's health check
        answers: send each half, and go on in the half that fails until the failing record
        is alone; it backs off alone, the others go through.

        Both halves failing is not one bad record: the center fails on every write (a
        full disk, say) while its read-only health check answers. The search still goes
        on in the first failing half, so that two bad records in one batch hold the queue
        up for a round, not for ever, and then the round stops with the center's back-off
        (:meth:`step`). Either way about 2·log2(n) + 1 requests for n records.
        """
        center_failing = False
        while len(items) > 1:
            self._log_split("failed on", len(items))
            half = len(items) // 2
            failed = [(part, exc) for part in (items[:half], items[half:])
                      if (exc := self._post_passages(station_id, part)) is not None]
            center_failing = center_failing or len(failed) == 2
            if not failed:  # the failure did not repeat: nothing to isolate
                break
            items, error = failed[0]
        else:
            self._item_failed(items[0], f"the center fails on this passage ({error})")
        if center_failing:
            raise _CenterFailedError(f"{error} on both halves of a passage batch")

    def _log_split(self, what: str, size: int) -> None:
        if not self._round.split_logged:
            self._round.split_logged = True
            log.warning("center %s a batch of %d passages; sending it in halves (logged "
                        "once a round)", what, size)

    # ---------------------------------------------------------------- answers
    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            resp = self.client.request(method, self.base_url + path, **kwargs)
        except httpx.HTTPError as exc:
            raise _CenterDownError(f"{type(exc).__name__}: {exc}") from None
        if resp.status_code >= 500:
            raise _CenterFailedError(f"HTTP {resp.status_code}")
        return resp

    @staticmethod
    def _body(resp: httpx.Response) -> dict[str, Any]:
        try:
            body = resp.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def _finish(self, item: Item, resp: httpx.Response, body: dict[str, Any]) -> bool:
        """Record the center's answer for one item; true if it is now done."""
        if "receipt_b64" in body and "signature" in body:
            try:
                check_receipt(str(body["receipt_b64"]), str(body["signature"]),
                              self.center_key, item_sha256=item.item_sha256,
                              station_id=item.station_id)
            except ReceiptError as exc:
                log.error("%s", exc)
                self._item_failed(item, str(exc))
                return False
            self.outbox.mark_done(item.item_sha256, str(body["receipt_b64"]),
                                  str(body["signature"]))
            if body.get("status") == "duplicate":
                self.summary.duplicates += 1
            else:
                self.summary.accepted += 1
            return True
        code = str(body.get("code", f"http.{resp.status_code}"))
        message = str(body.get("message_zh", resp.text[:200]))
        if body.get("permanent") is True:
            self.outbox.mark_refused(item.item_sha256, code, message)
            self.summary.refused += 1
            self.summary.refusals.append(f"{item.label}: {code}")
            log.error("center refused %s %s: %s %s", item.kind, item.label, code, message)
        else:
            self._item_failed(item, f"{code}: {message}")
        return False

    def _item_failed(self, item: Item, error: str) -> None:
        self.summary.failures += 1
        delay = self.backoff.delay_s(item.attempts + 1, self.rng)
        self.outbox.mark_failed(item.item_sha256, error, time.time() + delay)
        log.warning("upload of %s %s failed (%s); retry in %.2f s", item.kind, item.label,
                    error, delay)
