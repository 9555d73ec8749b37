"""Operations: JSON logs (UTC), Prometheus metrics and the health endpoint.

``GET /health`` returns the station's health as JSON (HTTP 200 when ``ok``, 503 when
degraded: an active alarm, sealing stopped); ``GET /metrics`` the Prometheus text format.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30)


class StationMetrics:
    """The station's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.samples = Counter("zhichao_wim_samples", "WIM samples received", registry=r)
        self.vehicles_weighed = Counter("zhichao_vehicles_weighed",
                                        "vehicles weighed (before de-duplication)", registry=r)
        self.passages = Counter("zhichao_passages", "passages committed", registry=r)
        self.overloads = Counter("zhichao_overloads", "overloaded passages", registry=r)
        self.no_frame = Counter("zhichao_passages_without_frame",
                                "passages without a linked front frame", registry=r)
        self.packages = Counter("zhichao_packages_sealed", "evidence packages sealed",
                                registry=r)
        self.unlinked_frames = Counter("zhichao_unlinked_frames",
                                       "camera frames no vehicle claimed", registry=r)
        self.errors = Counter("zhichao_errors", "errors by kind", ["kind"], registry=r)
        self.device_errors = Gauge("zhichao_device_errors", "device error count (health)",
                                   ["device"], registry=r)
        self.outbox_depth = Gauge("zhichao_outbox_depth", "outbox rows not yet sent",
                                  registry=r)
        self.pending_seal = Gauge("zhichao_cases_pending_seal", "cases waiting to be sealed",
                                  registry=r)
        self.clock_offset = Gauge("zhichao_clock_offset_seconds",
                                  "measured device clock offset", ["device"], registry=r)
        self.stage_latency = Histogram("zhichao_stage_latency_seconds", "latency per stage",
                                       ["stage"], buckets=_LATENCY_BUCKETS_S, registry=r)
        self.end_to_end = Histogram("zhichao_passage_latency_seconds",
                                    "weighed → committed", buckets=_LATENCY_BUCKETS_S,
                                    registry=r)

    def text(self) -> bytes:
        return generate_latest(self.registry)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, RFC 3339), level, logger, message, fields."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "time_utc": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(), "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            body.update(fields)
        if record.exc_info:
            body["exception"] = self.formatException(record.exc_info)
        return json.dumps(body, ensure_ascii=False, default=str)


class LogFileHandler(logging.FileHandler):
    """The JSON log file. A record it cannot write (a full or read-only disk) is dropped:
    the first failure is reported once on stderr (no traceback per record), and stderr is
    told again when the file takes records again."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.failing: str | None = None  # why records are being dropped, or None
        self.dropped = 0
        self._failed_now = False

    def emit(self, record: logging.LogRecord) -> None:
        self._failed_now = False
        super().emit(record)  # a failure calls handleError (under the handler's lock)
        if not self._failed_now and self.failing is not None:
            self._tell(f"zhichao: the log file {self.baseFilename} is written again "
                       f"({self.dropped} record(s) were dropped)")
            self.failing, self.dropped = None, 0

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 (logging's name)
        self._failed_now = True
        self.dropped += 1
        if self.failing is None:
            exc = sys.exc_info()[1]
            self.failing = repr(exc)
            self._tell(f"zhichao: cannot write the log file {self.baseFilename} ({exc}); "
                       "its records are dropped until it can be written again")

    @staticmethod
    def _tell(line: str) -> None:
        """One line on stderr (the handler's own failure cannot go to the log)."""
        with contextlib.suppress(OSError, ValueError):  # no stderr either: nothing to do
            sys.stderr.write(line + "\n")
            sys.stderr.flush()


def setup_logging(log_file: Path | None, *, stderr: bool) -> None:
    """JSON logs for ``zhichao`` loggers: to ``log_file`` and/or stderr."""
    root = logging.getLogger("zhichao")
    root.setLevel(logging.INFO)
    for h in list(root.handlers):
        if getattr(h, "_zhichao_station", False):
            root.removeHandler(h)
    handlers: list[logging.Handler] = []
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(LogFileHandler(log_file))
    if stderr:
        handlers.append(logging.StreamHandler())
    for h in handlers:
        h.setFormatter(JsonFormatter())
        h._zhichao_station = True  # type: ignore[attr-defined]
        root.addHandler(h)
    root.propagate = False


class OpsServer:
    """``/health`` and ``/metrics`` on ``host:port`` in a daemon thread."""

    def __init__(self, host: str, port: int, health: Callable[[], dict[str, Any]],
                 metrics: StationMetrics) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.startswith("/metrics"):
                    body, ctype, code = metrics.text(), "text/plain; version=0.0.4", 200
                elif self.path.startswith("/health"):
                    h = outer.health()
                    body = json.dumps(h, ensure_ascii=False).encode()
                    ctype, code = "application/json", 200 if h.get("status") == "ok" else 503
                else:
                    body, ctype, code = b"not found\n", "text/plain", 404
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self.health = health
        self.server = ThreadingHTTPServer((host, port), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="station-ops",
                                       daemon=True)

    def start(self) -> OpsServer:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
