"""Issue #18 against a real ``zhichao serve`` process over raw sockets: bodies bounded
whatever the framing (chunked, slow, declared), per-route limits, and proxy headers
believed only from the proxies named with ``--forwarded-allow-ips``."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.service.conftest import PASSWORD
from tests.service.sync_helpers import free_port, wait_for
from zhichao.service import accounts
from zhichao.service.db import make_engine, session_factory, transaction, upgrade
from zhichao.service.models import AuditEntry

pytestmark = pytest.mark.slow  # starts server processes


@dataclass
class Server:
    port: int
    proc: subprocess.Popen[bytes]
    db_url: str
    username: str

    def audit(self, action: str) -> list[AuditEntry]:
        engine = make_engine(self.db_url)
        try:
            with transaction(session_factory(engine)) as s:
                rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == action)
                                      .order_by(AuditEntry.id)))
                s.expunge_all()
                return rows
        finally:
            engine.dispose()

    def peak_rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmHWM:\s+(\d+) kB", status, re.M)
        assert match, status
        return int(match.group(1))

    def reset_peak_rss(self) -> None:
        Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")  # resets VmHWM


def _start(tmp_path: Path, *extra: str) -> Iterator[Server]:
    db_url = f"sqlite:///{tmp_path / 'service.db'}"
    engine = make_engine(db_url)
    upgrade(engine)
    with transaction(session_factory(engine)) as s:
        user = accounts.create_user(s, username="reviewer.one", password=PASSWORD,
                                    display_name_zh="审核员", roles=["auditor"])
        username = user.username
    engine.dispose()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "zhichao", "serve", "--db", db_url, "--port", str(port), *extra],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "ZHICHAO_SECRET_KEY": "s" * 40})
    server = Server(port, proc, db_url, username)

    def up() -> bool:
        assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        return request(server, "GET", "/api/v1/health")[0] == 200

    try:
        wait_for(up, timeout_s=90, what="zhichao serve")
        yield server
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start(tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def proxied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from _start(tmp_path_factory.mktemp("proxied"), "--forwarded-allow-ips", "127.0.0.1")


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any] | None, bytes]:
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
            head, sep, body = data.partition(b"\r\n\r\n")
            length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
            if sep and length and len(body) >= int(length.group(1)):
                break
    except ConnectionResetError:
        pass  # the server closes a connection whose body it will not read
    head, _, body = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 "):
        return 0, None, data
    status = int(head.split()[1])
    try:
        return status, json.loads(body), head
    except ValueError:
        return status, None, head


def request(server: Server, method: str, path: str, body: bytes = b"",
            headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any] | None]:
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Connection: close",
             *(f"{k}: {v}" for k, v in headers.items())]
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
            status, answer, _ = _read_response(sock)
            return status, answer
    except OSError:
        return 0, None


@dataclass
class Streamed:
    status: int
    answer: dict[str, Any] | None
    sent_bytes: int
    elapsed_s: float


def stream_chunked(server: Server, path: str, *, total_bytes: int, chunk_bytes: int,
                   pause_s: float = 0.0, content_type: str = "application/json",
                   prefix: bytes = b"") -> Streamed:
    """POST ``prefix`` and ``total_bytes`` more with ``Transfer-Encoding: chunked`` while
    reading the answer."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=60)
    head = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Type: {content_type}",
            "Transfer-Encoding: chunked"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    if prefix:
        sock.sendall(b"%x\r\n" % len(prefix) + prefix + b"\r\n")
    sent = [0]
    frame = b"%x\r\n" % chunk_bytes + b"7" * chunk_bytes + b"\r\n"

    def sender() -> None:
        try:
            while sent[0] < total_bytes:
                sock.sendall(frame)
                sent[0] += chunk_bytes
                if pause_s:
                    time.sleep(pause_s)
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # the server answered and closed: the rest is never sent

    started = time.monotonic()
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    status, answer, _ = _read_response(sock)
    elapsed = time.monotonic() - started
    sock.close()
    thread.join(30)
    return Streamed(status, answer, sent[0], elapsed)


def test_a_chunked_50_mib_query_gets_413_and_memory_stays_flat(server: Server) -> None:
    server.reset_peak_rss()
    before_kib = server.peak_rss_kib()
    result = stream_chunked(server, "/api/v1/owner/query", total_bytes=60 * 1024 * 1024,
                            chunk_bytes=64 * 1024)
    assert result.status == 413, result
    assert result.answer is not None and result.answer["message_zh"] == "请求内容过大"
    grown_kib = server.peak_rss_kib() - before_kib
    # Read whole, 60 MiB would have grown the server by more than 60 MiB; the limit is
    # 64 KiB, and the server stopped reading long before the client stopped sending.
    assert grown_kib < 16 * 1024, grown_kib
    assert result.sent_bytes < 30 * 1024 * 1024, result.sent_bytes
    assert request(server, "GET", "/api/v1/health")[0] == 200  # still serving


