"""Constrained CTC decoding: the most probable *valid* plate, not a repaired string.

Input is the recogniser's per-step probabilities restricted to the plate alphabet:
an array (T, 1 + K) whose column 0 is "blank" (plus the separator characters the
model may emit for the dot between the 2nd and 3rd character) and columns 1..K
are :data:`zhichao.vision.grammar.ALPHABET`. A CTC prefix beam search extends a
prefix only with characters some template allows at the next position, and at
the end keeps only prefixes that complete a template. Each candidate's score is
its total CTC probability (the sum over all alignments). Per-character
probabilities come from the best (Viterbi) alignment of the chosen string.

Speed: :func:`decode` and :func:`char_probabilities` run the beam search and the
Viterbi alignment as compiled (numba) kernels; :func:`decode_reference` and
:func:`char_probabilities_reference` are the same algorithms in plain Python/numpy,
kept as the reference the tests compare the kernels against (the same additions in the
same order, so the results are bit-identical).

References
----------
Graves et al., "Connectionist Temporal Classification", ICML 2006 (the CTC
path model); Hannun et al., "First-Pass LVCSR ... with Deep Bidirectional RNNs",
arXiv:1408.2873 (prefix beam search).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from zhichao.vision.grammar import ALPHABET, TEMPLATES, Template
from zhichao.weighing._numba import kernel

FloatArray = npt.NDArray[np.float64]

_COLUMN = {ch: i + 1 for i, ch in enumerate(ALPHABET)}

SHARED_LOOKALIKES: tuple[tuple[str, str], ...] = (("0", "O"),)
"""Pairs of plate characters that look alike and that no template allows at the same
position (GA 36: 0 only in the serial, O only as the issuing letter, 粤O…), so wherever a
decoded text has one, the other's probability on the same steps is the same glyph's. With
``shared_lookalikes``, a character's confidence (:func:`char_probabilities`) counts both,
except where the partner stands next to it in the text (an issuing-letter O followed by a
serial 0: one glyph split over O and 0 steps could count as both); the decoding itself and
the alignment do not change. :func:`exclusive_pairs` checks the condition against the
templates."""


def exclusive_pairs(
    pairs: tuple[tuple[str, str], ...], templates: tuple[Template, ...] = TEMPLATES
) -> bool:
    """True when no position of any template allows both characters of any pair."""
    return all(
        not (a in allowed and b in allowed)
        for a, b in pairs
        for t in templates
        for allowed in t.positions
    )


def _label_values(
    probs: FloatArray, text: str, shared: tuple[tuple[str, str], ...]
) -> FloatArray:
    """(steps, len(text)): each character of ``text``'s probability at each step; for a
    character of a ``shared`` pair, the pair's sum (at most 1) — unless its partner stands
    next to it in ``text``: one round glyph split over O and 0 steps could then count as
    both, the issuing letter and the serial's first character (粤O1234D read as
    粤O01234D), so both keep their own probability."""
    values = np.asarray(probs, dtype=np.float64)[:, [_COLUMN[c] for c in text]].copy()
    partner = {a: b for a, b in shared} | {b: a for a, b in shared}
    for i, ch in enumerate(text):
        other = partner.get(ch)
        if other is None or other in text[max(0, i - 1):i] or other in text[i + 1:i + 2]:
            continue
        both = np.asarray(probs[:, _COLUMN[ch]] + probs[:, _COLUMN[other]], dtype=np.float64)
        values[:, i] = np.minimum(both, 1.0)
    return values


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


def char_probabilities_reference(
    probs: FloatArray, text: str, shared_lookalikes: tuple[tuple[str, str], ...] = ()
) -> tuple[float, ...]:
    """Per-character probability along the best (Viterbi) CTC alignment of ``text``
    (plain numpy: the reference :func:`char_probabilities` is tested against).

    Each character's value is the highest probability it has on the steps the
    alignment assigns to it (with its ``shared_lookalikes`` partner's added there, as
    :func:`char_probabilities` says).
    """
    if not text:
        return ()
    values = _label_values(probs, text, shared_lookalikes)
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
    for i in range(len(labels)):
        steps = np.flatnonzero(path == 2 * i + 1)
        result.append(float(values[steps, i].max()) if steps.size else 0.0)
    return tuple(result)


def decode_reference(
    probs: FloatArray,
    templates: tuple[Template, ...] = TEMPLATES,
    beam_width: int = 12,
    prune_probability: float = 1e-3,
    max_alternatives: int = 5,
    shared_lookalikes: tuple[tuple[str, str], ...] = (),
) -> DecodeResult:
    """Most probable string that matches one of ``templates`` (plain Python: the
    reference :func:`decode` is tested against; the same arguments and result).

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
        char_probabilities=char_probabilities_reference(probs, best.text, shared_lookalikes),
        alternatives=tuple(complete[1 : 1 + max_alternatives]),
        greedy_text=raw,
    )


