"""Nothing the station starts is left behind.

* Plate workers (and the multiprocessing resource tracker) die with a station killed by
  SIGKILL, and :meth:`PlateWorkers.close` leaves no worker at a normal end.
* The simulated lane outlives a killed station but exits by itself after its idle time with
  no station attached (shortened here with ``idle_exit_s``), stays while a client holds its
  WIM link (TCP, or the pty opened), and is stopped by :func:`stop_simulator`; once it
  ended, ``attach_simulator`` does not attach to it.

Processes are found through ``/proc`` (Linux).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.station.conftest import write_config
from zhichao.station.config import StationConfig
from zhichao.station.launcher import (
    SimulatorProcess,
    attach_simulator,
    stop_simulator,
)
from zhichao.station.plates import PlateJob, PlateRead, PlateWorkers
from zhichao.station.simlane import DEVICES_FILE, STATE_STOPPED, pid_alive
from zhichao.testing.procs import children

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")

IDLE_S = 2.0  # the lane's shortened idle time
SLACK_S = 6.0  # a loaded 2-core machine: process exit, polling


CHILD = """
import dataclasses, json, os, sys, time
from pathlib import Path
from zhichao.station.plates import PlateJob, PlateWorkers

def children():
    out = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
                cmd = Path(f"/proc/{name}/cmdline").read_bytes()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == os.getpid():
                out[name] = cmd.replace(b"\\0", b" ").decode(errors="replace")
    return out

