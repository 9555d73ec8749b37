"""``zhichao simulate`` and ``zhichao weigh``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, TextIO

from zhichao.devices.errors import DeviceError
from zhichao.devices.recording import read_recording
from zhichao.devices.sim.lane import SimOptions, simulate
from zhichao.devices.sim.traffic import ABNORMAL_KINDS, LOAD_PROFILES
from zhichao.weighing.calibration_profile import CalibrationProfile, load_profile
from zhichao.weighing.config import OverloadConfig, WeighingConfig
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.overload import VERDICT_ZH
from zhichao.weighing.scatter import pooled_bands, pooling_passages, site_config
from zhichao.weighing.stream import weigh_recording
from zhichao.weighing.vehicle import WeighedVehicle


def register(subparsers: Any) -> None:
    sim = subparsers.add_parser(
        "simulate", help="write simulated WIM recordings with ground truth",
        description="Simulate traffic over a WIM lane; writes rec_NNNNN.npz (zhichao.raw/1) "
                    "and rec_NNNNN.truth.json per recording. Deterministic per seed.")
    sim.add_argument("--vehicles", type=int, required=True, help="number of vehicles")
    sim.add_argument("--seed", type=int, default=0)
    sim.add_argument("--out", type=Path, required=True, help="output folder")
    sim.add_argument("--rows", type=int, default=4, help="sensor rows (>= 2)")
    sim.add_argument("--per-recording", type=int, default=10,
                     help="vehicles per recording file")
    sim.add_argument("--sample-rate-hz", type=float, default=5000.0)
    sim.add_argument("--road", choices=["smooth", "rough"], default="smooth")
    sim.add_argument("--speed-kmh", type=float, nargs=2, default=(5.0, 100.0),
                     metavar=("MIN", "MAX"))
    sim.add_argument("--load-profile", choices=sorted(LOAD_PROFILES), default="mixed")
    sim.add_argument("--abnormal-fraction", type=float, default=0.1)
    sim.add_argument("--abnormal", nargs="*", choices=ABNORMAL_KINDS, default=None,
                     help="abnormal behaviours to draw from (default: all)")
    sim.add_argument("--sensitivity-error-pct", type=float, default=1.0)
    sim.add_argument("--trucks-only", action="store_true")
    sim.add_argument("--site-id", default="SIM-SITE-01")
    sim.add_argument("--lane-id", default="1")
    sim.set_defaults(handler=_simulate)

    weigh = subparsers.add_parser(
        "weigh", help="weigh recorded vehicles",
        description="Weigh every vehicle in zhichao.raw/1 recordings.")
    weigh.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING")
    weigh.add_argument("--calibration", "--profile", type=Path, default=None, metavar="PROFILE",
                       help="calibration profile; its σ(v) from reference runs is used too")
    weigh.add_argument("--scatter", type=Path, default=None, metavar="SCATTER.json",
                       help="the site's σ(v) from in-service passages (zhichao scatter)")
    weigh.add_argument("--pool-scatter", action=argparse.BooleanOptionalAction, default=True,
                       help="pool σ(v) from the in-service passages of these recordings (their "
                            "rows' spread), per site and lane, before deciding the verdicts: "
                            "the site's history (default; speed bands with fewer than 10 "
                            "passages or 20 degrees of freedom keep the cautious prior). "
                            "--no-pool-scatter: the --scatter file, the profile's σ(v) and "
                            "the prior only")
    weigh.add_argument("--accuracy-class", default="5",
                       help="the device's accuracy class (its in-service MPE is deducted)")
    weigh.add_argument("--json", action="store_true", help="one JSON object per vehicle per line")
    weigh.add_argument("--chunk-samples", type=int, default=None,
                       help="feed the core in chunks of this many samples (as a live stream)")
    weigh.set_defaults(handler=_weigh)


def _simulate(args: argparse.Namespace) -> int:
    opts = SimOptions(
        n_rows=args.rows, sample_rate_hz=args.sample_rate_hz, road=args.road,
        speed_kmh=tuple(args.speed_kmh), load_profile=args.load_profile,
        abnormal_fraction=args.abnormal_fraction,
        abnormal_kinds=tuple(args.abnormal) if args.abnormal else ABNORMAL_KINDS,
        sensitivity_error_pct=args.sensitivity_error_pct, trucks_only=args.trucks_only,
        site_id=args.site_id, lane_id=args.lane_id)
    try:
        paths = simulate(args.vehicles, args.seed, args.out, opts, args.per_recording)
    except DeviceError as exc:
        print(f"zhichao simulate: {exc}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


def _weigh(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.calibration) if args.calibration else None
        cfg = site_config(WeighingConfig(overload=OverloadConfig(
            accuracy_class=args.accuracy_class)), profile, args.scatter)
    except WeighingError as exc:
        print(f"zhichao weigh: {exc}", file=sys.stderr)
        return 2
    status = 0
    weighed: list[tuple[Path, list[WeighedVehicle]]] = []
    for path in args.recordings:
        try:
            rec = read_recording(path)
            weighed.append((path, weigh_recording(rec, cfg, profile=profile,
                                                  chunk_samples=args.chunk_samples)))
        except (DeviceError, WeighingError) as exc:
            print(f"zhichao weigh: {exc}", file=sys.stderr)
            status = 2
    if args.pool_scatter:
        weighed = _pooled_again(weighed, cfg, profile, args.chunk_samples)
    for path, vehicles in weighed:
        if args.json:
            for v in vehicles:
                print(v.to_json())
        else:
            print_table(vehicles, sys.stdout, title=str(path))
    return status


def _pooled_again(weighed: list[tuple[Path, list[WeighedVehicle]]], cfg: WeighingConfig,
                  profile: CalibrationProfile | None, chunk_samples: int | None
                  ) -> list[tuple[Path, list[WeighedVehicle]]]:
    """Weigh the recordings again with σ(v) pooled from their own in-service passages, one
    pool per site and lane (a site's scatter is its own); recordings whose pool has no band
    (too few passages) keep their first weighing."""
    sites: dict[tuple[str, str], list[WeighedVehicle]] = {}
    for _, vs in weighed:
        for v in vs:
            sites.setdefault((v.site_id, v.lane_id), []).append(v)
    site_cfg = {}
    for (site, lane), vs in sites.items():
        bands = pooled_bands(pooling_passages(vs))
        if bands:
            site_cfg[(site, lane)] = cfg.with_scatter(
                bands, f"本批记录在役过车离散（站点{site}车道{lane}，{len(vs)}辆）")
    out = []
    for path, vs in weighed:
        key = (vs[0].site_id, vs[0].lane_id) if vs else None
        if key in site_cfg:
            vs = weigh_recording(read_recording(path), site_cfg[key], profile=profile,
                                 chunk_samples=chunk_samples)
        out.append((path, vs))
    return out




def print_table(vehicles: list[WeighedVehicle], out: TextIO, title: str | None = None) -> None:
    """A readable table (zh-CN headings) of weighed vehicles."""
    if title:
        out.write(f"== {title}\n")
    header = (f"{'时间(UTC)':<24}{'轴数':>4}{'车速km/h':>9}{'总重kg':>9}{'限值kg':>8}"
              f"{'超限kg':>8}  {'结论':<10}{'车型':<14}标记\n")
    out.write(header)
    for v in vehicles:
        gross = "-" if v.gross_weight_kg is None else f"{v.gross_weight_kg:.0f}"
        limit = "-" if v.limit_kg is None else str(v.limit_kg)
        excess = "-" if v.excess_after_allowance_kg is None else str(v.excess_after_allowance_kg)
        speed = "-" if v.speed_kmh is None else f"{v.speed_kmh:.1f}"
        out.write(f"{v.time_utc:<24}{v.axle_count:>4}{speed:>9}{gross:>9}{limit:>8}{excess:>8}  "
                  f"{VERDICT_ZH.get(v.verdict, v.verdict):<10}{(v.vehicle_class_zh or '待定'):<14}"
                  f"{'、'.join(v.flags_zh)}\n")
