"""``zhichao devices probe URL`` and ``zhichao devices simulate KIND``."""

from __future__ import annotations

import argparse
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from zhichao.devices.errors import DeviceError


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("devices", help="device drivers: probe a device, run a twin")
    sub = parser.add_subparsers(dest="devices_command", metavar="SUBCOMMAND")

    probe = sub.add_parser("probe", help="connect to a device, print what it is and its health")
    probe.add_argument("url", help="device URL, e.g. tcp://127.0.0.1:5020, "
                       "xk3190+serial:///dev/ttyS0?baud_rate=9600, modbus+tcp://host:502, "
                       "folder:///frames, rtsp://camera/stream")
    probe.add_argument("--kind", choices=["samples", "records", "indicator", "camera"],
                       default=None, help="device kind (default: guessed from the URL; "
                       "tcp://, serial:// and modbus+… default to samples)")
    probe.add_argument("--listen-s", type=float, default=2.0,
                       help="how long to listen for data [s] (default 2)")
    probe.set_defaults(handler=_probe)

    sim = sub.add_parser("simulate", help="run a simulated twin for manual testing")
    sim.add_argument("kind", choices=["samples", "samples-modbus", "records", "records-modbus",
                                      "xk3190", "xk3190-reversed", "toledo",
                                      "indicator-modbus"])
    sim.add_argument("--recording", help="zhichao.raw/1 file to stream (samples twins); "
                     "records twins report the vehicles of its .truth.json")
    sim.add_argument("--interval-s", type=float, default=2.0,
                     help="seconds between vehicle records (records twins, default 2)")
    sim.add_argument("--link", choices=["tcp", "pty"], default="tcp",
                     help="transport of stream twins (default tcp)")
    sim.add_argument("--duration-s", type=float, default=0.0,
                     help="stop after this long [s]; 0 runs until Ctrl-C")
    sim.add_argument("--weight-kg", type=float, default=32_450.0)
    sim.set_defaults(handler=_simulate)


def _probe(args: argparse.Namespace) -> int:
    from zhichao.devices.registry import guess_kind, open_device

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        kind = args.kind or guess_kind(args.url)
        device = open_device(kind, args.url)
    except DeviceError as exc:
        print(f"error: {exc}")
        return 2
    with device:
        try:
            device.open()
        except DeviceError as exc:
            print(f"cannot connect 无法连接: {exc}")
            print(device.health_snapshot().describe())
            return 1
        listen = _LISTENERS[kind]
        deadline = time.monotonic() + args.listen_s
        seen = _Seen()
        while (remaining := deadline - time.monotonic()) > 0:
            if not listen(device, remaining, seen):
                break
        unit = {"samples": "samples", "records": "records", "camera": "frames"}.get(
            kind, "readings")
        summary = f" ({', '.join(f'{k} {v}' for k, v in seen.flags.items())})" \
            if seen.flags else ""
        print(f"{kind}: {seen.n} {unit} in {args.listen_s:g} s{summary}")
        print(device.health_snapshot().describe())
    return 0


@dataclass
class _Seen:
    """What ``probe`` has received so far: the count, and how often each flag was set."""

    n: int = 0
    flags: dict[str, int] = field(default_factory=dict)
    last_flags: tuple[str, ...] | None = None
    printed: int = 0

    def count(self, flags: tuple[str, ...]) -> bool:
        """Count one item; True when it should be printed (the first three, and then each
        change of its flags, at most 20 lines)."""
        self.n += 1
        for f in flags:
            self.flags[f] = self.flags.get(f, 0) + 1
        show = self.printed < 20 and (self.n <= 3 or flags != self.last_flags)
        self.last_flags = flags
        self.printed += show
        return show


