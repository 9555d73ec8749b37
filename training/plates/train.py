# ruff: noqa: T201  (a training script: it reports on stdout)
"""Train the plate recogniser (CPU, PyTorch), with checkpoints and ``--resume``.

    nice -n 5 python3 training/plates/train.py --out training/plates/runs/v1 --steps 3000
    nice -n 5 python3 training/plates/train.py --out training/plates/runs/v1 --steps 3000 --resume
    python3 training/plates/export.py training/plates/runs/v1/best.pt zhichao/vision/models/plate_crnn.onnx

Each batch is ``--batch`` lines: rendered plates (``render.py``, a fresh random plate each
time, seeded by (seed, step, index)) and ``--real-per-batch`` real training plates
(``real.py``, the part not held out) cut with jittered corners and small photometric
changes. Loss: CTC over blank + the plate alphabet, plus ``--province-weight`` × the
cross-entropy of the province head. AdamW, one-cycle learning rate. Every
``--ckpt-every`` steps: a checkpoint (model, optimiser, scheduler, step) and a
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

from training.plates.model import PROVINCE_CLASSES, PlateCRNN
from training.plates.real import RealPlate, load_real
from training.plates.render import render_sample
from zhichao.vision.grammar import ALPHABET
from zhichao.vision.plate_lines import plate_line, to_tensor

INDEX = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


def real_line(plate: RealPlate, rng: random.Random) -> np.ndarray:
    """A real plate's line, with corner jitter and a little photometric change."""
    c = np.array(plate.corners, np.float32)
    w = float(np.linalg.norm(c[1] - c[0]))
    h = float(np.linalg.norm(c[3] - c[0]))
    noisy = c + np.array([[rng.gauss(0, 0.02) * w, rng.gauss(0, 0.04) * h] for _ in range(4)], np.float32)
    line = plate_line(plate.image, tuple((float(x), float(y)) for x, y in noisy), plate.double_row)
    out = line.astype(np.float32) * rng.uniform(0.6, 1.3) + rng.uniform(-40, 40)
    if rng.random() < 0.3:
        out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.3, 1.0))
    if rng.random() < 0.2:
        small_w = rng.randint(50, 100)
        out = cv2.resize(cv2.resize(out, (small_w, 12)), (line.shape[1], line.shape[0]))
    return np.clip(out, 0, 255).astype(np.uint8)


class Batches(torch.utils.data.IterableDataset):  # type: ignore[type-arg]
    def __init__(self, seed: int, start_step: int, batch: int, real: list[RealPlate], real_per_batch: int) -> None:
        self.seed, self.start_step, self.batch = seed, start_step, batch
        self.real, self.real_per_batch = real, real_per_batch

    def __iter__(self):  # type: ignore[no-untyped-def]
        step = self.start_step
        while True:
            rng = random.Random(f"{self.seed}:{step}")
            lines, texts = [], []
            for _ in range(self.batch - self.real_per_batch):
                line, text, _ = render_sample(rng)
                lines.append(line)
                texts.append(text)
            for _ in range(self.real_per_batch if self.real else 0):
                plate = rng.choice(self.real)
                lines.append(real_line(plate, rng))
                texts.append(plate.text)
            yield encode(lines, texts)
            step += 1


def encode(lines: list[np.ndarray], texts: list[str]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
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


def evaluate(model: PlateCRNN, lines: list[np.ndarray], texts: list[str]) -> dict[str, float]:
    model.eval()
    with torch.no_grad():
        reads: list[str] = []
        provinces: list[int] = []
        for i in range(0, len(lines), 128):
            logits, prov = model(torch.from_numpy(to_tensor(lines[i : i + 128])))
            reads += greedy(logits)
            provinces += prov.argmax(-1).tolist()
    model.train()
    exact = sum(r == t for r, t in zip(reads, texts, strict=True)) / max(1, len(texts))
    first = sum(r[:1] == t[:1] for r, t in zip(reads, texts, strict=True)) / max(1, len(texts))
    head = sum(PROVINCE_CLASSES[p] == t[0] for p, t in zip(provinces, texts, strict=True)) / max(1, len(texts))
    return {"exact": round(exact, 4), "char1": round(first, 4), "province_head": round(head, 4)}


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
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--resume", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    real_train = load_real()
    real_held = load_real(held_out=True)
    val_rng = random.Random(f"{args.seed}:validation")
    val_synth = [render_sample(val_rng) for _ in range(600)]
    val_real = [plate_line(p.image, p.corners, p.double_row) for p in real_held]

    model = PlateCRNN()
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=args.steps, pct_start=0.1)
    step, best = 0, -1.0
    ckpt = args.out / "last.pt"
    if args.resume and ckpt.exists():
        state = torch.load(ckpt, weights_only=False)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, best = state["step"], state["best"]
        print(f"resumed at step {step}", flush=True)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    ce = nn.CrossEntropyLoss()
    data = torch.utils.data.DataLoader(
        Batches(args.seed, step, args.batch, real_train, args.real_per_batch),
        batch_size=None,
        num_workers=args.workers,
        prefetch_factor=4 if args.workers else None,
    )
    started = time.time()
    log = (args.out / "log.jsonl").open("a", encoding="utf-8")
    model.train()
    for x, targets, lengths, province in data:
        if step >= args.steps:
            break
        logits, prov = model(x)
        log_probs = logits.log_softmax(-1).permute(1, 0, 2)
        input_lengths = torch.full((x.shape[0],), log_probs.shape[0], dtype=torch.long)
        loss = ctc(log_probs, targets, input_lengths, lengths) + args.province_weight * ce(prov, province)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        sched.step()
        step += 1
        if step % 20 == 0:
            print(f"step {step} loss {loss.item():.3f} lr {sched.get_last_lr()[0]:.5f} {time.time() - started:.0f}s", flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            synth = evaluate(model, [v[0] for v in val_synth], [v[1] for v in val_synth])
            real = evaluate(model, val_real, [p.text for p in real_held])
            score = synth["exact"] + real["exact"]
            record = {"step": step, "loss": round(loss.item(), 4), "synth": synth, "held_out_real": real, "elapsed_s": round(time.time() - started)}
            print(json.dumps(record), flush=True)
            log.write(json.dumps(record) + "\n")
            log.flush()
            if score > best:
                best = score
                torch.save({"model": model.state_dict(), "step": step, "record": record}, args.out / "best.pt")
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step, "best": best}, ckpt)
    print("done", flush=True)


if __name__ == "__main__":
    main()
