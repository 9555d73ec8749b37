"""``zhichao calibrate`` and ``zhichao accuracy``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from zhichao.calibration.errors import CalibrationError
from zhichao.calibration.fit import REJECTION_ZH, FitConfig, calibrate, write_profile
from zhichao.calibration.measure import sha256_file
from zhichao.calibration.scatter import ScatterConfig, scatter_file
from zhichao.common import parse_utc
from zhichao.weighing.calibration_profile import load_profile
from zhichao.weighing.errors import WeighingError
from zhichao.weighing.scatter import write_scatter


def register(subparsers: Any) -> None:
    cal = subparsers.add_parser(
        "calibrate", help="fit a calibration profile to reference-truck recordings",
        description="Fit per half-strip sensitivities, temperature coefficients and speed "
                    "factors to recordings of reference trucks (one truck per recording) "
                    "whose static weights REF.csv lists (columns recording, "
                    "gross_weight_kg, axle_loads_kg with ';' between axles; optional "
                    "wheel_loads_kg as LEFT/RIGHT per axle, e.g. 3200/3210;4800/4810, from "
                    "a static wheel-load scale: the left/right split is then fitted from it "
                    "instead of assuming balanced trucks).")
    cal.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING",
                     help="recording files (or folders of *.npz)")
    cal.add_argument("--reference", type=Path, required=True, metavar="REF.csv")
    cal.add_argument("--out", type=Path, required=True, metavar="PROFILE.json")
    cal.add_argument("--supersedes", default=None, metavar="PROFILE_ID",
                     help="id of the profile this one replaces")
    cal.add_argument("--validity-days", type=int, default=FitConfig.validity_days)
    cal.add_argument("--min-passes-per-truck", type=int,
                     default=FitConfig.min_passes_per_truck,
                     help="usable passes every reference truck needs (wim.md §2.5: 10)")
    cal.add_argument("--min-truck-configurations", type=int,
                     default=FitConfig.min_truck_configurations,
                     help="reference truck configurations (axle counts) the session needs")
    cal.add_argument("--created-utc", default=None,
                     help="creation time (RFC 3339, Z); default now")
    cal.set_defaults(handler=_calibrate)

    sc = subparsers.add_parser(
        "scatter", help="pool in-service passages into the site's σ(v) file",
        description="Weigh in-service recordings and pool the spread of each passage's rows "
                    "into the site's gross-weight scatter σ(v) per speed band (upper "
                    "confidence bounds; zhichao.scatter/1), for zhichao weigh --scatter and "
                    "the station. See docs/calibration.md.")
    sc.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING",
                    help="recording files (or folders of *.npz)")
    sc.add_argument("--calibration", type=Path, default=None, metavar="PROFILE")
    sc.add_argument("--accuracy-class", default="5")
    sc.add_argument("--out", type=Path, required=True, metavar="SCATTER.json")
    sc.add_argument("--band-kmh", type=float, default=ScatterConfig.band_kmh)
    sc.add_argument("--min-passages", type=int, default=ScatterConfig.min_passages)
    sc.add_argument("--confidence", type=float, default=ScatterConfig.confidence)
    sc.set_defaults(handler=_scatter)

    acc = subparsers.add_parser(
        "accuracy", help="verify the accuracy class against reference trucks",
        description="Weigh reference-truck recordings (optionally with a calibration profile) "
                    "and write an HTML report: errors per vehicle, axle and axle group, by "
                    "speed and temperature, and the class achieved (OIML R134 / JJG 907 and "
                    "COST 323 patterns).")
    acc.add_argument("recordings", nargs="+", type=Path, metavar="RECORDING")
    acc.add_argument("--reference", type=Path, required=True, metavar="REF.csv")
    acc.add_argument("--calibration", type=Path, default=None, metavar="PROFILE")
    acc.add_argument("--report", type=Path, required=True, metavar="OUT.html")
    acc.add_argument("--tables", type=Path, default=None, metavar="TABLES.json",
                     help="class tables replacing the built-in ones (see docs/calibration.md)")
    acc.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                     help="also write the results as JSON")
    acc.set_defaults(handler=_accuracy)


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out.extend(sorted(p.glob("*.npz")) if p.is_dir() else [p])
    return out


def _calibrate(args: argparse.Namespace) -> int:
    try:
        created = parse_utc(args.created_utc) if args.created_utc else datetime.now(UTC)
    except ValueError as exc:
        print(f"zhichao calibrate: --created-utc: {exc}", file=sys.stderr)
        return 2
    try:
        cfg = FitConfig(validity_days=args.validity_days,
                        min_passes_per_truck=args.min_passes_per_truck,
                        min_truck_configurations=args.min_truck_configurations)
        result = calibrate(_expand(args.recordings), args.reference, config=cfg,
                           created_utc=created, supersedes=args.supersedes)
        write_profile(result.profile, args.out)
    except CalibrationError as exc:
        print(f"zhichao calibrate: {exc}", file=sys.stderr)
        return 2
    prof = result.profile
    fit = prof["fit"]
    print(f"校准参数 {prof['profile_id']} 已写入 {args.out}")
    print(f"过车 {fit['passes_total']} 次，采用 {fit['passes_used']} 次，剔除 "
          f"{fit['passes_rejected']} 次；拟合后单次总重误差标准差 "
          f"{fit['pass_gross_error_sd_pct']:.2f} %，有效期至 {prof['valid_until_utc']}")
    for p in result.rejected:
        print(f"  剔除 {p.recording}：{REJECTION_ZH.get(p.reason or '', p.reason)} {p.detail}")
    for note in fit["notes"]:
        print(f"  注意：{note}")
    return 0


def _scatter(args: argparse.Namespace) -> int:
    try:
        profile = load_profile(args.calibration) if args.calibration else None
        cfg = ScatterConfig(args.band_kmh, args.confidence, args.min_passages)
        doc = scatter_file(_expand(args.recordings), profile, args.accuracy_class, cfg)
        write_scatter(doc, args.out)
    except (CalibrationError, WeighingError) as exc:
        print(f"zhichao scatter: {exc}", file=sys.stderr)
        return 2
    print(f"本点总重离散已写入 {args.out}：汇总过车 {doc['passages']} 次，"
          f"{len(doc['bands'])} 个速度段（每段至少 {cfg.min_passages} 次，其余速度段按先验）")
    for b in doc["bands"]:
        print(f"  {b['speed_min_kmh']:g}–{b['speed_max_kmh']:g} km/h：σ 上限 "
              f"{b['relative_sd'] * 100:.2f} %（估计 {b['estimate'] * 100:.2f} %，"
              f"{b['samples']} 次）")
    return 0


def _accuracy(args: argparse.Namespace) -> int:
    # the accuracy check (scipy.stats) and its report (matplotlib) take seconds to import:
    # only this command loads them, not every ``zhichao`` process
    from zhichao.calibration.accuracy import AccuracyConfig, load_tables, verify_accuracy
    from zhichao.calibration.report import PHASE_ZH, write_report

    try:
        profile = load_profile(args.calibration) if args.calibration else None
        cfg = AccuracyConfig(tables=load_tables(args.tables)) if args.tables else \
            AccuracyConfig()
        recordings = _expand(args.recordings)
        result = verify_accuracy(recordings, args.reference, profile, cfg)
        inputs = {"参考数据文件": f"{args.reference.name} (SHA-256 "
                                 f"{sha256_file(args.reference)[:16]}…)",
                  "校准参数文件": "无" if args.calibration is None else
                  f"{args.calibration.name} ({profile.profile_id if profile else ''})"}
        write_report(result, args.report, inputs=inputs)
        if args.json:
            args.json.write_text(json.dumps(result.to_json(), ensure_ascii=False, indent=1),
                                 encoding="utf-8")
    except (CalibrationError, WeighingError) as exc:
        print(f"zhichao accuracy: {exc}", file=sys.stderr)
        return 2
    for r in result.refusals:
        print(f"不予评定：{r['text_zh']}")
    none = "不予评定" if result.refusals else "不合格"
    for phase in ("initial", "in_service"):
        g, a = result.gross_class[phase], result.axle_class[phase]
        print(f"{PHASE_ZH[phase]}：总重等级 {g.achieved or none}（最大误差 "
              f"{_f(g.max_abs_error_pct)} %），轴载等级 {a.achieved or none}")
    print(f"COST 323：{result.cost323['overall'] or none}；有效过车 {len(result.valid)}/"
          f"{len(result.passes)}（无效 {result.rejected_fraction * 100:.1f} %）；报告 "
          f"{args.report}")
    return 0


def _f(x: float | None) -> str:
    return "—" if x is None else f"{x:.2f}"
