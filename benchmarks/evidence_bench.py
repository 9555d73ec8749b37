"""Evidence benchmark: packages sealed/verified per second (one core) and the Merkle log
at 10 million entries (append, root, inclusion and consistency proof times; witness
cosigning, review-event recording and the history scan).

Run:  python3 benchmarks/evidence_bench.py [--log-entries 10000000] [--packages 20]

The 10 M-entry log is bulk-filled (leaf hashes of 8-byte entries, cache levels folded in
one pass) because appending 10 M entries one by one only measures the same append 10 M
times; the timed appends and proofs then run through the normal MerkleLog code.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from zhichao.evidence.events import (  # noqa: E402
    EventType,
    ReviewEvent,
    find_events,
    record_review_event,
)
from zhichao.evidence.inputs import CaseInputs  # noqa: E402
from zhichao.evidence.merkle import (  # noqa: E402
    CACHE_LEVELS,
    MerkleLog,
    leaf_hash,
    verify_consistency,
    verify_inclusion,
)
from zhichao.evidence.merkle_proofs import fold_hashes as _fold  # noqa: E402
from zhichao.evidence.package import Station, seal_package  # noqa: E402
from zhichao.evidence.signing import Checkpoint, generate_key, sign_checkpoint  # noqa: E402
from zhichao.evidence.verify import verify_package  # noqa: E402
from zhichao.evidence.witness import LogKey, Witness, witness_checkpoint  # noqa: E402
from zhichao.testing.cases import case_dict  # noqa: E402


def bulk_fill(directory: Path, n: int) -> None:
    with MerkleLog(directory, origin="bench", create=True, fsync=False):
        pass
    payload = np.arange(n, dtype=">u8")
    lengths = np.full(n, 8, dtype=">u4")
    records = np.empty(n, dtype=[("len", ">u4"), ("data", ">u8")])
    records["len"] = lengths
    records["data"] = payload
    (directory / "entries.bin").write_bytes(records.tobytes())
    offsets = (np.arange(n, dtype=np.uint64) * 12).astype(">u8")  # arithmetic is native-endian
    (directory / "entries.idx").write_bytes(offsets.tobytes())
    with (directory / "leaves.bin").open("wb") as out:
        raw = payload.tobytes()
        chunk = 1 << 20
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            out.write(b"".join(leaf_hash(raw[8 * i:8 * i + 8]) for i in range(start, stop)))
    lower_path = directory / "leaves.bin"
    lower = 0
    for lvl in CACHE_LEVELS:
        data = lower_path.read_bytes()
        group = 1 << (lvl - lower)
        count = (n >> lvl)
        nodes = [_fold([data[32 * (j * group + k):32 * (j * group + k + 1)]
                        for k in range(group)]) for j in range(count)]
        (directory / f"nodes-{lvl}.bin").write_bytes(b"".join(nodes))
        lower_path, lower = directory / f"nodes-{lvl}.bin", lvl


def timed(fn: object, repeat: int) -> tuple[float, float]:
    samples = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), max(samples)


def bench_log(n: int, work: Path) -> None:
    d = work / "biglog"
    t0 = time.perf_counter()
    bulk_fill(d, n)
    print(f"log bulk fill of {n:,} entries: {time.perf_counter() - t0:.1f} s "
          f"(leaves.bin {os.path.getsize(d / 'leaves.bin') / 1e6:.0f} MB)")
    for fsync in (False, True):
        with MerkleLog(d, fsync=fsync) as log:
            med, worst = timed(lambda log=log: log.append(os.urandom(200)), 200)
            print(f"append at {log.size:,} entries (fsync={fsync}): median {med * 1e6:.0f} µs,"
                  f" max {worst * 1e6:.0f} µs")
    with MerkleLog(d, fsync=False) as log:
        size = log.size
        med, _ = timed(log.root, 50)
        print(f"root at {size:,}: median {med * 1e3:.2f} ms")
        rng = np.random.default_rng(1)
        idx = [int(i) for i in rng.integers(0, size, 50)]
        it = iter(idx)
        med, _ = timed(lambda: log.inclusion_proof(next(it)), 50)
        print(f"inclusion proof at {size:,}: median {med * 1e3:.2f} ms")
        p = log.inclusion_proof(idx[0])
        root = log.root()
        med, _ = timed(lambda: verify_inclusion(p.index, p.size, p.leaf_hash, list(p.hashes),
                                                root), 200)
        print(f"inclusion verify ({len(p.hashes)} hashes): median {med * 1e6:.0f} µs")
        m = size - 123_457
        med, _ = timed(lambda: log.consistency_proof(m, size), 20)
        proof = log.consistency_proof(m, size)
        assert verify_consistency(m, size, log.root(m), root, proof)
        print(f"consistency proof {m:,} -> {size:,}: median {med * 1e3:.2f} ms")
    bench_witness_and_events(d, work)


def bench_witness_and_events(d: Path, work: Path) -> None:
    station = Station("bench", "bench-key", generate_key())
    witness = Witness(work / "witness", "witness.bench/w1", generate_key(),
                      [LogKey("bench", station.key_name, station.key.public_key())])
    with MerkleLog(d, fsync=True) as log:
        first = sign_checkpoint(Checkpoint("bench", log.size, log.root()), station.key_name,
                                station.key)
        witness_checkpoint(log, first, [witness])

        def cycle() -> None:
            log.append(os.urandom(200))
            note = sign_checkpoint(Checkpoint("bench", log.size, log.root()),
                                   station.key_name, station.key)
            witness_checkpoint(log, note, [witness])

        med, worst = timed(cycle, 50)
        print(f"append + sign + witness cosign (proof from previous size) at {log.size:,}: "
              f"median {med * 1e3:.2f} ms, max {worst * 1e3:.2f} ms (fsync on)")
        sha = "ab" * 32
        event = ReviewEvent(EventType.TECHNICAL_REVIEW, "S9-pkg", sha, "zhichao/station/S9", 0,
                            "R-0042", datetime.now(UTC), "approved", "照片清晰，轴数一致")
        med, worst = timed(lambda: record_review_event(log, station, event), 50)
        print(f"record_review_event at {log.size:,} (append, sign, store checkpoint, "
              f"inclusion proof; fsync on): median {med * 1e3:.2f} ms, max {worst * 1e3:.2f} ms")
        span = 1_000_000
        t0 = time.perf_counter()
        assert log.entry(7) == (7).to_bytes(8, "big")  # the bulk fill is a real log
        found = find_events(log, sha, max(0, log.size - span))
        dt = time.perf_counter() - t0
        print(f"history scan (find_events) over the last {span:,} entries: {dt:.2f} s "
              f"({dt / span * 1e6:.2f} µs/entry, {len(found)} events)")


def bench_packages(count: int, work: Path) -> None:
    base = work / "in"
    base.mkdir()
    case = CaseInputs.from_json(case_dict(base))
    raw = case_dict(base)
    raw["registration"]["owner_name_zh"] = "刘䶮㛃𠮷物流有限公司"  # needs the full CJK fonts
    rare = CaseInputs.from_json(raw)
    station = Station("S001", "zhichao-station-S001", generate_key())
    key = station.key.public_key()
    for docs, this in (("docs", case), ("rare", rare), ("none", case)):
        tag = {"docs": "with documents", "rare": "with documents, rare hanzi (full fonts)",
               "none": "without documents"}[docs]
        with MerkleLog(work / f"log-{docs}", origin=station.origin, create=True,
                       fsync=True) as log:
            pkgs = []
            t0, c0 = time.perf_counter(), time.process_time()
            for i in range(count):
                out = work / f"p-{docs}-{i}"
                seal_package(this, out, station=station, log=log, base_dir=base,
                             renderer=None if docs != "none" else (lambda *_: {}))
                pkgs.append(out)
            dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        print(f"sealed {count} packages {tag}: {count / dt:.1f} packages/s wall, "
              f"{count / cpu:.1f} packages/s of CPU time")
        t0, c0 = time.perf_counter(), time.process_time()
        for out in pkgs:
            assert verify_package(out, key=key).ok
        dt, cpu = time.perf_counter() - t0, time.process_time() - c0
        size = sum(f.stat().st_size for f in pkgs[0].rglob("*") if f.is_file())
        print(f"verified {count} packages {tag}: {count / dt:.1f} packages/s wall, "
              f"{count / cpu:.1f} packages/s of CPU time ({size / 1e3:.0f} kB per package)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--log-entries", type=int, default=10_000_000)
    parser.add_argument("--packages", type=int, default=20)
    args = parser.parse_args()
    with contextlib.suppress(AttributeError, OSError):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    print(f"one core; python {sys.version.split()[0]}; load average at start "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs; "
          f"sha256 self-check {hashlib.sha256(b'').hexdigest()[:8]}")
    work = Path(tempfile.mkdtemp(prefix="zhichao-bench-"))
    try:
        bench_packages(args.packages, work)
        bench_log(args.log_entries, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"load average at end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
