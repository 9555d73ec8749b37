# ruff: noqa: T201  (a training script: it reports on stdout)
"""Render training plates into shards on disk, beside a running training (resumable).

    nice -n 6 python3 training/plates/shards.py --out training/plates/runs/shards --shards 80

Shard i holds ``--per-shard`` lines rendered with ``random.Random(f"{seed}:shard:{i}")``
(``shard_{i:03d}.npz``: ``lines`` uint8 [n, 32, 160], ``texts``); existing shards are
kept, so a rerun continues where it stopped and gives the same shards. The training
(``train.py``) draws its batches from the shards present, so rendering (the costlier
part on a shared CPU) is paid once per line, not once per step.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np

from training.plates import render
from training.plates.render import render_sample


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--shards", type=int, default=60)
    ap.add_argument("--per-shard", type=int, default=500)
    ap.add_argument("--glyph-jitter", action="store_true", help="render.GLYPH_JITTER")
    ap.add_argument("--ga36-q", action="store_true", help="render.GA36_Q")
    ap.add_argument("--serial-q-share", type=float, default=0.0, help="render.SERIAL_Q_SHARE")
    args = ap.parse_args()
    if not 0.0 <= args.serial_q_share <= 1.0:
        ap.error("--serial-q-share is a probability, 0 to 1")
    render.GLYPH_JITTER = args.glyph_jitter
    render.GA36_Q = args.ga36_q
    render.SERIAL_Q_SHARE = args.serial_q_share
    args.out.mkdir(parents=True, exist_ok=True)
    for i in range(args.shards):
        path = args.out / f"shard_{i:03d}.npz"
        if path.exists():
            continue
        rng = random.Random(f"{args.seed}:shard:{i}")
        samples = [render_sample(rng) for _ in range(args.per_shard)]
        tmp = args.out / f"shard_{i:03d}.tmp.npz"
        np.savez(
            tmp, lines=np.stack([s[0] for s in samples]), texts=np.array([s[1] for s in samples])
        )
        tmp.rename(path)
        print(f"shard {i} done", flush=True)


if __name__ == "__main__":
    main()
