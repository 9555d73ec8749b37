# ruff: noqa: T201  (a maintainer script: it reports on stdout)
"""Make the shipped PP-OCRv4 recogniser cheaper to run, without changing what it computes.

The PP-OCRv4 rec graph (paddle2onnx export, opset 12) spells each of its 28 hard-swish
activations as four element-wise nodes and wraps it in two scalar affine steps (PP-LCNetV3's
"learnable affine blocks"): ``conv → ×s₁ → +t₁ → hardswish → ×s₂ → +t₂ → next conv``.
onnxruntime fuses none of that, and on one CPU thread those ~170 small nodes cost about a
fifth of the model's time. This script rewrites the graph into an equivalent one:

1. ``Add(x, 3) → Clip(0, 6) → Mul(x, ·) → Div(·, 6)`` becomes one ``HardSwish(x)`` (ONNX
   opset 14: ``x · max(0, min(1, x/6 + 1/2))``, the same function);
2. a ``Conv`` followed by ``Mul`` by a scalar ``s`` and ``Add`` of a scalar ``t`` becomes the
   ``Conv`` with weights ``W·s`` and bias ``b·s + t``;
3. ``Mul`` by ``s`` and ``Add`` of ``t`` followed by a 1 × 1 ``Conv`` without padding
   becomes that ``Conv`` with weights ``W·s`` and bias ``b + t·ΣW`` (exact: a 1 × 1 conv
   without padding sees no border);
4. the opset goes from 12 to 14 (``HardSwish`` needs it): ``Squeeze`` takes its axes as an
   input instead of an attribute. No other op used here changed meaning between 12 and 14
   (both ``Softmax`` nodes act on the last axis).

The folded weights are computed in float64 and rounded once to float32, so the outputs
differ from the original's by float32 rounding only: the script checks that on every line it
runs (``--check-lines``: random lines and real line images, if given) the largest difference
of any output probability is under ``MAX_ABS_DIFF`` and the best class of every step is
the same. The model metadata (the ``character`` dictionary) is kept.

    pip install onnx==1.23.2                 # training/requirements.txt
    python3 training/vision/fuse_ppocr.py    # writes models/ch_PP-OCRv4_rec_fused.onnx

The input is the pinned original (``RECOGNISER_PPOCRV4``); the output's SHA-256 is pinned in
``zhichao/vision/runtime.py`` (``RECOGNISER_PPOCRV4_FUSED``) and printed here. With onnx
1.23.2 the output is byte-identical to the shipped file.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from zhichao.vision.runtime import (
    RECOGNISER_PPOCRV4,
    RECOGNISER_PPOCRV4_FUSED,
    resolve_model,
    sha256_of,
)

MODIFIED_NOTICE = (
    "Modified by zhichao (training/vision/fuse_ppocr.py) from ch_PP-OCRv4_rec_infer.onnx of "
    "rapidocr-onnxruntime 1.4.4 (PaddleOCR PP-OCRv4, Apache-2.0): hard-swish as single "
    "nodes, scalar affine steps folded into the convolutions, opset 12 -> 14."
)
"""Apache-2.0 §4(b): a modified file carries a notice that it was changed (also in NOTICE)."""
MAX_ABS_DIFF = 1e-5
TARGET_OPSET = 14


class Graph:
    """The graph's nodes with lookups by output and by input, and its scalar constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.graph = model.graph
        self.constants = {n.output[0]: n for n in self.graph.node if n.op_type == "Constant"}
        self.producer = {o: n for n in self.graph.node for o in n.output}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in self.graph.node:
            for name in node.input:
                self.consumers.setdefault(name, []).append(node)

    def constant(self, name: str) -> np.ndarray | None:
        node = self.constants.get(name)
        return None if node is None else numpy_helper.to_array(node.attribute[0].t)

    def set_constant(self, name: str, value: np.ndarray) -> None:
        tensor = numpy_helper.from_array(value.astype(np.float32), name)
        self.constants[name].attribute[0].t.CopyFrom(tensor)

    def scalar(self, name: str) -> float | None:
        value = self.constant(name)
        return float(value.reshape(-1)[0]) if value is not None and value.size == 1 else None

    def scalar_operand(self, node: onnx.NodeProto) -> tuple[str, float] | None:
        """For a binary node with one scalar constant input: (the other input, the scalar)."""
        a, b = node.input
        for const, other in ((a, b), (b, a)):
            value = self.scalar(const)
            if value is not None:
                return other, value
        return None

    def only_consumer(self, name: str) -> onnx.NodeProto | None:
        found = self.consumers.get(name, [])
        return found[0] if len(found) == 1 else None

    def private(self, name: str) -> bool:
        """A constant used by one node only (safe to change in place)."""
        return len(self.consumers.get(name, [])) == 1


