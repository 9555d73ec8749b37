"""Helpers for the sync tests and benchmarks: stations that seal real packages, a center
process, a PostgreSQL probe, and a loopback TCP proxy that can hold back answers."""

from __future__ import annotations

import contextlib
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import Engine, text

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.evidence.signing import generate_key, private_pem, public_pem
from zhichao.testing.cases import case_dict, vehicle_dict

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------ stations


@dataclass
class StationKit:
    """A station with its key, Merkle log and a folder of sealed packages."""

    root: Path
    station_id: str = "S001"
    key: Ed25519PrivateKey = field(default_factory=generate_key)
    log_name: str = "log"
    sealed: int = 0

    def __post_init__(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.inputs = self.root / "in"
        self.inputs.mkdir(exist_ok=True)
        self.packages = self.root / "packages"
        self.packages.mkdir(exist_ok=True)
        self.key_path = self.root / "station.key"
        self.key_path.write_bytes(private_pem(self.key))
        self.pub_path = self.root / "station.pub"
        self.pub_path.write_bytes(self.public_pem)

    @property
    def log_dir(self) -> Path:
        return self.root / self.log_name

    @property
    def key_name(self) -> str:
        return f"zhichao-station-{self.station_id}"

    @property
    def public_pem(self) -> bytes:
        return public_pem(self.key.public_key())

    def seal(self, count: int, *, salt: int = 0) -> list[Path]:
        """Seal ``count`` new packages (documents skipped) into the log; their folders."""
        station = Station(self.station_id, self.key_name, self.key)
        out: list[Path] = []
        with MerkleLog(self.log_dir, origin=station.origin, create=True, fsync=False) as log:
            for _ in range(count):
                n = self.sealed
                self.sealed += 1
                raw = case_dict(self.inputs, vehicle=vehicle_dict(
                    first_sample=1000 + n + 100_000 * salt, station_seq=n))
                case = CaseInputs.from_json(raw)
                folder = self.packages / f"pkg-{salt}-{n:05d}"
                seal_package(case, folder, station=station, log=log, base_dir=self.inputs,
                             renderer=lambda *_: {})
                out.append(folder)
        return out

    def passages(self, count: int, start: int = 0) -> list[dict[str, Any]]:
        return [vehicle_dict(first_sample=500_000 + i, passage_seq=i)
                for i in range(start, start + count)]


# ------------------------------------------------------------------------ databases


def postgres_url() -> str | None:
    """A PostgreSQL URL that answers on 127.0.0.1:5432 (database ``test``), or None."""
    import psycopg

    for user in ("postgres", "root"):
        try:
            with psycopg.connect(f"host=127.0.0.1 port=5432 dbname=test user={user}",
                                 connect_timeout=3) as conn:
                conn.execute("select 1")
            return f"postgresql+psycopg://{user}@127.0.0.1:5432/test"
        except psycopg.Error:
            continue
    return None


@dataclass
class Database:
    url: str
    schema: str | None
    engine: Engine

    def drop(self) -> None:
        if self.schema is not None:
            with self.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        self.engine.dispose()


# ------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def zhichao_cmd(*args: str) -> list[str]:
    """The ``zhichao`` console command."""
    return [sys.executable, "-m", "zhichao", *args]


def sync_cmd(*args: str) -> list[str]:
    """The same sync commands without loading the other stages (faster to start)."""
    module = "zhichao.service.center_cli" if args[0] == "center" else "zhichao.station.sync_cli"
    return [sys.executable, "-m", module, *args]


class CenterProcess:
    """``zhichao center serve`` as a real process on 127.0.0.1 (with its default accept hook
    into the service tables of the same database, unless ``extra_args`` turn it off)."""

    def __init__(self, db: Database, store: Path, key: Ed25519PrivateKey, workdir: Path,
                 extra_args: tuple[str, ...] = ()) -> None:
        self.db = db
        self.extra_args = extra_args
        self.store = store
        self.key_path = workdir / "center.key"
        self.key_path.write_bytes(private_pem(key))
        self.pub_path = workdir / "center.pub"
        self.pub_path.write_bytes(public_pem(key.public_key()))
        self.port = free_port()
        self.log_path = workdir / "center.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout_s: float = 30.0) -> None:
        args = ["center", "serve", "--db", self.db.url, "--store", str(self.store),
                "--key", str(self.key_path), "--port", str(self.port)]
        if self.db.schema:
            args += ["--schema", self.db.schema]
        args += list(self.extra_args)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(sync_cmd(*args), cwd=ROOT, stdout=log,
                                         stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"center exited: {self.log_path.read_text()[-3000:]}")
            try:
                if httpx.get(self.url + "/sync/v1/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"center did not start: {self.log_path.read_text()[-3000:]}")

    def health(self) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(self.url + "/sync/v1/health", timeout=5.0).json()
        return result

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


class PushProcess:
    """``zhichao sync push`` as a real process (the station's uploader)."""

    def __init__(self, outbox: Path, center_url: str, center_pub: Path, log_dir: Path,
                 workdir: Path, *, until_empty: bool) -> None:
        args = ["sync", "push", "--outbox", str(outbox), "--center", center_url,
                "--center-key", str(center_pub), "--log", str(log_dir),
                "--base-delay-s", "0.05", "--max-delay-s", "0.5", "--poll-s", "0.1",
                "--timeout-s", "20", "--max-runtime-s", "120"]
        if until_empty:
            args.append("--until-empty")
        self.out_path = workdir / f"push-{uuid.uuid4().hex[:6]}.out"
        self._out = self.out_path.open("wb")
        self.proc = subprocess.Popen(sync_cmd(*args), cwd=ROOT, stdout=self._out,
                                     stderr=subprocess.STDOUT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self._out.close()

    def wait(self, timeout_s: float = 90.0) -> dict[str, Any]:
        self.proc.wait(timeout_s)
        self._out.close()
        text_out = self.out_path.read_text()
        last = [line for line in text_out.splitlines() if line.startswith("{")]
        assert last, text_out[-3000:]
        summary: dict[str, Any] = json.loads(last[-1])
        summary["rc"] = self.proc.returncode
        return summary

    def alive(self) -> bool:
        return self.proc.poll() is None


def wait_for(predicate: Any, timeout_s: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# ------------------------------------------------------------------------ proxy


class HoldingProxy:
    """A loopback TCP proxy. While ``hold`` is set it forwards requests but holds back the
    center's answers to package uploads (PUT), so a station can be killed after the center
    accepted an upload but before the station read the receipt. While ``stall`` is set it
    forwards only the first chunk of an upload and cuts the connection when it is cleared,
    so a station can be killed mid-request."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.hold = threading.Event()
        self.answers_held = 0
        self.stall = threading.Event()
        self.requests_stalled = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self.port = int(self._sock.getsockname()[1])
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), 5)
            except OSError:
                client.close()
                continue
            state = {"method": b""}
            threading.Thread(target=self._pump, args=(client, upstream, False, state),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True, state),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, answers: bool,
              state: dict[str, bytes]) -> None:
        try:
            while True:
                data = src.recv(16384)
                if not data:
                    break
                if not answers and data[:4] in (b"PUT ", b"GET ", b"POST"):
                    state["method"] = data[:4]
                elif not answers and state["method"] == b"PUT " and self.stall.is_set():
                    self.requests_stalled += 1  # the rest of an upload body: held back
                    while self.stall.is_set() and not self._closed:
                        time.sleep(0.02)
                    # Then cut: the center sees a truncated body and a closed connection, as
                    # when the station dies mid-send (bytes already in the socket buffers of
                    # a killed process would otherwise still arrive).
                    raise OSError("upload cut by the proxy")
                holding = answers and state["method"] == b"PUT "
                if holding and self.hold.is_set():
                    self.answers_held += 1
                while holding and self.hold.is_set() and not self._closed:
                    time.sleep(0.02)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close(self) -> None:
        self._closed = True
        self._sock.close()
