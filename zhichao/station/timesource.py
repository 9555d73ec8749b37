"""Asking a time source how far the station's clock is off: an SNTP client.

The client follows RFC 4330 (SNTPv4) §§4–5 and the on-wire protocol of RFC 5905 §8: one
48-byte request in client mode (LI 0, VN 4, mode 3) with the client's transmit time T1;
the server answers in server mode (4) with its receive time T2 and transmit time T3, and
copies T1 into its originate field; the client notes the arrival time T4. Then

* round-trip delay  ``d = (T4 − T1) − (T3 − T2)``
* clock offset      ``θ = ((T2 − T1) + (T3 − T4)) / 2``   (server minus station)

The true offset lies within ``θ ± d/2`` of the server's clock, and the server's own clock
within its root distance (root delay / 2 + root dispersion) of UTC, so a reply's error
bound is ``d/2 + root delay/2 + root dispersion``.

A reply is refused (RFC 4330 §5, RFC 5905 §7.4) when its mode is not 4, its leap
indicator is 3 (server clock not synchronised), its stratum is 0 (a kiss-o'-death: the
four ASCII characters of the reference id say why, e.g. ``DENY``, ``RATE``) or above 15,
its transmit time is 0, or its originate time is not the request's transmit time (a late
or forged reply). A GNSS receiver is asked through gpsd (:mod:`.gpsd`).
"""

from __future__ import annotations

import os
import socket
import struct
import time
from dataclasses import dataclass

from zhichao.station.errors import TimeSourceError

NTP_EPOCH_OFFSET_S = 2_208_988_800  # 1900-01-01 to 1970-01-01 [s]
NTP_PORT = 123
PACKET = struct.Struct("!BBbbII4sQQQQ")  # 48 bytes, RFC 5905 Fig. 8 without extensions
MODE_CLIENT, MODE_SERVER = 3, 4
VERSION = 4
LEAP_ALARM = 3
MAX_STRATUM = 15


@dataclass(frozen=True)
class SntpReply:
    """One answered SNTP exchange (times in seconds)."""

    server: str
    offset_s: float  # server minus station clock
    delay_s: float  # round trip, less the server's processing
    stratum: int
    leap: int
    root_delay_s: float
    root_dispersion_s: float
    reference_id: str

    @property
    def error_bound_s(self) -> float:
        """How far the true offset to UTC may be from :attr:`offset_s`."""
        return max(self.delay_s, 0.0) / 2 + self.root_delay_s / 2 + self.root_dispersion_s


class KissOfDeathError(TimeSourceError):
    """The server answered with stratum 0: do not use it (the code says why)."""

    def __init__(self, server: str, code: str) -> None:
        super().__init__(f"{server}: kiss-o'-death {code!r}")
        self.code = code


class UnsynchronisedError(TimeSourceError):
    """The server says its own clock is not synchronised (LI 3 or stratum > 15)."""


class NoReplyError(TimeSourceError):
    """No (valid) reply within the timeout."""


def to_ntp(unix_s: float) -> int:
    """A Unix time as an NTP 64-bit timestamp (32.32 fixed point since 1900)."""
    return int(round((unix_s + NTP_EPOCH_OFFSET_S) * 2**32)) & 0xFFFF_FFFF_FFFF_FFFF


def from_ntp(ts: int) -> float:
    """An NTP 64-bit timestamp as Unix time (era 0: 1900–2036)."""
    return ts / 2**32 - NTP_EPOCH_OFFSET_S


def _short(value: int) -> float:
    """NTP short format (16.16 fixed point) in seconds."""
    return value / 2**16


def parse_server(text: str, default_port: int = NTP_PORT) -> tuple[str, int]:
    """``host``, ``host:port`` or ``[v6]:port`` → (host, port)."""
    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    if text.count(":") == 1:
        host, port = text.split(":")
        return host, int(port)
    return text, default_port


def request(transmit_ts: int) -> bytes:
    """A client-mode request carrying ``transmit_ts`` (everything else zero)."""
    return PACKET.pack((0 << 6) | (VERSION << 3) | MODE_CLIENT, 0, 0, 0, 0, 0, b"\0\0\0\0",
                       0, 0, 0, transmit_ts)


def interpret(server: str, data: bytes, sent_ts: int, t1: float, t4: float) -> SntpReply:
    """Check one reply (RFC 4330 §5) and compute offset and delay; raises
    :class:`TimeSourceError` (or a subclass) when it must not be used."""
    if len(data) < PACKET.size:
        raise TimeSourceError(f"{server}: reply of {len(data)} bytes (< 48)")
    (first, stratum, _poll, _precision, root_delay, root_disp, ref_id, _ref_ts, orig_ts,
     recv_ts, xmit_ts) = PACKET.unpack_from(data)
    leap, mode = first >> 6, first & 0x7
    if mode != MODE_SERVER:
        raise TimeSourceError(f"{server}: reply in mode {mode}, not server mode 4")
    if orig_ts != sent_ts:
        raise TimeSourceError(f"{server}: reply's originate time is not our request's "
                              "transmit time (late or forged reply)")
    if stratum == 0:
        raise KissOfDeathError(server, ref_id.decode("ascii", "replace").rstrip("\0"))
    if leap == LEAP_ALARM or stratum > MAX_STRATUM:
        raise UnsynchronisedError(f"{server}: server clock not synchronised (leap {leap}, "
                             f"stratum {stratum})")
    if xmit_ts == 0 or recv_ts == 0:
        raise TimeSourceError(f"{server}: reply without receive/transmit time")
    t2, t3 = from_ntp(recv_ts), from_ntp(xmit_ts)
    ref = ref_id.decode("ascii", "replace").rstrip("\0") if stratum == 1 else ref_id.hex()
    return SntpReply(server=server, offset_s=((t2 - t1) + (t3 - t4)) / 2,
                     delay_s=(t4 - t1) - (t3 - t2), stratum=stratum, leap=leap,
                     root_delay_s=_short(root_delay), root_dispersion_s=_short(root_disp),
                     reference_id=ref)


def query(server: str, timeout_s: float) -> SntpReply:
    """One SNTP exchange with ``server`` (``host[:port]``) over UDP."""
    host, port = parse_server(server)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise NoReplyError(f"{server}: cannot resolve ({exc})") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout_s)
        # the request's transmit field is a random nonce, not the time: the server only
        # copies it back (originate), so a reply that does not echo it is refused, and T1
        # is kept here (as chrony does; RFC 5905 §15 on forged replies)
        sent_ts = int.from_bytes(os.urandom(8), "big")
        packet = request(sent_ts)
        deadline = time.monotonic() + timeout_s
        try:
            t1 = time.time()
            sock.sendto(packet, address)
            while True:
                sock.settimeout(max(deadline - time.monotonic(), 0.001))
                data, peer = sock.recvfrom(512)
                t4 = time.time()
                if peer[:2] != address[:2]:
                    continue  # not from the server asked
                return interpret(server, data, sent_ts, t1, t4)
        except TimeoutError:
            raise NoReplyError(f"{server}: no reply within {timeout_s:g} s") from None
        except OSError as exc:
            raise NoReplyError(f"{server}: {exc.strerror or exc}") from None
