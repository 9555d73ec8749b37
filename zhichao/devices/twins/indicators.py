"""Twins of weighing indicators: XK3190 / Toledo continuous output (pty or TCP) and the
``zhichao`` Modbus register map (pymodbus server)."""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Sequence
from typing import Self

from zhichao.devices.faults import FaultInjector
from zhichao.devices.indicator_formats import (
    encode_toledo,
    encode_xk3190,
    encode_xk3190_reversed,
)
from zhichao.devices.twins.links import PtyLink, TcpServerLink, TwinLink
from zhichao.devices.twins.modbus import ModbusTwinServer

LOG = logging.getLogger("zhichao.devices.twins")

#: a scale program: (weight [kg], in motion) per output frame; the last entry repeats
Program = Sequence[tuple[float, bool]]


def truck_program(final_kg: float = 32_450.0, n_moving: int = 12) -> list[tuple[float, bool]]:
    """A truck driving on: rising, oscillating readings, then ``final_kg`` steady."""
    out: list[tuple[float, bool]] = []
    for i in range(n_moving):
        frac = (i + 1) / n_moving
        wobble = 40.0 * (-1) ** i * (1 - frac)
        out.append((round(final_kg * frac + wobble), True))
    out.append((final_kg, False))
    return out


class StreamIndicatorTwin:
    """Continuous-output indicator (``xk3190``, ``xk3190-reversed``, ``toledo``)."""

    def __init__(self, protocol: str, program: Program, *, link: str | TwinLink = "pty",
                 rate_hz: float = 50.0, decimals: int = 0,
                 injector: FaultInjector | None = None) -> None:
        if protocol not in ("xk3190", "xk3190-reversed", "toledo"):
            raise ValueError(f"unknown protocol {protocol!r}")
        self.protocol = protocol
        self.program = list(program)
        self.link: TwinLink = (PtyLink() if link == "pty" else TcpServerLink()
                               if link == "tcp" else link)  # type: ignore[assignment]
        self.rate_hz = rate_hz
        self.decimals = decimals
        self.injector = injector
        self.frames_sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        proto = "toledo" if self.protocol == "toledo" else "xk3190"
        return f"{proto}+{self.link.url}"

    def encode(self, weight: float, motion: bool) -> bytes:
        if self.protocol == "xk3190":
            return encode_xk3190(weight, self.decimals)
        if self.protocol == "xk3190-reversed":
            return encode_xk3190_reversed(weight, self.decimals)
        return encode_toledo(weight, decimals=self.decimals, motion=motion)

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="indicator-twin", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        i = 0
        try:
            while not self._stop.is_set():
                weight, motion = self.program[min(i, len(self.program) - 1)]
                data = self.encode(weight, motion)
                for f in self.injector.faults_for(i) if self.injector else []:
                    if f.kind == "corrupt" and self.injector is not None:
                        data = self.injector.corrupt(data, int(f.param))
                    elif f.kind == "garbage" and self.injector is not None:
                        data = self.injector.garbage(int(f.param)) + data
                    elif f.kind == "drop":
                        data = b""
                if data:
                    self.link.send(data, self._stop)
                self.frames_sent += 1
                i += 1
                self._stop.wait(1.0 / self.rate_hz)
        except Exception:
            LOG.exception("indicator twin crashed")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.link.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ModbusIndicatorTwin:
    """The ``zhichao`` indicator map on a pymodbus server; ``program`` advances at
    ``rate_hz`` from the first request."""

    def __init__(self, program: Program, *, rate_hz: float = 50.0, decimals: int = 0,
                 tare_kg: float = 0.0, net_mode: bool = False) -> None:
        self.program = list(program)
        self.rate_hz = rate_hz
        self.decimals = decimals
        self.tare_kg = tare_kg
        self.net_mode = net_mode
        self.overload = False  # sets the overload bit (b1) of the status register
        self.data_valid = True  # the data-valid bit (b15); clear: the indicator's error
        self._t0: float | None = None
        self.server = ModbusTwinServer(16, self._refresh)

    @property
    def url(self) -> str:
        return self.server.url + "&map=zhichao"

    def _refresh(self, regs: list[int], _fc: int, _address: int, _count: int) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
        i = int((time.monotonic() - self._t0) * self.rate_hz)
        weight, motion = self.program[min(i, len(self.program) - 1)]
        factor = 10**self.decimals
        gross = round(weight * factor) & 0xFFFFFFFF
        net = round((weight - self.tare_kg) * factor) & 0xFFFFFFFF
        regs[0:2] = [gross >> 16, gross & 0xFFFF]
        regs[2:4] = [net >> 16, net & 0xFFFF]
        regs[4] = ((0 if motion else 1) | (2 if self.overload else 0)
                   | (4 if self.net_mode else 0) | (0x8000 if self.data_valid else 0))
        regs[5] = self.decimals

    def start(self) -> Self:
        self.server.start()
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