class _Tables:
    """The templates as arrays for the kernel: ``allowed[template, position, column]`` and
    each template's length."""

    def __init__(self, templates: tuple[Template, ...]) -> None:
        max_len = max((len(t) for t in templates), default=0)
        self.allowed = np.zeros((len(templates), max_len, 1 + len(ALPHABET)), dtype=np.bool_)
        for i, template in enumerate(templates):
            for pos, chars in enumerate(template.positions):
                for ch in chars:
                    self.allowed[i, pos, _COLUMN[ch]] = True
        self.lengths = np.array([len(t) for t in templates], dtype=np.int64)


_TABLES_CACHE: dict[tuple[Template, ...], _Tables] = {}


def _tables_for(templates: tuple[Template, ...]) -> _Tables:
    tables = _TABLES_CACHE.get(templates)
    if tables is None:
        tables = _Tables(templates)
        _TABLES_CACHE[templates] = tables
    return tables


def _checked(probs: FloatArray) -> FloatArray:
    """``probs`` as a C-contiguous float64 (T, 1 + len(ALPHABET)) array of finite values."""
    array = np.ascontiguousarray(probs, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 1 + len(ALPHABET):
        raise ValueError(
            f"CTC probabilities must be (steps, {1 + len(ALPHABET)}), not {array.shape}"
        )
    if not np.isfinite(array).all():
        raise ValueError("CTC probabilities contain NaN or infinity")
    return array


@kernel
def _beam_kernel(
    probs: FloatArray,
    allowed: npt.NDArray[np.bool_],
    lengths: npt.NDArray[np.int64],
    beam_width: int,
    prune_probability: float,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], FloatArray, FloatArray, int]:
    """The prefix beam search of :func:`decode_reference`, on arrays.

    A prefix is a row of column numbers and a length; the templates it still fits are a
    row of flags. Candidates are made, merged and ranked in the reference's order (its
    dict's insertion order, then a stable sort), so every sum is the same.
    """
    n_steps, n_cols = probs.shape
    n_templates, max_len = allowed.shape[0], allowed.shape[1]
    cols = np.zeros((beam_width, max_len + 1), dtype=np.int64)
    lens = np.zeros(beam_width, dtype=np.int64)
    fits = np.zeros((beam_width, n_templates), dtype=np.bool_)
    pb = np.zeros(beam_width)
    pnb = np.zeros(beam_width)
    n_beams = 1
    pb[0] = 1.0
    fits[0, :] = True
    cap = beam_width * n_cols
    c_cols = np.zeros((cap, max_len + 1), dtype=np.int64)
    c_lens = np.zeros(cap, dtype=np.int64)
    c_fits = np.zeros((cap, n_templates), dtype=np.bool_)
    c_pb = np.zeros(cap)
    c_pnb = np.zeros(cap)
    for t in range(n_steps):
        p_blank = probs[t, 0]
        n_c = 0
        for b in range(n_beams):
            total = pb[b] + pnb[b]
            length = lens[b]
            j = _find(c_cols, c_lens, n_c, cols[b], length, 0)
            if j < 0:
                j = n_c
                n_c += 1
                c_cols[j, :] = cols[b, :]
                c_lens[j] = length
                c_fits[j, :] = fits[b, :]
                c_pb[j] = 0.0
                c_pnb[j] = 0.0
            c_pb[j] += total * p_blank
            last_col = cols[b, length - 1] if length > 0 else -1
            if length > 0:
                c_pnb[j] += pnb[b] * probs[t, last_col]
            if length >= max_len:
                continue
            for col in range(1, n_cols):
                if not probs[t, col] > prune_probability:
                    continue
                ok = False
                for k in range(n_templates):
                    if fits[b, k] and length < lengths[k] and allowed[k, length, col]:
                        ok = True
                        break
                if not ok:
                    continue
                p = probs[t, col]
                j = _find(c_cols, c_lens, n_c, cols[b], length, col)
                if j < 0:
                    j = n_c
                    n_c += 1
                    c_cols[j, :] = cols[b, :]
                    c_cols[j, length] = col
                    c_lens[j] = length + 1
                    for k in range(n_templates):
                        c_fits[j, k] = (
                            fits[b, k] and length < lengths[k] and allowed[k, length, col]
                        )
                    c_pb[j] = 0.0
                    c_pnb[j] = 0.0
                c_pnb[j] += (pb[b] if col == last_col else total) * p
        order = np.argsort(-(c_pb[:n_c] + c_pnb[:n_c]), kind="mergesort")
        n_beams = min(beam_width, n_c)
        for b in range(n_beams):
            j = order[b]
            cols[b, :] = c_cols[j, :]
            lens[b] = c_lens[j]
            fits[b, :] = c_fits[j, :]
            pb[b] = c_pb[j]
            pnb[b] = c_pnb[j]
    return cols, lens, pb, pnb, n_beams


