"""What opening a Merkle log found at the end of its files (see
:mod:`zhichao.evidence.merkle`, "Torn tails")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Tail:
    """What the log's scan found: the kept size and how each file differs from it."""

    size: int
    lengths: dict[str, int]  # every file's length as found
    targets: dict[str, int]  # its length in the log of ``size`` entries, before recomputing
    recompute: dict[int, bytes]  # cache level -> its missing trailing node
    dropped_entries: int  # 1 when some file holds part of entry ``size``, else 0
    entries_end: int  # end of the last kept entry in entries.bin

    @property
    def torn(self) -> bool:
        return bool(self.recompute) or self.lengths != self.targets

    def describe(self) -> dict[str, Any]:
        return {
            "size_before_files": dict(self.lengths),
            "size_after": self.size,
            "dropped_entries": self.dropped_entries,
            "dropped_bytes": {name: self.lengths[name] - self.targets[name]
                              for name in self.lengths},
            "recomputed_nodes": {f"nodes-{lvl}.bin": 1 for lvl in sorted(self.recompute)},
        }


__all__ = ["Tail"]