if __name__ == "__main__":
    workers = PlateWorkers(2)
    result = None
    if sys.argv[1] == "ready":
        workers.submit(PlateJob("p1", (), None))
        deadline = time.monotonic() + 60
        while result is None and time.monotonic() < deadline:
            for _, res in workers.done():
                result = repr(res) if isinstance(res, BaseException) else \
                    dataclasses.asdict(res)
            time.sleep(0.05)
    print(json.dumps({"children": children(), "result": result}), flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("when", ["ready", "starting"])
def test_plate_workers_and_tracker_die_with_a_killed_station(tmp_path: Path, when: str
                                                               ) -> None:
    script = tmp_path / "station_stand_in.py"
    script.write_text(CHILD, encoding="utf-8")
    p = subprocess.Popen([sys.executable, str(script), when], stdout=subprocess.PIPE,
                         text=True)
    try:
        assert p.stdout is not None
        line = p.stdout.readline()
        assert line, "the stand-in station printed nothing"
        got = json.loads(line)
        kids = {int(k): v for k, v in got["children"].items()}
        workers = [pid for pid, cmd in kids.items() if "spawn_main" in cmd]
        trackers = [pid for pid, cmd in kids.items() if "resource_tracker" in cmd]
        assert len(workers) == 2, kids
        if when == "ready":  # a job went through a worker: the pool is really up
            assert isinstance(got["result"], dict), got["result"]
            assert got["result"]["worker_pid"] in workers
            assert got["result"]["review_codes"] == ["no_plate"]
            assert len(trackers) == 1, kids
        watched = workers + trackers
        assert all(pid_alive(pid) for pid in workers)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        t0 = time.monotonic()
        left = list(watched)
        while left and time.monotonic() - t0 < 2.0 + 0.5:
            left = [pid for pid in left if pid_alive(pid)]
            time.sleep(0.05)
        assert left == [], (f"{when}: still alive {time.monotonic() - t0:.1f} s after the "
                            f"station's SIGKILL: {[children[pid] for pid in left]}")
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_plate_workers_close_leaves_no_worker() -> None:
    before = set(children(os.getpid()))
    workers = PlateWorkers(2)
    try:
        workers.submit(PlateJob("p1", (), None))
        deadline = time.monotonic() + 60
        results: list[tuple[str, object]] = []
        while not results and time.monotonic() < deadline:
            results = list(workers.done())
            time.sleep(0.05)
        assert results and isinstance(results[0][1], PlateRead), results
        mine = {pid: cmd for pid, cmd in children(os.getpid()).items()
                if pid not in before and "spawn_main" in cmd}
        assert len(mine) == 2, mine
    finally:
        t0 = time.monotonic()
        workers.close(timeout_s=5.0)
        took = time.monotonic() - t0
    assert took < 7.0
    # close() returns when each worker is exiting (its sentinel closed); the kernel's last
    # step of the exit may take a moment more
    deadline = time.monotonic() + 5.0  # generous: CI machines may be loaded
    while [pid for pid in mine if pid_alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert [pid for pid in mine if pid_alive(pid)] == []


def _config(tmp_path: Path, extra: str = "") -> StationConfig:
    return write_config(tmp_path / "station.toml", tmp_path / "station", vehicles=3,
                        speed=5.0, extra=extra)


def _wait_exit(sim: SimulatorProcess, timeout_s: float) -> float:
    """Seconds until the lane process exited (fails after ``timeout_s``)."""
    t0 = time.monotonic()
    try:
        rc = sim.proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the simulated lane still runs {timeout_s:.0f} s later")
    assert rc == 0
    return time.monotonic() - t0


def _devices_state(cfg: StationConfig) -> str | None:
    info = json.loads((cfg.data_dir / "sim" / DEVICES_FILE).read_text(encoding="utf-8"))
    state = info.get("state")
    return None if state is None else str(state)


def _read_for(sock: socket.socket, seconds: float) -> int:
    n = 0
    end = time.monotonic() + seconds
    sock.settimeout(0.2)
    while time.monotonic() < end:
        try:
            data = sock.recv(65536)
        except TimeoutError:
            continue
        assert data, "the lane closed the connection"
        n += len(data)
    return n


def test_lane_never_attached_exits_when_idle(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    sim = SimulatorProcess(cfg, idle_exit_s=IDLE_S)
    try:
        assert attach_simulator(cfg) is not None  # running: a station could attach
        took = _wait_exit(sim, IDLE_S + SLACK_S)
        assert took <= IDLE_S + SLACK_S
        assert _devices_state(cfg) == STATE_STOPPED
        assert attach_simulator(cfg) is None
    finally:
        sim.stop()


@pytest.mark.slow
def test_lane_stays_while_a_client_holds_the_tcp_link(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    sim = SimulatorProcess(cfg, idle_exit_s=IDLE_S)
    try:
        url = str(sim.info["wim_url"])
        assert url.startswith("tcp://")
        host, port = url[len("tcp://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            assert _read_for(sock, 1.5 * IDLE_S) > 0  # a station reading the stream
            time.sleep(1.5 * IDLE_S)  # a station busy elsewhere: connected, not reading
            assert sim.proc.poll() is None, "the lane left while a station was attached"
            assert attach_simulator(cfg) is not None
        took = _wait_exit(sim, IDLE_S + SLACK_S)  # the station went away
        assert took <= IDLE_S + SLACK_S
        assert attach_simulator(cfg) is None
    finally:
        sim.stop()


@pytest.mark.slow
def test_lane_stays_while_its_pty_is_open(tmp_path: Path) -> None:
    cfg = _config(tmp_path, extra='link = "pty"')
    sim = SimulatorProcess(cfg, idle_exit_s=IDLE_S)
    try:
        url = str(sim.info["wim_url"])
        assert url.startswith("serial://")
        fd = os.open(url[len("serial://"):], os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        try:
            got = 0
            end = time.monotonic() + 1.5 * IDLE_S
            while time.monotonic() < end:
                try:
                    got += len(os.read(fd, 65536))
                except BlockingIOError:
                    time.sleep(0.02)
            assert got > 0
            time.sleep(1.5 * IDLE_S + 2.0)  # open but not read (past the delivery grace)
            assert sim.proc.poll() is None, "the lane left while its port was open"
        finally:
            os.close(fd)
        took = _wait_exit(sim, IDLE_S + 2.0 + SLACK_S)  # 2 s: frames still in the pty
        assert took <= IDLE_S + 2.0 + SLACK_S
        assert attach_simulator(cfg) is None
    finally:
        sim.stop()


def test_stop_simulator_stops_an_attached_lane(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    sim = SimulatorProcess(cfg)  # the default idle time: only stop_simulator ends it here
    try:
        attached = attach_simulator(cfg)
        assert attached is not None
        _, url, devices_file = attached
        host, port = url[len("tcp://"):].rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            assert _read_for(sock, 3.0) > 0  # the first frame comes 2 s after connecting
            t0 = time.monotonic()
            assert stop_simulator(devices_file, timeout_s=10.0)
            assert time.monotonic() - t0 < 10.0
        assert sim.proc.wait(timeout=2) == 0  # it ended on SIGTERM, not SIGKILL
        assert _devices_state(cfg) == STATE_STOPPED
        assert attach_simulator(cfg) is None
        assert stop_simulator(devices_file, timeout_s=1.0)  # nothing left to stop
    finally:
        sim.stop()


def test_a_stale_devices_file_is_neither_attached_nor_signalled(tmp_path: Path) -> None:
    """A lane killed with SIGKILL leaves ``devices.json`` saying ``running``; its pid may be
    reused by another program, which must never get the lane's SIGTERM."""
    cfg = _config(tmp_path)
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        sim_dir = cfg.data_dir / "sim"
        sim_dir.mkdir(parents=True)
        (sim_dir / DEVICES_FILE).write_text(json.dumps(
            {"pid": other.pid, "state": "running", "wim_url": "tcp://127.0.0.1:1",
             "clock": None}), encoding="utf-8")
        assert attach_simulator(cfg) is None
        assert stop_simulator(sim_dir / DEVICES_FILE, timeout_s=1.0)
        assert other.poll() is None
        assert _devices_state(cfg) == STATE_STOPPED
    finally:
        other.kill()
        other.wait()


def test_attach_without_a_running_lane_refuses_to_start_other_traffic(tmp_path: Path) -> None:
    cfg_path = tmp_path / "station.toml"
    write_config(cfg_path, tmp_path / "station", vehicles=5)
    res = subprocess.run([sys.executable, "-m", "zhichao", "run", "--config", str(cfg_path),
                          "--attach", "--no-view"], capture_output=True, text=True,
                         timeout=120, stdin=subprocess.DEVNULL)
    assert res.returncode == 2, res.stdout[-2000:] + res.stderr[-2000:]
    assert "no simulated lane is running" in res.stderr
    assert not (tmp_path / "station" / "sim" / DEVICES_FILE).exists()
