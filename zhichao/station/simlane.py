"""The simulated lane's devices: a WIM data-acquisition unit and its cameras.

Run as its own process (``python -m zhichao.station.simlane CONFIG_JSON``) so that a
station killed and restarted finds its devices still running, as on a real lane:

* the WIM unit streams ``ZSF/1`` frames (:mod:`zhichao.devices.framing`) over TCP loopback
  or a pty, paced to the simulated clock, with a sample counter that survives station
  restarts (a station that is away finds the unit waiting: the socket blocks);
* each camera pushes JPEG frames into its spool folder (FTP-push style: written to a
  temporary name, then renamed), named ``<camera>-<camera time>-<seq>.jpg`` with the
  camera's own clock (``simulation.camera_clock_offset_ms`` ahead of true time);
* traffic comes from :mod:`zhichao.devices.sim` in batches, joined with continuous sensor
  offsets; every vehicle gets a plate consistent with its class (trucks yellow, cars and
  vans blue), and the truth is appended to ``truth.jsonl`` for tests.

``devices.json`` in the output folder tells the station the WIM URL and the clock.

Lifetime: the lane outlives a station that is killed (a restarted station, or ``zhichao run
--attach``, finds it), but it ends

* on SIGTERM (:func:`zhichao.station.launcher.stop_simulator`, called by the station
  at a normal end), and
* by itself after :data:`IDLE_EXIT_S` with no station attached (``--idle-exit-s``; 0 never).
  A station is attached while the stream is being read (a frame delivered within
  :data:`ATTACH_GRACE_S`), and also while it is not reading but connected: over TCP while
  it holds the connection, over a pty while a process other than the lane has the port open
  (Linux ``/proc``; elsewhere only reading counts).

``devices.json`` carries ``state``: ``running``, then ``stopping`` as soon as the lane
decides to end and ``stopped`` as its last act, so nobody attaches to a lane that is
exiting; :func:`lane_alive` also checks that the pid is still a live simulated lane (a lane
killed with SIGKILL cannot mark its file).
"""

from __future__ import annotations

import argparse
import contextlib
import heapq
import json
import logging
import os
import queue
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from zhichao.common import write_atomic
from zhichao.devices.framing import encode_frame
from zhichao.devices.sim.lane import SimOptions, plan_traffic, simulate_recording
from zhichao.devices.twins.links import PtyLink, TcpServerLink, TwinLink
from zhichao.station.clock import SimClock
from zhichao.station.config import StationConfig, parse_utc_key
from zhichao.station.linking import travel_time_s, utc_name
from zhichao.station.scene import (
    front_scene,
    plate_colour_for,
    random_plate,
    rear_scene,
    side_scene,
)
from zhichao.station.sim_streams import SimStreams

DEVICES_FILE = "devices.json"
TRUTH_FILE = "truth.jsonl"

#: the lane exits after this long with no station attached (seconds; ``--idle-exit-s``)
IDLE_EXIT_S = 60.0
#: a lane whose frames were delivered this recently has a reader (seconds)
ATTACH_GRACE_S = 2.0
#: the simulated lane's first sample is due this long after the station connects [s]
SIM_START_DELAY_S = 1.0
#: ``devices.json`` ``state`` values
STATE_RUNNING, STATE_STOPPING, STATE_STOPPED = "running", "stopping", "stopped"
#: the simulated cameras stream only if this many frames per simulated second result
MIN_STREAM_FPS_SIMULATED = 0.5
#: what a simulated lane's command line contains (``python -m`` it)
LANE_MODULE = "zhichao.station.simlane"

LOG = logging.getLogger(__name__)


def streams_at(stream_fps: float, speed: float) -> bool:
    """Whether the simulated cameras stream: ``stream_fps`` frames per wall second must
    give at least :data:`MIN_STREAM_FPS_SIMULATED` per simulated second (faster, a 6 s
    clip would hold one or two frames, and windows without any would open the station's
    clips alarm for nothing but the time-lapse)."""
    return stream_fps > 0 and stream_fps / speed >= MIN_STREAM_FPS_SIMULATED


