"""``zhichao run``: the station (devices → weighing → plates → evidence → store).

With no configuration it starts a complete station on embedded defaults: a simulated lane
(WIM unit over TCP loopback, cameras pushing frames), weighing, plate reading, the
eligibility gate, sealed packages and SQLite, with a live terminal view. ``--vehicles N``
stops after N passages and prints a summary. See ``docs/station.md``.
"""

from __future__ import annotations

import argparse
import dataclasses
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

from zhichao.station import cli as station_cli
from zhichao.station.config import load_config
from zhichao.station.errors import StationError


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run the station (embedded defaults: a simulated lane)",
        description="Run an unattended station: devices, weighing, plates, sealed evidence.")
    run.add_argument("--config", type=Path, help="station.toml (default: embedded defaults)")
    run.add_argument("--vehicles", type=int, help="stop after N passages and print a summary")
    run.add_argument("--data-dir", type=Path, help="override station.data_dir")
    run.add_argument("--speed", type=float, help="simulated lane speed (1 = real time)")
    run.add_argument("--seed", type=int, help="simulated traffic seed")
    run.add_argument("--no-view", action="store_true", help="no live view; JSON logs on stderr")
    run.add_argument("--attach", action="store_true",
                     help="use the simulated lane already running for this data folder")
    run.set_defaults(handler=_run)
    station_cli.register(subparsers)


def _configure(args: argparse.Namespace) -> Any:
    cfg = load_config(args.config)
    if args.data_dir is not None:
        cfg = dataclasses.replace(cfg, station=dataclasses.replace(
            cfg.station, data_dir=str(args.data_dir.resolve())))
    sim = cfg.simulation
    if args.speed is not None:
        sim = dataclasses.replace(sim, speed=args.speed)
    if args.seed is not None:
        sim = dataclasses.replace(sim, seed=args.seed)
    if args.vehicles is not None and cfg.simulated and not args.attach:
        sim = dataclasses.replace(sim, max_vehicles=args.vehicles)
    return dataclasses.replace(cfg, simulation=sim)


def _run(args: argparse.Namespace) -> int:
    from zhichao.station.launcher import start, stop_simulator
    from zhichao.station.sealing import public_key_path
    from zhichao.station.simlane import TRUTH_FILE
    from zhichao.station.view import render, summary_lines

    if args.vehicles is not None and args.vehicles < 1:
        print("zhichao run: --vehicles must be at least 1", file=sys.stderr)
        return 2
    try:
        cfg = _configure(args)
        created = not cfg.data_dir.exists()
        running = start(cfg, log_stderr=args.no_view, own_simulator=not args.attach)
    except StationError as exc:
        print(f"zhichao run: {exc}", file=sys.stderr)
        return 2
    st = running.station
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"站点 {cfg.station.station_id} 启动，数据目录 {cfg.data_dir}"
          + ("（新建）" if created else ""))
    if cfg.simulated:
        print("模拟车道：称重设备和摄像机由独立进程模拟（站点被杀死后仍在运行，"
              "用 --attach 重新连接）；--speed X 让模拟时间快 X 倍")
    if running.ops is not None:
        print(f"健康检查 http://{cfg.http.host}:{running.ops.port}/health ，"
              f"监控指标 http://{cfg.http.host}:{running.ops.port}/metrics")
    print(running.console_note)
    if st.sealer.key_created:
        print(f"已生成站点签名密钥 {st.sealer.key_path}（公钥 "
              f"{public_key_path(st.sealer.key_path)}，用于 zhichao verify --key）")
    started = time.time()
    worker = threading.Thread(target=st.run, args=(stop, args.vehicles, running.traffic_end),
                              name="station-pipeline")
    worker.start()
    try:
        if not args.no_view and sys.stdout.isatty():
            from rich.live import Live

            with Live(render(st.health(), list(st.recent), started), refresh_per_second=4,
                      screen=False) as live:
                while worker.is_alive():
                    worker.join(0.25)
                    live.update(render(st.health(), list(st.recent), started))
        else:
            while worker.is_alive():
                worker.join(0.25)
    except KeyboardInterrupt:
        stop.set()
        worker.join()
    health = st.health_snapshot
    if running.ops is not None:
        running.ops.stop()
    running.stop_service()
    # the simulated lane outlives a killed station, but ends with its station's normal end
    if running.simulator is not None:
        running.simulator.stop()
    elif running.devices_file is not None:  # attached to a lane started earlier
        stop_simulator(running.devices_file, timeout_s=10.0)
    if st.failure is not None:
        print(f"zhichao run: the station stopped on an error: {st.failure!r} "
              f"(see {cfg.data_dir / 'station.log.jsonl'})", file=sys.stderr)
        return 1
    if st.exit_unstored:  # a full disk: the state is consistent, the next start redoes it
        print("zhichao run: the disk is full; not stored at exit (the next start does it "
              "again): " + "; ".join(st.exit_unstored), file=sys.stderr)
    for line in summary_lines(health, time.time() - started):
        print(line)
    if cfg.simulated and args.vehicles is not None and health["run_passages"] < args.vehicles:
        print(traffic_note(cfg.data_dir / "sim" / TRUTH_FILE, health["run_passages"],
                           args.vehicles))
    return 0


def traffic_note(truth: Path, passages: int, wanted: int) -> str:
    """Why a simulated run ended before ``--vehicles`` passages (zh-CN)."""
    try:
        driven = sum(1 for line in truth.read_text(encoding="utf-8").splitlines()
                     if line.strip())
    except OSError:
        driven = 0
    return (f"模拟车流已结束：模拟车道共驶过 {driven} 辆车，本次称得 {passages} 辆通行，"
            f"少于 --vehicles {wanted}（相距过近的车辆可能称为一次通行，"
            "标记 possible_merged_vehicles）")
