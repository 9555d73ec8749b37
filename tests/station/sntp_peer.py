"""An SNTP server for tests, written from RFC 4330 (§4 message format, §5 server
operations) alone: nothing of :mod:`zhichao.station.timesource` is used, so the client is
checked against an independent reading of the RFC.

It answers on a UDP port of 127.0.0.1. What it answers can be changed while it runs:
``offset_s`` (its clock minus the host's), ``stratum``, ``leap``, ``kiss`` (a four-letter
kiss code: stratum 0), ``silent`` (no answer at all), ``wrong_originate`` (a reply that
does not echo the request).
"""

from __future__ import annotations

import socket
import threading
import time

SECONDS_1900_TO_1970 = 2_208_988_800


def ntp_timestamp(unix_s: float) -> bytes:
    """RFC 4330 §3: seconds since 1900-01-01 (32 bits) and the fraction (32 bits)."""
    seconds, fraction = divmod(unix_s + SECONDS_1900_TO_1970, 1.0)
    return int(seconds).to_bytes(4, "big") + int(fraction * 4294967296).to_bytes(4, "big")


def short_format(seconds: float) -> bytes:
    """Root delay / dispersion: 16-bit seconds and 16-bit fraction."""
    return int(seconds * 65536).to_bytes(4, "big")


class SntpPeer:
    def __init__(self, *, offset_s: float = 0.0, stratum: int = 2, leap: int = 0,
                 kiss: str | None = None, silent: bool = False) -> None:
        self.offset_s = offset_s
        self.stratum = stratum
        self.leap = leap
        self.kiss = kiss
        self.silent = silent
        self.wrong_originate = False
        self.requests = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port: int = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="sntp-peer", daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def __enter__(self) -> SntpPeer:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, client = self.sock.recvfrom(1024)
            except TimeoutError:
                continue
            received = time.time() + self.offset_s
            self.requests += 1
            if self.silent or len(data) < 48:
                continue
            self.sock.sendto(self._reply(data, received), client)

    def _reply(self, request: bytes, received: float) -> bytes:
        version = (request[0] >> 3) & 0b111  # §5: copied from the request
        poll = request[2]  # §5: copied from the request
        client_transmit = request[40:48]  # becomes the reply's Originate Timestamp
        if self.kiss is not None:  # §8 kiss-o'-death: stratum 0, the code in Reference ID
            stratum, ref_id = 0, self.kiss.encode("ascii")[:4].ljust(4, b"\0")
        else:
            stratum = self.stratum
            ref_id = b"GPS\0" if stratum == 1 else bytes([127, 0, 0, 1])
        originate = bytes(8) if self.wrong_originate else client_transmit
        first = (self.leap << 6) | (version << 3) | 4  # mode 4: server
        body = (bytes([first, stratum, poll, 0xEC])  # precision 2^-20 s
                + short_format(0.002) + short_format(0.001) + ref_id
                + ntp_timestamp(time.time() + self.offset_s - 16.0)  # last set
                + originate + ntp_timestamp(received))
        return body + ntp_timestamp(time.time() + self.offset_s)  # transmit, last
