"""scrapy-redis's request fingerprints, as a Scrapy request fingerprinter.

scrapy-redis 0.9's dupefilter (``RFPDupeFilter.request_fingerprint``) does
not use Scrapy's fingerprinter: it hashes its own JSON document of the
method, canonical URL and body, which differs from Scrapy's by the
``"headers"`` field Scrapy adds (and it ignores ``verbatim_url``). Both are
SHA1, so the one cannot be computed from the other. A crawl that takes
over a scrapy-redis crawl's dupefilter (``scrapy migrate``) fingerprints
its requests as scrapy-redis did, on every node, with::

    REQUEST_FINGERPRINTER_CLASS = "crawler.srfingerprint.ScrapyRedisFingerprinter"

The same requests count as duplicates as with Scrapy's default
fingerprinter (both cover method, canonical URL and body); only the hash
differs.
"""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from scrapy import Request
from scrapy_redis.dupefilter import RFPDupeFilter

# Its request_fingerprint reads nothing from the instance.
_DUPEFILTER = RFPDupeFilter(server=None, key="")

#: Requests of every shape the fingerprint covers (query order, fragment,
#: method, body), to check a fingerprinter against scrapy-redis's.
_PROBES = (
    Request("http://example.com"),
    Request("https://example.com/a/b?y=2&x=1#top"),
    Request("http://example.com/form", method="POST", body=b"q=1&\xff"),
    Request("http://example.com/p", headers={"Cookie": "a=1"}, meta={"verbatim_url": True}),
)


def scrapy_redis_fingerprint(request: Request) -> str:
    """The hex fingerprint scrapy-redis's dupefilter stores for *request*."""
    return str(_DUPEFILTER.request_fingerprint(request))


class ScrapyRedisFingerprinter:
    """A ``REQUEST_FINGERPRINTER_CLASS`` giving scrapy-redis's fingerprints
    (as bytes, like Scrapy's: the 20 bytes the hex in its dupefilter spells)."""

    def __init__(self, crawler: Any = None) -> None:
        self._cache: WeakKeyDictionary[Request, bytes] = WeakKeyDictionary()

    @classmethod
    def from_crawler(cls, crawler: Any) -> ScrapyRedisFingerprinter:
        return cls(crawler)

    def fingerprint(self, request: Request) -> bytes:
        fp = self._cache.get(request)
        if fp is None:
            fp = self._cache[request] = bytes.fromhex(scrapy_redis_fingerprint(request))
        return fp


def matches_scrapy_redis(fingerprinter: Any) -> bool:
    """Whether *fingerprinter* gives scrapy-redis's fingerprints."""
    return all(
        fingerprinter.fingerprint(probe) == bytes.fromhex(scrapy_redis_fingerprint(probe))
        for probe in _PROBES
    )