@kernel
def _find(
    c_cols: npt.NDArray[np.int64],
    c_lens: npt.NDArray[np.int64],
    n_c: int,
    prefix: npt.NDArray[np.int64],
    length: int,
    extra_col: int,
) -> int:
    """Index of the candidate equal to ``prefix[:length]`` (+ ``extra_col`` if > 0), or -1."""
    wanted = length + 1 if extra_col > 0 else length
    for j in range(n_c):
        if c_lens[j] != wanted:
            continue
        same = True
        for i in range(length):
            if c_cols[j, i] != prefix[i]:
                same = False
                break
        if same and (extra_col == 0 or c_cols[j, length] == extra_col):
            return j
    return -1


@kernel
def _viterbi_kernel(
    logp: FloatArray,
    skip_ok: npt.NDArray[np.bool_],
    probs: FloatArray,
    labels: npt.NDArray[np.int64],
) -> FloatArray:
    """The alignment of :func:`char_probabilities_reference`, step by step and state by
    state (first best on ties, as ``np.argmax``); returns each label's probability."""
    n_steps, n_states = logp.shape
    score = np.full(n_states, -np.inf)
    score[0] = logp[0, 0]
    if n_states > 1:
        score[1] = logp[0, 1]
    new = np.empty(n_states)
    back = np.zeros((n_steps, n_states), dtype=np.int64)
    for t in range(1, n_steps):
        for s in range(n_states):
            best = score[s]
            choice = 0
            step1 = score[s - 1] if s >= 1 else -np.inf
            step2 = score[s - 2] if s >= 2 and skip_ok[s] else -np.inf
            if step1 > best:
                best, choice = step1, 1
            if step2 > best:
                best, choice = step2, 2
            back[t, s] = s - choice
            new[s] = best + logp[t, s]
        score[:] = new
    state = n_states - 1 if score[n_states - 1] >= score[n_states - 2] else n_states - 2
    result = np.zeros(len(labels))
    seen = np.zeros(len(labels), dtype=np.bool_)
    for t in range(n_steps - 1, -1, -1):
        if state % 2 == 1:
            i = state // 2
            value = probs[t, labels[i]]
            if not seen[i] or value > result[i]:
                result[i] = value
                seen[i] = True
        if t > 0:
            state = back[t, state]
    return result