def _num(x: float) -> str:
    """A float as the shortest text that reads back as the same value (no rounding)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _listen_samples(device: Any, timeout_s: float, seen: _Seen) -> bool:
    block = device.read_block(timeout_s)
    if block is not None:
        seen.n += block.n_samples
        if block.reason:
            print(f"block at index {block.first_index}: {block.reason} "
                  f"(gap {block.gap_before_samples})")
    return True


def _describe_reading(r: Any) -> str:
    flags = f" [{', '.join(r.flags)}]" if r.flags else ""
    if not r.is_weight:
        return (f"OVERLOAD 超量程: the display shows {r.weight_text()} kg, which is not a "
                f"weight{flags}")
    stable = {True: "stable 稳定", False: "unstable 未稳定",
              None: "stability unknown 无稳定位"}[r.stable]
    return f"weight {r.weight_text()} kg {stable}{' net 净重' if r.is_net else ''}{flags}"


def _describe_record(rec: Any) -> str:
    return (f"record {rec.boot_id}/{rec.seq} {rec.device_time_utc.isoformat()} "
            f"{rec.n_axles} axles {_num(rec.gross_weight_kg)} kg "
            f"{_num(rec.speed_kmh)} km/h status {','.join(rec.status_names) or '-'}"
            + (f" ({rec.reason})" if rec.reason else ""))


def _describe_frame(frame: Any) -> str:
    return (f"frame {frame.index} {frame.width}×{frame.height} "
            f"at {frame.capture_utc.isoformat()} {frame.name}")


@dataclass(frozen=True)
class _Listener:
    """Probe one item of a kind: ``read`` is the device's method, ``flags`` what is counted
    of an item, ``describe`` its line. False when the source has ended."""

    read: str
    flags: Callable[[Any], tuple[str, ...]]
    describe: Callable[[Any], str]

    def __call__(self, device: Any, timeout_s: float, seen: _Seen) -> bool:
        item = getattr(device, self.read)(timeout_s)
        if item is None:
            return not getattr(device, "ended", False)
        if seen.count(self.flags(item)):
            print(self.describe(item))
        return True


_LISTENERS: dict[str, Callable[[Any, float, _Seen], bool]] = {
    "samples": _listen_samples,
    "indicator": _Listener("read", lambda r: r.flags, _describe_reading),
    "records": _Listener("read_record", lambda rec: rec.status_names, _describe_record),
    "camera": _Listener("grab", lambda frame: (), _describe_frame)}


def _synthetic_samples(n: int = 50_000, n_channels: int = 8) -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.standard_normal((n, n_channels)).astype(np.float32) * 0.01


def _truth_records(recording: str | None) -> list[Any]:
    """Records of a simulated recording's vehicles, or of 50 freshly simulated ones."""
    from zhichao.devices.twins.records import records_from_truth

    if recording:
        from zhichao.devices.sim.lane import read_truth

        return records_from_truth(read_truth(recording))
    from zhichao.devices.sim.lane import SimOptions, plan_traffic, simulate_recording

    opts = SimOptions(n_rows=2, sample_rate_hz=500.0, speed_kmh=(20.0, 60.0))
    rng = np.random.default_rng(0)
    _, _, truth = simulate_recording(rng, plan_traffic(rng, 50, opts), opts)
    return records_from_truth(truth)


def _simulate(args: argparse.Namespace) -> int:
    from zhichao.devices.recording import read_recording
    from zhichao.devices.twins.indicators import (
        ModbusIndicatorTwin,
        StreamIndicatorTwin,
        truck_program,
    )
    from zhichao.devices.twins.samples import ModbusSampleRingTwin, SampleStreamTwin

    twin: Any
    if args.kind in ("records", "records-modbus"):
        from zhichao.devices.twins.records import ModbusRecordTwin, RecordLineTwin

        records = _truth_records(args.recording)
        if args.kind == "records":
            twin = RecordLineTwin(records, link=args.link, interval_s=args.interval_s)
        else:
            twin = ModbusRecordTwin(records, ring_slots=64, interval_s=args.interval_s)
    elif args.kind in ("samples", "samples-modbus"):
        if args.recording:
            rec = read_recording(args.recording)
            data, rate, start = rec.samples, rec.meta.sample_rate_hz, rec.meta.start_utc
        else:
            data, rate, start = _synthetic_samples(), 5000.0, datetime.now(UTC)
        if args.kind == "samples":
            twin = SampleStreamTwin(data, rate, start, link=args.link, loop=True)
        else:
            twin = ModbusSampleRingTwin(data, int(rate), start, ring_samples=4096)
    elif args.kind == "indicator-modbus":
        twin = ModbusIndicatorTwin(truck_program(args.weight_kg), rate_hz=10)
    else:
        twin = StreamIndicatorTwin(args.kind, truck_program(args.weight_kg), link=args.link,
                                   rate_hz=10)
    twin.start()
    print(f"{args.kind} twin 模拟设备 running at {twin.url}  (Ctrl-C to stop)", flush=True)
    stop = threading.Event()
    try:
        stop.wait(args.duration_s if args.duration_s > 0 else None)
    except KeyboardInterrupt:
        pass
    finally:
        twin.stop()
    return 0
