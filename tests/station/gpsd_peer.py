"""A gpsd for tests, written from gpsd_json(5) (https://gpsd.gitlab.io/gpsd/gpsd_json.html)
alone: nothing of :mod:`zhichao.station.gpsd` is used, so the client is checked against an
independent reading of the protocol.

It listens on a TCP port of 127.0.0.1. As gpsd does, it sends a VERSION object on connect;
it reads request lines (``?COMMAND;`` or ``?COMMAND={json};``), answers ``?WATCH`` with
DEVICES and WATCH objects and, once watching with ``"json": true``, streams one cycle every
``interval_s``: at the start of the GNSS second a PPS object (only with ``"pps": true`` in
the WATCH and ``pps`` set here), then ``latency_s`` later — the receiver's serial data —
TOFF (same condition), TPV and SKY. An unknown command gets an ERROR object.

Its GNSS time is the host's clock plus ``offset_s``; so PPS ``real − clock`` is
``offset_s``, TOFF's is ``offset_s − latency_s`` and a TPV read on arrival is about that
too. ``mode`` is the fix mode it reports (1: no fix, no time). ``behaviour`` breaks it:
``silent`` (accepts, sends nothing), ``garbage`` (a line that is not JSON after VERSION),
``truncated`` (half an object, then closes), ``close`` (closes after VERSION),
``not_gpsd`` (a banner that is not a VERSION object), ``long_line`` (an endless line),
``refuse`` (every request answered with an ERROR object). All can be changed while it
runs; ``host`` is the address it listens on.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

RECEIVER = "/dev/ttyS0"
PULSE = "/dev/pps0"  # gpsd reports a kernel PPS source as a device of its own


def iso_utc(unix_s: float) -> str:
    """gpsd's time format: ISO 8601, UTC, milliseconds, ``Z``."""
    moment = datetime.fromtimestamp(unix_s, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def sec_nsec(unix_s: float) -> tuple[int, int]:
    sec = int(unix_s // 1)
    return sec, min(int(round((unix_s - sec) * 1e9)), 999_999_999)


class GpsdPeer:
    def __init__(self, *, offset_s: float = 0.0, mode: int = 3, pps: bool = True,
                 toff: bool = True, interval_s: float = 0.2, latency_s: float = 0.05,
                 ept_s: float = 0.005, satellites_used: int = 9,
                 behaviour: str = "normal", host: str = "127.0.0.1") -> None:
        self.offset_s = offset_s
        self.mode = mode
        self.pps = pps
        self.toff = toff
        self.interval_s = interval_s
        self.latency_s = latency_s
        self.ept_s = ept_s
        self.satellites_used = satellites_used
        self.behaviour = behaviour
        self.connections = 0
        self.requests: list[str] = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((host, 0))
        self.host = host
        self.sock.listen(8)
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accept = threading.Thread(target=self._serve, name="gpsd-peer", daemon=True)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def __enter__(self) -> GpsdPeer:
        self._accept.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._accept.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)
        self.sock.close()

    # ------------------------------------------------------------------ serving
    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            t = threading.Thread(target=self._client, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _client(self, conn: socket.socket) -> None:
        conn.settimeout(0.02)
        with conn, contextlib.suppress(OSError):  # OSError: the client went away
            self._session(conn)

    @staticmethod
    def _send(conn: socket.socket, obj: dict[str, Any]) -> None:
        conn.sendall(json.dumps(obj, separators=(",", ":")).encode() + b"\r\n")

    def _session(self, conn: socket.socket) -> None:
        behaviour = self.behaviour
        if behaviour == "silent":
            self._stop.wait(30)
            return
        if behaviour == "not_gpsd":
            conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n")
            self._stop.wait(30)
            return
        # gpsd_json(5): "the daemon ships a VERSION response to each client when the client
        # first connects to it"
        self._send(conn, {"class": "VERSION", "release": "3.25", "rev": "3.25",
                          "proto_major": 3, "proto_minor": 15})
        if behaviour == "close":
            return
        watch: dict[str, Any] = {}
        pending = b""
        next_cycle = time.time()
        while not self._stop.is_set():
            try:
                data = conn.recv(4096)
                if not data:
                    return
                pending += data
            except TimeoutError:
                pass
            while b"\n" in pending or b";" in pending:
                cut = min(i for i in (pending.find(b"\n"), pending.find(b";")) if i >= 0)
                line, pending = pending[:cut].strip(), pending[cut + 1:]
                if line:
                    watch = self._request(conn, line.decode("ascii", "replace"), watch)
            if behaviour == "garbage" and watch:
                conn.sendall(b"$GPRMC,123519,A,4807.038,N,01131.000,E*6A\r\n")
                self._stop.wait(30)
                return
            if behaviour == "long_line" and watch:
                while not self._stop.is_set():
                    conn.sendall(b'{"class":"TPV","padding":"' + b"x" * 4096)
                return
            if behaviour == "truncated" and watch:
                conn.sendall(b'{"class":"TPV","device":"/dev/ttyS0","mode":3,"ti')
                return
            if watch.get("enable") and watch.get("json") and time.time() >= next_cycle:
                self._cycle(conn, bool(watch.get("pps")))
                next_cycle += self.interval_s

    def _request(self, conn: socket.socket, line: str, watch: dict[str, Any]
                 ) -> dict[str, Any]:
        """One command: ``?NAME;`` or ``?NAME={...}`` (the ';' already cut off)."""
        self.requests.append(line)
        if self.behaviour == "refuse":
            self._send(conn, {"class": "ERROR", "message": "Can't perform WATCH"})
            return watch
        if not line.startswith("?"):
            self._send(conn, {"class": "ERROR", "message": f"Unrecognized request '{line}'"})
            return watch
        name, _, arg = line[1:].partition("=")
        if name != "WATCH":
            self._send(conn, {"class": "ERROR", "message": f"Unrecognized request '{name}'"})
            return watch
        try:
            args = json.loads(arg) if arg else {}
        except ValueError:
            self._send(conn, {"class": "ERROR", "message": "Invalid WATCH: bad JSON"})
            return watch
        watch = {"enable": True, "json": False, "nmea": False, "raw": 0, "scaled": False,
                 "timing": False, "split24": False, "pps": False} | dict(args)
        devices = [{"class": "DEVICE", "path": RECEIVER, "driver": "u-blox",
                    "activated": iso_utc(time.time()), "flags": 1, "native": 1,
                    "bps": 9600, "parity": "N", "stopbits": 1, "cycle": 1.0}]
        if self.pps:
            devices.append({"class": "DEVICE", "path": PULSE, "driver": "PPS",
                            "activated": iso_utc(time.time())})
        self._send(conn, {"class": "DEVICES", "devices": devices})
        self._send(conn, {"class": "WATCH"} | watch)
        return watch

    def _cycle(self, conn: socket.socket, want_pps: bool) -> None:
        edge_clock = time.time()  # the host's clock at the start of the GNSS second
        edge_gnss = edge_clock + self.offset_s
        if want_pps and self.pps and self.mode >= 2:
            rs, rn = sec_nsec(edge_gnss)
            cs, cn = sec_nsec(edge_clock)
            self._send(conn, {"class": "PPS", "device": PULSE, "real_sec": rs, "real_nsec": rn,
                              "clock_sec": cs, "clock_nsec": cn, "precision": -20})
        if self._stop.wait(self.latency_s):
            return
        if want_pps and self.toff and self.mode >= 2:
            rs, rn = sec_nsec(edge_gnss)
            cs, cn = sec_nsec(time.time())  # when the serial data was seen
            self._send(conn, {"class": "TOFF", "device": RECEIVER, "real_sec": rs,
                              "real_nsec": rn, "clock_sec": cs, "clock_nsec": cn})
        tpv: dict[str, Any] = {"class": "TPV", "device": RECEIVER, "mode": self.mode}
        if self.mode >= 2:  # time, position and errors only with a fix
            tpv |= {"time": iso_utc(edge_gnss), "ept": self.ept_s, "lat": 30.2741,
                    "lon": 120.1551, "epx": 3.1, "epy": 4.2}
            if self.mode == 3:
                tpv |= {"altHAE": 41.2, "epv": 7.5}
        self._send(conn, tpv)
        used = self.satellites_used if self.mode >= 2 else 0
        sats = [{"PRN": n, "el": 40, "az": 30 * n, "ss": 38, "used": n <= used}
                for n in range(1, 13)]
        self._send(conn, {"class": "SKY", "device": RECEIVER, "nSat": len(sats),
                          "uSat": used, "satellites": sats})
