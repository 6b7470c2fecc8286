"""The seen-set: how a request fingerprint is checked and set in Redis.

Two modes, chosen by ``CRAWLER_SEEN_MODE``:

* ``exact`` (default): the first 8 bytes of Scrapy's fingerprint as a signed
  64-bit integer, in one of ``CRAWLER_SEEN_SHARDS`` sets. Small sets of
  integers are stored by Redis as intsets, 8 bytes per member, so a seen
  URL costs about 8-9 bytes while a shard holds at most
  ``set-max-intset-entries`` (512 by default) members: choose about one
  shard per 400 expected URLs. No false positives short of a 64-bit
  collision (about 3% odds of one at a billion URLs).
* ``bloom``: a scalable Bloom filter in Redis strings, checked and set by
  Lua in the same script that queues the request. The first layer holds
  ``CRAWLER_BLOOM_CAPACITY`` URLs at 0.9 times ``CRAWLER_BLOOM_ERROR_RATE``;
  each further layer doubles the capacity at a tenth of the previous error
  rate, so the total stays under the configured rate as it grows. About 2.4
  bytes per URL at 1 in 10,000. A false positive skips a URL that was never
  fetched; the expected number of those is kept and shown by
  ``scrapy status``.
"""

from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass

from crawler.exceptions import ConfigError

#: The most bits one Redis string (one layer) holds.
MAX_LAYER_BITS = 2**32 - 1
#: Each layer after the first holds this many times more URLs ...
BLOOM_GROWTH = 2
#: ... at this fraction of the previous layer's error rate.
BLOOM_TIGHTENING = 0.1


# The member (first 8 bytes, signed) and the 4 bytes that choose the shard.
_MEMBER_SHARD = struct.Struct(">qI")


@dataclass(frozen=True)
class SeenConfig:
    mode: str
    shards: int
    bloom_capacity: int
    bloom_error_rate: float

    def __post_init__(self) -> None:
        if self.mode not in ("exact", "bloom"):
            raise ConfigError(
                f"CRAWLER_SEEN_MODE={self.mode!r} is not a seen-set mode; use 'exact' or 'bloom'."
            )
        if not 0 < self.bloom_error_rate < 1:
            raise ConfigError(
                f"CRAWLER_BLOOM_ERROR_RATE={self.bloom_error_rate!r} must be between 0 and 1, "
                "e.g. 0.0001 for 1 in 10,000."
            )


def seen_member(fingerprint: bytes, shards: int) -> tuple[int, int]:
    """(shard, member) of a fingerprint from ``crawler.request_fingerprinter``.

    The member is the first 8 bytes as a signed 64-bit integer; the shard
    comes from the next bytes, so membership in effect checks more than 64 bits.
    """
    member, after = _MEMBER_SHARD.unpack_from(fingerprint)
    return after % shards, member


def bloom_hashes(fingerprint: bytes) -> tuple[int, int]:
    """Two 32-bit hashes for double hashing (h1 + j*h2) inside Lua, whose
    numbers are doubles: j*h2 stays far below 2**53."""
    h1 = int.from_bytes(fingerprint[12:16], "big")
    h2 = int.from_bytes(fingerprint[16:20], "big") | 1
    return h1, h2


def bloom_layer(capacity: int, error_rate: float, layer: int) -> tuple[int, int, int]:
    """(capacity, bits, hash count) of layer *layer* of the scalable filter,
    as commit.lua makes it: a prime number of bits, probed with h2 mod bits,
    so that every URL's probes are distinct bits."""
    cap = capacity * BLOOM_GROWTH**layer
    p = error_rate * (1 - BLOOM_TIGHTENING) * BLOOM_TIGHTENING**layer
    bits = math.ceil(cap * -math.log(p) / math.log(2) ** 2)
    if bits > MAX_LAYER_BITS:
        # One Redis string holds 2**32 bits: such a layer holds fewer URLs.
        bits = MAX_LAYER_BITS
        cap = math.floor(bits * math.log(2) ** 2 / -math.log(p))
    return cap, _prime_at_or_near(bits), max(1, round(-math.log2(p)))


def _is_prime(x: int) -> bool:
    if x % 2 == 0:
        return x == 2
    return x > 1 and all(x % d for d in range(3, math.isqrt(x) + 1, 2))


def _prime_at_or_near(bits: int) -> int:
    """The first prime from *bits* up, or below 2**32 if there is none."""
    x = bits
    while x <= MAX_LAYER_BITS and not _is_prime(x):
        x += 1
    if x > MAX_LAYER_BITS:
        x = MAX_LAYER_BITS
        while not _is_prime(x):
            x -= 1
    return x


def start_fingerprint(fingerprint: bytes) -> bytes:
    """The seen-set key of a start request (``start_urls``/``start()``, a
    RedisSpider's seeds): N nodes starting the same spider fetch it once,
    and a later link to the same URL is still fetched, as plain Scrapy does
    with its ``dont_filter`` start requests (a CrawlSpider's start page goes
    to ``parse_start_url`` first, then to the rule that links to it)."""
    return hashlib.sha1(b"start request\0" + fingerprint).digest()


def redirected_start_fingerprint(start_url: str, fingerprint: bytes) -> bytes:
    """The seen-set key of a start request's redirect: keyed apart from a
    start request for its target (another start URL), as plain Scrapy
    fetches both, and the same on every node that started *start_url*."""
    return hashlib.sha1(b"start redirect\0" + start_url.encode() + b"\0" + fingerprint).digest()
