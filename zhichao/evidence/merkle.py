"""RFC 6962 / RFC 9162 Merkle tree: a file-backed log (hashing and proof verification
are in :mod:`zhichao.evidence.merkle_proofs`, re-exported here).

:class:`MerkleLog` keeps one directory per station::

    log.json        {"format": "zhichao.log/1", "origin": …}
    entries.bin     every entry, as a 4-byte big-endian length and the bytes
    entries.idx     one 8-byte big-endian offset into entries.bin per entry
    leaves.bin      one 32-byte leaf hash per entry (fixed size: leaf i at 32·i)
    nodes-8.bin     hash of every complete, aligned block of 2**8 leaves
    nodes-16.bin    hash of every complete, aligned block of 2**16 leaves
    checkpoints/    signed checkpoints, ``<size>.txt`` (and ``<size>.tsr`` when time-stamped)
    repairs.jsonl   one JSON line per torn tail repaired on open (absent if never)

Any perfect subtree is read from the cache level just below its size, so a root,
inclusion proof or consistency proof at 10 million entries touches a few kilobytes. The
files are only ever appended to; a single writer is enforced with an exclusive ``flock``.

Torn tails. :meth:`MerkleLog.append` writes and flushes (and, with ``fsync``, syncs) the
files strictly in the order entries.bin, entries.idx, leaves.bin, nodes-8.bin,
nodes-16.bin, so a kill (SIGKILL, power loss with ``fsync``) in the middle of an append
leaves a *torn tail*: every file holds the log of n entries, and some hold part or all of
entry n as well, a file only ever holding it when every file written before it holds it
completely (writers before this rule flushed leaves.bin and nodes-8.bin first when entry
n completed a block of 2**8; that order is accepted too). On open the log takes the
largest size n whose last entry is whole in every file (offset contiguous with the entry
before, entry bytes complete, leaf hash = hash of the entry) and whose cached nodes are
present, recomputing only a missing trailing node from the level below when the append
that completed its block stopped before writing it. Anything more than one torn entry,
or bytes a torn append cannot have written (a wrong offset, a wrong leaf, a node without
its leaves), is not a torn tail and raises :class:`LogError`: a damaged or tampered log
is never "repaired".

* A writer open repairs the tail: it first appends a record to ``repairs.jsonl``
  (``repaired_utc``, ``size_before_files``, ``size_after``, ``dropped_entries``,
  ``dropped_bytes``, ``recomputed_nodes``, ``checkpoints_beyond``, ``reason``) and syncs
  it, then truncates every file to the log of n entries (the files written last first)
  and appends the recomputed nodes, and syncs the files and the folder; a kill during the
  repair leaves a torn tail that the next open repairs to the same n. The record is
  :attr:`MerkleLog.repair`. Before it accepts the tail, a writer also re-hashes the last
  2**8 entries and re-folds the last cached node of each level.
* A read-only open changes nothing: it uses the same n (a missing trailing node is
  recomputed in memory) and describes the tail in :attr:`MerkleLog.torn_tail`.

A checkpoint is stored only after a complete append, so none can be beyond n; one that is
(``checkpoints/<size>.txt`` with size > n) is kept and named in the repair record.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

from zhichao.common import format_utc, fsync_dir, write_atomic
from zhichao.evidence.errors import LogError
from zhichao.evidence.merkle_proofs import (
    EMPTY_ROOT,
    HASH_BYTES,
    InclusionProof,
    fold_hashes,
    leaf_hash,
    node_hash,
    root_from_leaf_hashes,
    split_size,
    verify_consistency,
    verify_inclusion,
)
from zhichao.evidence.merkle_tail import Tail

LOG_FORMAT = "zhichao.log/1"
CACHE_LEVELS = (8, 16)

REPAIR_REASON = "torn tail after an interrupted append"
_NOT_TORN = "not a torn tail of an interrupted append: the log is damaged or tampered"


class MerkleLog:
    """Append-only, file-backed RFC 6962 log of one station (see the module docstring).

    Use as a context manager, or call :meth:`close`. ``read_only`` opens without the
    writer lock (verifiers and auditors read while the station appends). ``fsync``
    makes every append durable before it returns (on by default; turn off only for bulk
    tests and benchmarks).

    A torn tail left by a kill in the middle of an append is repaired by a writer open
    and recorded in ``repairs.jsonl``; :attr:`repair` is that record (``None`` when the
    open repaired nothing, and always for ``read_only``). :attr:`torn_tail` describes the
    torn tail found on open (``size_before_files``, ``size_after``, ``dropped_entries``,
    ``dropped_bytes``, ``recomputed_nodes``), or is ``None``: a read-only open leaves it
    in place and reads the log of ``size_after`` entries.

    Raises
    ------
    LogError
        If the directory is not a log, its files disagree in a way an interrupted append
        cannot explain (damage or tampering), or another writer holds the lock.
    """

    def __init__(self, directory: Path, *, origin: str | None = None, create: bool = False,
                 fsync: bool = True, read_only: bool = False) -> None:
        self.directory = Path(directory)
        self.read_only = read_only
        self.fsync = fsync
        self.repair: dict[str, Any] | None = None
        self.torn_tail: dict[str, Any] | None = None
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
        self._handles: list[BinaryIO] = []
        self._virtual: dict[int, tuple[int, bytes]] = {}  # level -> (index, node) in memory
        self._broken = False
        self._size = 0
        if not read_only:
            self._lock = (self.directory / ".lock").open("a+b")
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                self._lock.close()
                raise LogError(f"{self.directory}: another process holds the log lock") from None
        try:
            self._entries = self._open("entries.bin")
            self._index = self._open("entries.idx")
            self._leaves = self._open("leaves.bin")
            self._nodes = {lvl: self._open(f"nodes-{lvl}.bin") for lvl in CACHE_LEVELS}
            tail = self._scan_read_only() if read_only else self._scan()
            self._size = tail.size
            if tail.torn:
                self.torn_tail = tail.describe()
            if not read_only:
                self._check_window(tail)
                if tail.torn:
                    self.repair = self._repair(tail)
                for tmp in (self.directory / "checkpoints").glob(".*.tmp"):
                    tmp.unlink()  # a checkpoint whose store was interrupted
        except BaseException:
            self.close()
            raise

    def _open(self, name: str) -> BinaryIO:
        path = self.directory / name
        handle: BinaryIO
        if self.read_only:
            try:
                handle = path.open("rb")
            except FileNotFoundError:
                raise LogError(f"{path}: missing") from None
        else:
            if not path.exists():
                path.touch()
            handle = path.open("r+b")
        self._handles.append(handle)
        return handle

    @staticmethod
    def _length(handle: BinaryIO) -> int:
        return os.fstat(handle.fileno()).st_size

    def _files(self) -> list[tuple[str, BinaryIO]]:
        """Every data file, in the order :meth:`append` writes them."""
        return [("entries.bin", self._entries), ("entries.idx", self._index),
                ("leaves.bin", self._leaves),
                *((f"nodes-{lvl}.bin", self._nodes[lvl]) for lvl in CACHE_LEVELS)]

    # -- the torn tail (see the module docstring)
    def _offset(self, index: int) -> int:
        return int.from_bytes(self._read(self._index, 8 * index, 8), "big")

    def _scan_read_only(self) -> Tail:
        """:meth:`_scan` for a reader; an append racing the reads can look like damage."""
        for delay in (0.005, 0.02, 0.1):
            try:
                return self._scan()
            except LogError:
                time.sleep(delay)
        return self._scan()

    def _scan(self) -> Tail:
        """Find the size of the log on disk and check the rest is at most a torn entry."""
        where = self.directory
        self._virtual = {}
        # read the lengths in the reverse of the order append writes the files, so that a
        # reader racing the writer never sees a file shorter than one read before it
        lengths = {name: self._length(h) for name, h in reversed(self._files())}
        lengths = {name: lengths[name] for name, _ in self._files()}
        entries_len, idx_len = lengths["entries.bin"], lengths["entries.idx"]
        leaves_len = lengths["leaves.bin"]
        n = min(idx_len // 8, leaves_len // HASH_BYTES)
        for lvl in CACHE_LEVELS:
            n = min(n, (lengths[f"nodes-{lvl}.bin"] // HASH_BYTES + 1) << lvl)

        def record_length(offset: int, index: int) -> int:
            if offset + 4 > entries_len:
                raise LogError(f"{where}/entries.bin: entry {index} at offset {offset} is "
                               f"not complete (the file has {entries_len} bytes); {_NOT_TORN}")
            length = int.from_bytes(self._read(self._entries, offset, 4), "big")
            if offset + 4 + length > entries_len:
                raise LogError(f"{where}/entries.bin: entry {index} ({length} bytes at offset "
                               f"{offset}) is not complete (the file has {entries_len} "
                               f"bytes); {_NOT_TORN}")
            return length

        # the last kept entry: right after the one before it, complete, hashed in leaves.bin
        end = 0
        if n:
            offset = self._offset(n - 1)
            expect = 0
            if n > 1:
                before = self._offset(n - 2)
                expect = before + 4 + record_length(before, n - 2)
            if offset != expect:
                raise LogError(f"{where}/entries.idx: offset {n - 1} is {offset}, not {expect} "
                               f"(where entry {n - 2} ends); {_NOT_TORN}")
            length = record_length(offset, n - 1)
            end = offset + 4 + length
            if leaf_hash(self._read(self._entries, offset + 4, length)) != self._read(
                    self._leaves, (n - 1) * HASH_BYTES, HASH_BYTES):
                raise LogError(f"{where}/leaves.bin: leaf {n - 1} is not the hash of entry "
                               f"{n - 1}; {_NOT_TORN}")

        # what the files hold beyond the log of n entries: at most entry n, torn
        entry_n: bytes | None = None
        extra = entries_len - end
        if extra >= 4:
            length = int.from_bytes(self._read(self._entries, end, 4), "big")
            if extra > 4 + length:
                raise LogError(f"{where}/entries.bin: {extra} bytes follow entry {n - 1}, "
                               f"more than one entry of {length} bytes; {_NOT_TORN}")
            if extra == 4 + length:
                entry_n = self._read(self._entries, end + 4, length)
        extra_idx = idx_len - 8 * n
        if extra_idx > 8:
            raise LogError(f"{where}/entries.idx: holds {idx_len} bytes, more than one offset "
                           f"beyond the {n} entries kept; {_NOT_TORN}")
        if extra_idx:
            if entry_n is None:
                raise LogError(f"{where}/entries.idx: holds offset {n} but entry {n} is not "
                               f"complete in entries.bin; {_NOT_TORN}")
            if self._read(self._index, 8 * n, extra_idx) != end.to_bytes(8, "big")[:extra_idx]:
                raise LogError(f"{where}/entries.idx: offset {n} is not {end} (where entry "
                               f"{n - 1} ends); {_NOT_TORN}")
        extra_leaf = leaves_len - HASH_BYTES * n
        if extra_leaf > HASH_BYTES:
            raise LogError(f"{where}/leaves.bin: holds {leaves_len} bytes, more than one leaf "
                           f"hash beyond the {n} entries kept; {_NOT_TORN}")
        if extra_leaf:
            # the writer flushes leaves.bin after entries.idx; an older one flushed it first
            # when entry n completed a block of the lowest cache level
            if extra_idx != 8 and (n + 1) % (1 << CACHE_LEVELS[0]):
                raise LogError(f"{where}/leaves.bin: holds {extra_leaf} bytes of leaf {n} "
                               f"but entries.idx holds no offset {n}; {_NOT_TORN}")
            if entry_n is not None and self._read(
                    self._leaves, HASH_BYTES * n, extra_leaf) != leaf_hash(entry_n)[:extra_leaf]:
                raise LogError(f"{where}/leaves.bin: leaf {n} is not the hash of entry {n}; "
                               f"{_NOT_TORN}")
        torn_entry = extra > 0 or extra_idx > 0 or extra_leaf > 0
        lower_complete = extra_leaf == HASH_BYTES
        targets = {"entries.bin": end, "entries.idx": 8 * n, "leaves.bin": HASH_BYTES * n}
        recompute: dict[int, bytes] = {}
        lower = 0
        for lvl in CACHE_LEVELS:
            name = f"nodes-{lvl}.bin"
            have, need = lengths[name] // HASH_BYTES, n >> lvl
            if have < need:  # need == have + 1 and n == need << lvl, by the bound on n
                if torn_entry:
                    raise LogError(f"{where}/{name}: node {need - 1} is missing but entry {n} "
                                   f"was begun; {_NOT_TORN}")
                span = 1 << (lvl - lower)
                node = fold_hashes(self._level_hashes(lower, (need - 1) * span, span))
                recompute[lvl] = node
                self._virtual[lvl] = (need - 1, node)
                targets[name] = have * HASH_BYTES
            else:
                extra_node = lengths[name] - need * HASH_BYTES
                allowed = HASH_BYTES if (n + 1) % (1 << lvl) == 0 else 0
                if extra_node > allowed:
                    raise LogError(f"{where}/{name}: holds {lengths[name]} bytes, "
                                   f"{extra_node} beyond the {need} nodes of {n} entries; "
                                   f"{_NOT_TORN}")
                if extra_node and not lower_complete:
                    raise LogError(f"{where}/{name}: holds part of node {need} but not all "
                                   f"of the level below it; {_NOT_TORN}")
                torn_entry = torn_entry or extra_node > 0
                lower_complete = extra_node == HASH_BYTES
                targets[name] = need * HASH_BYTES
            lower = lvl
        return Tail(n, lengths, targets, recompute, int(torn_entry), end)

    def _check_window(self, tail: Tail) -> None:
        """Re-hash the last 2**8 entries and re-fold the last cached node of each level.

        Cheap (a few hundred entries), and it keeps damage next to the tail loud; the
        whole log is checked by :meth:`audit`.
        """
        where, n = self.directory, tail.size
        lo = max(0, n - (1 << CACHE_LEVELS[0]))
        if n:
            raw = self._read(self._index, 8 * lo, 8 * (n - lo))
            offsets = [int.from_bytes(raw[i:i + 8], "big") for i in range(0, len(raw), 8)]
            start = 0 if lo == 0 else offsets[0]
            blob = self._read(self._entries, start, tail.entries_end - start)
            leaves = self._read(self._leaves, HASH_BYTES * lo, HASH_BYTES * (n - lo))
            pos = 0
            for k, offset in enumerate(offsets):
                i = lo + k
                if offset != start + pos:
                    raise LogError(f"{where}/entries.idx: offset {i} is {offset}, not "
                                   f"{start + pos} (where entry {i - 1} ends)")
                length = int.from_bytes(blob[pos:pos + 4], "big")
                entry = blob[pos + 4:pos + 4 + length]
                if len(entry) != length or leaf_hash(entry) != leaves[
                        HASH_BYTES * k:HASH_BYTES * (k + 1)]:
                    raise LogError(f"{where}/leaves.bin: leaf {i} is not the hash of entry "
                                   f"{i}: the log is damaged or tampered")
                pos += 4 + length
        lower = 0
        for lvl in CACHE_LEVELS:
            j = (n >> lvl) - 1
            if j >= 0 and lvl not in tail.recompute:
                span = 1 << (lvl - lower)
                if self._level_hashes(lvl, j, 1)[0] != fold_hashes(
                        self._level_hashes(lower, j * span, span)):
                    raise LogError(f"{where}/nodes-{lvl}.bin: node {j} is not the hash of "
                                   "its block: the log is damaged or tampered")
            lower = lvl

    def _checkpoints_beyond(self, size: int) -> list[str]:
        folder = self.directory / "checkpoints"
        found = [(int(p.stem), p.name) for p in folder.glob("*.txt") if p.stem.isdigit()]
        return [name for cp_size, name in sorted(found) if cp_size > size]

    def _repair(self, tail: Tail) -> dict[str, Any]:
        """Record, then cut the files back to the log of ``tail.size`` entries."""
        record: dict[str, Any] = {
            "repaired_utc": format_utc(),
            **tail.describe(),
            "checkpoints_beyond": self._checkpoints_beyond(tail.size),
            "reason": REPAIR_REASON,
        }
        line = json.dumps(record, ensure_ascii=False).encode() + b"\n"
        path = self.directory / "repairs.jsonl"
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                line = b"\n" + line  # a record torn by a kill stays a (broken) line of its own
            view = memoryview(line)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        self._sync_folder()
        # the file written last first: every state in between is a torn tail of the same size
        touched = []
        for name, handle in reversed(self._files()):
            if tail.lengths[name] != tail.targets[name]:
                handle.truncate(tail.targets[name])
                touched.append(handle)
        for lvl in CACHE_LEVELS:
            if lvl in tail.recompute:
                handle = self._nodes[lvl]
                handle.seek(0, os.SEEK_END)
                handle.write(tail.recompute[lvl])
                handle.flush()
                if handle not in touched:
                    touched.append(handle)
        for handle in touched:
            os.fsync(handle.fileno())
        self._sync_folder()
        self._virtual = {}
        return record

    def _sync_folder(self) -> None:
        fsync_dir(self.directory)

    # -- context management
    def close(self) -> None:
        for handle in self._handles:
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
        virtual = self._virtual.get(level)  # a reader's missing trailing node, recomputed
        if virtual is not None and first <= virtual[0] < first + count:
            data = self._read(handle, first * HASH_BYTES, (virtual[0] - first) * HASH_BYTES)
            data += virtual[1]
        else:
            data = self._read(handle, first * HASH_BYTES, count * HASH_BYTES)
        return [data[i:i + HASH_BYTES] for i in range(0, len(data), HASH_BYTES)]

    def _perfect(self, start: int, size: int) -> bytes:
        """Hash of the perfect subtree of ``size`` (a power of two) leaves at ``start``."""
        level = 0
        for lvl in CACHE_LEVELS:
            if size >= 1 << lvl:
                level = lvl
        return fold_hashes(self._level_hashes(level, start >> level, size >> level))

    def _mth(self, lo: int, hi: int) -> bytes:
        n = hi - lo
        if n == 0:
            return EMPTY_ROOT
        if n & (n - 1) == 0:
            return self._perfect(lo, n)
        k = split_size(n)
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
            k = split_size(hi - lo)
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
            k = split_size(size)
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
        """Append one entry; returns its index. Durable on return when ``fsync`` is on.

        The files are written, flushed and synced one after the other (entries.bin,
        entries.idx, leaves.bin, then the cache levels whose block the entry completes),
        so a kill at any point leaves a torn tail the next open repairs. After a failed
        append (a full disk, say) the log refuses further appends until it is reopened.
        """
        if self.read_only:
            raise LogError(f"{self.directory}: opened read-only")
        if self._broken:
            raise LogError(f"{self.directory}: an append failed part-way; reopen the log to "
                           "repair its tail")
        index = self._size
        self._broken = True
        self._entries.seek(0, os.SEEK_END)
        offset = self._entries.tell()
        self._write(self._entries, len(entry).to_bytes(4, "big") + entry)
        self._write(self._index, offset.to_bytes(8, "big"))
        self._write(self._leaves, leaf_hash(entry))
        size = index + 1
        lower = 0
        for lvl in CACHE_LEVELS:
            if size % (1 << lvl) == 0:
                span = 1 << (lvl - lower)
                node = fold_hashes(self._level_hashes(lower, (size >> lower) - span, span))
                self._write(self._nodes[lvl], node)
            lower = lvl
        self._size = size
        self._broken = False
        return index

    def _write(self, handle: BinaryIO, data: bytes) -> None:
        handle.seek(0, os.SEEK_END)
        handle.write(data)
        handle.flush()
        if self.fsync:
            os.fsync(handle.fileno())

    # -- checkpoints on disk
    def store_checkpoint(self, size: int, note: bytes, timestamp_token: bytes | None = None
                         ) -> Path:
        """Store a checkpoint (and its time-stamp token) atomically: a kill mid-write leaves
        no torn checkpoint for an audit to trip on, only a ``.tmp`` removed on open."""
        path = self.directory / "checkpoints" / f"{size}.txt"
        path.parent.mkdir(exist_ok=True)
        if timestamp_token is not None:
            write_atomic(path.with_suffix(".tsr"), timestamp_token, fsync=self.fsync)
        write_atomic(path, note, fsync=self.fsync)
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
                expect = fold_hashes(self._level_hashes(0, j << lvl, 1 << lvl))
                if self._level_hashes(lvl, j, 1)[0] != expect:
                    problems.append(f"nodes-{lvl}.bin: node {j} is wrong")
        return problems


__all__ = ["CACHE_LEVELS", "EMPTY_ROOT", "LOG_FORMAT", "REPAIR_REASON", "InclusionProof",
           "MerkleLog", "leaf_hash", "node_hash", "root_from_leaf_hashes", "verify_consistency",
           "verify_inclusion"]