@dataclass
class _Shot:
    index: int  # global sample index at which the frame is taken
    camera: int  # index into cfg.cameras
    vehicle: dict[str, Any]


_Rendered = tuple[npt.NDArray[np.float32], list[_Shot], list[tuple[str, bytes] | None]]
"""A batch's samples, its shots and their frames (file name, JPEG; None: not encoded)."""


class SimulatedLane:
    """Generates traffic and plays the WIM unit and the cameras until stopped (``stop``
    set, e.g. by SIGTERM) or, in :meth:`run`, until no station was attached for
    ``idle_exit_s`` seconds (0: never)."""

    def __init__(self, cfg: StationConfig, out_dir: Path, *,
                 idle_exit_s: float = IDLE_EXIT_S) -> None:
        self.cfg = cfg
        self.idle_exit_s = idle_exit_s
        self.idle_exited = False
        self.out = out_dir
        self.out.mkdir(parents=True, exist_ok=True)
        sim = cfg.simulation
        sensor = cfg.wim.sensor
        self.fs = sensor.sample_rate_hz
        self.speed = sim.speed if sim.speed > 0 else 1000.0
        self.spf = int(min(4000, max(100, round(self.fs * 0.02 * self.speed))))
        epoch = (parse_utc_key("simulation.start_utc", sim.start_utc) if sim.start_utc
                 else datetime.now(UTC).replace(microsecond=0))
        self.epoch = epoch
        self.link: TwinLink = TcpServerLink() if sim.link == "tcp" else PtyLink()
        self.stop = threading.Event()
        # the simulated cameras push into spool folders; a camera opened by URL is real
        self.spools = [cfg.camera_spool(c) for c in cfg.cameras]
        for s in self.spools:
            s.mkdir(parents=True, exist_ok=True)
        self.truth_path = self.out / TRUTH_FILE
        self.vehicles_out = 0
        self.samples_sent = 0
        self._frame_seq = 0
        self._camera_q: queue.Queue[tuple[float, int, Path, bytes]] = queue.Queue()
        self._last_delivery = -1e9  # time.monotonic() of the last frame the link took
        self._devices_lock = threading.Lock()
        self._devices: dict[str, Any] | None = None  # what was published last
        self._state = STATE_RUNNING
        # each simulated camera also streams video (MJPEG over HTTP) for passage clips,
        # unless the lane runs so fast that a clip would hold hardly a frame
        self.streams = SimStreams(
            [c.camera_id for c in cfg.cameras if not c.url and not c.stream_url],
            fps=sim.camera_stream_fps) if streams_at(sim.camera_stream_fps, self.speed) else None

    def _opts(self, start: datetime) -> SimOptions:
        sim, sn = self.cfg.simulation, self.cfg.wim.sensor
        return SimOptions(
            n_rows=len(sn.rows_x_m), row_positions_m=list(sn.rows_x_m),
            sample_rate_hz=self.fs, strip_width_m=sn.strip_width_m,
            sensitivity_per_n=sn.sensitivity_per_n, full_scale=sn.full_scale,
            abnormal_fraction=sim.abnormal_fraction, trucks_only=sim.trucks_only,
            speed_kmh=(sim.speed_kmh[0], sim.speed_kmh[1]),
            site_id=self.cfg.site.site_id, lane_id=self.cfg.lane.lane_id, start_utc=start,
            drift_pct=sim.drift_pct,
            drift_start_utc=(parse_utc_key("simulation.drift_start_utc", sim.drift_start_utc)
                             if sim.drift_start_utc else None),
            drift_ramp_h=sim.drift_ramp_h, drift_channels=tuple(sim.drift_channels))

    def _batch(self, k: int, start_index: int, n: int, prev_tail: npt.NDArray[np.float64] | None
               ) -> tuple[npt.NDArray[np.float32], list[_Shot]]:
        sim = self.cfg.simulation
        rng = np.random.default_rng([sim.seed, k])
        start = self.epoch + timedelta(seconds=start_index / self.fs)
        opts = self._opts(start)
        vehicles = plan_traffic(rng, n, opts)
        samples, _, truth = simulate_recording(rng, vehicles, opts)
        if prev_tail is not None:  # sensor offsets are continuous across batches
            head = np.median(samples[: int(0.1 * self.fs)], axis=0)
            samples = (samples + (prev_tail - head)[None, :]).astype(np.float32)
        shots: list[_Shot] = []
        lines: list[str] = []
        for tv in truth["vehicles"]:
            plate = random_plate(rng)
            first = start_index + float(tv["first_axle_sample"])
            t_row1 = self.epoch + timedelta(seconds=first / self.fs)
            rec = {
                "n": self.vehicles_out, "plate": plate,
                "colour": plate_colour_for(bool(tv["is_truck"])),
                "first_axle_index": first, "time_utc": t_row1.isoformat(),
                "config": tv["config"], "is_truck": tv["is_truck"],
                "vehicle_class": tv["vehicle_class"], "limit_kg": tv["limit_kg"],
                "axle_count": tv["axle_count"], "axle_loads_kg": tv["axle_loads_kg"],
                "gross_weight_kg": tv["gross_weight_kg"], "speed_kmh": tv["speed_kmh"],
                "abnormal": tv["abnormal"], "axle_spacings_m": tv["axle_spacings_m"],
                "overloaded_truth": bool(tv["is_truck"])
                and tv["gross_weight_kg"] > tv["limit_kg"],
                "frames": {},
            }
            self.vehicles_out += 1
            missed = rng.random() < sim.camera_miss_fraction
            v_ms = abs(float(tv["speed_kmh"])) / 3.6
            for ci, cam in enumerate(self.cfg.cameras):
                dt = travel_time_s(cam.trigger_distance_m, v_ms, float(tv["acceleration_ms2"]))
                if dt is None or (missed and cam.role == "front") or cam.url:
                    continue
                idx = round(first + dt * self.fs)
                rec["frames"][cam.camera_id] = idx
                shots.append(_Shot(idx, ci, rec))
            lines.append(json.dumps(rec, ensure_ascii=False))
        with open(self.truth_path, "a", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        return samples, shots

    def _render(self, shot: _Shot) -> tuple[str, bytes] | None:
        """The frame's file name (camera clock) and JPEG bytes."""
        cam = self.cfg.cameras[shot.camera]
        v = shot.vehicle
        rng = np.random.default_rng([self.cfg.simulation.seed, int(v["n"]), shot.camera])
        if cam.role == "front":
            img = front_scene(v["plate"], v["colour"], rng, is_truck=bool(v["is_truck"]))
        elif cam.role == "side":
            offs = [0.0, *np.cumsum(v["axle_spacings_m"]).tolist()]
            img = side_scene(offs, rng)
        else:
            img = rear_scene(v["plate"], v["colour"], rng, is_truck=bool(v["is_truck"]))
        ok, jpg = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 92])
        if not ok:
            return None
        cam_time = (self.epoch + timedelta(seconds=shot.index / self.fs)
                    + timedelta(milliseconds=self.cfg.simulation.camera_clock_offset_ms))
        self._frame_seq += 1
        return f"{cam.camera_id}-{utc_name(cam_time)}-{self._frame_seq:07d}.jpg", jpg.tobytes()

    def _publish(self, clock: SimClock | None, traffic_end_index: int | None = None) -> None:
        info = {"traffic_end_index": traffic_end_index, "wim_url": self.link.url,
                "clock": None if clock is None else clock.to_json(),
                "truth": str(self.truth_path), "pid": os.getpid(),
                "spools": [str(s) for s in self.spools], "state": STATE_RUNNING,
                "streams": {} if self.streams is None else self.streams.urls}
        with self._devices_lock:
            if self._state != STATE_RUNNING:  # ending: never un-mark the file
                return
            self._devices = info
            write_atomic(self.out / DEVICES_FILE, json.dumps(info, indent=1).encode())

    def retire(self, state: str) -> None:
        """Mark ``devices.json`` ``stopping`` or ``stopped`` (if this lane published it);
        nothing is published after this."""
        with self._devices_lock:
            self._state = state
            if self._devices is None:
                return
            self._devices = {**self._devices, "state": state}
            # an unwritable data folder (gone?): nobody can attach anyway
            with contextlib.suppress(OSError):
                write_atomic(self.out / DEVICES_FILE,
                             json.dumps(self._devices, indent=1).encode())

    def station_attached(self) -> bool:
        """Whether a station is on the WIM link now (see the module docstring)."""
        if time.monotonic() - self._last_delivery < ATTACH_GRACE_S:
            return True
        if isinstance(self.link, TcpServerLink):
            # the link's current client; it drops it as soon as a send finds it hung up
            return self.link._client is not None
        if isinstance(self.link, PtyLink):
            return bool(tty_open_elsewhere(self.link.slave_path))
        return False

    def _watch_idle(self) -> None:
        """End the lane (``stop``) once no station was attached for ``idle_exit_s``."""
        last = time.monotonic()
        step = min(0.5, self.idle_exit_s / 4)
        while not self.stop.wait(step):
            now = time.monotonic()
            if self.station_attached():
                last = now
            elif now - last >= self.idle_exit_s:
                LOG.warning("simulated lane: no station attached for %.0f s, exiting",
                            now - last)
                self.idle_exited = True
                self.retire(STATE_STOPPING)
                self.stop.set()
                return

    def _first_batch(self) -> _Rendered | None:
        """The first batch, its frames rendered, before the lane is published: rendering
        took 1.9–2.6 s on a busy 2-core machine, and a station that had connected waited
        that long for its first sample (past its 2 s stall timeout)."""
        sim = self.cfg.simulation
        n = min(sim.max_vehicles, sim.batch_vehicles) if sim.max_vehicles else sim.batch_vehicles
        if n <= 0:
            return None
        samples, shots = self._batch(0, 0, n, None)
        return samples, shots, [self._render(shot) for shot in shots]

    def _generate_or_stop(self, out: queue.Queue[tuple[npt.NDArray[np.float32], list[_Shot]]],
                          clock: SimClock, first: _Rendered | None = None) -> None:
        """The traffic thread: a failure ends the lane (loudly), it never leaves the lane
        alive with nothing to send (a station would wait on it forever)."""
        try:
            self._generate(out, clock, first)
        except Exception:
            LOG.exception("simulated lane: traffic generation failed; the lane stops")
            self.retire(STATE_STOPPING)
            self.stop.set()

    def _generate(self, out: queue.Queue[tuple[npt.NDArray[np.float32], list[_Shot]]],
                  clock: SimClock, first: _Rendered | None = None) -> None:
        """Traffic ahead of the stream: batches with their frames already rendered (the
        first one, ``first``, before the lane was published)."""
        sim = self.cfg.simulation
        rng = np.random.default_rng([sim.seed, 10**6])
        index, k = 0, 0
        tail: npt.NDArray[np.float64] | None = None
        n_ch = 2 * len(self.cfg.wim.sensor.rows_x_m)
        while not self.stop.is_set():
            left = sim.max_vehicles - self.vehicles_out if sim.max_vehicles else sim.batch_vehicles
            if first is not None or left > 0:
                if first is not None:
                    samples, shots, frames = first
                    first = None
                else:
                    samples, shots = self._batch(k, index, min(left, sim.batch_vehicles), tail)
                    frames = [self._render(shot) for shot in shots]
                k += 1
                for shot, frame in zip(shots, frames, strict=True):
                    if frame is not None:
                        if self.streams is not None:
                            self.streams.add_vehicle(self.cfg.cameras[shot.camera].camera_id,
                                                     shot.index / self.fs, frame[1])
                        due = clock.wall_at(shot.index / self.fs)
                        self._camera_q.put((due, self._frame_seq,
                                            self.spools[shot.camera] / frame[0], frame[1]))
                if sim.max_vehicles and self.vehicles_out >= sim.max_vehicles:
                    self._publish(clock, index + samples.shape[0])
            else:  # no more traffic: a quiet lane (offsets and noise only)
                base = tail if tail is not None else np.zeros(n_ch)
                samples = (base[None, :] + rng.normal(0, 0.002, (int(self.fs), n_ch))
                           ).astype(np.float32)
                shots = []
            tail = np.median(samples[-int(0.1 * self.fs):], axis=0).astype(np.float64)
            index += samples.shape[0]
            while not self.stop.is_set():
                try:
                    out.put((samples, shots), timeout=0.2)
                    break
                except queue.Full:
                    continue

    def _cameras(self) -> None:
        """Write each rendered frame when its moment comes (cameras keep their own time,
        whatever the WIM link does)."""
        pending: list[tuple[float, int, Path, bytes]] = []
        while not self.stop.is_set():
            try:
                while True:
                    heapq.heappush(pending, self._camera_q.get_nowait())
            except queue.Empty:
                pass
            now = time.time()
            while pending and pending[0][0] <= now:
                _, _, path, data = heapq.heappop(pending)
                # stamped from time.time(): a file time that lags the write (the kernel's
                # coarse clock, a stalled tick on a starved VM) puts an arrival before its
                # capture, and at 40x 14 ms of lag moves a camera offset by 0.55 s
                write_atomic(path, data, fsync=False, stamp_now=True)
            self.stop.wait(0.005)

    def run(self) -> None:
        """Publish ``devices.json`` and stream until ``stop`` is set (or the lane was idle
        for ``idle_exit_s``)."""
        first = self._first_batch()
        self._publish(None)
        if self.idle_exit_s > 0:
            threading.Thread(target=self._watch_idle, name="sim-idle-watch",
                             daemon=True).start()
        if isinstance(self.link, TcpServerLink) and not self.link.wait_client(self.stop):
            return
        # simulated time starts when the station first connects (published before the
        # first frame, so the station reads it before it sees any sample); traffic is
        # generated ahead so the stream and the cameras start on time. The first samples
        # must arrive well within the station's stall timeout (2 s for a sample stream):
        # a lane that starts later is, to the station, a silent device.
        clock = SimClock(self.epoch, time.time() + SIM_START_DELAY_S, self.speed)
        if self.streams is not None:
            self.streams.set_clock(self.epoch, clock.wall0_s, self.speed)
        self._publish(clock)
        batches: queue.Queue[tuple[npt.NDArray[np.float32], list[_Shot]]] = queue.Queue(3)
        threading.Thread(target=self._generate_or_stop, args=(batches, clock, first),
                         name="sim-traffic", daemon=True).start()
        threading.Thread(target=self._cameras, name="sim-cameras", daemon=True).start()
        index, seq, boot = 0, 0, True
        while not self.stop.is_set():
            try:
                samples, _ = batches.get(timeout=0.2)
            except queue.Empty:
                continue
            for pos in range(0, samples.shape[0], self.spf):
                if self.stop.is_set():
                    return
                chunk = samples[pos:pos + self.spf]
                g = index + pos
                frame = encode_frame(
                    chunk, sample_index=g, seq=seq, boot_id=1, boot=boot,
                    device_time_us=round((self.epoch.timestamp() + g / self.fs) * 1e6),
                    sample_rate_hz=self.fs)
                seq += 1
                boot = False
                delay = clock.wall_at((g + chunk.shape[0]) / self.fs) - time.time()
                if delay > 0:
                    self.stop.wait(delay)
                # a lost client (the station restarting) is waited for; the frame is
                # sent again, whole, to the next one
                while not self.link.send(frame, self.stop):
                    if self.stop.is_set():
                        return
                self._last_delivery = time.monotonic()
                self.samples_sent = g + chunk.shape[0]
            index += samples.shape[0]

    def close(self) -> None:
        self.stop.set()
        self.link.close()
        if self.streams is not None:
            self.streams.close()


