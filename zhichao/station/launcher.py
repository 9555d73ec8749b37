"""Starting a whole station: simulated devices (when ``wim.url = "sim"``), the station,
its upload target (a center, or its own service on loopback), the ops server, the web
console; used by ``zhichao run``. The simulator's hooks (its clock, its traffic's end) are
handed to the station here, never looked up by the pipeline."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zhichao.station.clock import Clock, PublishedSimClock
from zhichao.station.config import StationConfig, parse_config
from zhichao.station.diskspace import is_disk_full
from zhichao.station.errors import StationError
from zhichao.station.local_service import LocalService, open_local_service
from zhichao.station.ops import OpsServer, setup_logging
from zhichao.station.runtime import Station, TrafficEnd, traffic_end_from
from zhichao.station.simlane import (
    DEVICES_FILE,
    IDLE_EXIT_S,
    LANE_MODULE,
    lane_alive,
    lane_process_alive,
    load_devices,
    mark_devices_stopped,
    read_devices,
    wait_pid_gone,
)
from zhichao.station.store import database_error
from zhichao.station.upload import configured_target


def config_to_json(cfg: StationConfig) -> dict[str, Any]:
    raw = dataclasses.asdict(cfg)
    raw.pop("base_dir")
    raw["camera"] = raw.pop("cameras")
    return raw


def config_from_json(raw: dict[str, Any], base_dir: str) -> StationConfig:
    return parse_config(raw, base_dir)


class SimulatorProcess:
    """The simulated lane's devices in a process of their own (they outlive a station
    that is killed, as real devices do; a new session, so a signal to the station's process
    group does not reach them). A lane still running for the same data folder is stopped
    first. The lane exits on :meth:`stop` (or :func:`stop_simulator`), or by itself after
    ``idle_exit_s`` with no station attached (see :mod:`.simlane`)."""

    def __init__(self, cfg: StationConfig, *, idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.dir = cfg.data_dir / "sim"
        self.dir.mkdir(parents=True, exist_ok=True)
        stop_simulator(self.dir / DEVICES_FILE, timeout_s=10.0)
        (self.dir / DEVICES_FILE).unlink(missing_ok=True)
        cfg_path = self.dir / "config.json"
        cfg_path.write_text(json.dumps({"base_dir": cfg.base_dir,
                                        "config": config_to_json(cfg)}), encoding="utf-8")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", LANE_MODULE, "--idle-exit-s", repr(float(idle_exit_s)),
             "--json", str(cfg_path), str(self.dir)],
            stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self.info = read_devices(self.dir, timeout_s=60.0)
        except (OSError, ValueError):
            self.stop()
            raise StationError(f"the simulated lane did not start (see {self.dir})") from None

    @property
    def devices_file(self) -> Path:
        return self.dir / DEVICES_FILE

    def clock(self) -> Clock:
        return PublishedSimClock(self.devices_file)

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the lane and wait for it (SIGKILL after ``timeout_s``); its
        ``devices.json`` ends marked ``stopped``."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        mark_devices_stopped(self.devices_file, self.proc.pid)


def stop_simulator(devices_file: Path, timeout_s: float = 10.0) -> bool:
    """Stop the simulated lane that published ``devices_file`` (owned or attached to):
    SIGTERM to the pid in it, then wait up to ``timeout_s`` for the process to go (SIGKILL
    and up to 2 s more where it does not). The file ends marked ``stopped``. True when no
    lane of that file runs any more (also: there was none, or it had ended). A pid that is
    no longer a simulated lane (reused after the lane was killed) is never signalled.

    The station calls it at a normal end, whether it started the lane or attached to it.
    """
    info = load_devices(devices_file)
    if info is None:
        return True
    try:
        pid = int(info.get("pid") or 0)
    except (TypeError, ValueError):
        return True
    if not lane_process_alive(pid):
        mark_devices_stopped(devices_file, pid)
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    gone = wait_pid_gone(pid, timeout_s)
    if not gone:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        gone = wait_pid_gone(pid, 2.0)
    mark_devices_stopped(devices_file, pid)
    return gone


def attach_simulator(cfg: StationConfig) -> tuple[Clock, str, Path] | None:
    """A simulator already running for this data folder (a restarted station): its clock,
    WIM URL and devices file; None where there is none, or it is ending or dead."""
    path = cfg.data_dir / "sim" / DEVICES_FILE
    info = load_devices(path)
    if info is None or not lane_alive(info) or not info.get("wim_url"):
        return None
    return PublishedSimClock(path), str(info["wim_url"]), path


def start_console(cfg: StationConfig, link: LocalService | None
                  ) -> tuple[threading.Thread | None, str]:
    """Serve the service console with uvicorn in a thread, on the service database."""
    if cfg.http.console_port == 0:
        return None, "网页控制台已关闭 (http.console_port = 0)"
    if link is None:
        return None, "网页控制台不可用：服务端 (zhichao.service) 未安装"
    try:
        from zhichao.service.web.console import create_console_app
    except ImportError:
        return None, "网页控制台不可用：zhichao.service.web 未安装"
    import uvicorn

    app = create_console_app(link.settings)
    from zhichao.station.reweigh_console import mount

    mount(app, cfg)  # the 静态复检 page, with a static scale
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.http.host, port=cfg.http.console_port,
                                           log_level="warning"))
    t = threading.Thread(target=server.run, name="station-console", daemon=True)
    t.start()
    lines = [f"网页控制台 http://{cfg.http.host}:{cfg.http.console_port}"]
    demo = link.demo_accounts()
    if demo is not None:
        path, accounts = demo
        lines[0] += "，演示账号（仅模拟车道）：" + "、".join(f"{u}（{role}）"
                                                   for u, role in accounts)
        lines.append(f"演示账号密码保存在 {path} （仅当前用户可读）")
    return t, "\n".join(lines)


@dataclasses.dataclass
class Running:
    station: Station
    ops: OpsServer | None
    simulator: SimulatorProcess | None
    devices_file: Path | None
    console_note: str
    service: LocalService | None = None

    @property
    def traffic_end(self) -> TrafficEnd | None:
        """For :meth:`Station.run`: a simulated lane's traffic end (None on a real lane)."""
        return None if self.devices_file is None else traffic_end_from(self.devices_file)

    def stop_service(self) -> None:
        if self.service is not None:
            self.service.stop()


