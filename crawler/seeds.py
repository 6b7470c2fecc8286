"""Seeds are untrusted input: each line becomes a request or a clear reason.

A line is a URL, or a JSON object with ``url`` and optionally ``priority``,
``meta``, ``headers``, ``method``, ``body`` and ``callback``.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.utils.request import RequestFingerprinter

from crawler.codec import encode_request, spider_method
from crawler.config import CrawlConfig
from crawler.exceptions import BadSeed
from crawler.politeness import slot_of

SEED_FIELDS = ("url", "priority", "meta", "headers", "method", "body", "callback")
# What a byte that is not UTF-8 decodes to with errors="surrogateescape"
# (and, in a UTF-16 or UTF-32 file, with errors=UNDECODED_BYTES).
_UNDECODED = re.compile("[\udc00-\udcff]")
UNDECODED_BYTES = "crawler-seed-bytes"


def _keep_bytes(exc: UnicodeError) -> tuple[str, int]:
    """Each byte the codec cannot decode becomes U+DC00 + the byte, which
    parse_seed rejects naming the byte (surrogateescape refuses bytes below
    0x80, which UTF-16 and UTF-32 can leave undecoded)."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    return "".join(chr(0xDC00 + b) for b in exc.object[exc.start : exc.end]), exc.end


codecs.register_error(UNDECODED_BYTES, _keep_bytes)
_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}


def check_url(url: Any, max_length: int) -> str:
    if not isinstance(url, str) or not url.strip():
        raise BadSeed("not a URL: empty or not a string")
    url = url.strip()
    if len(url) > max_length:
        raise BadSeed(
            f"URL is {len(url)} characters, longer than CRAWLER_SEED_MAX_URL_LENGTH={max_length}"
        )
    if any(c.isspace() for c in url):
        raise BadSeed(f"not a URL: {url[:80]!r} contains white space")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise BadSeed(f"not a URL: {exc}") from None
    if not parts.scheme or "://" not in url:
        raise BadSeed(f"not a URL: {url[:80]!r} (expected http:// or https://)")
    if parts.scheme.lower() not in ("http", "https"):
        raise BadSeed(f"unsupported scheme {parts.scheme!r}: only http and https are accepted")
    if not parts.hostname:
        raise BadSeed(f"not a URL: {url[:80]!r} has no host")
    return url


def _check_meta(meta: Any, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(meta, dict):
        raise BadSeed("'meta' must be a JSON object")
    for key in meta:
        if key not in allowed:
            raise BadSeed(
                f"meta key {key!r} is not allowed for seeds; allowed: "
                f"{', '.join(sorted(allowed)) or 'none'} (CRAWLER_SEED_ALLOWED_META)"
            )
    return meta


def _check_headers(headers: Any) -> dict[str, Any]:
    if not isinstance(headers, dict) or not all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        for v in headers.values()
    ):
        raise BadSeed("'headers' must be an object of strings or lists of strings")
    return headers


