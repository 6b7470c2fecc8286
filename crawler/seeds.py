"""Seeds are untrusted input: each line becomes a request or a clear reason.

A line is a URL, or a JSON object with ``url`` and optionally ``priority``,
``meta``, ``headers``, ``method``, ``body`` and ``callback``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider

from crawler.codec import spider_method
from crawler.config import CrawlConfig
from crawler.exceptions import BadSeed

SEED_FIELDS = ("url", "priority", "meta", "headers", "method", "body", "callback")
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
        method = spider_method(spider, obj["callback"])
        if method is None:
            raise BadSeed(f"callback {obj['callback']!r} is not a method of spider {spider.name!r}")
        kwargs["callback"] = method
    return Request(**kwargs)
