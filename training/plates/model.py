"""The plate recogniser: a small CRNN with a CTC head and a province head.

Input [N, 1, 32, 160] grey, scaled to [-1, 1] (see ``zhichao/vision/plate_lines.py``).
Convolutions reduce it to 40 steps of 128 features; two 1-D convolutions (the second
dilated) give each step its neighbours' context; outputs:

- ``probs`` [N, 40, 1 + len(ALPHABET)]: softmax over CTC blank + the plate alphabet, in
  the order of :data:`zhichao.vision.grammar.ALPHABET` (what ``ctc.decode`` expects);
- ``province`` [N, len(PROVINCE_CLASSES)]: softmax over the province characters and 使,
  from the mean of the first third of the steps (where the first character lies on both
  layouts): a second, position-specific opinion on character 1.
"""

from __future__ import annotations

import torch
from torch import nn

from zhichao.vision.grammar import ALPHABET, PROVINCES

PROVINCE_CLASSES = PROVINCES + "使"
NUM_CLASSES = 1 + len(ALPHABET)


def _block(c_in: int, c_out: int) -> list[nn.Module]:
    return [
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    ]


class PlateCRNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            *_block(1, 16),
            nn.MaxPool2d(2),  # 16 x 80
            *_block(16, 32),
            nn.MaxPool2d(2),  # 8 x 40
            *_block(32, 64),
            *_block(64, 64),
            nn.MaxPool2d((2, 1)),  # 4 x 40
            *_block(64, 96),
            nn.Conv2d(96, 128, (4, 1), bias=False),  # 1 x 40
            nn.BatchNorm2d(128),
            nn.ReLU(inplace=True),
        )
        self.context = nn.Sequential(
            nn.Conv1d(128, 160, 3, padding=1, bias=False),
            nn.BatchNorm1d(160),
            nn.ReLU(inplace=True),
            nn.Conv1d(160, 160, 3, padding=2, dilation=2, bias=False),
            nn.BatchNorm1d(160),
            nn.ReLU(inplace=True),
        )
        self.dropout = nn.Dropout(0.1)
        self.ctc_head = nn.Linear(160, NUM_CLASSES)
        self.province_head = nn.Linear(160, len(PROVINCE_CLASSES))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits: CTC [N, T, C] and province [N, P]."""
        f = self.features(x).squeeze(2)  # N, 128, T
        seq = self.dropout(self.context(f).permute(0, 2, 1))  # N, T, 160
        steps = seq.shape[1]
        province = self.province_head(seq[:, : steps // 3].mean(dim=1))
        return self.ctc_head(seq), province


class ExportWrapper(nn.Module):
    """Softmax outputs for ONNX."""

    def __init__(self, model: PlateCRNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits, province = self.model(x)
        return torch.softmax(logits, dim=-1), torch.softmax(province, dim=-1)
