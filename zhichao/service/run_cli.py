"""``zhichao run``: the main job on embedded defaults.

For now it simulates a lane of traffic with the embedded simulator, weighs it with the core
and prints the weighed vehicles (later this becomes the full unattended station).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

from zhichao.devices.recording import read_recording
from zhichao.devices.sim.lane import SimOptions, simulate
from zhichao.weighing.cli import print_table
from zhichao.weighing.stream import weigh_recording


def register(subparsers: Any) -> None:
    run = subparsers.add_parser(
        "run", help="run a lane on embedded defaults (simulated traffic)",
        description="Simulate a lane of traffic and print the weighed vehicles.")
    run.add_argument("--vehicles", type=int, default=20)
    run.add_argument("--seed", type=int, default=1)
    run.add_argument("--json", action="store_true")
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="zhichao-run-") as tmp:
        paths = simulate(args.vehicles, args.seed, Path(tmp), SimOptions(),
                         vehicles_per_recording=10)
        for p in paths:
            rec = read_recording(p)
            vehicles = weigh_recording(rec, chunk_samples=5000)
            if args.json:
                for v in vehicles:
                    print(v.to_json())
            else:
                print_table(vehicles, sys.stdout, title=p.name)
    return 0
