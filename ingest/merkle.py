"""RFC 9162 (Certificate Transparency 2.0) Merkle tree hashes over a collector's log of chain links: the
compact range a writer keeps in memory, roots of every prefix, inclusion proofs and their check."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Final

EMPTY_ROOT: Final = hashlib.sha256(b"").digest()


def leaf_hash(link: str) -> bytes:
    """A log leaf is a link's 32-byte SHA-256 (the hex after `sha256:`), hashed with the 0x00 prefix."""
    return hashlib.sha256(b"\x00" + link_bytes(link)).digest()


def link_bytes(link: str) -> bytes:
    try:
        data = bytes.fromhex(link.removeprefix("sha256:"))
    except ValueError:
        data = b""
    # A malformed stored link still gets a leaf (the hash of its text), so a log with it simply fails
    # to match its checkpoint instead of breaking verification.
    return data if len(data) == 32 and link.startswith("sha256:") else hashlib.sha256(link.encode()).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_text(root: bytes) -> str:
    return "sha256:" + root.hex()


class CompactRange:
    """The Merkle frontier of a log: the roots of its perfect subtrees, largest first. Appending is
    O(log n) and the root of the whole log is always available, so a writer never rereads its log."""

    def __init__(self) -> None:
        self._sizes: list[int] = []
        self._hashes: list[bytes] = []
        self.size = 0

    def append(self, leaf: bytes) -> None:
        self._sizes.append(1)
        self._hashes.append(leaf)
        self.size += 1
        while len(self._sizes) >= 2 and self._sizes[-1] == self._sizes[-2]:
            right, left = self._hashes.pop(), self._hashes.pop()
            self._sizes[-2:] = [self._sizes[-1] * 2]
            self._hashes.append(node_hash(left, right))

    def root(self) -> bytes:
        """RFC 9162 MTH of the leaves appended so far (its split at the largest power of two below n is
        exactly this right-to-left fold of the perfect subtrees)."""
        if not self._hashes:
            return EMPTY_ROOT
        accumulated = self._hashes[-1]
        for left in reversed(self._hashes[:-1]):
            accumulated = node_hash(left, accumulated)
        return accumulated


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    frontier = CompactRange()
    for leaf in leaves:
        frontier.append(leaf)
    return frontier.root()


def _largest_power_of_two_below(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 9162 2.1.3.1 PATH(m, D[n]): the audit path of leaf `index` in the tree over `leaves`."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is outside a tree of {len(leaves)}")
    if len(leaves) == 1:
        return []
    k = _largest_power_of_two_below(len(leaves))
    if index < k:
        return [*inclusion_path(index, leaves[:k]), merkle_root(leaves[k:])]
    return [*inclusion_path(index - k, leaves[k:]), merkle_root(leaves[:k])]


def verify_inclusion(index: int, size: int, leaf: bytes, path: Sequence[bytes], root: bytes) -> bool:
    """RFC 9162 2.1.3.2: does `path` prove `leaf` at `index` in the tree of `size` leaves with `root`?"""
    if not 0 <= index < size:
        return False
    fn, sn, result = index, size - 1, leaf
    for sibling in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            result = node_hash(sibling, result)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            result = node_hash(result, sibling)
        fn >>= 1
        sn >>= 1
    return sn == 0 and result == root
