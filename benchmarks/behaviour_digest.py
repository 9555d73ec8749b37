"""Digest of what a refactoring must not change: ``zhichao weigh --json`` on fixed
recordings and the manifest of a fixed case sealed with a fixed key at a fixed time.

    python3 -m zhichao simulate --vehicles 40 --seed 3 --out /tmp/rec
    python3 benchmarks/behaviour_digest.py /tmp/rec /tmp/digest-out

Run it on two trees (``PYTHONPATH=<tree>``) and compare the printed hashes (or the files
written to the output folder). Photos are drawn by Pillow, so compare on one machine.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

import zhichao
from zhichao.evidence.inputs import CaseInputs
from zhichao.evidence.merkle import MerkleLog
from zhichao.evidence.package import Station, seal_package
from zhichao.testing.cases import case_dict


def main() -> int:
    recordings, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    weighed = subprocess.run(
        [sys.executable, "-m", "zhichao", "weigh", *sorted(map(str, recordings.glob("*.npz"))),
         "--json"], capture_output=True, text=True, check=True).stdout
    (out / "weigh.json").write_text(weighed, encoding="utf-8")
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    station = Station("S001", "zhichao-station-S001", key)
    base = out / "in"
    base.mkdir(exist_ok=True)
    case = CaseInputs.from_json(case_dict(base))
    with MerkleLog(out / "log", origin=station.origin, create=True, fsync=False) as log:
        seal_package(case, out / "pkg", station=station, log=log, base_dir=base,
                     created_utc=datetime(2026, 12, 6, tzinfo=UTC), renderer=lambda *_: {})
    manifest = (out / "pkg" / "manifest.json").read_bytes()
    print(json.dumps({"zhichao": zhichao.__file__,
                      "weigh_sha256": hashlib.sha256(weighed.encode()).hexdigest(),
                      "manifest_sha256": hashlib.sha256(manifest).hexdigest()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
