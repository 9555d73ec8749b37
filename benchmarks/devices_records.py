"""Throughput of the WIM record-source drivers and of the camera backends.

* ``ZWR/1`` decoder alone (sans-I/O), then ``StreamRecordSource`` fed by a twin sending as
  fast as the link takes (pty and TCP); driver CPU from ``time.thread_time``.
* ``ModbusRecordSource`` polling a twin whose ring is always full (TCP and RTU on a pty
  null modem; a pty has no baud-rate limit, so the RTU figure is the software's).
* Cameras: ``FolderCamera`` decoding real JPEGs, ``VideoCaptureCamera`` reading an MJPG
  file written by ``cv2.VideoWriter``.

A busy lane sees about one truck every 2 s (0.5 records/s); a camera runs at 25 fps.

Run: ``python3 benchmarks/devices_records.py [--seconds 2]``
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cv2
import numpy as np

from zhichao.devices.base import Timeouts
from zhichao.devices.camera import Camera, FolderCamera, VideoCaptureCamera
from zhichao.devices.records import (
    ModbusRecordSource,
    RecordLineDecoder,
    StreamRecordSource,
    WimRecord,
    encode_record_line,
)
from zhichao.devices.twins.links import PtyNullModem
from zhichao.devices.twins.records import ModbusRecordTwin, RecordLineTwin

# the real plate images in ../shared beside the repository
PLATES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "plates" / "dev"


def sample_records(n: int) -> list[WimRecord]:
    t0 = datetime(2026, 5, 1, tzinfo=UTC)
    loads = (6500.2, 9100.4, 9050.0, 8010.9, 7990.1, 8005.5)
    base = WimRecord(1, 0, t0, "1", 62.31, -0.12, loads,
                     tuple((a / 2, a / 2) for a in loads), (3.21, 1.35, 7.02, 1.31, 1.31),
                     round(sum(loads), 1), (48_500.0, 48_800.0, 48_600.0, 48_700.0), 0, 24.5)
    return [replace(base, seq=i, device_time_utc=t0 + timedelta(seconds=2 * i))
            for i in range(n)]


def bench_decoder(n: int) -> float:
    data = b"".join(encode_record_line(r) for r in sample_records(n))
    dec = RecordLineDecoder()
    t0 = time.perf_counter()
    out = [x for i in range(0, len(data), 4096) for x in dec.feed(data[i:i + 4096])]
    wall = time.perf_counter() - t0
    assert len(out) == n
    return n / wall


def bench_stream(link: str, n: int) -> tuple[float, float]:
    twin = RecordLineTwin(sample_records(n), link=link, stamp_now=True)
    with StreamRecordSource.from_url(twin.url, timeouts=Timeouts(2.0)) as src:
        src.open()
        with twin:
            first = src.read_record(2.0)
            assert first is not None
            t0, c0 = time.perf_counter(), time.thread_time()
            got = 1
            while got < n and src.read_record(1.0) is not None:
                got += 1
            wall = time.perf_counter() - t0
            cpu = time.thread_time() - c0
    return (got - 1) / wall, 100 * cpu / wall


def bench_modbus(rtu: bool, n: int = 256) -> float:
    """Read a full ring of ``n`` records from the start: one 72-register read each."""
    modem = PtyNullModem() if rtu else None
    twin = ModbusRecordTwin(sample_records(n), ring_slots=n, interval_s=0.0,
                            serial_port=modem.path_a if modem else None,
                            client_port=modem.path_b if modem else None)
    try:
        with twin, ModbusRecordSource.from_url(twin.url, poll_interval_s=0.0,
                                               max_records_per_poll=n,
                                               timeouts=Timeouts(2.0)) as src:
            src.open()
            t0 = time.perf_counter()
            got = src.records(max_records=n, timeout_s=60.0)
            wall = time.perf_counter() - t0
            assert len(got) == n, len(got)
            return n / wall
    finally:
        if modem is not None:
            modem.close()


def bench_camera(cam: Camera, seconds: float) -> tuple[float, int]:
    with cam:
        cam.grab(5.0)
        t0 = time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < seconds:
            if cam.grab(1.0) is not None:
                n += 1
        wall = time.perf_counter() - t0
        return n / wall, cam.health_snapshot().info.get("width", 0)  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    print(f"ZWR/1 decoder (sans-I/O): {bench_decoder(20_000):,.0f} records/s")
    for link in ("pty", "tcp"):
        rate, cpu = bench_stream(link, 20_000)
        print(f"StreamRecordSource over {link}: {rate:,.0f} records/s, driver CPU {cpu:.0f} %")
    for rtu in (False, True):
        rate = bench_modbus(rtu)
        print(f"ModbusRecordSource over {'RTU (pty null modem)' if rtu else 'TCP'}: "
              f"{rate:,.0f} records/s (one 72-register read per record)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "jpegs"
        folder.mkdir()
        for src in sorted(PLATES.glob("*.jpg"))[:50]:
            shutil.copy(src, folder / src.name)
        rate, width = bench_camera(FolderCamera(f"folder://{folder}", folder, loop=True),
                                   args.seconds)
        print(f"FolderCamera, real JPEGs ({width} px wide): {rate:,.0f} frames/s")
        video = Path(tmp) / "v.avi"
        writer = cv2.VideoWriter(str(video), cv2.VideoWriter.fourcc(*"MJPG"), 25.0,
                                 (1280, 720))
        rng = np.random.default_rng(0)
        for _ in range(100):
            writer.write(rng.integers(0, 255, (720, 1280, 3), dtype=np.uint8))
        writer.release()
        rate, width = bench_camera(VideoCaptureCamera(f"file://{video}", str(video),
                                                      loop=True, live=False), args.seconds)
        print(f"VideoCaptureCamera, MJPG file 1280x720: {rate:,.0f} frames/s")


if __name__ == "__main__":
    main()
