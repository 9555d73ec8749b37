"""Twin of a WIM data-acquisition unit streaming ``ZSF/1`` frames (TCP or pty)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Self

import numpy as np
import numpy.typing as npt

from zhichao.devices.faults import LOSSY_KINDS, FaultInjector
from zhichao.devices.framing import ENCODING_FLOAT32, HEADER, SYNC, encode_frame
from zhichao.devices.recording import Recording
from zhichao.devices.twins.links import PtyLink, TcpServerLink, TwinLink

LOG = logging.getLogger("zhichao.devices.twins")


@dataclass(frozen=True)
class SentFrame:
    """Ground truth for tests: frame ``frame_number`` carried recording samples
    ``[rec_start, rec_start + n)``; ``intact`` if it left the twin undamaged."""

    frame_number: int
    rec_start: int
    n: int
    intact: bool
    faults: tuple[str, ...]


class SampleStreamTwin:
    """Streams a recording as ``ZSF/1`` frames to one client, optionally with faults.

    Parameters
    ----------
    samples : float32 ``[n, n_channels]`` [output units].
    sample_rate_hz : [Hz].
    start_utc : device clock at sample 0.
    link : ``"tcp"`` (127.0.0.1, ephemeral port), ``"pty"``, or a :class:`TwinLink`.
    samples_per_frame : samples per channel per frame.
    speed : 1.0 real time, 10.0 ten times faster, 0 as fast as the link takes it.
    injector : faults to apply, or None.
    encoding, scale : frame encoding (float32, or int16 with ``scale`` units per count).
    loop : start again at the end of the recording (for manual testing).
    """

    def __init__(self, samples: npt.NDArray[np.float32], sample_rate_hz: float,
                 start_utc: datetime, *, link: str | TwinLink = "tcp",
                 samples_per_frame: int = 100, speed: float = 1.0,
                 injector: FaultInjector | None = None, encoding: int = ENCODING_FLOAT32,
                 scale: float = 1.0, loop: bool = False) -> None:
        if samples.ndim != 2:
            raise ValueError("samples must be [n, n_channels]")
        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.sample_rate_hz = float(sample_rate_hz)
        self.start_us = round(start_utc.timestamp() * 1e6)
        if link == "tcp":
            self.link: TwinLink = TcpServerLink()
        elif link == "pty":
            self.link = PtyLink()
        elif isinstance(link, TwinLink):
            self.link = link
        else:
            raise ValueError(f"link must be 'tcp', 'pty' or a TwinLink, got {link!r}")
        self.samples_per_frame = samples_per_frame
        self.speed = speed
        self.injector = injector
        self.encoding = encoding
        self.scale = scale
        self.loop = loop
        self.sent: list[SentFrame] = []
        self.done = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_recording(cls, recording: Recording, **kwargs: object) -> SampleStreamTwin:
        return cls(recording.samples, recording.meta.sample_rate_hz, recording.meta.start_utc,
                   **kwargs)  # type: ignore[arg-type]

    @property
    def url(self) -> str:
        return self.link.url

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="zsf-twin", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self.link.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_done(self, timeout_s: float) -> bool:
        return self.done.wait(timeout_s)

    # -- the device ----------------------------------------------------------------------
    def _run(self) -> None:
        try:
            self._stream()
        except Exception:  # a twin must never die silently either
            LOG.exception("sample twin crashed")
        finally:
            self.done.set()

    def _stream(self) -> None:
        data = self.samples
        n_total = data.shape[0]
        spf = self.samples_per_frame
        rate = self.sample_rate_hz
        boot_id, seq, dev_index, clock_off_us, boot_flag = 1, 0, 0, 0, True
        rec_pos, frame_no = 0, 0
        held: bytes = b""
        held_truth: list[SentFrame] = []
        if isinstance(self.link, TcpServerLink) and not self.link.wait_client(self._stop):
            return
        t0 = time.monotonic()
        while not self._stop.is_set():
            if rec_pos >= n_total:
                if not self.loop:
                    break
                rec_pos = 0
                t0 = time.monotonic()
                self.start_us += round(n_total * 1e6 / rate)
            faults = self.injector.faults_for(frame_no) if self.injector else []
            kinds = {f.kind: f.param for f in faults}
            if "reboot" in kinds:
                lost = int(kinds["reboot"]) * spf
                self._record_lost(frame_no, rec_pos, min(lost, n_total - rec_pos), "reboot")
                rec_pos += lost
                boot_id, seq, dev_index, boot_flag = (boot_id + 1) & 0xFFFF, 0, 0, True
            if "disconnect" in kinds:
                self.link.drop_connection()
                lost = int(kinds["disconnect"]) * spf
                self._record_lost(frame_no, rec_pos, min(lost, n_total - rec_pos), "disconnect")
                rec_pos += lost
                dev_index += lost
                seq += int(kinds["disconnect"])
            if "clock_jump" in kinds:
                clock_off_us += round(kinds["clock_jump"] * 1e6)
            if rec_pos >= n_total:
                continue
            n = min(spf, n_total - rec_pos)
            chunk = data[rec_pos:rec_pos + n]
            if "bad_values" in kinds:
                chunk = chunk.copy()
                chunk[0, 0] = np.nan
            frame = encode_frame(
                chunk, sample_index=dev_index, seq=seq, boot_id=boot_id, boot=boot_flag,
                device_time_us=self.start_us + round(rec_pos * 1e6 / rate) + clock_off_us,
                sample_rate_hz=rate, encoding=self.encoding, scale=self.scale)
            seq = (seq + 1) & 0xFFFFFFFF
            dev_index += n
            boot_flag = False
            if self.speed > 0:
                target = t0 + (rec_pos + n) / rate / self.speed
                delay = target - time.monotonic()
                if delay > 0:
                    self._stop.wait(delay)
            if "stall" in kinds:
                self._stop.wait(kinds["stall"])
            out = frame
            if "corrupt" in kinds and self.injector is not None:
                out = self.injector.corrupt(frame, int(kinds["corrupt"]))
            if "drop" in kinds:
                out = b""
            prefix = b""
            if "garbage" in kinds and self.injector is not None:
                prefix += self.injector.garbage(int(kinds["garbage"]))
            if "oversize" in kinds:
                prefix += HEADER.pack(SYNC, 1, 0, 64, 0, 0, 0, 8192, 0, 0, 0, rate, 1.0)
            truth = SentFrame(frame_no, rec_pos, n, not (LOSSY_KINDS & kinds.keys()),
                              tuple(sorted(kinds)))
            payload = held + prefix + out
            held_truth.append(truth)
            rec_pos += n
            frame_no += 1
            if "merge" in kinds:
                held = payload
                continue
            held = b""
            if "split" in kinds and self.injector is not None and len(payload) > 2:
                pieces = self.injector.split(payload, int(kinds["split"]))
            else:
                pieces = [payload]
            ok = True
            for piece in pieces:
                ok = ok and self.link.send(piece, self._stop)
                if len(pieces) > 1:
                    time.sleep(0.001)
            for t in held_truth:
                self.sent.append(t if ok else SentFrame(t.frame_number, t.rec_start, t.n,
                                                        False, (*t.faults, "send_failed")))
            held_truth = []
        if held:
            ok = self.link.send(held, self._stop)
            for t in held_truth:
                self.sent.append(t if ok else SentFrame(t.frame_number, t.rec_start, t.n,
                                                        False, (*t.faults, "send_failed")))

    def _record_lost(self, frame_no: int, rec_pos: int, n: int, why: str) -> None:
        if n > 0:
            self.sent.append(SentFrame(frame_no, rec_pos, n, False, (why,)))

    def intact_mask(self) -> npt.NDArray[np.bool_]:
        """Per recording sample: True where it left the twin intact."""
        mask = np.zeros(self.samples.shape[0], dtype=bool)
        for s in self.sent:
            if s.intact:
                mask[s.rec_start:s.rec_start + s.n] = True
        return mask

    def serve_forever(self, stop: threading.Event) -> None:
        """Run until ``stop`` is set (for ``zhichao devices simulate``)."""
        self.start()
        with contextlib.suppress(KeyboardInterrupt):
            while not stop.wait(0.2):
                pass
        self.stop()


class ModbusSampleRingTwin:
    """A data-acquisition unit exposing the sample ring of
    :data:`zhichao.devices.samples.SAMPLE_REGISTERS` on a pymodbus server: TCP, or RTU on
    ``serial_port`` (e.g. one end of a :class:`~zhichao.devices.twins.links.PtyNullModem`,
    the driver opening ``client_port``, the other end).

    Samples "arrive" at ``sample_rate_hz * speed`` from the first request; they are
    written into the ring (int16 counts of ``scale``) lazily, at each Modbus access.
    ``reboot()`` resets the counter and bumps the boot id.
    """

    def __init__(self, samples: npt.NDArray[np.float32], sample_rate_hz: int,
                 start_utc: datetime, *, ring_samples: int = 1024, scale: float = 0.001,
                 speed: float = 1.0, serial_port: str | None = None,
                 client_port: str | None = None, baud_rate: int = 115200) -> None:
        from zhichao.devices.sample_ring import SAMPLE_MAGIC, SAMPLE_RING_BASE
        from zhichao.devices.twins.modbus import ModbusTwinServer

        self.samples = np.ascontiguousarray(samples, dtype=np.float32)
        self.counts = np.clip(np.rint(self.samples / scale), -32768, 32767).astype(np.int16)
        self.n_channels = samples.shape[1]
        self.rate = int(sample_rate_hz)
        self.start_us = round(start_utc.timestamp() * 1e6)
        self.ring = ring_samples
        self.scale = scale
        self.speed = speed
        self.boot_id = 1
        self._base = SAMPLE_RING_BASE
        self._magic = SAMPLE_MAGIC
        self._t0: float | None = None
        self._rec_at_boot = 0  # recording position of device sample 0
        self._written = 0  # device samples written into the ring
        self.paused = False
        self.status = 0x0001  # the status register: acquiring (sample_ring.SAMPLE_STATUS_BITS)
        self.server = ModbusTwinServer(SAMPLE_RING_BASE + ring_samples * self.n_channels + 1,
                                       self._refresh, serial_port=serial_port,
                                       client_port=client_port, baud_rate=baud_rate)

    @property
    def url(self) -> str:
        return self.server.url

    def _available(self) -> int:
        """Device samples acquired so far (clamped to the recording)."""
        if self._t0 is None:
            self._t0 = time.monotonic()
        rec_now = int((time.monotonic() - self._t0) * self.rate * self.speed)
        return max(0, min(rec_now, int(self.samples.shape[0])) - self._rec_at_boot)

    def reboot(self, lost_samples: int) -> None:
        with self.server.lock:
            self.boot_id += 1
            self._rec_at_boot = self._rec_at_boot + self._available() + lost_samples
            self._written = 0

    def _refresh(self, regs: list[int], _fc: int, _address: int, _count: int) -> None:
        from zhichao.devices.modbus import f32_to_regs, u64_to_regs

        total = self._written if self.paused else self._available()
        c = self.n_channels
        for i in range(max(self._written, total - self.ring), total):
            slot = self._base + (i % self.ring) * c
            regs[slot:slot + c] = (self.counts[self._rec_at_boot + i].view(np.uint16)
                                   .tolist())
        self._written = total
        newest_rec = self._rec_at_boot + max(total - 1, 0)
        regs[0:6] = [self._magic, 1, c, self.rate, self.boot_id, self.status]
        regs[6:8] = f32_to_regs(self.scale)
        regs[8:12] = u64_to_regs(total)
        regs[12:16] = u64_to_regs(self.start_us + round(newest_rec * 1e6 / self.rate))
        regs[16] = self.ring

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