def char_probabilities(
    probs: FloatArray,
    text: str,
    shared_lookalikes: tuple[tuple[str, str], ...] = (),
    templates: tuple[Template, ...] = TEMPLATES,
) -> tuple[float, ...]:
    """Per-character probability along the best (Viterbi) CTC alignment of ``text``.

    Each character's value is the highest probability it has on the steps the
    alignment assigns to it (0 when it has none); with ``shared_lookalikes``
    (:data:`SHARED_LOOKALIKES`: pairs :func:`exclusive_pairs` holds for in ``templates``),
    a character of a pair gets its partner's probability on those steps added (at most
    1), except where its partner stands next to it in ``text`` (one glyph could then count
    twice). The alignment uses ``probs`` as they are. Compiled; the same values as
    :func:`char_probabilities_reference`.

    Raises
    ------
    ValueError
        ``probs`` is malformed (as :func:`decode`), or a pair's characters are not plate
        characters or share a position of one of ``templates``.
    """
    if not text:
        return ()
    probs = _checked(probs)
    _check_shared(shared_lookalikes, templates)
    labels = np.array([_COLUMN[c] for c in text], dtype=np.int64)
    ext = np.zeros(2 * len(labels) + 1, dtype=np.int64)
    ext[1::2] = labels
    logp = np.log(np.maximum(probs[:, ext], 1e-30))
    skip_ok = np.zeros(len(ext), dtype=np.bool_)
    skip_ok[2:] = (ext[2:] != 0) & (ext[2:] != ext[:-2])
    values = _label_values(probs, text, shared_lookalikes)
    result = _viterbi_kernel(logp, skip_ok, values, np.arange(len(text), dtype=np.int64))
    return tuple(float(v) for v in result)


def _check_shared(
    pairs: tuple[tuple[str, str], ...], templates: tuple[Template, ...] = TEMPLATES
) -> None:
    try:
        _check_shared_cached(pairs, templates)
    except TypeError as exc:  # unhashable: not a tuple of pairs
        raise ValueError(f"shared look-alikes {pairs!r}: not a tuple of pairs") from exc


@functools.lru_cache(maxsize=16)
def _check_shared_cached(
    pairs: tuple[tuple[str, str], ...], templates: tuple[Template, ...]
) -> None:
    for pair in pairs:
        if len(pair) != 2 or any(ch not in _COLUMN for ch in pair) or pair[0] == pair[1]:
            raise ValueError(f"shared look-alikes {pair!r}: not two different plate characters")
    if not exclusive_pairs(pairs, templates):
        raise ValueError(f"shared look-alikes {pairs!r}: a template allows both at one position")


