"""Fault injection between a simulated twin and its driver.

A :class:`FaultInjector` decides, for each frame a twin is about to send, which faults to
apply — from an explicit schedule (``{frame_number: [Fault, …]}``, deterministic tests)
and/or from per-frame probabilities with a seeded generator (soak tests). Twins apply
them at the transport level, never by patching the driver:

``corrupt``     flip ``param`` random bytes of the frame (the frame is lost)
``garbage``     send ``param`` random bytes before the frame (nothing lost)
``oversize``    send a fake header announcing a huge frame before the frame (nothing lost)
``split``       send the frame in ``param`` pieces with short pauses (nothing lost)
``merge``       hold the frame and send it together with the next one (nothing lost)
``drop``        do not send the frame (lost)
``disconnect``  close the link; ``param`` frames are produced and lost while it is down
``reboot``      power-cycle the device: boot id +1, counters reset, ``param`` frames lost
``clock_jump``  step the device clock by ``param`` seconds (nothing lost)
``stall``       stop sending for ``param`` seconds, then send what was buffered (nothing lost)
``bad_values``  put a NaN in the frame (a well-formed frame with absurd content)
"""

from __future__ import annotations

import itertools
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

FAULT_KINDS: tuple[str, ...] = (
    "corrupt", "garbage", "oversize", "split", "merge", "drop", "disconnect", "reboot",
    "clock_jump", "stall", "bad_values",
)
#: faults after which the frame's samples never reach the driver intact
LOSSY_KINDS: frozenset[str] = frozenset({"corrupt", "drop", "bad_values"})


@dataclass(frozen=True)
class Fault:
    """One fault; ``param`` as described in the module docstring."""

    kind: str
    param: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS)}")


_DEFAULT_PARAMS: dict[str, float] = {
    "corrupt": 3, "garbage": 37, "oversize": 1, "split": 3, "merge": 1, "drop": 1,
    "disconnect": 3, "reboot": 5, "clock_jump": 30.0, "stall": 0.2, "bad_values": 1,
}


@dataclass
class FaultInjector:
    """Chooses faults per frame.

    Parameters
    ----------
    schedule : faults to apply at given frame numbers (0-based, counted by the twin).
    rates : per-frame probability of each fault kind (random mode).
    seed : seed of the generator used for rates and for byte-level choices.
    params : parameter used for faults drawn at random, per kind.
    """

    schedule: Mapping[int, Sequence[Fault]] = field(default_factory=dict)
    rates: Mapping[str, float] = field(default_factory=dict)
    seed: int = 0
    params: Mapping[str, float] = field(default_factory=dict)
    injected: Counter[str] = field(default_factory=Counter, init=False)

    def __post_init__(self) -> None:
        for kind in self.rates:
            if kind not in FAULT_KINDS:
                raise ValueError(f"unknown fault {kind!r}")
        self.rng = random.Random(self.seed)

    def faults_for(self, frame_number: int) -> list[Fault]:
        faults = list(self.schedule.get(frame_number, ()))
        for kind, rate in self.rates.items():
            if rate > 0 and self.rng.random() < rate:
                faults.append(Fault(kind, self.params.get(kind, _DEFAULT_PARAMS[kind])))
        for f in faults:
            self.injected[f.kind] += 1
        return faults

    # -- byte-level helpers (used by twins) ----------------------------------------------
    def corrupt(self, data: bytes, n_bytes: int) -> bytes:
        """Flip ``n_bytes`` bytes, never the sync word (so the damage is inside the frame)."""
        buf = bytearray(data)
        for _ in range(max(1, n_bytes)):
            i = self.rng.randrange(2, len(buf)) if len(buf) > 2 else 0
            buf[i] ^= self.rng.randrange(1, 256)
        return bytes(buf)

    def garbage(self, n_bytes: int) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(max(1, n_bytes)))

    def split(self, data: bytes, n_parts: int) -> list[bytes]:
        n_parts = max(2, min(n_parts, len(data)))
        cuts = sorted(self.rng.sample(range(1, len(data)), n_parts - 1))
        bounds = [0, *cuts, len(data)]
        return [data[a:b] for a, b in itertools.pairwise(bounds)]
