"""RFC 6962 / RFC 9162 Merkle tree hashing and proof verification (no storage).

Hashing: ``leaf = SHA-256(0x00 ‖ entry)``, ``node = SHA-256(0x01 ‖ left ‖ right)``, the
empty tree hashes to ``SHA-256("")``; a tree of n leaves splits at the largest power of
two smaller than n. :class:`zhichao.evidence.merkle.MerkleLog` stores a log and makes
the proofs checked here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

HASH_BYTES = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()


def leaf_hash(entry: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split_size(n: int) -> int:
    """Largest power of two strictly smaller than n (n ≥ 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def fold_hashes(hashes: list[bytes]) -> bytes:
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
    k = split_size(n)
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


@dataclass(frozen=True)
class InclusionProof:
    index: int
    size: int
    leaf_hash: bytes
    hashes: tuple[bytes, ...]


__all__ = ["EMPTY_ROOT", "HASH_BYTES", "InclusionProof", "fold_hashes", "leaf_hash",
           "node_hash", "root_from_leaf_hashes", "split_size", "verify_consistency",
           "verify_inclusion"]