def _attribute(node: onnx.NodeProto, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            return helper.get_attribute_value(attribute)
    return default


def fuse(model: onnx.ModelProto) -> tuple[onnx.ModelProto, dict[str, int]]:
    g = Graph(model)
    removed: set[int] = set()
    replaced: dict[int, onnx.NodeProto] = {}
    rename: dict[str, str] = {}
    counts = {"hardswish": 0, "conv_then_affine": 0, "affine_then_pointwise_conv": 0}

    for div in [n for n in g.graph.node if n.op_type == "Div"]:
        if g.scalar(div.input[1]) != 6.0:
            continue
        mul = g.producer.get(div.input[0])
        if mul is None or mul.op_type != "Mul":
            continue
        x, clipped = mul.input
        clip = g.producer.get(clipped)
        if clip is None or clip.op_type != "Clip" or len(clip.input) != 3:
            continue
        if g.scalar(clip.input[1]) != 0.0 or g.scalar(clip.input[2]) != 6.0:
            continue
        add = g.producer.get(clip.input[0])
        if add is None or add.op_type != "Add" or add.input[0] != x or g.scalar(add.input[1]) != 3:
            continue
        if not all(g.only_consumer(n.output[0]) for n in (add, clip, mul)):
            continue
        removed |= {id(add), id(clip), id(mul)}
        name = f"fused_hardswish_{counts['hardswish']}"
        replaced[id(div)] = helper.make_node("HardSwish", [x], [div.output[0]], name=name)
        counts["hardswish"] += 1

    for conv in [n for n in g.graph.node if n.op_type == "Conv" and len(n.input) == 3]:
        weight, bias = conv.input[1], conv.input[2]
        if not (g.private(weight) and g.private(bias)):
            continue
        mul = g.only_consumer(conv.output[0])
        if mul is None or mul.op_type != "Mul":
            continue
        scale = g.scalar_operand(mul)
        add = g.only_consumer(mul.output[0])
        if scale is None or scale[0] != conv.output[0] or add is None or add.op_type != "Add":
            continue
        shift = g.scalar_operand(add)
        if shift is None or shift[0] != mul.output[0]:
            continue
        w = g.constant(weight).astype(np.float64)  # type: ignore[union-attr]
        b = g.constant(bias).astype(np.float64)  # type: ignore[union-attr]
        g.set_constant(weight, w * scale[1])
        g.set_constant(bias, b * scale[1] + shift[1])
        removed |= {id(mul), id(add)}
        rename[add.output[0]] = conv.output[0]
        counts["conv_then_affine"] += 1

    for conv in [n for n in g.graph.node if n.op_type == "Conv" and len(n.input) == 3]:
        if _attribute(conv, "kernel_shape") != [1, 1] or _attribute(conv, "group", 1) != 1:
            continue
        if any(_attribute(conv, "pads", [0, 0, 0, 0])):
            continue
        weight, bias = conv.input[1], conv.input[2]
        if not (g.private(weight) and g.private(bias)):
            continue
        add = g.producer.get(conv.input[0])
        if add is None or add.op_type != "Add" or id(add) in removed:
            continue
        shift = g.scalar_operand(add)
        consumer = g.only_consumer(add.output[0])
        if shift is None or consumer is None or consumer.output[0] != conv.output[0]:
            continue
        mul = g.producer.get(shift[0])
        if mul is None or mul.op_type != "Mul" or id(mul) in removed:
            continue
        scale = g.scalar_operand(mul)
        consumer = g.only_consumer(mul.output[0])
        if scale is None or consumer is None or consumer.output[0] != add.output[0]:
            continue
        w = g.constant(weight).astype(np.float64)  # type: ignore[union-attr]
        b = g.constant(bias).astype(np.float64)  # type: ignore[union-attr]
        g.set_constant(bias, b + shift[1] * w.sum(axis=(1, 2, 3)))
        g.set_constant(weight, w * scale[1])
        removed |= {id(mul), id(add)}
        rename[add.output[0]] = scale[0]
        counts["affine_then_pointwise_conv"] += 1

    nodes = [replaced.get(id(n), n) for n in g.graph.node if id(n) not in removed]
    for node in nodes:
        for i, name in enumerate(node.input):
            while name in rename:
                name = rename[name]
            node.input[i] = name
        if node.op_type in ("Squeeze", "Unsqueeze"):
            axes = [a for a in node.attribute if a.name == "axes"]
            if axes:
                values = np.array(list(axes[0].ints), dtype=np.int64)
                node.attribute.remove(axes[0])
                axes_name = f"{node.output[0]}__axes"
                g.graph.initializer.append(numpy_helper.from_array(values, axes_name))
                node.input.append(axes_name)
    del g.graph.node[:]
    g.graph.node.extend(nodes)
    used = {name for node in nodes for name in node.input}
    unused = [n for n in g.graph.node if n.op_type == "Constant" and n.output[0] not in used]
    for node in unused:
        g.graph.node.remove(node)
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            opset.version = TARGET_OPSET
    model.doc_string = MODIFIED_NOTICE
    onnx.checker.check_model(model)
    return model, counts


def compare(original: Path, fused: Path, lines: list[np.ndarray]) -> float:
    """Largest output difference over ``lines`` (N, 3, 48, W float32); raises if any step's
    best class differs or the difference exceeds MAX_ABS_DIFF."""
    import onnxruntime as ort

    def session(path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    a, b = session(original), session(fused)
    worst = 0.0
    for line in lines:
        (pa,) = a.run(None, {"x": line})
        (pb,) = b.run(None, {"x": line})
        worst = max(worst, float(np.abs(pa - pb).max()))
        if not np.array_equal(pa.argmax(axis=-1), pb.argmax(axis=-1)):
            raise SystemExit(f"best class differs on a line of shape {line.shape}")
    if worst > MAX_ABS_DIFF:
        raise SystemExit(f"outputs differ by {worst:.3g} > {MAX_ABS_DIFF}")
    return worst


def time_both(original: Path, fused: Path, rounds: int = 5, runs: int = 30) -> tuple[float, float]:
    """Median ms per 48 × 200 line on one thread, the two sessions alternating by rounds."""
    import statistics
    import time

    import onnxruntime as ort

    def session(path: Path) -> Any:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    line = np.random.default_rng(0).uniform(-1, 1, size=(1, 3, 48, 200)).astype(np.float32)
    sessions = (session(original), session(fused))
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(rounds):
        for s, out in zip(sessions, times, strict=True):
            for _ in range(3):
                s.run(None, {"x": line})
            for _ in range(runs):
                start = time.perf_counter()
                s.run(None, {"x": line})
                out.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=RECOGNISER_PPOCRV4_FUSED.packaged_path())
    parser.add_argument("--check-lines", type=int, default=20, help="random lines to compare")
    args = parser.parse_args()
    source, _ = resolve_model(RECOGNISER_PPOCRV4)
    model, counts = fuse(onnx.load(str(source)))
    onnx.save(model, str(args.out))
    rng = np.random.default_rng(36)
    lines = [
        rng.uniform(-1, 1, size=(1, 3, 48, width)).astype(np.float32)
        for width in rng.choice([64, 112, 160, 200, 240, 320], size=args.check_lines)
    ]
    worst = compare(source, args.out, lines)
    digest = sha256_of(args.out)
    before_ms, after_ms = time_both(source, args.out)
    print(f"rewrites: {counts}")
    print(f"one 48 x 200 line, one thread, median: {before_ms:.2f} ms -> {after_ms:.2f} ms")
    print(f"largest output difference on {len(lines)} random lines: {worst:.3g}")
    print(f"{args.out}: {args.out.stat().st_size} bytes, SHA-256 {digest}")
    if digest != RECOGNISER_PPOCRV4_FUSED.sha256:
        print(f"differs from the pinned {RECOGNISER_PPOCRV4_FUSED.sha256}: update runtime.py")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