def decode(
    probs: FloatArray,
    templates: tuple[Template, ...] = TEMPLATES,
    beam_width: int = 12,
    prune_probability: float = 1e-3,
    max_alternatives: int = 5,
    shared_lookalikes: tuple[tuple[str, str], ...] = (),
) -> DecodeResult:
    """Most probable string that matches one of ``templates``.

    Parameters
    ----------
    probs : array (T, 1 + len(ALPHABET))
        Per-step probabilities; column 0 is blank.
    beam_width : number of prefixes kept per step.
    prune_probability : characters below this probability at a step are not tried there.
    shared_lookalikes : pairs whose probabilities the chosen text's character
        confidences count together (:func:`char_probabilities`); the search ignores it.

    The beam search runs compiled; the result is that of :func:`decode_reference`.

    Raises
    ------
    ValueError
        ``probs`` is not (steps, 1 + len(ALPHABET)) or holds NaN/infinity, or
        ``beam_width`` < 1.
    """
    if beam_width < 1:
        raise ValueError(f"beam_width must be >= 1, not {beam_width}")
    _check_shared(shared_lookalikes, templates)
    probs = _checked(probs)
    tables = _tables_for(templates)
    complete: list[Candidate] = []
    if tables.allowed.shape[1] > 0:
        cols, lens, pb, pnb, n_beams = _beam_kernel(
            probs, tables.allowed, tables.lengths, beam_width, float(prune_probability)
        )
        for b in range(n_beams):
            prefix = "".join(ALPHABET[c - 1] for c in cols[b, : lens[b]])
            kind = _complete_kind(prefix, templates)
            if kind is not None:
                complete.append(Candidate(prefix, kind, float(pb[b] + pnb[b])))
    complete.sort(key=lambda c: c.probability, reverse=True)
    raw = greedy_text(probs)
    if not complete:
        return DecodeResult(None, None, 0.0, (), (), raw)
    best = complete[0]
    return DecodeResult(
        text=best.text,
        kind=best.kind,
        probability=best.probability,
        char_probabilities=char_probabilities(probs, best.text, shared_lookalikes, templates),
        alternatives=tuple(complete[1 : 1 + max_alternatives]),
        greedy_text=raw,
    )


def warm_up() -> None:
    """Compile the kernels now (a few seconds the first time; numba caches them on disk)."""
    probs = np.zeros((4, 1 + len(ALPHABET)))
    probs[:, 0] = 1.0
    decode(probs)
    char_probabilities(probs, ALPHABET[0])


def _complete_kind(text: str, templates: tuple[Template, ...]) -> str | None:
    """The first template ``text`` completes (as ``_TemplateIndex.complete_kind``, unmemoised:
    a station decodes without end, and remembering every plate read would grow)."""
    for template in templates:
        if template.matches(text):
            return template.kind
    return None


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


def first_character_probabilities(probs: FloatArray, firsts: str, rest: str) -> FloatArray:
    """Total CTC probability of ``c + rest`` for each character ``c`` of ``firsts``, all at
    once (the forward algorithm, vectorised over ``firsts``); the same values as
    :func:`label_probability` of each string. Used to weigh each province a plate could
    start with against the rest of PP-OCRv4's read (:func:`zhichao.vision.reader.joint_province`).

    Raises
    ------
    ValueError
        ``probs`` is malformed (as :func:`decode`), or a character is not a plate character.
    """
    probs = _checked(probs)
    unknown = [c for c in firsts + rest if c not in _COLUMN]
    if unknown or not firsts:
        raise ValueError(f"not plate characters (or none to weigh): {unknown!r}")
    ext = np.zeros((len(firsts), 2 * (1 + len(rest)) + 1), dtype=np.int64)
    ext[:, 1] = [_COLUMN[c] for c in firsts]
    ext[:, 3::2] = [_COLUMN[c] for c in rest]
    n_states = ext.shape[1]
    skip_ok = np.zeros(ext.shape, dtype=np.bool_)
    skip_ok[:, 2:] = (ext[:, 2:] != 0) & (ext[:, 2:] != ext[:, :-2])
    emit = probs[:, ext]  # (steps, len(firsts), states)
    alpha = np.zeros((len(firsts), n_states))
    alpha[:, 0] = emit[0, :, 0]
    alpha[:, 1] = emit[0, :, 1]
    for t in range(1, probs.shape[0]):
        shifted = alpha.copy()
        shifted[:, 1:] += alpha[:, :-1]
        shifted[:, 2:] += np.where(skip_ok[:, 2:], alpha[:, :-2], 0.0)
        alpha = shifted * emit[t]
    return np.asarray(alpha[:, -1] + alpha[:, -2], dtype=np.float64)
