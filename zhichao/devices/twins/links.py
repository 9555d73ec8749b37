"""Twin-side byte sinks: a TCP server connection, a pseudo-terminal master, and a null-modem
pair of pseudo-terminals."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from abc import ABC, abstractmethod
from collections.abc import Callable


class TwinLink(ABC):
    """Where a twin writes (and reads) bytes. ``send`` returns False if nobody listens."""

    #: the URL a driver uses to reach this twin, without query
    url: str

    @abstractmethod
    def send(self, data: bytes, stop: threading.Event) -> bool: ...

    @abstractmethod
    def recv(self, max_bytes: int, timeout_s: float) -> bytes: ...

    @abstractmethod
    def drop_connection(self) -> None:
        """Cut the link to the driver (TCP: close the client; pty: nothing to cut)."""

    @abstractmethod
    def close(self) -> None: ...


class TcpServerLink(TwinLink):
    """Listens on 127.0.0.1 (ephemeral port by default); one client at a time."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = socket.create_server((host, port))
        self._server.settimeout(0.05)
        self.host, self.port = self._server.getsockname()[:2]
        self.url = f"tcp://{self.host}:{self.port}"
        self._client: socket.socket | None = None
        self.connections = 0
        self._last_send = 0.0
        self._fresh = False

    def _accept(self, stop: threading.Event) -> socket.socket | None:
        if self._client is not None:
            return self._client
        while not stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return None
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client.settimeout(0.2)
            self._client = client
            self._fresh = True
            self.connections += 1
            return client
        return None

    def wait_client(self, stop: threading.Event) -> bool:
        return self._accept(stop) is not None

    def _peer_closed(self) -> bool:
        """The driver hung up (its FIN or RST is waiting): a send would vanish."""
        client = self._client
        if client is None:
            return False
        try:
            ready, _, _ = select.select([client], [], [], 0)
            if not ready:
                return False
            return client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True

    def send(self, data: bytes, stop: threading.Event) -> bool:
        view = memoryview(data)
        while view and not stop.is_set():
            client = self._accept(stop)
            if client is None:
                return False
            # a driver hangs up only after hearing nothing for a while (stall), so check
            # after a pause in sending, and always on a freshly accepted connection
            if (self._fresh or time.monotonic() - self._last_send > 0.01) and \
                    self._peer_closed():
                self.drop_connection()  # wait for the driver to come back instead
                continue
            self._fresh = False
            try:
                n = client.send(view)
            except TimeoutError:
                continue
            except OSError:
                self.drop_connection()
                return False
            view = view[n:]
            self._last_send = time.monotonic()
        return not view

    def recv(self, max_bytes: int, timeout_s: float) -> bytes:
        client = self._client
        if client is None:
            time.sleep(timeout_s)
            return b""
        ready, _, _ = select.select([client], [], [], timeout_s)
        if not ready:
            return b""
        try:
            data = client.recv(max_bytes)
        except OSError:
            data = b""
        if not data:
            self.drop_connection()
        return data

    def drop_connection(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()

    def close(self) -> None:
        self.drop_connection()
        self._server.close()


class PtyLink(TwinLink):
    """A pseudo-terminal pair: the twin owns the master, the driver opens ``slave_path``."""

    def __init__(self) -> None:
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        os.set_blocking(self._master, False)
        self.slave_path = os.ttyname(self._slave)
        self.url = f"serial://{self.slave_path}"

    def send(self, data: bytes, stop: threading.Event) -> bool:
        view = memoryview(data)
        while view and not stop.is_set():
            _, ready, _ = select.select([], [self._master], [], 0.05)
            if not ready:
                continue
            try:
                n = os.write(self._master, view)
            except BlockingIOError:
                continue
            except OSError:
                return False
            view = view[n:]
        return not view

    def recv(self, max_bytes: int, timeout_s: float) -> bytes:
        ready, _, _ = select.select([self._master], [], [], timeout_s)
        if not ready:
            return b""
        try:
            return os.read(self._master, max_bytes)
        except (BlockingIOError, OSError):
            return b""

    def drop_connection(self) -> None:
        """A cut serial cable: the driver's port stays open and simply hears nothing."""

    def close(self) -> None:
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class PtyNullModem:
    """Two pseudo-terminals joined by a null-modem thread: bytes written to one slave are
    read from the other. Both ends are real serial ports to pyserial and to pymodbus (for
    a Modbus RTU server on one end and a client on the other).

    ``tamper(direction, data) -> data`` may alter the bytes in flight (fault injection;
    ``direction`` is ``"a>b"`` or ``"b>a"``). ``cut`` silences the line while set.
    """

    def __init__(self) -> None:
        self._ends: list[tuple[int, int, str]] = []
        for _ in range(2):
            master, slave = os.openpty()
            tty.setraw(slave)
            tty.setraw(master)
            os.set_blocking(master, False)
            self._ends.append((master, slave, os.ttyname(slave)))
        self.path_a = self._ends[0][2]
        self.path_b = self._ends[1][2]
        self.tamper: Callable[[str, bytes], bytes] | None = None
        self.cut = threading.Event()
        self.bytes_copied = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pty-null-modem", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        ma, mb = self._ends[0][0], self._ends[1][0]
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([ma, mb], [], [], 0.05)
            except (OSError, ValueError):
                return
            for src in ready:
                dst, direction = (mb, "a>b") if src == ma else (ma, "b>a")
                try:
                    data = os.read(src, 65536)
                except (BlockingIOError, OSError):
                    continue
                if self.cut.is_set():
                    continue
                if self.tamper is not None:
                    data = self.tamper(direction, data)
                view = memoryview(data)
                while view and not self._stop.is_set():
                    try:
                        n = os.write(dst, view)
                    except BlockingIOError:
                        select.select([], [dst], [], 0.05)
                        continue
                    except OSError:
                        break
                    view = view[n:]
                    self.bytes_copied += n

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2.0)
        for master, slave, _ in self._ends:
            for fd in (master, slave):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def __enter__(self) -> PtyNullModem:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
