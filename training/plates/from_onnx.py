# ruff: noqa: T201  (a training script: it reports on stdout)
"""Load a shipped plate-model ONNX file back into :class:`PlateCRNN`, to fine-tune it.

The checkpoints of the runs behind the shipped model were not kept (``runs/`` is not in
git), but the ONNX file holds every weight: the exporter folded each batch norm into
the convolution before it (weight and bias). So each convolution gets the folded weight,
and its batch norm becomes the identity plus the folded bias (weight 1, running mean 0,
running variance 1 − eps). A model loaded so must keep its batch norms in eval mode while
it is fine-tuned (``train.py --init-onnx`` does), so they stay that identity.

    python3 training/plates/from_onnx.py zhichao/vision/models/plate_crnn.onnx OUT.pt

writes a checkpoint ``train.py --init`` takes (marked ``frozen_norms``, so its batch
norms stay frozen there too), after checking that PyTorch and onnxruntime give the same
outputs on rendered lines. ``train.py --init-onnx FILE`` does both in one step.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from onnx import numpy_helper
from torch import nn

from training.plates.model import ExportWrapper, PlateCRNN
from training.plates.render import render_sample
from zhichao.vision.plate_lines import to_tensor


def _conv_bn_pairs(model: PlateCRNN) -> list[tuple[nn.Module, nn.Module]]:
    """(convolution, its batch norm) in graph order."""
    modules = list(model.features) + list(model.context)
    pairs = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            norm = modules[i + 1]
            if not isinstance(norm, nn.BatchNorm1d | nn.BatchNorm2d):
                raise ValueError(f"convolution {i} is not followed by a batch norm")
            pairs.append((module, norm))
    return pairs


def load_onnx_weights(model: PlateCRNN, path: Path) -> None:
    """Set ``model``'s weights from the exported file at ``path`` (batch norms folded)."""
    graph = onnx.load(str(path)).graph
    weights = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    pairs = _conv_bn_pairs(model)
    if len(convs) != len(pairs):
        raise ValueError(f"{path}: {len(convs)} convolutions, the model has {len(pairs)}")
    with torch.no_grad():
        for node, (conv, norm) in zip(convs, pairs, strict=True):
            w, b = weights[node.input[1]], weights[node.input[2]]
            if tuple(w.shape) != tuple(conv.weight.shape):
                raise ValueError(f"{node.input[1]}: shape {w.shape} != {tuple(conv.weight.shape)}")
            conv.weight.copy_(torch.from_numpy(w))
            norm.weight.fill_(1.0)
            norm.bias.copy_(torch.from_numpy(b))
            norm.running_mean.zero_()
            norm.running_var.fill_(1.0 - norm.eps)
        matmul = next(n for n in graph.node if n.op_type == "MatMul")
        model.ctc_head.weight.copy_(torch.from_numpy(weights[matmul.input[1]].T.copy()))
        model.ctc_head.bias.copy_(torch.from_numpy(weights["model.ctc_head.bias"]))
        model.province_head.weight.copy_(torch.from_numpy(weights["model.province_head.weight"]))
        model.province_head.bias.copy_(torch.from_numpy(weights["model.province_head.bias"]))


def max_difference(model: PlateCRNN, path: Path, n: int = 16) -> float:
    """Largest |onnxruntime − PyTorch| over both outputs on ``n`` rendered lines."""
    rng = random.Random("from-onnx-check")
    x = to_tensor([render_sample(rng)[0] for _ in range(n)])
    wrapper = ExportWrapper(model).eval()
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(torch.from_numpy(x))]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"line": x})
    return max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))


def main() -> None:
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    model = PlateCRNN()
    load_onnx_weights(model, source)
    diff = max_difference(model, source)
    if diff > 1e-4:
        raise SystemExit(f"{source}: PyTorch and onnxruntime differ by {diff:.2e}")
    torch.save(
        {
            "model": model.state_dict(),
            "step": 0,
            "record": {"from": str(source)},
            "frozen_norms": True,
        },
        target,
    )
    print(f"{target}: from {source}, max |onnx - torch| {diff:.2e}")


if __name__ == "__main__":
    main()