def tty_open_elsewhere(tty_path: str) -> bool | None:
    """Whether a process other than this one has ``tty_path`` open (Linux ``/proc``; only
    processes whose ``/proc/<pid>/fd`` this user may read); None where it cannot be told."""
    if not os.path.isdir("/proc/self/fd"):
        return None
    me = str(os.getpid())
    try:
        pids = [e.name for e in os.scandir("/proc") if e.name.isdigit() and e.name != me]
    except OSError:
        return None
    for pid in pids:
        try:
            with os.scandir(f"/proc/{pid}/fd") as fds:
                for fd in fds:
                    try:
                        if os.readlink(fd.path) == tty_path:
                            return True
                    except OSError:
                        continue
        except OSError:  # gone, or another user's
            continue
    return False


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return True  # no /proc: as far as can be told
    fields = stat.rsplit(")", 1)[-1].split()
    return not fields or fields[0] not in ("Z", "X")


def wait_pid_gone(pid: int, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` for process ``pid`` to be gone (or a zombie); whether it is."""
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True


def lane_process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live simulated lane process (where ``/proc`` tells the command
    line: a pid reused by another program after the lane was killed is not)."""
    if not pid_alive(pid):
        return False
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True
    return LANE_MODULE.encode() in cmdline


def lane_alive(info: dict[str, Any]) -> bool:
    """Whether the lane that wrote ``info`` (its ``devices.json``) runs and may be attached
    to: not ``stopping``/``stopped``, and its pid a live lane process."""
    if info.get("state", STATE_RUNNING) != STATE_RUNNING:
        return False
    try:
        pid = int(info.get("pid") or 0)
    except (TypeError, ValueError):
        return False
    return lane_process_alive(pid)


def load_devices(path: Path) -> dict[str, Any] | None:
    """``devices.json`` at ``path``, or None where it is missing or unreadable."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def mark_devices_stopped(path: Path, pid: int) -> None:
    """Mark ``devices.json`` ``stopped`` on behalf of lane ``pid`` (killed, it could not);
    left alone if it is gone or was written by another lane since."""
    info = load_devices(path)
    if info is None or info.get("pid") != pid or info.get("state") == STATE_STOPPED:
        return
    with contextlib.suppress(OSError):
        write_atomic(path, json.dumps({**info, "state": STATE_STOPPED}, indent=1).encode())


def read_devices(out_dir: Path, timeout_s: float = 30.0) -> dict[str, Any]:
    """Wait for the simulator's ``devices.json`` and return it."""
    deadline = time.monotonic() + timeout_s
    path = out_dir / DEVICES_FILE
    while True:
        try:
            data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return data
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_truth(path: Path) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                out.append(json.loads(line))
    return out


class _Terminated(Exception):  # noqa: N818  (SIGTERM, raised in the main thread)
    """SIGTERM reached the lane process."""


def main(argv: list[str]) -> int:
    """``python -m zhichao.station.simlane [--idle-exit-s S] (--json CONFIG.json |
    CONFIG.toml | -) OUT``: run the lane until SIGTERM, or ``S`` seconds (default
    :data:`IDLE_EXIT_S`; 0 never) with no station attached."""
    import signal

    from zhichao.station.config import load_config, parse_config

    ap = argparse.ArgumentParser(prog=f"python -m {LANE_MODULE}",
                                 description="The simulated lane's devices.")
    ap.add_argument("--json", action="store_true",
                    help="CONFIG is the launcher's JSON ({base_dir, config})")
    ap.add_argument("--idle-exit-s", type=float, default=IDLE_EXIT_S,
                    help=f"exit after this long with no station attached "
                         f"(default {IDLE_EXIT_S:g}; 0 never)")
    ap.add_argument("config", help="station.toml, '-' for the embedded defaults, or JSON")
    ap.add_argument("out", type=Path, help="output folder (devices.json, truth.jsonl)")
    args = ap.parse_args(argv)
    if args.idle_exit_s < 0:
        ap.error("--idle-exit-s must not be negative")
    if args.json:
        raw = json.loads(Path(args.config).read_text(encoding="utf-8"))
        cfg = parse_config(raw["config"], raw["base_dir"])
    else:
        cfg = load_config(None if args.config == "-" else args.config)
    lane = SimulatedLane(cfg, args.out, idle_exit_s=args.idle_exit_s)

    def on_term(*_: object) -> None:
        # raise, never ``lane.stop.set()`` here: the handler runs in the main thread, which
        # may hold that Event's lock inside ``stop.wait()`` (a self-deadlock, seen)
        raise _Terminated

    signal.signal(signal.SIGTERM, on_term)
    try:
        lane.run()
    except (KeyboardInterrupt, _Terminated):
        pass
    finally:
        lane.retire(STATE_STOPPING)
        lane.close()
        lane.retire(STATE_STOPPED)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