def test_a_slow_body_is_cut_when_it_passes_the_limit(server: Server) -> None:
    # 2 KiB every 10 ms: the 64 KiB JSON limit is passed after ~0.3 s of a 5 s stream
    result = stream_chunked(server, "/api/v1/owner/query", total_bytes=1024 * 1024,
                            chunk_bytes=2048, pause_s=0.01)
    assert result.status == 413, result
    assert result.elapsed_s < 3.0, result
    # a slow body within the limit is answered as usual
    body = json.dumps({"plate": "浙A99999", "plate_colour": "蓝",
                       "vin_last6": "123456"}).encode()
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    sock.sendall(b"POST /api/v1/owner/query HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    for i in range(0, len(body), 8):
        piece = body[i:i + 8]
        sock.sendall(b"%x\r\n" % len(piece) + piece + b"\r\n")
        time.sleep(0.02)
    sock.sendall(b"0\r\n\r\n")
    status, answer, _ = _read_response(sock)
    sock.close()
    assert status == 200 and answer is not None and answer["records"] == [], (status, answer)


def test_uploads_are_allowed_more_than_queries(server: Server) -> None:
    multipart = "multipart/form-data; boundary=zhichaoboundary"
    file_part = (b'--zhichaoboundary\r\nContent-Disposition: form-data; name="files"; '
                 b'filename="a.jpg"\r\nContent-Type: image/jpeg\r\n\r\n\xff\xd8\xff')
    upload = stream_chunked(server, "/api/v1/owner/records/1/statements",
                            total_bytes=1024 * 1024, chunk_bytes=64 * 1024,
                            content_type=multipart, prefix=file_part)
    assert upload.status in (400, 401, 422), upload  # read whole, then refused on its merits
    query = stream_chunked(server, "/api/v1/owner/query", total_bytes=1024 * 1024,
                           chunk_bytes=64 * 1024)
    assert query.status == 413, query
    big = stream_chunked(server, "/api/v1/owner/records/1/statements",
                         total_bytes=40 * 1024 * 1024, chunk_bytes=256 * 1024,
                         content_type=multipart, prefix=file_part)
    assert big.status == 413, big  # 5 attachments of 5 MiB + 256 KiB at most
    # a declared length over the limit is refused before any of the body is sent
    status, answer = request(server, "POST", "/api/v1/auth/login",
                             headers={"Content-Length": str(10**9)})
    assert (status, answer and answer["message_zh"]) == (413, "请求内容过大")


def _fail_login(server: Server, username: str, forwarded_for: str | None
                ) -> tuple[int, dict[str, Any] | None]:
    body = json.dumps({"username": username, "password": "not the password"}).encode()
    headers = {"Content-Type": "application/json"}
    if forwarded_for is not None:
        headers["X-Forwarded-For"] = forwarded_for
    return request(server, "POST", "/api/v1/auth/login", body, headers)


def test_a_forged_forwarded_for_changes_nothing(server: Server) -> None:
    codes = [_fail_login(server, f"guess{i}", f"203.0.113.{i}")[0] for i in range(6)]
    # three free failures from this client, then it must wait, whatever it claims to be
    # (the 4th attempt is normally refused; on a slow machine a later one, as waits grow)
    assert codes[:3] == [401, 401, 401] and 429 in codes[3:], codes
    status, answer = _fail_login(server, "someone.else", "198.51.100.7")
    assert status == 429 and answer is not None and "秒后再试" in answer["message_zh"]
    failed = server.audit("auth.login_failed")
    throttled = server.audit("auth.login_throttled")
    assert {e.actor for e in failed + throttled} == {"anonymous:127.0.0.1"}
    assert len(failed) + len(throttled) == 7 and len(throttled) >= 2
    assert throttled[-1].detail["retry_after_s"] > 0


def test_a_trusted_proxy_names_the_client(proxied: Server) -> None:
    # each forwarded client has its own count ...
    for i in range(4):
        assert _fail_login(proxied, f"user{i}", f"203.0.113.{i}")[0] == 401
    # ... and what a client put in front of the proxy's entry does not help it: the
    # nearest untrusted hop (the proxy's own entry, last) is the client
    codes = [_fail_login(proxied, f"other{i}", f"10.9.9.{i}, 198.51.100.7")[0]
             for i in range(5)]
    assert codes[:3] == [401, 401, 401] and 429 in codes[3:], codes
    actors = {e.actor for e in proxied.audit("auth.login_failed")}
    assert "anonymous:198.51.100.7" in actors and "anonymous:203.0.113.2" in actors
    assert not any(a.startswith("anonymous:10.9.9.") for a in actors)
    # a correct password from a throttled client waits too (no oracle), then gets in
    body = json.dumps({"username": proxied.username, "password": PASSWORD}).encode()
    status, _ = request(proxied, "POST", "/api/v1/auth/login", body,
                        {"Content-Type": "application/json",
                         "X-Forwarded-For": "198.51.100.7"})
    assert status == 429
    status, answer = request(proxied, "POST", "/api/v1/auth/login", body,
                             {"Content-Type": "application/json",
                              "X-Forwarded-For": "192.0.2.44"})
    assert status == 200 and answer is not None and answer["token"]
