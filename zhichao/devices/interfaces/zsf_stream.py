"""``ZSF/1`` sample frames (:mod:`zhichao.devices.framing`) over a byte stream (TCP or serial).

URLs: ``zsf+tcp://host:port``, ``zsf+serial:///dev/ttyX?baud_rate=921600`` (also
``tcp://…`` and ``serial://…`` for the samples kind); settings ``stall_timeout_s``,
``max_frame_bytes``.
"""

from __future__ import annotations

import logging
from typing import Any, ClassVar

from zhichao.devices.base import DeviceUrl, parse_device_url
from zhichao.devices.framing import DEFAULT_MAX_FRAME_BYTES, FrameDecoder, FrameFault, SampleFrame
from zhichao.devices.sample_source import SampleSource
from zhichao.devices.transports import ByteTransport, StreamBackend, transport_for_url


class StreamSampleSource(StreamBackend, SampleSource):
    """``ZSF/1`` frames over a byte stream (TCP or serial)."""

    def __init__(self, url: str, transport: ByteTransport, *,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES, read_chunk_bytes: int = 1 << 16,
                 **kwargs: object) -> None:
        super().__init__(url, **kwargs)  # type: ignore[arg-type]
        self.transport = transport
        self.decoder = FrameDecoder(max_frame_bytes)
        self.read_chunk_bytes = read_chunk_bytes
        self.health.info["transport"] = transport.description

    @classmethod
    def from_url(cls, url: str | DeviceUrl, **kwargs: Any) -> StreamSampleSource:
        parsed = parse_device_url(url) if isinstance(url, str) else url
        return cls(parsed.text, transport_for_url(parsed, default_baud_rate=921600),
                   **parsed.settings(kwargs, stall_timeout_s=float, max_frame_bytes=int))

    def _reset_decoder(self) -> None:
        self.decoder.reset()

    def _read_frames_internal(self, timeout_s: float) -> list[SampleFrame]:
        data = self._receive(self.read_chunk_bytes, timeout_s)
        if not data:
            return []
        frames: list[SampleFrame] = []
        for item in self.decoder.feed(data):
            if isinstance(item, SampleFrame):
                if "sample_rate_hz" not in self.health.info:
                    self.health.info.update(sample_rate_hz=item.sample_rate_hz,
                                            n_channels=item.n_channels, boot_id=item.boot_id)
                frames.append(item)
            else:
                self._count_fault(item)
        return frames

    _FAULT_COUNTER: ClassVar[dict[str, str]] = {
        "garbage": "bytes_discarded", "bad_header": "bad_headers",
        "oversize": "oversize_frames", "crc": "crc_errors"}

    def _count_fault(self, fault: FrameFault) -> None:
        name = self._FAULT_COUNTER[fault.kind]
        n = fault.n_bytes if fault.kind == "garbage" else 1
        detail = f"{fault.n_bytes} bytes" if fault.kind == "garbage" else fault.detail
        self.health.fault(name, detail, n=n, where=f"stream byte {fault.offset}",
                          level=logging.INFO if fault.kind == "garbage" else logging.WARNING)
