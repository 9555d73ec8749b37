"""Static re-weighing (复检) benchmark: what a supplementary package costs, and how the
evidence weight moves the decision.

Run:  python3 benchmarks/reweigh_bench.py [--supplements 40] [--no-documents] [--json]

* Seals one case package (the evidence tests' 62 t six-axle case, documents skipped) and
  then ``--supplements`` supplementary packages (``zhichao.reweigh/1``) into the same
  Merkle log with fsync on, one per static reading spread over 45–65 t, each with its
  复检记录 (HTML and PDF; ``--no-documents``: without, as before the record existed);
  reports the median and p95 time to seal one, to verify one with its original
  (``verify_reweigh``), and a supplement's size in bytes.
* Tallies the decision the rule gives for those readings (status and verdict by static
  weight), next to the WIM-only decision of the same case: how many re-weighings turn the
  WIM overload into no violation, a limit that depends on facts, or confirm it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.evidence.inputs import CaseInputs  # noqa: E402
from zhichao.evidence.merkle import MerkleLog  # noqa: E402
from zhichao.evidence.package import Station, seal_package  # noqa: E402
from zhichao.evidence.reweigh import (  # noqa: E402
    OriginalRef,
    seal_reweigh,
    vehicle_record_sha256,
    verify_reweigh,
)
from zhichao.evidence.signing import generate_key  # noqa: E402
from zhichao.evidence.static_reading import StaticReading  # noqa: E402
from zhichao.testing.cases import case_dict  # noqa: E402

CERT = {"scale_id": "SCALE-1", "certificate_number": "C-1", "issuer_zh": "计量所",
        "accuracy_class": "III", "division_kg": 20, "max_capacity_kg": 100000,
        "valid_until": "2026-01-01T00:00:00Z"}


def reading(weight_kg: int, i: int) -> StaticReading:
    return StaticReading.from_json({
        "reading_id": f"R{i}", "weight_kg": weight_kg,
        "reading_utc": f"2025-06-01T02:{10 + i // 60:02d}:{i % 60:02d}Z", "flags": [],
        "stable_by": "device", "raw_hex": "02", "indicator": "toledo",
        "certificate": CERT, "officer": "执法员"})


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def run(n: int, documents: bool = True) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = root / "in"
        base.mkdir()
        case = CaseInputs.from_json(case_dict(base))
        station = Station("S001", "zhichao-station-S001", generate_key())
        key = station.key.public_key()
        seal_s: list[float] = []
        verify_s: list[float] = []
        sizes: list[int] = []
        outcomes: Counter[str] = Counter()
        with MerkleLog(root / "log", origin=station.origin, create=True) as log:
            res = seal_package(case, root / "pkg", station=station, log=log, base_dir=base,
                               renderer=lambda *_: {})
            wim = res.eligibility
            ref = OriginalRef("S001-2-1000", vehicle_record_sha256(case.vehicle.raw),
                              res.package_id, res.manifest_sha256)
            for i in range(n):
                weight = 45000 + round(20000 * i / max(1, n - 1))
                with_static = dataclasses.replace(case, static_reweigh=reading(weight, i))
                t0 = time.perf_counter()
                sup = seal_reweigh(with_static, ref, root / f"rw-{i}", station=station,
                                   log=log, renderer=None if documents else lambda *_: {})
                seal_s.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                report = verify_reweigh(sup.directory, res.directory, key=key)
                verify_s.append(time.perf_counter() - t0)
                assert report.ok, report.text()
                sizes.append(sum(f.stat().st_size for f in sup.directory.rglob("*")
                                 if f.is_file()))
                e = sup.decision["eligibility"]
                outcomes[f"{e['status']}/{e['assessment']['verdict']}"] += 1
    return {"supplements": n, "documents": documents,
            "seal_ms_median": 1000 * statistics.median(seal_s),
            "seal_ms_p95": 1000 * pct(seal_s, 0.95),
            "verify_with_original_ms_median": 1000 * statistics.median(verify_s),
            "supplement_bytes_median": statistics.median(sizes),
            "wim_only": f"{wim.status}/{wim.assessment.verdict if wim.assessment else None}",
            "by_static_weight_45_to_65_t": dict(sorted(outcomes.items()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--supplements", type=int, default=40)
    parser.add_argument("--no-documents", action="store_true",
                        help="seal without the 复检记录 (HTML, PDF)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    result = run(args.supplements, documents=not args.no_documents)
    if args.json:
        print(json.dumps(result, ensure_ascii=False, indent=1))
        return
    for k, v in result.items():
        print(f"{k}: {v:.1f}" if isinstance(v, float) else f"{k}: {v}")


if __name__ == "__main__":
    main()