def start(cfg: StationConfig, *, log_stderr: bool, own_simulator: bool = True) -> Running:
    log_file = cfg.data_dir / "station.log.jsonl"
    try:
        setup_logging(log_file, stderr=log_stderr)
    except OSError as exc:
        raise StationError(data_dir_error(cfg.data_dir, log_file, exc)) from exc
    sim: SimulatorProcess | None = None
    devices_file: Path | None = None
    clock: Clock = Clock()
    url = cfg.wim.url
    if cfg.simulated:
        attached = attach_simulator(cfg) if not own_simulator else None
        if attached is not None:
            clock, url, devices_file = attached
        elif not own_simulator:  # --attach never starts other traffic behind one's back
            raise StationError(
                f"--attach：{cfg.data_dir} 没有正在运行的模拟车道（它随站点结束，或独自运行 60 秒后"
                "结束），请不带 --attach 运行以启动一个 / no simulated lane is running for "
                f"{cfg.data_dir}; run without --attach to start one")
        else:
            sim = SimulatorProcess(cfg)
            clock, url, devices_file = sim.clock(), str(sim.info["wim_url"]), sim.devices_file
    streams = (load_devices(devices_file) or {}).get("streams") if devices_file else None
    station: Station | None = None
    link: LocalService | None = None
    ops = None
    try:
        # the station first: it checks its data and, on a full disk, gives up the reserve
        station = open_station(cfg, clock=clock, wim_url=url, stream_urls=streams or None)
        link = open_service(cfg)
        connect_upload(cfg, station, link)
        if cfg.http.metrics_port:
            try:
                ops = OpsServer(cfg.http.host, cfg.http.metrics_port, station.health,
                                station.metrics).start()
            except OSError as exc:
                raise StationError(f"http.metrics_port {cfg.http.metrics_port}: cannot "
                                   f"listen ({exc.strerror})") from exc
    except BaseException:
        if station is not None:
            station.close()
        if link is not None:
            link.stop()
        if sim is not None:
            sim.stop()
        raise
    _, note = start_console(cfg, link)
    return Running(station, ops, sim, devices_file, note, link)


def data_dir_error(data_dir: Path, path: Path, exc: OSError) -> str:
    """Why the station cannot write ``path`` in its data folder, and what to do."""
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        return (f"{data_dir}: the data folder is not writable ({path.name}: "
                f"{exc.strerror}); the station must write there. Remount its filesystem "
                f"read-write or give the station's user write access, or set "
                f"station.data_dir to a writable folder")
    return f"{path}: cannot be written ({exc.strerror or exc})"


def open_service(cfg: StationConfig) -> LocalService | None:
    """:func:`open_local_service`, a full disk reported as a :class:`StationError`."""
    try:
        return open_local_service(cfg)
    except Exception as exc:
        if not is_disk_full(exc):
            raise
        raise StationError(f"{cfg.data_dir}: the station's own service database cannot be "
                           f"opened: the disk is full ({exc}); free space on that "
                           f"filesystem and start again") from exc


def open_station(cfg: StationConfig, **kwargs: Any) -> Station:
    """:class:`Station` with a damaged or unusable ``station.db`` (a SQLite error while it
    starts) reported as a :class:`StoreError` that says what to do (``zhichao run`` exits
    2), never as a traceback."""
    try:
        return Station(cfg, **kwargs)
    except sqlite3.Error as exc:
        raise database_error(cfg.data_dir / "station.db", exc) from exc


def connect_upload(cfg: StationConfig, station: Station, link: LocalService | None) -> None:
    """The one way a passage reaches a service database: the station's outbox, uploaded
    to the configured center, or (no center) to the station's own service on loopback."""
    target = configured_target(cfg)
    if target is None and link is not None:
        target = link.serve_center(station.sealer.key, station.sealer.station.key_name)
    if target is not None:
        station.connect_upload(target)


def wait_until(pred: Any, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False
