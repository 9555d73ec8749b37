"""A log torn by a kill in the middle of an append (or of its repair) opens again.

Faults are injected at every write step, not at random times: a forked child opens the
log, wraps its file handles so that each flush and fsync is a numbered step, and SIGKILLs
itself at step k (before a flush, after writing half of what a flush would write, or
before an fsync); k runs from 1 until the append completes. The parent then checks the
read-only view of the torn files (changes nothing) and the writer's repair (the files are
byte for byte those of a clean log of n or n + 1 entries). Damage that a torn append
cannot explain stays a :class:`LogError`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NoReturn

import pytest

from zhichao.evidence import merkle
from zhichao.evidence.errors import LogError
from zhichao.evidence.merkle import (
    MerkleLog,
    leaf_hash,
    root_from_leaf_hashes,
    verify_inclusion,
)

ORIGIN = "zhichao/test/repair"


def entry(i: int) -> bytes:
    return f"entry {i:05d} ".encode() * (1 + i % 3)


# ------------------------------------------------------------------ fault injection


class _Faults:
    """Counts write steps; SIGKILLs this process at step ``kill_at``."""

    def __init__(self, kill_at: int) -> None:
        self.kill_at = kill_at
        self.step = 0

    def tick(self) -> bool:
        self.step += 1
        return self.step == self.kill_at

    @staticmethod
    def die() -> NoReturn:
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")

    def fsync(self, real: Callable[[int], None]) -> Callable[[int], None]:
        def fsync(fd: int) -> None:
            if self.tick():
                self.die()
            real(fd)
        return fsync


class _Faulty:
    """A file handle whose writes reach the file only at flush, where the kill can strike."""

    def __init__(self, handle: BinaryIO, faults: _Faults) -> None:
        self._handle = handle
        self._faults = faults
        self._pending = b""

    def write(self, data: bytes) -> int:
        self._pending += bytes(data)
        return len(data)

    def flush(self) -> None:
        if not self._pending:  # nothing to write: not a step
            return
        if self._faults.tick():  # killed before the write reached the file
            self._faults.die()
        if self._faults.tick():  # killed half-way through the write
            self._handle.write(self._pending[:len(self._pending) // 2])
            self._handle.flush()
            self._faults.die()
        self._handle.write(self._pending)
        self._handle.flush()
        self._pending = b""

    def truncate(self, size: int) -> int:
        if self._faults.tick():
            self._faults.die()
        return self._handle.truncate(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        assert not self._pending
        return self._handle.seek(offset, whence)

    def tell(self) -> int:
        assert not self._pending
        return self._handle.tell()

    def read(self, size: int = -1) -> bytes:
        assert not self._pending
        return self._handle.read(size)

    def fileno(self) -> int:
        return self._handle.fileno()


def legacy_append(log: MerkleLog, data: bytes) -> None:
    """The append of the writer before the repair existed (field logs were written so):
    at a block boundary leaves.bin and nodes-8.bin are flushed before entries.idx."""
    h: Any = log
    index = log.size
    h._entries.seek(0, os.SEEK_END)
    offset = h._entries.tell()
    h._entries.write(len(data).to_bytes(4, "big") + data)
    h._index.seek(0, os.SEEK_END)
    h._index.write(offset.to_bytes(8, "big"))
    h._leaves.seek(0, os.SEEK_END)
    h._leaves.write(leaf_hash(data))
    handles = [h._entries, h._index, h._leaves]
    h._size = index + 1
    levels = merkle.CACHE_LEVELS
    for lvl in levels:
        block = 1 << lvl
        if h._size % block == 0:
            lower = 0 if lvl == levels[0] else levels[levels.index(lvl) - 1]
            h._leaves.flush()
            for n in h._nodes.values():
                n.flush()
            hashes = h._level_hashes(lower, (h._size - block) >> lower, block >> lower)
            h._nodes[lvl].seek(0, os.SEEK_END)
            h._nodes[lvl].write(merkle.fold_hashes(hashes))
            handles.append(h._nodes[lvl])
    for handle in handles:
        handle.flush()
        os.fsync(handle.fileno())


def _in_child(body: Callable[[], None]) -> str:
    """Run ``body`` in a forked child; 'killed' (SIGKILL) or 'done' (it returned)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            body()
            os._exit(0)
        except BaseException:
            traceback.print_exc()
            os._exit(3)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL:
        return "killed"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, f"child failed: {status}"
    return "done"


