# ruff: noqa: T201  (a training script: it reports on stdout)
"""Train the plate recogniser (CPU, PyTorch), with checkpoints and ``--resume``.

    R=training/plates/runs
    nice -n 6 python3 training/plates/shards.py --out $R/shards --shards 80 &
    nice -n 5 python3 training/plates/train.py --out $R/v1 --shards $R/shards \
        --steps 4000 --time-budget-s 3600          # add --resume to continue from $R/v1/last.pt
    python3 training/plates/export.py $R/v1/best.pt zhichao/vision/models/plate_crnn.onnx

Each batch is ``--batch`` lines: rendered plates drawn from the shards ``shards.py`` has
written so far (``--shards``; shifted by a few pixels, gain/offset) and
``--real-per-batch`` real training plates
(``real.py``, the part not held out) cut with jittered corners and small photometric
changes. Loss: CTC over blank + the plate alphabet, plus ``--province-weight`` × the
cross-entropy of the province head. AdamW; learning rate warm-up then cosine over the
run's progress = max(step / --steps, wall time / --time-budget-s), so a run on a busy
machine still ends annealed in time (the number of steps it made is in its log). Every
``--ckpt-every`` steps: a checkpoint (model, optimiser, step, elapsed time) and a
validation on fixed rendered plates and the held-out real plates (greedy exact).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from training.plates import render
from training.plates.model import PROVINCE_CLASSES, PlateCRNN
from training.plates.real import (
    RealMix,
    RealPlate,
    double_row_line,
    load_real,
    province_weights,
    real_line,
    transplant_line,
)
from training.plates.render import render_sample
from zhichao.vision.grammar import ALPHABET
from zhichao.vision.plate_lines import plate_line, to_tensor

INDEX = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


class ShardPool:
    """Rendered lines from the shards present in ``folder`` (re-scanned on :meth:`refresh`)."""

    def __init__(self, folders: list[Path]) -> None:
        self.folders = folders
        self.loaded: set[str] = set()
        self.lines: list[np.ndarray] = []
        self.texts: list[str] = []

    def refresh(self) -> None:
        for path in sorted(p for f in self.folders for p in f.glob("shard_[0-9][0-9][0-9].npz")):
            if str(path) in self.loaded:
                continue
            with np.load(path) as data:
                self.lines.extend(data["lines"])
                self.texts.extend(str(t) for t in data["texts"])
            self.loaded.add(str(path))


def shifted(line: np.ndarray, rng: random.Random) -> np.ndarray:
    """A cheap new look at a rendered line: a shift of a few pixels and a gain/offset."""
    dx, dy = rng.randint(-3, 3), rng.randint(-1, 1)
    matrix = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    out = cv2.warpAffine(
        line, matrix, (line.shape[1], line.shape[0]), borderMode=cv2.BORDER_REPLICATE
    )
    out = out.astype(np.float32) * rng.uniform(0.8, 1.2) + rng.uniform(-20, 20)
    return np.clip(out, 0, 255).astype(np.uint8)


def batch_at(
    step: int,
    seed: int,
    pool: ShardPool,
    real: list[RealPlate],
    size: int,
    n_real: int,
    mix: RealMix | None = None,
) -> tuple[torch.Tensor, ...]:
    """Batch ``step``: drawn from the pool and the real plates by a (seed, step) generator."""
    mix = mix or RealMix()
    rng = random.Random(f"{seed}:{step}")
    lines, texts = [], []
    for _ in range(size - n_real):
        k = rng.randrange(len(pool.lines))
        lines.append(shifted(pool.lines[k], rng))
        texts.append(pool.texts[k])
    for _ in range(n_real if real else 0):
        plate = rng.choices(real, mix.weights)[0] if mix.weights else rng.choice(real)
        if mix.double_row and rng.random() < mix.double_row:
            line, text = double_row_line(plate, real, rng, mix.transplant)
            lines.append(line)
            texts.append(text)
            continue
        if mix.transplant and rng.random() < mix.transplant:
            line, text = transplant_line(plate, real, rng)
        else:
            line, text = real_line(plate, rng), plate.text
        if mix.invert and rng.random() < mix.invert:
            line = 255 - line
        lines.append(line)
        texts.append(text)
    return encode(lines, texts)


def set_training(model: PlateCRNN, frozen_norms: bool) -> None:
    """Training mode; with ``frozen_norms`` the batch norms stay in eval mode (a model
    loaded from ONNX, whose norms are the identity plus a bias: :mod:`from_onnx`)."""
    model.train()
    if frozen_norms:
        for module in model.modules():
            if isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
                module.eval()


def encode(
    lines: list[np.ndarray], texts: list[str]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    x = torch.from_numpy(to_tensor(lines))
    targets = torch.tensor([INDEX[ch] for t in texts for ch in t], dtype=torch.long)
    lengths = torch.tensor([len(t) for t in texts], dtype=torch.long)
    province = torch.tensor([PROVINCE_CLASSES.index(t[0]) for t in texts], dtype=torch.long)
    return x, targets, lengths, province


def greedy(logits: torch.Tensor) -> list[str]:
    out = []
    for row in logits.argmax(-1).tolist():
        prev, chars = 0, []
        for k in row:
            if k != prev and k != 0:
                chars.append(ALPHABET[k - 1])
            prev = k
        out.append("".join(chars))
    return out


def evaluate(
    model: PlateCRNN, lines: list[np.ndarray], texts: list[str], frozen_norms: bool = False
) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        reads: list[str] = []
        provinces: list[int] = []
        for i in range(0, len(lines), 128):
            logits, prov = model(torch.from_numpy(to_tensor(lines[i : i + 128])))
            reads += greedy(logits)
            provinces += prov.argmax(-1).tolist()
    set_training(model, frozen_norms)
    exact = sum(r == t for r, t in zip(reads, texts, strict=True)) / max(1, len(texts))
    first = sum(r[:1] == t[:1] for r, t in zip(reads, texts, strict=True)) / max(1, len(texts))
    head = sum(PROVINCE_CLASSES[p] == t[0] for p, t in zip(provinces, texts, strict=True)) / max(
        1, len(texts)
    )
    return {"exact": round(exact, 4), "char1": round(first, 4), "province_head": round(head, 4)}


def resume(
    ckpt: Path, model: PlateCRNN, opt: torch.optim.Optimizer
) -> tuple[int, float, float, bool]:
    """Load ``last.pt`` into model and optimiser; (step, best score, elapsed seconds,
    whether its batch norms are frozen)."""
    state = torch.load(ckpt, weights_only=False)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["opt"])
    print(f"resumed at step {state['step']}", flush=True)
    return (
        state["step"],
        state["best"],
        state.get("elapsed_s", 0.0),
        bool(state.get("frozen_norms", False)),
    )


def learning_rate(progress: float, peak: float) -> float:
    """Linear warm-up over the first 5 % of the run, then cosine down to 2 % of the peak."""
    if progress < 0.05:
        return peak * (0.1 + 0.9 * progress / 0.05)
    t = (progress - 0.05) / 0.95
    return peak * (0.02 + 0.98 * 0.5 * (1 + np.cos(np.pi * t)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=48)
    ap.add_argument("--real-per-batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--ckpt-every", type=int, default=100)
    ap.add_argument("--province-weight", type=float, default=0.5)
    ap.add_argument(
        "--real-balance",
        type=float,
        default=0.0,
        help="draw real plates with weight 1 / (plates of their province) ** this",
    )
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="1: on a shared 2-core box two threads cost 4x the CPU per step (measured)",
    )
    ap.add_argument(
        "--time-budget-s",
        type=float,
        default=0.0,
        help="also end (annealed) after this much wall time",
    )
    ap.add_argument("--shards", type=Path, nargs="+", required=True, help="shards.py folders")
    ap.add_argument(
        "--init",
        type=Path,
        default=None,
        help="start from this checkpoint's weights (frozen batch norms stay frozen)",
    )
    ap.add_argument(
        "--init-onnx",
        type=Path,
        default=None,
        help="start from this exported model (batch norms folded, kept frozen: from_onnx.py)",
    )
    ap.add_argument("--real-transplant", type=float, default=0.0, help="RealMix.transplant")
    ap.add_argument("--real-invert", type=float, default=0.0, help="RealMix.invert")
    ap.add_argument("--real-double-row", type=float, default=0.0, help="RealMix.double_row")
    ap.add_argument(
        "--ga36-q",
        action="store_true",
        help="render.GA36_Q for the rendered validation plates (as the shards were drawn)",
    )
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    render.GA36_Q = args.ga36_q
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    real_train = load_real()
    real_held = load_real(held_out=True)
    mix = RealMix(
        province_weights(real_train, args.real_balance) if args.real_balance else None,
        args.real_transplant,
        args.real_invert,
        args.real_double_row,
    )
    val_rng = random.Random(f"{args.seed}:validation")
    val_synth = [render_sample(val_rng) for _ in range(300)]
    val_real = [plate_line(p.image, p.corners, p.double_row) for p in real_held]

    model = PlateCRNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    step, best, elapsed_before = 0, -1.0, 0.0
    if args.init is not None and args.init_onnx is not None:
        raise SystemExit("give --init or --init-onnx, not both")
    # a model whose batch norms were folded (from_onnx.py) keeps them frozen for good:
    # the flag travels in every checkpoint made from it
    frozen_norms = args.init_onnx is not None
    if args.init is not None:
        state = torch.load(args.init, weights_only=False)
        model.load_state_dict(state["model"])
        frozen_norms = bool(state.get("frozen_norms", False))
    if args.init_onnx is not None:
        from training.plates.from_onnx import load_onnx_weights, max_difference

        load_onnx_weights(model, args.init_onnx)
        diff = max_difference(model, args.init_onnx)
        if diff > 1e-4:
            raise SystemExit(f"{args.init_onnx}: PyTorch and onnxruntime differ by {diff:.2e}")
    ckpt = args.out / "last.pt"
    if args.resume and ckpt.exists():
        step, best, elapsed_before, resumed_frozen = resume(ckpt, model, opt)
        frozen_norms = frozen_norms or resumed_frozen
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    ce = nn.CrossEntropyLoss()
    pool = ShardPool(args.shards)
    while True:
        pool.refresh()
        if pool.lines:
            break
        time.sleep(10)
    started = time.time()
    log = (args.out / "log.jsonl").open("a", encoding="utf-8")
    set_training(model, frozen_norms)

    def progress() -> float:
        by_time = (
            (elapsed_before + time.time() - started) / args.time_budget_s
            if args.time_budget_s
            else 0.0
        )
        return min(1.0, max(step / args.steps, by_time))

    while progress() < 1.0:
        for group in opt.param_groups:
            group["lr"] = learning_rate(progress(), args.lr)
        if step % 25 == 0:
            pool.refresh()
        x, targets, lengths, province = batch_at(
            step, args.seed, pool, real_train, args.batch, args.real_per_batch, mix
        )
        logits, prov = model(x)
        log_probs = logits.log_softmax(-1).permute(1, 0, 2)
        input_lengths = torch.full((x.shape[0],), log_probs.shape[0], dtype=torch.long)
        loss = ctc(log_probs, targets, input_lengths, lengths) + args.province_weight * ce(
            prov, province
        )
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        step += 1
        if step % 20 == 0:
            print(
                f"step {step} loss {loss.item():.3f} lr {opt.param_groups[0]['lr']:.5f} "
                f"pool {len(pool.lines)} {time.time() - started:.0f}s",
                flush=True,
            )
        if step % args.ckpt_every == 0 or progress() >= 1.0:
            synth = evaluate(
                model, [v[0] for v in val_synth], [v[1] for v in val_synth], frozen_norms
            )
            real = evaluate(model, val_real, [p.text for p in real_held], frozen_norms)
            score = synth["exact"] + real["exact"]
            record = {
                "step": step,
                "loss": round(loss.item(), 4),
                "synth": synth,
                "held_out_real": real,
                "elapsed_s": round(elapsed_before + time.time() - started),
            }
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if score > best:
                best = score
                torch.save(
                    {
                        "model": model.state_dict(),
                        "step": step,
                        "record": record,
                        "frozen_norms": frozen_norms,
                    },
                    args.out / "best.pt",
                )
            torch.save(
                {
                    "model": model.state_dict(),
                    "opt": opt.state_dict(),
                    "step": step,
                    "best": best,
                    "elapsed_s": elapsed_before + time.time() - started,
                    "frozen_norms": frozen_norms,
                },
                ckpt,
            )
    print("done", flush=True)


if __name__ == "__main__":
    main()
