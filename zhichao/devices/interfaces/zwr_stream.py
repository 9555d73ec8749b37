"""``ZWR/1`` record lines (:mod:`zhichao.devices.zwr`) over a byte stream (serial or TCP).

URLs: ``zwr+serial:///dev/ttyX?baud_rate=9600``, ``zwr+tcp://host:port`` (also
``serial://…`` and ``tcp://…`` for the records kind); setting ``stall_timeout_s``.
"""

from __future__ import annotations

import logging
from typing import Any

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.data import WimRecord
from zhichao.devices.reasons import REASON_BAD_VALUES
from zhichao.devices.record_source import RecordSource
from zhichao.devices.transports import ByteTransport, StreamBackend, transport_for_url
from zhichao.devices.zwr import MAX_LINE_BYTES, RecordLineDecoder


class StreamRecordSource(StreamBackend, RecordSource):
    """``ZWR/1`` lines over a byte stream (serial or TCP)."""

    def __init__(self, url: str, transport: ByteTransport, *,
                 max_line_bytes: int = MAX_LINE_BYTES, **kwargs: Any) -> None:
        super().__init__(url, **kwargs)
        self.transport = transport
        self.decoder = RecordLineDecoder(max_line_bytes, self.limits)
        self.health.info["transport"] = transport.description
        self.health.info["protocol"] = "ZWR/1"

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamRecordSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, transport_for_url(parsed, default_baud_rate=9600),
                   **parsed.settings(kwargs, stall_timeout_s=float))

    def _reset_decoder(self) -> None:
        self.decoder.reset()

    def _read_records_internal(self, timeout_s: float) -> list[WimRecord | str]:
        data = self._receive(1 << 16, timeout_s)
        if not data:
            return []
        out: list[WimRecord | str] = []
        for item in self.decoder.feed(data):
            if isinstance(item, WimRecord):
                out.append(item)
                continue
            where = f"stream byte {item.offset}"
            if item.kind == "garbage":
                self.health.fault("bytes_discarded", f"{item.n_bytes} bytes {item.detail}".strip(),
                                  n=item.n_bytes, where=where, level=logging.INFO)
            elif item.kind == "oversize":
                self.health.fault("oversize_frames", item.detail, where=where)
            elif item.kind == "crc":
                self.health.fault("crc_errors", item.detail, where=where)
            else:
                self.health.fault("bad_values", item.detail, where=where)
                out.append(REASON_BAD_VALUES)
        return out
