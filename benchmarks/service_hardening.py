"""Oversize request bodies against a real ``zhichao serve``: what the server holds and how
fast it refuses (issue #18; docs/service.md "Security").

    nice -n 10 python3 benchmarks/service_hardening.py [--mib 600] [--runs 3]

Starts ``zhichao serve`` on a fresh SQLite database, then for each run sends an
unauthenticated ``POST /api/v1/owner/query`` of ``--mib`` MiB with
``Transfer-Encoding: chunked`` (64 KiB chunks, as fast as loopback takes them) while
reading the answer, and reports the answer's status, the time to it, how much the client
got to send before the server closed, and the growth of the server's peak resident memory
(``VmHWM`` in ``/proc/<pid>/status``, reset through ``clear_refs`` before each run).
Then the same for a declared ``Content-Length`` of the same size (answered before any
body is sent). Linux only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHUNK_BYTES = 64 * 1024


def _peak_kib(pid: int) -> int:
    match = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match
    return int(match.group(1))


def _read_status(sock: socket.socket) -> int:
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except ConnectionResetError:
        pass
    return int(data.split()[1]) if data.startswith(b"HTTP/1.1 ") else 0


def chunked_run(port: int, pid: int, total_bytes: int) -> dict[str, float]:
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = _peak_kib(pid)
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    sock.sendall(b"POST /api/v1/owner/query HTTP/1.1\r\nHost: bench\r\n"
                 b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
    frame = b"%x\r\n" % CHUNK_BYTES + b"7" * CHUNK_BYTES + b"\r\n"
    sent = [0]

    def sender() -> None:
        try:
            while sent[0] < total_bytes:
                sock.sendall(frame)
                sent[0] += CHUNK_BYTES
            sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass

    started = time.perf_counter()
    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    status = _read_status(sock)
    elapsed = time.perf_counter() - started
    sock.close()
    thread.join(60)
    return {"status": status, "to_answer_ms": elapsed * 1000, "sent_mib": sent[0] / 2**20,
            "peak_growth_mib": (_peak_kib(pid) - before) / 1024}


def declared_run(port: int, total_bytes: int) -> dict[str, float]:
    started = time.perf_counter()
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(f"POST /api/v1/owner/query HTTP/1.1\r\nHost: bench\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {total_bytes}\r\n\r\n"
                     .encode())
        status = _read_status(sock)
    return {"status": status, "to_answer_ms": (time.perf_counter() - started) * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=600)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        env = {**os.environ, "ZHICHAO_SECRET_KEY": "b" * 40,
               "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
        proc = subprocess.Popen([sys.executable, "-m", "zhichao", "serve", "--db",
                                 f"sqlite:///{tmp}/bench.db", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/health", timeout=2)
                    break
                except OSError:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        raise SystemExit("zhichao serve did not start") from None
                    time.sleep(0.2)
            baseline_mib = _peak_kib(proc.pid) / 1024
            chunked = [chunked_run(port, proc.pid, args.mib * 2**20) for _ in range(args.runs)]
            declared = [declared_run(port, args.mib * 2**20) for _ in range(args.runs)]
        finally:
            proc.terminate()
            proc.wait(30)
    result = {
        "body_mib": args.mib, "runs": args.runs, "server_peak_rss_at_start_mib": baseline_mib,
        "chunked": {"statuses": sorted({int(r["status"]) for r in chunked}),
                    "to_answer_ms_median": statistics.median(r["to_answer_ms"] for r in chunked),
                    "client_sent_mib_max": max(r["sent_mib"] for r in chunked),
                    "server_peak_growth_mib_max": max(r["peak_growth_mib"] for r in chunked)},
        "declared": {"statuses": sorted({int(r["status"]) for r in declared}),
                     "to_answer_ms_median": statistics.median(r["to_answer_ms"]
                                                              for r in declared)},
    }
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
