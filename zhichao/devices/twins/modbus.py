"""A real pymodbus server — TCP on 127.0.0.1 (ephemeral port), or RTU on a serial port such
as one end of a :class:`~zhichao.devices.twins.links.PtyNullModem` — in a background thread.

The twin's register contents are refreshed by a callback *at every access* (pymodbus
``SimDevice(action=…)``), so a twin computes its state from the clock lazily, with no
timer thread of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from typing import Any, Self

from zhichao.devices.errors import SimulationError

#: refresh(registers, function_code, address, count); registers is modified in place
Refresh = Callable[[list[int], int, int, int], None]


class ModbusTwinServer:
    """Holding registers ``0 … n_registers-1`` served by pymodbus on 127.0.0.1 (TCP), or as
    Modbus RTU on ``serial_port`` (a path) at ``baud_rate``."""

    def __init__(self, n_registers: int, refresh: Refresh, *, device_id: int = 1,
                 port: int = 0, serial_port: str | None = None, baud_rate: int = 115200,
                 client_port: str | None = None) -> None:
        self.n_registers = n_registers
        self.refresh = refresh
        self.device_id = device_id
        self._port = port
        self.port = 0
        self.lock = threading.Lock()
        self.registers: list[int] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None
        self.fail_next = 0  # number of requests to answer with DEVICE_BUSY (fault injection)
        self.serial_port = serial_port
        self.baud_rate = baud_rate
        self.client_port = client_port  # the path a driver opens (other end of a null modem)

    @property
    def url(self) -> str:
        if self.serial_port is not None:
            return (f"modbus+rtu://{self.client_port or self.serial_port}"
                    f"?device_id={self.device_id}&baud_rate={self.baud_rate}")
        return f"modbus+tcp://127.0.0.1:{self.port}?device_id={self.device_id}"

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="modbus-twin", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise SimulationError("Modbus twin did not start within 10 s")
        if self._error is not None:
            raise SimulationError(f"Modbus twin failed: {self._error}") from self._error
        return self

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to start() or logged
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        from pymodbus.constants import ExcCodes
        from pymodbus.framer import FramerType
        from pymodbus.server import ModbusSerialServer, ModbusTcpServer
        from pymodbus.simulator import DataType, SimData, SimDevice

        async def action(function_code: int, start_address: int, address: int, count: int,
                         registers: list[int], _values: Any) -> Any:
            if self.fail_next > 0:
                self.fail_next -= 1
                return ExcCodes.DEVICE_BUSY
            self.registers = registers
            with self.lock:
                self.refresh(registers, function_code, address - start_address, count)
            return None

        device = SimDevice(id=self.device_id, simdata=[SimData(
            0, count=self.n_registers, values=0, datatype=DataType.REGISTERS)], action=action)
        server: Any
        if self.serial_port is not None:
            server = ModbusSerialServer(device, framer=FramerType.RTU, port=self.serial_port,
                                        baudrate=self.baud_rate, timeout=0.2,
                                        reconnect_delay=0.1)
            await server.serve_forever(background=True)
        else:
            server = ModbusTcpServer(device, address=("127.0.0.1", self._port))
            await server.serve_forever(background=True)
            transport: Any = server.transport
            self.port = transport.sockets[0].getsockname()[1]
        self._server = server
        self._loop = asyncio.get_running_loop()
        self._ready.set()
        await server.serving

    def stop(self) -> None:
        if self._loop is not None and self._server is not None:
            fut = asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop)
            with contextlib.suppress(Exception):  # the loop may already be gone
                fut.result(5)
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
