"""RFC 6962 / RFC 9162 Merkle tree: hashing, proofs, verification, and a file-backed log.

Hashing: ``leaf = SHA-256(0x00 ‖ entry)``, ``node = SHA-256(0x01 ‖ left ‖ right)``, the
empty tree hashes to ``SHA-256("")``; a tree of n leaves splits at the largest power of
two smaller than n.

:class:`MerkleLog` keeps one directory per station::

    log.json        {"format": "zhichao.log/1", "origin": …}
    entries.bin     every entry, as a 4-byte big-endian length and the bytes
    entries.idx     one 8-byte big-endian offset into entries.bin per entry
    leaves.bin      one 32-byte leaf hash per entry (fixed size: leaf i at 32·i)
    nodes-8.bin     hash of every complete, aligned block of 2**8 leaves
    nodes-16.bin    hash of every complete, aligned block of 2**16 leaves
    checkpoints/    signed checkpoints, ``<size>.txt`` (and ``<size>.tsr`` when time-stamped)

Any perfect subtree is read from the cache level just below its size, so a root,
inclusion proof or consistency proof at 10 million entries touches a few kilobytes. The
files are only ever appended to; a single writer is enforced with an exclusive ``flock``.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from zhichao.evidence.errors import LogError

LOG_FORMAT = "zhichao.log/1"
HASH_BYTES = 32
CACHE_LEVELS = (8, 16)
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly smaller than n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold(hashes: list[bytes]) -> bytes:
    """Root of a perfect subtree given its 2**k leaves (or nodes) in order."""
    level = hashes
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def root_from_leaf_hashes(hashes: list[bytes]) -> bytes:
    """RFC 6962 MTH of a list of leaf hashes (in memory; for tests and small trees)."""
    n = len(hashes)
    if n == 0:
        return EMPTY_ROOT
    if n == 1:
        return hashes[0]
    k = _split(n)
    return node_hash(root_from_leaf_hashes(hashes[:k]), root_from_leaf_hashes(hashes[k:]))


# ------------------------------------------------------------------ proof verification


def verify_inclusion(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes
                     ) -> bool:
    """RFC 9162 §2.1.3.2: is ``leaf`` at ``index`` of the tree of ``size`` with ``root``?"""
    if index < 0 or index >= size:
        return False
    fn, sn = index, size - 1
    r = leaf
    for p in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: list[bytes]
                       ) -> bool:
    """RFC 9162 §2.1.4.2: is the tree (size2, root2) an append-only extension of (size1, root1)?"""
    if size1 < 0 or size2 < size1:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    if size1 == 0:
        return not proof
    if not proof and size1 & (size1 - 1):
        return False
    path = list(proof)
    if size1 & (size1 - 1) == 0:  # exact power of two
        path.insert(0, root1)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while not fn & 1 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == root1 and sr == root2


# ------------------------------------------------------------------------ the log


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]


class MerkleLog:
    """Append-only, file-backed RFC 6962 log of one station (see the module docstring).

    Use as a context manager, or call :meth:`close`. ``read_only`` opens without the
    writer lock (verifiers and auditors read while the station appends). ``fsync``
    makes every append durable before it returns (on by default; turn off only for bulk
    tests and benchmarks).

    Raises
    ------
    LogError
        If the directory is not a log, its files disagree in length, or another writer
        holds the lock.
    """

    def __init__(self, directory: Path, *, origin: str | None = None, create: bool = False,
                 fsync: bool = True, read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.read_only = read_only
        self.fsync = fsync
        meta_path = self.directory / "log.json"
        if create and not meta_path.exists():
            if origin is None:
                raise LogError(f"{self.directory}: creating a log needs an origin")
            self.directory.mkdir(parents=True, exist_ok=True)
            (self.directory / "checkpoints").mkdir(exist_ok=True)
            meta_path.write_text(json.dumps({"format": LOG_FORMAT, "origin": origin}) + "\n",
                                 encoding="utf-8")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LogError(f"{self.directory}: not a zhichao log (no log.json)") from None
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise LogError(f"{meta_path}: not valid JSON") from None
        if not isinstance(meta, dict) or meta.get("format") != LOG_FORMAT:
            raise LogError(f"{meta_path}: not a {LOG_FORMAT} log")
        self.origin = str(meta["origin"])
        self._lock: BinaryIO | None = None
        if not read_only:
            self._lock = (self.directory / ".lock").open("a+b")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise LogError(f"{self.directory}: another process holds the log lock") from None
        self._entries = self._open("entries.bin")
        self._index = self._open("entries.idx")
        self._leaves = self._open("leaves.bin")
        self._nodes = {lvl: self._open(f"nodes-{lvl}.bin") for lvl in CACHE_LEVELS}
        self._size = self._check_lengths()

    def _open(self, name: str) -> BinaryIO:
        path = self.directory / name
        if self.read_only:
            try:
                return path.open("rb")
            except FileNotFoundError:
                raise LogError(f"{path}: missing") from None
        if not path.exists():
            path.touch()
        return path.open("r+b")

    @staticmethod
    def _length(handle: BinaryIO) -> int:
        return os.fstat(handle.fileno()).st_size

    def _check_lengths(self) -> int:
        leaves_len = self._length(self._leaves)
        if leaves_len % HASH_BYTES:
            raise LogError(f"{self.directory}/leaves.bin: length {leaves_len} is not a "
                           "multiple of 32 (truncated?)")
        size = leaves_len // HASH_BYTES
        idx_len = self._length(self._index)
        if idx_len != 8 * size:
            raise LogError(f"{self.directory}: entries.idx holds {idx_len // 8} offsets but "
                           f"leaves.bin holds {size} leaf hashes")
        for lvl in CACHE_LEVELS:
            expect = (size >> lvl) * HASH_BYTES
            if self._length(self._nodes[lvl]) != expect:
                raise LogError(f"{self.directory}/nodes-{lvl}.bin: length does not match "
                               f"{size} leaves")
        return size

    # -- context management
    def close(self) -> None:
        for handle in (self._entries, self._index, self._leaves, *self._nodes.values()):
            handle.close()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None

    def __enter__(self) -> MerkleLog:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    # -- reading
    @property
    def size(self) -> int:
        return self._size

    def _read(self, handle: BinaryIO, offset: int, length: int) -> bytes:
        handle.seek(offset)
        data = handle.read(length)
        if len(data) != length:
            raise LogError(f"{self.directory}: short read at offset {offset}")
        return data

    def leaf(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise LogError(f"leaf index {index} outside the log of size {self._size}")
        return self._read(self._leaves, index * HASH_BYTES, HASH_BYTES)

    def entry(self, index: int) -> bytes:
        if not 0 <= index < self._size:
            raise LogError(f"entry index {index} outside the log of size {self._size}")
        (offset,) = (int.from_bytes(self._read(self._index, 8 * index, 8), "big"),)
        length = int.from_bytes(self._read(self._entries, offset, 4), "big")
        return self._read(self._entries, offset + 4, length)

    def _level_hashes(self, level: int, first: int, count: int) -> list[bytes]:
        handle = self._leaves if level == 0 else self._nodes[level]
        data = self._read(handle, first * HASH_BYTES, count * HASH_BYTES)
        return [data[i:i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)]

    def _perfect(self, start: int, size: int) -> bytes:
        """Hash of the perfect subtree of ``size`` (a power of two) leaves at ``start``."""
        level = 0
        for lvl in CACHE_LEVELS:
            if size >= 1 << lvl:
                level = lvl
        return _fold(self._level_hashes(level, start >> level, size >> level))

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            return self._perfect(lo, n)
        k = _split(n)
        return node_hash(self._perfect(lo, k), self._mth(lo + k, hi))

    def root(self, size: int | None = None) -> bytes:
        n = self._size if size is None else size
        if not 0 <= n <= self._size:
            raise LogError(f"tree size {n} outside 0..{self._size}")
        return self._mth(0, n)

    def inclusion_proof(self, index: int, size: int | None = None) -> InclusionProof:
        n = self._size if size is None else size
        if not 0 <= index < n <= self._size:
            raise LogError(f"no inclusion proof for index {index} in a tree of size {n}")
        proof: list[bytes] = []
        lo, hi = 0, n
        while hi - lo > 1:
            k = _split(hi - lo)
            if index - lo < k:
                proof.append(self._mth(lo + k, hi))
                hi = lo + k
            else:
                proof.append(self._mth(lo, lo + k))
                lo = lo + k
        proof.reverse()
        return InclusionProof(index, n, self.leaf(index), tuple(proof))

    def consistency_proof(self, size1: int, size2: int | None = None) -> list[bytes]:
        n = self._size if size2 is None else size2
        if not 0 <= size1 <= n <= self._size:
            raise LogError(f"no consistency proof from {size1} to {n} (log size {self._size})")
        if size1 in (0, n):
            return []
        proof: list[bytes] = []

        def sub(m: int, lo: int, hi: int, whole: bool) -> None:
            size = hi - lo
            if m == size:
                if not whole:
                    proof.append(self._mth(lo, hi))
                return
            k = _split(size)
            if m <= k:
                sub(m, lo, lo + k, whole)
                proof.append(self._mth(lo + k, hi))
            else:
                sub(m - k, lo + k, hi, False)
                proof.append(self._mth(lo, lo + k))

        sub(size1, 0, n, True)
        return proof

    # -- writing
    def append(self, entry: bytes) -> int:
        """Append one entry; returns its index. Durable on return when ``fsync`` is on."""
        if self.read_only:
            raise LogError(f"{self.directory}: opened read-only")
        index = self._size
        self._entries.seek(0, os.SEEK_END)
        offset = self._entries.tell()
        self._entries.write(len(entry).to_bytes(4, "big") + entry)
        self._index.seek(0, os.SEEK_END)
        self._index.write(offset.to_bytes(8, "big"))
        self._leaves.seek(0, os.SEEK_END)
        self._leaves.write(leaf_hash(entry))
        handles = [self._entries, self._index, self._leaves]
        self._size = index + 1
        for lvl in CACHE_LEVELS:
            block = 1 << lvl
            if self._size % block == 0:
                lower = 0 if lvl == CACHE_LEVELS[0] else CACHE_LEVELS[CACHE_LEVELS.index(lvl) - 1]
                self._leaves.flush()
                for h in self._nodes.values():
                    h.flush()
                first = (self._size - block) >> lower
                hashes = self._level_hashes(lower, first, block >> lower)
                self._nodes[lvl].seek(0, os.SEEK_END)
                self._nodes[lvl].write(_fold(hashes))
                handles.append(self._nodes[lvl])
        for h in handles:
            h.flush()
            if self.fsync:
                os.fsync(h.fileno())
        return index

    # -- checkpoints on disk
    def store_checkpoint(self, size: int, note: bytes, timestamp_token: bytes | None = None
                         ) -> Path:
        path = self.directory / "checkpoints" / f"{size}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(note)
        if timestamp_token is not None:
            path.with_suffix(".tsr").write_bytes(timestamp_token)
        return path

    def audit(self) -> list[str]:
        """Recompute every leaf and cached node from the entries; return the problems found."""
        problems: list[str] = []
        for i in range(self._size):
            try:
                data = self.entry(i)
            except LogError as exc:
                problems.append(f"entry {i}: {exc}")
                continue
            if leaf_hash(data) != self.leaf(i):
                problems.append(f"entry {i}: its hash differs from leaf hash {i} in leaves.bin")
        for lvl in CACHE_LEVELS:
            for j in range(self._size >> lvl):
                expect = _fold(self._level_hashes(0, j << lvl, 1 << lvl))
                if self._level_hashes(lvl, j, 1)[0] != expect:
                    problems.append(f"nodes-{lvl}.bin: node {j} is wrong")
        return problems