def faulted_append(directory: Path, data: bytes, kill_at: int, legacy: bool) -> str:
    def body() -> None:
        faults = _Faults(kill_at)
        log: Any = MerkleLog(directory)
        log._entries = _Faulty(log._entries, faults)
        log._index = _Faulty(log._index, faults)
        log._leaves = _Faulty(log._leaves, faults)
        log._nodes = {lvl: _Faulty(h, faults) for lvl, h in log._nodes.items()}
        os.fsync = faults.fsync(os.fsync)  # type: ignore[assignment]
        if legacy:
            legacy_append(log, data)
        else:
            log.append(data)
    return _in_child(body)


def faulted_open(directory: Path, kill_at: int) -> str:
    def body() -> None:
        faults = _Faults(kill_at)
        real_open = MerkleLog._open

        def open_(self: MerkleLog, name: str) -> Any:
            return _Faulty(real_open(self, name), faults)

        MerkleLog._open = open_  # type: ignore[method-assign]
        os.fsync = faults.fsync(os.fsync)  # type: ignore[assignment]
        MerkleLog(directory).close()
    return _in_child(body)


# ------------------------------------------------------------------------ helpers


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file() and p.name != ".lock"}


def data_files(directory: Path) -> dict[str, bytes]:
    return {k: v for k, v in snapshot(directory).items()
            if k.endswith((".bin", ".idx"))}


def make_log(directory: Path, size: int) -> Path:
    with MerkleLog(directory, origin=ORIGIN, create=True, fsync=False) as log:
        for i in range(size):
            log.append(entry(i))
    return directory


