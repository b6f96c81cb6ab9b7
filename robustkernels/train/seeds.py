"""Seeds derived from integers, the same in every process and every run."""

from __future__ import annotations


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds), stable across processes and runs."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h = (h ^ (h >> 31)) * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
    return (h ^ (h >> 29)) & 0x7FFFFFFFFFFFFFFF
