"""Tamper fuzzing of sealed package zips: how every mutant ends (docs/verify.md).

Seals two packages (with and without documents), zips them stored, deflated and inside a
folder, and mutates the zips at random (seeded): byte flips anywhere and in the headers,
insertions, deletions, truncation, prepended and appended bytes, duplicated and renamed
entries, a reordered central directory. Each mutant goes through the strict reader and
``verify_package`` (:func:`zhichao.testing.zipforge.judge`): it is refused (counted by
reason code) or accepted, and an accepted mutant must be the original content byte for
byte (else the script stops with an error).

    nice -n 10 python3 benchmarks/evidence_fuzz.py --per-kind 2000 --seed 1
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import tempfile
import time
import unicodedata
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.testing import zipforge
from zhichao.testing.cases import case_dict
from zhichao.testing.zipforge import Base

SEALED_UTC = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)


def make_bases(root: Path, station: Station) -> list[Base]:
    base_dir = root / "in"
    base_dir.mkdir()
    case = CaseInputs.from_json(case_dict(base_dir))
    with MerkleLog(root / "log", origin=station.origin, create=True, fsync=False) as log:
        seal_package(case, root / "documents", station=station, log=log, base_dir=base_dir,
                     created_utc=SEALED_UTC)
        seal_package(case, root / "plain", station=station, log=log, base_dir=base_dir,
                     renderer=lambda *_: {}, created_utc=SEALED_UTC)
    return zipforge.fuzz_bases(root / "documents", root / "plain")


def _name(rng: random.Random, old: str) -> str:
    head, _, tail = old.rpartition("/")
    choices = [old.upper(), old.swapcase(), unicodedata.normalize("NFD", old + "\u00e9"),
               "../" + old, "/" + old, old.replace("/", "\\"), old + "\x00", "./" + old,
               old + " ", old + "/", f"{head}//{tail}", "original/extra.jpg", old[:-1],
               "".join(rng.choice(string.printable) for _ in range(rng.randint(1, 30)))]
    return rng.choice(choices)


def _header_flip(rng: random.Random, base: Base) -> bytes:
    entry = rng.choice(zipforge.central_entries(base.data))
    spots = ([entry.local_offset + i for i in range(30)]
             + [entry.header_offset + i for i in range(46)]
             + [len(base.data) - 22 + i for i in range(22)])
    return zipforge.flip(base.data, rng.choice(spots), rng.randint(1, 255))


def _reorder(rng: random.Random, base: Base) -> bytes:
    order = list(range(len(base.members)))
    while order == sorted(order):
        rng.shuffle(order)
    return zipforge.reorder_central(base, order)


KINDS: dict[str, Callable[[random.Random, Base], bytes]] = {
    "byte flip": lambda r, b: zipforge.flip(b.data, r.randrange(len(b.data)), r.randint(1, 255)),
    "header flip": _header_flip,
    "insertion": lambda r, b: zipforge.insert(b.data, r.randrange(len(b.data) + 1),
                                              r.randbytes(r.randint(1, 64))),
    "deletion": lambda r, b: zipforge.delete(b.data, r.randrange(len(b.data)), r.randint(1, 64)),
    "truncation": lambda r, b: b.data[:r.randrange(len(b.data))],
    "prepended": lambda r, b: r.randbytes(r.randint(1, 64)) + b.data,
    "appended": lambda r, b: b.data + r.randbytes(r.randint(1, 64)),
    "duplicated entry": lambda r, b: zipforge.duplicate(
        b, r.randrange(len(b.members)), r.randbytes(r.randint(0, 64)), r.random() < 0.5),
    "renamed entry": lambda r, b: zipforge.rename(
        b, (i := r.randrange(len(b.members))), _name(r, b.members[i][0])),
    "reordered central directory": _reorder,
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-kind", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the counts here")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    # a fixed key and sealing time: the same seed gives the same mutants and counts
    station = Station("S001", "zhichao-station-S001",
                      Ed25519PrivateKey.from_private_bytes(bytes(range(32))))
    key = station.key.public_key()
    with tempfile.TemporaryDirectory() as tmp:
        bases = make_bases(Path(tmp), station)
    assert all(zipforge.judge(b.data, b, key) == "accepted" for b in bases)
    counts: dict[str, Counter[str]] = {}
    started = time.perf_counter()
    for kind, mutate in KINDS.items():
        tally: Counter[str] = Counter()
        for _ in range(args.per_kind):
            base = rng.choice(bases)
            tally[zipforge.judge(mutate(rng, base), base, key)] += 1  # raises if harmful
        counts[kind] = tally
    elapsed_s = time.perf_counter() - started
    total = sum(sum(t.values()) for t in counts.values())
    accepted = sum(t["accepted"] for t in counts.values())
    print(f"{total} mutants of {len(bases)} genuine zips (seed {args.seed}), {elapsed_s:.1f} s: "
          f"{total - accepted} refused, {accepted} accepted and byte-identical to the original "
          "content, 0 harmful")
    for kind, tally in counts.items():
        print(f"  {kind:28} " + ", ".join(f"{code} {n}" for code, n in tally.most_common()))
    if args.json is not None:
        args.json.write_text(json.dumps({k: dict(v) for k, v in counts.items()}, indent=1),
                             encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