def _from_json(line: str) -> dict[str, Any]:
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise BadSeed(f"bad JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise BadSeed("bad JSON: expected an object with a 'url'")
    unknown = sorted(set(obj) - set(SEED_FIELDS))
    if unknown:
        raise BadSeed(f"unknown field {unknown[0]!r}; allowed: {', '.join(SEED_FIELDS)}")
    if "url" not in obj:
        raise BadSeed("missing field 'url'")
    return obj


def parse_seed(line: str, spider: Spider, config: CrawlConfig) -> Request | None:
    """The request for one seed line, None for a blank line; raises BadSeed."""
    line = line.strip()
    if not line:
        return None
    undecoded = _UNDECODED.search(line)
    if undecoded:
        raise BadSeed(
            f"not UTF-8 text (nor UTF-16 or UTF-32 after a byte-order mark): byte "
            f"0x{ord(undecoded.group()) - 0xDC00:02x} at column {undecoded.start() + 1}; "
            "save the seed file as UTF-8"
        )
    obj = _from_json(line) if line.startswith("{") else {"url": line}
    kwargs: dict[str, Any] = {"url": check_url(obj["url"], config.seed_max_url_length)}
    if "priority" in obj:
        if not isinstance(obj["priority"], int) or isinstance(obj["priority"], bool):
            raise BadSeed("'priority' must be an integer")
        kwargs["priority"] = obj["priority"]
    if "meta" in obj:
        kwargs["meta"] = _check_meta(obj["meta"], config.seed_allowed_meta)
    if "headers" in obj:
        kwargs["headers"] = _check_headers(obj["headers"])
    if "method" in obj:
        if str(obj["method"]).upper() not in _METHODS:
            raise BadSeed(f"unsupported method {obj['method']!r}")
        kwargs["method"] = str(obj["method"]).upper()
    if "body" in obj:
        if not isinstance(obj["body"], str):
            raise BadSeed("'body' must be a string")
        kwargs["body"] = obj["body"]
    if obj.get("callback") is not None:
        # Seeds are untrusted: public methods only. Private ones (CrawlSpider's
        # _callback, SitemapSpider's _parse_sitemap) expect meta a seed
        # does not carry; the spider's own requests reach them.
        name = obj["callback"]
        if isinstance(name, str) and name.startswith("_"):
            raise BadSeed(f"callback {name!r} is private; a seed may name a public method")
        method = spider_method(spider, name)
        if method is None:
            raise BadSeed(f"callback {name!r} is not a method of spider {spider.name!r}")
        kwargs["callback"] = method
    return Request(**kwargs)


# The fast path: most seed files are plain URLs of a simple shape, for which
# Scrapy's Request, its fingerprint (w3lib's canonicalize_url, then SHA1 of a
# JSON document) and our stored JSON can be computed by string operations,
# about 20 times faster. A URL qualifies only if it is made of characters
# that no step quotes, lowercases or resolves: a lower-case http(s) scheme
# and host name, a port, a path of unreserved characters and a query of
# unreserved ``key=value`` pairs. Anything else takes the full path above.
_SIMPLE_URL = re.compile(
    r"https?://([a-z0-9.-]+)(?::([0-9]+))?(/[A-Za-z0-9._~/-]*)?"
    r"(?:\?([A-Za-z0-9._~-]+=[A-Za-z0-9._~-]*(?:&[A-Za-z0-9._~-]+=[A-Za-z0-9._~-]*)*))?"
)
# Scrapy's fingerprint is the SHA1 of this JSON document, ending in the URL.
_FP_HEAD = hashlib.sha1(b'{"body": "", "headers": {}, "method": "GET", "url": "')


def simple_seed(url: str, max_length: int) -> tuple[bytes, str, str] | None:
    """(fingerprint, domain, request JSON) of a plain URL line of the simple
    shape, equal to what the full path gives; None if it is not one.

    *url* is the line without its surrounding white space.
    """
    m = _SIMPLE_URL.fullmatch(url)
    if m is None or len(url) > max_length:
        return None
    host, port, path, query = m.groups()
    if not _simple_host(host) or (port is not None and not _simple_port(port)):
        return None
    canonical = url
    if path is None:
        if query:
            return None  # Request() would add the "/" before the "?"
        canonical += "/"
    elif "/." in path and ("/./" in path or "/../" in path or path.endswith(("/.", "/.."))):
        return None  # dot segments are resolved by canonicalize_url
    if query and "&" in query:
        # canonicalize_url sorts the arguments by name, then value.
        pairs = [p.partition("=") for p in query.split("&")]
        ordered = sorted(pairs)
        if ordered != pairs:
            canonical = url[: -len(query)] + "&".join(k + "=" + v for k, _, v in ordered)
    sha1 = _FP_HEAD.copy()
    sha1.update(canonical.encode() + b'"}')
    fp = sha1.digest()
    return fp, host, '{"url":"' + url + '"}'


def _simple_host(host: str) -> bool:
    """A host name IDNA leaves as it is: LDH labels of 1 to 63 characters."""
    return not (
        host[0] in ".-"
        or host[-1] in ".-"
        or ".." in host
        or ".-" in host
        or "-." in host
        or "xn--" in host
        or (len(host) > 63 and max(map(len, host.split("."))) > 63)
    )


def _simple_port(port: str) -> bool:
    # Digit strings of the same length compare as their numbers do.
    return port[0] != "0" and (len(port) < 5 or (len(port) == 5 and port <= "65535"))


# URLs of every shape the fast path takes, checked against the full path
# before it is used, in case an upgrade of Scrapy or w3lib changed the rules.
_PROBES = (
    "http://example.com",
    "https://www.example.co.uk/",
    "http://127.0.0.1:8080/page/1.html",
    "https://a-b.example:443/A/b_c.d~e-f//g/",
    "http://example.com/.well-known/x?q=",
    "https://example.com/s?b=2&a=1&a=0&A=3&a-b=4&a_b=5",
)


def simple_path_agrees(spider: Spider, fingerprinter: Any) -> bool:
    """Whether :func:`simple_seed` gives what the full path gives, with this
    fingerprinter and the installed Scrapy and w3lib."""
    if type(fingerprinter) is not RequestFingerprinter:
        return False
    for url in _PROBES:
        # The probes check the libraries, not the user's URL length limit.
        request = Request(url)
        full = (
            fingerprinter.fingerprint(request),
            slot_of(request),
            encode_request(request, spider),
        )
        if simple_seed(url, len(url)) != full:
            return False
    return True
