"""Constrained CTC decoding: the most probable *valid* plate, not a repaired string.

Input is the recogniser's per-step probabilities restricted to the plate alphabet:
an array (T, 1 + K) whose column 0 is "blank" (plus the separator characters the
model may emit for the dot between the 2nd and 3rd character) and columns 1..K
are :data:`zhichao.vision.grammar.ALPHABET`. A CTC prefix beam search extends a
prefix only with characters some template allows at the next position, and at
the end keeps only prefixes that complete a template. Each candidate's score is
its total CTC probability (the sum over all alignments). Per-character
probabilities come from the best (Viterbi) alignment of the chosen string.

References
----------
Graves et al., "Connectionist Temporal Classification", ICML 2006 (the CTC
path model); Hannun et al., "First-Pass LVCSR ... with Deep Bidirectional RNNs",
arXiv:1408.2873 (prefix beam search).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from zhichao.vision.grammar import ALPHABET, TEMPLATES, Template

FloatArray = npt.NDArray[np.float64]

_COLUMN = {ch: i + 1 for i, ch in enumerate(ALPHABET)}


@dataclass(frozen=True, slots=True)
class Candidate:
    """A valid plate string and its total CTC probability."""

    text: str
    kind: str
    probability: float


@dataclass(frozen=True, slots=True)
class DecodeResult:
    """Best valid read and its runners-up; ``text`` is None when no template fits."""

    text: str | None
    kind: str | None
    probability: float
    char_probabilities: tuple[float, ...]
    alternatives: tuple[Candidate, ...]
    greedy_text: str
    """Unconstrained best-path read over the plate alphabet, for diagnostics only."""


class _TemplateIndex:
    """Which templates a prefix still fits, and which characters may come next (memoised)."""

    def __init__(self, templates: tuple[Template, ...]) -> None:
        self.templates = templates
        self._fits: dict[str, tuple[int, ...]] = {"": tuple(range(len(templates)))}
        self._next: dict[str, tuple[int, ...]] = {}

    def fits(self, prefix: str) -> tuple[int, ...]:
        found = self._fits.get(prefix)
        if found is None:
            parent = self.fits(prefix[:-1])
            pos, ch = len(prefix) - 1, prefix[-1]
            found = tuple(
                i
                for i in parent
                if pos < len(self.templates[i]) and ch in self.templates[i].positions[pos]
            )
            self._fits[prefix] = found
        return found

    def next_columns(self, prefix: str) -> tuple[int, ...]:
        found = self._next.get(prefix)
        if found is None:
            pos = len(prefix)
            chars: set[str] = set()
            for i in self.fits(prefix):
                if pos < len(self.templates[i]):
                    chars |= self.templates[i].positions[pos]
            found = tuple(sorted(_COLUMN[c] for c in chars))
            self._next[prefix] = found
        return found

    def complete_kind(self, prefix: str) -> str | None:
        for i in self.fits(prefix):
            if len(self.templates[i]) == len(prefix):
                return self.templates[i].kind
        return None


_INDEX_CACHE: dict[tuple[Template, ...], _TemplateIndex] = {}


def _index_for(templates: tuple[Template, ...]) -> _TemplateIndex:
    index = _INDEX_CACHE.get(templates)
    if index is None:
        index = _TemplateIndex(templates)
        _INDEX_CACHE[templates] = index
    return index


def greedy_text(probs: FloatArray) -> str:
    """Unconstrained best-path decode over the plate alphabet (collapse repeats, drop blanks)."""
    best = np.argmax(probs, axis=1)
    out: list[str] = []
    previous = 0
    for col in best:
        if col != previous and col != 0:
            out.append(ALPHABET[int(col) - 1])
        previous = int(col)
    return "".join(out)


def char_probabilities(probs: FloatArray, text: str) -> tuple[float, ...]:
    """Per-character probability along the best (Viterbi) CTC alignment of ``text``.

    Each character's value is the highest probability it has on the steps the
    alignment assigns to it.
    """
    if not text:
        return ()
    labels = [_COLUMN[c] for c in text]
    ext = [0]
    for col in labels:
        ext += [col, 0]
    n_states, n_steps = len(ext), probs.shape[0]
    ext_arr = np.array(ext)
    logp = np.log(np.maximum(probs[:, ext_arr], 1e-30))
    skip_ok = np.zeros(n_states, dtype=bool)
    for s in range(2, n_states):
        skip_ok[s] = ext[s] != 0 and ext[s] != ext[s - 2]
    score = np.full(n_states, -np.inf)
    score[0] = logp[0, 0]
    if n_states > 1:
        score[1] = logp[0, 1]
    back = np.zeros((n_steps, n_states), dtype=np.int64)
    states = np.arange(n_states)
    for t in range(1, n_steps):
        stay = score
        step1 = np.concatenate([[-np.inf], score[:-1]])
        step2 = np.where(skip_ok, np.concatenate([[-np.inf, -np.inf], score[:-2]]), -np.inf)
        choice = np.argmax(np.stack([stay, step1, step2]), axis=0)
        best = np.maximum(np.maximum(stay, step1), step2)
        back[t] = states - choice
        score = best + logp[t]
    end = n_states - 1 if score[-1] >= score[-2] else n_states - 2
    path = np.empty(n_steps, dtype=np.int64)
    path[-1] = end
    for t in range(n_steps - 1, 0, -1):
        path[t - 1] = back[t, path[t]]
    result = []
    for i, col in enumerate(labels):
        steps = np.flatnonzero(path == 2 * i + 1)
        result.append(float(probs[steps, col].max()) if steps.size else 0.0)
    return tuple(result)


def decode(
    probs: FloatArray,
    templates: tuple[Template, ...] = TEMPLATES,
    beam_width: int = 12,
    prune_probability: float = 1e-3,
    max_alternatives: int = 5,
) -> DecodeResult:
    """Most probable string that matches one of ``templates``.

    Parameters
    ----------
    probs : array (T, 1 + len(ALPHABET))
        Per-step probabilities; column 0 is blank.
    beam_width : number of prefixes kept per step.
    prune_probability : characters below this probability at a step are not tried there.
    """
    index = _index_for(templates)
    n_steps = probs.shape[0]
    beams: dict[str, tuple[float, float]] = {"": (1.0, 0.0)}  # prefix -> (p_blank, p_nonblank)
    for t in range(n_steps):
        row = probs[t]
        p_blank = float(row[0])
        likely = set((np.flatnonzero(row[1:] > prune_probability) + 1).tolist())
        nxt: dict[str, list[float]] = {}
        for prefix, (pb, pnb) in beams.items():
            total = pb + pnb
            entry = nxt.setdefault(prefix, [0.0, 0.0])
            entry[0] += total * p_blank
            last_col = _COLUMN[prefix[-1]] if prefix else -1
            if prefix:
                entry[1] += pnb * float(row[last_col])
            for col in index.next_columns(prefix):
                if col not in likely:
                    continue
                p = float(row[col])
                extended = prefix + ALPHABET[col - 1]
                e = nxt.setdefault(extended, [0.0, 0.0])
                e[1] += (pb if col == last_col else total) * p
        ranked = sorted(nxt.items(), key=lambda kv: kv[1][0] + kv[1][1], reverse=True)
        beams = {k: (v[0], v[1]) for k, v in ranked[:beam_width]}
    complete: list[Candidate] = []
    for prefix, (pb, pnb) in beams.items():
        kind = index.complete_kind(prefix)
        if kind is not None:
            complete.append(Candidate(prefix, kind, pb + pnb))
    complete.sort(key=lambda c: c.probability, reverse=True)
    raw = greedy_text(probs)
    if not complete:
        return DecodeResult(None, None, 0.0, (), (), raw)
    best = complete[0]
    return DecodeResult(
        text=best.text,
        kind=best.kind,
        probability=best.probability,
        char_probabilities=char_probabilities(probs, best.text),
        alternatives=tuple(complete[1 : 1 + max_alternatives]),
        greedy_text=raw,
    )


def label_probability(probs: FloatArray, text: str) -> float:
    """Total CTC probability of ``text`` (sum over all its alignments; forward algorithm)."""
    if not text:
        return float(np.prod(probs[:, 0]))
    ext = [0]
    for ch in text:
        ext += [_COLUMN[ch], 0]
    ext_arr = np.array(ext)
    n_states = len(ext)
    skip_ok = np.zeros(n_states, dtype=bool)
    for s in range(2, n_states):
        skip_ok[s] = ext[s] != 0 and ext[s] != ext[s - 2]
    emit = probs[:, ext_arr]
    alpha = np.zeros(n_states)
    alpha[0] = emit[0, 0]
    alpha[1] = emit[0, 1]
    for t in range(1, probs.shape[0]):
        shifted1 = np.concatenate([[0.0], alpha[:-1]])
        shifted2 = np.where(skip_ok, np.concatenate([[0.0, 0.0], alpha[:-2]]), 0.0)
        alpha = (alpha + shifted1 + shifted2) * emit[t]
    return float(alpha[-1] + alpha[-2])
