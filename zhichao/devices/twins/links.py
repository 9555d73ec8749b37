"""Twin-side byte sinks: a TCP server connection and a pseudo-terminal master."""

from __future__ import annotations

import contextlib
import os
import select
import socket
import threading
import time
import tty
from abc import ABC, abstractmethod


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
            self.connections += 1
            return client
        return None

    def wait_client(self, stop: threading.Event) -> bool:
        return self._accept(stop) is not None

    def send(self, data: bytes, stop: threading.Event) -> bool:
        view = memoryview(data)
        while view and not stop.is_set():
            client = self._accept(stop)
            if client is None:
                return False
            try:
                n = client.send(view)
            except TimeoutError:
                continue
            except OSError:
                self.drop_connection()
                return False
            view = view[n:]
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
