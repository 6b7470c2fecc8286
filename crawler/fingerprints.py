"""Compact seen-set keys: 64 bits of Scrapy's request fingerprint."""

from __future__ import annotations


def seen_member(fingerprint: bytes, shards: int) -> tuple[int, int]:
    """(shard, member) for a fingerprint from ``crawler.request_fingerprinter``.

    The member is the first 8 bytes as a signed 64-bit integer, which Redis
    keeps in a small set's compact intset encoding. The shard comes from
    the next bytes, so the set membership in effect checks more than 64 bits.
    """
    member = int.from_bytes(fingerprint[:8], "big", signed=True)
    shard = int.from_bytes(fingerprint[8:12], "big") % shards
    return shard, member
