"""Headline similarity: content-word sets, MinHash signatures and an LSH index over them.

Two headlines are the same story when the Jaccard similarity of their content-word sets is at
least a threshold (0.6 by default). Content words are lower-cased, with wire prefixes
("UPDATE 2-", "BRIEF-"), punctuation, possessives and stop words dropped and a light suffix
stripping, so "Acme Corp. cuts 2026 outlook" and "UPDATE 1-Acme cuts its 2026 outlook - Reuters"
compare as equal.

To find candidates without a scan, each set gets a MinHash signature of ``bands * rows`` values
and is filed under one key per band (locality-sensitive hashing). With 25 bands of 4 rows a pair
at Jaccard 0.6 shares a band with probability 0.97, at 0.8 with 1.0, at 0.2 with 0.04; every
candidate is then checked with its exact Jaccard, so LSH only ever costs a rare miss, never a
false match.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

import numpy as np

_PREFIX = re.compile(
    r"^\s*(?:(?:update|updated)\s*\d*|brief|exclusive|corrected|refile|breaking|wrapup\s*\d*"
    r"|instant view|factbox|analysis)\s*[-:]\s*",
    re.IGNORECASE,
)
_WORD = re.compile(r"[a-z0-9$]+(?:\.[a-z0-9]+)*")
_STOP_WORDS = """a an and are as at be by for from has have in into is it its of on or over
    says said
    the their this to was were will with amid update updated exclusive breaking report reports
    reuters bloomberg ap wire news inc corp co ltd plc llc sa ag nv group holdings"""
_STOP = frozenset(_STOP_WORDS.split())
_BANDS = 25
_ROWS = 4
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)
# Fixed seeds: signatures must stay comparable across restarts and processes.
_rng = np.random.default_rng(20260401)
_A = _rng.integers(1, 2**63 - 1, size=_BANDS * _ROWS, dtype=np.uint64) | np.uint64(1)
_B = _rng.integers(0, 2**63 - 1, size=_BANDS * _ROWS, dtype=np.uint64)
_BAND_SALT = _rng.integers(1, 2**63 - 1, size=_BANDS, dtype=np.uint64)
_FOLD = np.uint64(0x9E3779B97F4A7C15)
del _rng


def _stem(word: str) -> str:
    for suffix in ("ing", "ed", "es", "s"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def shingles(text: str) -> frozenset[str]:
    """The content-word set of a headline."""
    text = _PREFIX.sub("", text).lower().replace("'s ", " ").replace("\u2019s ", " ")
    return frozenset(
        _stem(w) for w in _WORD.findall(text) if w not in _STOP and (len(w) > 1 or w.isdigit())
    )


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a or not b:
        return 0.0
    inter = len(a & b)
    return inter / (len(a) + len(b) - inter)


def _token_hash(token: str) -> int:
    return int.from_bytes(hashlib.blake2b(token.encode(), digest_size=8).digest(), "little")


def band_keys(words: frozenset[str]) -> list[int]:
    """One LSH key per band (empty for an empty set), as plain ints to keep the index small."""
    if not words:
        return []
    h = np.fromiter((_token_hash(t) for t in words), dtype=np.uint64, count=len(words))
    with np.errstate(over="ignore"):
        # Multiply-add modulo 2**64 is a universal family; the high bits are the well mixed ones.
        perm = (_A[:, None] * h[None, :] + _B[:, None]) & _MASK64
        sig = (perm >> np.uint64(16)).min(axis=1).reshape(_BANDS, _ROWS)
        # Fold each band's rows into one 64-bit key, salted by the band number.
        key = _BAND_SALT.copy()
        for r in range(_ROWS):
            key = key * _FOLD + sig[:, r]
    out: list[int] = key.tolist()
    return out


class LshIndex:
    """Near-duplicate lookup over (key, word set) pairs."""

    def __init__(self) -> None:
        # Most buckets hold one key: store it bare, and only make a set on a collision.
        self._buckets: dict[int, str | set[str]] = {}
        self._items: dict[str, tuple[frozenset[str], tuple[int, ...]]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, key: str, words: frozenset[str], keys: list[int] | None = None) -> None:
        if key in self._items:
            self.remove(key)
        band = tuple(band_keys(words) if keys is None else keys)
        self._items[key] = (words, band)
        buckets = self._buckets
        for k in band:
            cur = buckets.get(k)
            if cur is None:
                buckets[k] = key
            elif isinstance(cur, str):
                if cur != key:
                    buckets[k] = {cur, key}
            else:
                cur.add(key)

    def remove(self, key: str) -> None:
        entry = self._items.pop(key, None)
        if entry is None:
            return
        buckets = self._buckets
        for k in entry[1]:
            cur = buckets.get(k)
            if cur is None:
                continue
            if isinstance(cur, str):
                if cur == key:
                    del buckets[k]
            else:
                cur.discard(key)
                if len(cur) == 1:
                    buckets[k] = next(iter(cur))
                elif not cur:
                    del buckets[k]

    def words(self, key: str) -> frozenset[str]:
        return self._items[key][0]

    def near(
        self, words: frozenset[str], threshold: float, keys: Iterable[int] | None = None
    ) -> list[tuple[str, float]]:
        """Keys whose Jaccard with ``words`` is at least ``threshold``, most similar first."""
        keys = band_keys(words) if keys is None else keys
        seen: set[str] = set()
        out: list[tuple[str, float]] = []
        for k in keys:
            cur = self._buckets.get(k)
            if cur is None:
                continue
            for key in (cur,) if isinstance(cur, str) else cur:
                if key in seen:
                    continue
                seen.add(key)
                j = jaccard(words, self._items[key][0])
                if j >= threshold:
                    out.append((key, j))
        out.sort(key=lambda kj: -kj[1])
        return out