def repairs(directory: Path) -> list[dict[str, Any]]:
    path = directory / "repairs.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def check_log(directory: Path, size: int) -> None:
    """The log holds entries 0..size-1, audits clean, proves, and takes another entry."""
    leaves = [leaf_hash(entry(i)) for i in range(size)]
    with MerkleLog(directory) as log:
        assert log.size == size
        assert log.repair is None  # repaired already: a second open changes nothing
        assert log.audit() == []
        assert log.root() == root_from_leaf_hashes(leaves)
        for i in {0, size // 2, size - 1} if size else set():
            p = log.inclusion_proof(i)
            assert verify_inclusion(i, size, leaves[i], list(p.hashes), log.root())
        assert log.append(entry(size)) == size
        assert log.root() == root_from_leaf_hashes([*leaves, leaf_hash(entry(size))])
    with MerkleLog(directory) as log:
        assert log.repair is None and log.size == size + 1 and log.audit() == []


@pytest.fixture
def small_levels(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Cache levels 2**2 and 2**4, so a 16-entry log crosses both (as 65536 would)."""
    monkeypatch.setattr(merkle, "CACHE_LEVELS", (2, 4))
    yield


# --------------------------------------------------------------- every kill point


def _every_kill_point(tmp_path: Path, before: int, legacy: bool, big: bool = False) -> int:
    clean = make_log(tmp_path / "clean", before)
    data = entry(before) * (400 if big else 1)
    clean_before = data_files(clean)
    after = tmp_path / "after"
    shutil.copytree(clean, after)
    with MerkleLog(after, fsync=False) as log:
        log.append(data)
    clean_after = data_files(after)
    outcomes: set[int] = set()
    for kill_at in range(1, 100):
        work = tmp_path / f"k{kill_at}"
        shutil.copytree(clean, work)
        outcome = faulted_append(work, data, kill_at, legacy)
        torn = snapshot(work)
        # a reader sees the consistent prefix and changes nothing
        with MerkleLog(work, read_only=True) as reader:
            seen = reader.size
            assert seen in (before, before + 1)
            leaves = [leaf_hash(entry(i)) for i in range(before)] + [leaf_hash(data)]
            assert reader.root() == root_from_leaf_hashes(leaves[:seen])
            assert reader.audit() == []
            assert reader.repair is None
            assert (reader.torn_tail is None) == (data_files(work) in (clean_before,
                                                                      clean_after))
        assert snapshot(work) == torn
        # the writer repairs to the same size: the files of a clean log of that size
        with MerkleLog(work) as log:
            assert log.size == seen
            repair = log.repair
        assert data_files(work) == (clean_before if seen == before else clean_after)
        if torn == snapshot(work):
            assert repair is None and not (work / "repairs.jsonl").exists()
        else:
            assert repair is not None
            assert repairs(work) == [repair]
            assert repair["size_after"] == seen
            assert repair["reason"] == "torn tail after an interrupted append"
            assert repair["repaired_utc"].endswith("Z")
            assert repair["size_before_files"] == {
                k: len(v) for k, v in torn.items() if k.endswith((".bin", ".idx"))}
            assert repair["dropped_entries"] == (1 if seen == before else 0)
            assert repair["checkpoints_beyond"] == []
        if big:
            with MerkleLog(work) as log:
                assert log.repair is None and log.audit() == []
        else:
            check_log(work, seen)
        outcomes.add(seen)
        shutil.rmtree(work)
        if outcome == "done":
            assert seen == before + 1
            return kill_at
    raise AssertionError("the append never completed")


@pytest.mark.parametrize("before", [0, 1, 6, 255])
def test_every_kill_point_of_an_append(tmp_path: Path, before: int) -> None:
    steps = _every_kill_point(tmp_path, before, legacy=False)
    # three steps per file (before its flush, half of it, before its fsync), + the return
    assert steps == 3 * (3 + (before == 255)) + 1


def test_every_kill_point_of_a_large_entry(tmp_path: Path) -> None:
    _every_kill_point(tmp_path, 3, legacy=False, big=True)


@pytest.mark.parametrize("before", [3, 6, 15])
def test_every_kill_point_crossing_two_cache_levels(tmp_path: Path, small_levels: None,
                                                   before: int) -> None:
    _every_kill_point(tmp_path, before, legacy=False)


@pytest.mark.parametrize("before", [0, 255])
def test_every_kill_point_of_the_old_writer(tmp_path: Path, before: int) -> None:
    _every_kill_point(tmp_path, before, legacy=True)


@pytest.mark.parametrize("before", [3, 15])
def test_every_kill_point_of_the_old_writer_two_levels(tmp_path: Path, small_levels: None,
                                                       before: int) -> None:
    _every_kill_point(tmp_path, before, legacy=True)


def test_the_field_case(tmp_path: Path) -> None:
    """entries.idx holds 1 offset, leaves.bin none: the station starts again."""
    log_dir = make_log(tmp_path / "l", 0)
    assert faulted_append(log_dir, entry(0), 7, legacy=False) == "killed"  # before leaves
    assert len((log_dir / "entries.idx").read_bytes()) == 8
    assert (log_dir / "leaves.bin").read_bytes() == b""
    with MerkleLog(log_dir) as log:
        assert log.size == 0
        assert log.repair is not None
        assert log.repair["dropped_bytes"] == {
            "entries.bin": 4 + len(entry(0)), "entries.idx": 8, "leaves.bin": 0,
            "nodes-8.bin": 0, "nodes-16.bin": 0}
        assert log.repair["dropped_entries"] == 1
    check_log(log_dir, 0)


def test_readers_while_the_writer_appends(tmp_path: Path) -> None:
    """A reader racing appends sees a consistent prefix (never a LogError)."""
    log_dir = make_log(tmp_path / "l", 1)
    leaves = [leaf_hash(entry(i)) for i in range(1500)]

    def write() -> None:
        with MerkleLog(log_dir, fsync=False) as log:
            for i in range(1, 1500):
                log.append(entry(i))

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            write()
        finally:
            os._exit(0)
    sizes = []
    reaped = False
    try:
        while not reaped:
            reaped = os.waitpid(pid, os.WNOHANG)[0] != 0
            with MerkleLog(log_dir, read_only=True) as reader:
                sizes.append(reader.size)
                if len(sizes) % 20 == 0:
                    assert reader.root() == root_from_leaf_hashes(leaves[:reader.size])
    finally:
        if not reaped:
            os.waitpid(pid, 0)
    assert sizes == sorted(sizes)
    with MerkleLog(log_dir, read_only=True) as reader:
        assert reader.size == 1500 and reader.torn_tail is None


# ---------------------------------------------------------------- a kill in a repair


@pytest.mark.parametrize(("kill_in_append", "size"), [(8, 255), (10, 256)])
def test_every_kill_point_of_a_repair(tmp_path: Path, kill_in_append: int, size: int) -> None:
    """Kills during the repair (after its record, between truncations, in the recomputed
    node) are repaired by the next open to the same files."""
    torn = make_log(tmp_path / "torn", 255)
    # 8: half of the leaf written (drop entry 255); 10: leaves synced, nodes-8 never
    # flushed (keep it, recompute node 0)
    assert faulted_append(torn, entry(255), kill_in_append, legacy=False) == "killed"
    reference = tmp_path / "reference"
    shutil.copytree(torn, reference)
    with MerkleLog(reference) as log:
        assert log.size == size and log.repair is not None
    expect = data_files(reference)
    record_counts: set[int] = set()
    for kill_at in range(1, 100):
        work = tmp_path / f"k{kill_at}"
        shutil.copytree(torn, work)
        outcome = faulted_open(work, kill_at)
        with MerkleLog(work) as log:
            assert log.size == size
        assert data_files(work) == expect
        records = repairs(work)
        assert records and all(r["size_after"] == size for r in records)
        record_counts.add(len(records))
        check_log(work, size)
        shutil.rmtree(work)
        if outcome == "done":
            # killed after its record: the next open repaired (and recorded) again
            assert record_counts == {1, 2}
            return
    raise AssertionError("the repair never completed")


def test_a_torn_repair_record_keeps_the_next_one_whole(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 5)
    (log_dir / "repairs.jsonl").write_bytes(b'{"repaired_utc": "2025-')
    assert faulted_append(log_dir, entry(5), 8, legacy=False) == "killed"  # half a leaf
    with MerkleLog(log_dir) as log:
        assert log.size == 5
    lines = (log_dir / "repairs.jsonl").read_text().splitlines()
    assert lines[0] == '{"repaired_utc": "2025-'
    assert json.loads(lines[1])["size_after"] == 5


def test_a_checkpoint_beyond_the_repaired_size_is_kept_and_named(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 5)
    assert faulted_append(log_dir, entry(5), 2, legacy=False) == "killed"  # half an entry
    (log_dir / "checkpoints" / "5.txt").write_bytes(b"ok")
    (log_dir / "checkpoints" / "6.txt").write_bytes(b"impossible")
    with MerkleLog(log_dir) as log:
        assert log.size == 5
        assert log.repair is not None
        assert log.repair["checkpoints_beyond"] == ["6.txt"]
    assert (log_dir / "checkpoints" / "6.txt").read_bytes() == b"impossible"
    assert repairs(log_dir)[0]["checkpoints_beyond"] == ["6.txt"]


# ------------------------------------------------------------- damage stays loud


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _assert_loud(log_dir: Path, match: str, reader_too: bool = True) -> None:
    before = snapshot(log_dir)
    with pytest.raises(LogError, match=match):
        MerkleLog(log_dir)
    if reader_too:
        with pytest.raises(LogError, match=match):
            MerkleLog(log_dir, read_only=True)
    assert snapshot(log_dir) == before  # nothing repaired, nothing recorded


def test_a_flipped_leaf_near_the_tail_is_loud(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    _flip(log_dir / "leaves.bin", 32 * 10 + 5)
    _assert_loud(log_dir, "leaves.bin: leaf 10 is not the hash", reader_too=False)
    with MerkleLog(log_dir, read_only=True) as reader:  # cheap checks only; audit finds it
        assert any("entry 10" in p for p in reader.audit())
    # with a torn tail on top, the writer still refuses
    _flip(log_dir / "leaves.bin", 32 * 10 + 5)
    assert faulted_append(log_dir, entry(20), 8, legacy=False) == "killed"  # half a leaf
    _flip(log_dir / "leaves.bin", 32 * 10 + 5)
    _assert_loud(log_dir, "leaves.bin: leaf 10", reader_too=False)


def test_a_flipped_entry_near_the_tail_is_loud(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    offset = int.from_bytes((log_dir / "entries.idx").read_bytes()[80:88], "big")
    _flip(log_dir / "entries.bin", offset + 6)
    _assert_loud(log_dir, "leaf 10 is not the hash of entry 10", reader_too=False)


def test_offsets_out_of_order_are_loud(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    idx = bytearray((log_dir / "entries.idx").read_bytes())
    idx[40:48], idx[48:56] = idx[48:56], idx[40:48]
    (log_dir / "entries.idx").write_bytes(bytes(idx))
    _assert_loud(log_dir, "entries.idx: offset 5", reader_too=False)
    idx = bytearray((log_dir / "entries.idx").read_bytes())
    idx[40:48], idx[48:56] = idx[48:56], idx[40:48]
    idx[-16:-8], idx[-8:] = idx[-8:], idx[-16:-8]  # the last two: every open sees it
    (log_dir / "entries.idx").write_bytes(bytes(idx))
    _assert_loud(log_dir, "entries.idx: offset 19")


def test_a_wrong_last_leaf_is_not_dropped(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    _flip(log_dir / "leaves.bin", 32 * 19)
    _assert_loud(log_dir, "leaf 19 is not the hash of entry 19")


def test_damage_far_from_the_tail_is_kept_for_audit(tmp_path: Path) -> None:
    """A torn tail is repaired, a flipped leaf far behind it is not truncated away."""
    log_dir = make_log(tmp_path / "l", 600)
    assert faulted_append(log_dir, entry(600), 8, legacy=False) == "killed"  # half a leaf
    _flip(log_dir / "leaves.bin", 32 * 10)
    with MerkleLog(log_dir) as log:
        assert log.size == 600
        assert log.repair is not None and log.repair["dropped_entries"] == 1
        assert log.audit() == ["entry 10: its hash differs from leaf hash 10 in leaves.bin",
                               "nodes-8.bin: node 0 is wrong"]


@pytest.mark.parametrize(("name", "extra", "match"), [
    ("leaves.bin", b"xx", "leaves.bin: holds 2 bytes of leaf 20"),  # no offset 20
    ("leaves.bin", b"x" * 64, "leaves.bin: holds 704 bytes, more than one leaf"),
    ("entries.idx", b"\0" * 16, "entries.idx: holds 176 bytes, more than one offset"),
    ("entries.idx", b"\0" * 8, "entries.idx: holds offset 20 but entry 20 is not complete"),
    ("entries.bin", b"\0\0\0\1ab", "entries.bin: 6 bytes follow entry 19, more than one"),
    ("nodes-8.bin", b"n" * 32, "nodes-8.bin: holds 32 bytes, 32 beyond the 0 nodes"),
])
def test_more_than_a_torn_entry_is_loud(tmp_path: Path, name: str, extra: bytes,
                                        match: str) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    with (log_dir / name).open("ab") as f:
        f.write(extra)
    _assert_loud(log_dir, match)


def test_a_wrong_torn_offset_is_loud(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 20)
    size = (log_dir / "entries.bin").stat().st_size
    with (log_dir / "entries.bin").open("ab") as f:
        f.write(len(b"new").to_bytes(4, "big") + b"new")
    with (log_dir / "entries.idx").open("ab") as f:
        f.write((size + 1).to_bytes(8, "big"))
    _assert_loud(log_dir, f"entries.idx: offset 20 is not {size}")


def test_a_missing_node_behind_the_tail_is_loud(tmp_path: Path) -> None:
    log_dir = make_log(tmp_path / "l", 257)
    (log_dir / "nodes-8.bin").write_bytes(b"")
    _assert_loud(log_dir, "nodes-8.bin: node 0 is missing but entry 256 was begun")
    log_dir = make_log(tmp_path / "m", 256)
    (log_dir / "nodes-8.bin").write_bytes(b"")  # the block's own append: recomputed
    with MerkleLog(log_dir, read_only=True) as reader:
        assert reader.size == 256 and reader.audit() == []
        assert reader.torn_tail is not None
        assert reader.torn_tail["recomputed_nodes"] == {"nodes-8.bin": 1}
    with MerkleLog(log_dir) as log:
        assert log.repair is not None and log.repair["dropped_entries"] == 0
    check_log(log_dir, 256)
