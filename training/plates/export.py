# ruff: noqa: T201  (a training script: it reports on stdout)
"""Export a checkpoint to ONNX (opset 17, input [N, 1, 32, 160]) and check it against PyTorch.

    python3 training/plates/export.py CHECKPOINT zhichao/vision/models/plate_crnn.onnx

Prints the file's SHA-256 (pin it in ``zhichao/vision/runtime.py``) and the largest
difference between onnxruntime's and PyTorch's outputs on rendered plates.
"""

from __future__ import annotations

import hashlib
import random
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from training.plates.model import ExportWrapper, PlateCRNN
from training.plates.render import render_sample
from zhichao.vision.plate_lines import LINE_HEIGHT_PX, LINE_WIDTH_PX, to_tensor


def main() -> None:
    checkpoint, target = Path(sys.argv[1]), Path(sys.argv[2])
    state = torch.load(checkpoint, weights_only=False)
    model = PlateCRNN()
    model.load_state_dict(state["model"])
    model.eval()
    wrapper = ExportWrapper(model).eval()
    dummy = torch.zeros(1, 1, LINE_HEIGHT_PX, LINE_WIDTH_PX)
    torch.onnx.export(
        wrapper,
        (dummy,),
        str(target),
        input_names=["line"],
        output_names=["probs", "province"],
        dynamic_axes={"line": {0: "n"}, "probs": {0: "n"}, "province": {0: "n"}},
        opset_version=17,
        dynamo=False,
    )
    rng = random.Random("export-check")
    lines = [render_sample(rng)[0] for _ in range(16)]
    x = to_tensor(lines)
    with torch.no_grad():
        ref = [t.numpy() for t in wrapper(torch.from_numpy(x))]
    session = ort.InferenceSession(str(target), providers=["CPUExecutionProvider"])
    got = session.run(None, {"line": x})
    diff = max(float(np.abs(a - b).max()) for a, b in zip(ref, got, strict=True))
    digest = hashlib.sha256(target.read_bytes()).hexdigest()
    print(f"step {state.get('step')} record {state.get('record')}")
    print(
        f"{target}: {target.stat().st_size} bytes, sha256 {digest}, max |onnx - torch| {diff:.2e}"
    )


if __name__ == "__main__":
    main()
