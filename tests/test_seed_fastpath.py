"""The seed fast path (``crawler.seeds.simple_seed``) gives exactly what the
full path gives: Scrapy's own fingerprint, the same domain, the same stored
JSON. Anything it cannot prove equal takes the full path."""

from __future__ import annotations

import random

import pytest
from scrapy import Spider
from scrapy.utils.request import RequestFingerprinter

from crawler.codec import encode_request
from crawler.politeness import slot_of
from crawler.seeds import parse_seed, simple_path_agrees, simple_seed
from tests.conftest import run_scrapy
from tests.test_seed import queued_entries


class _Spider(Spider):
    name = "s"


class _Config:
    seed_max_url_length = 2083
    seed_allowed_meta: frozenset[str] = frozenset()


def _full(url: str) -> tuple[bytes, str, str] | str:
    spider = _Spider()
    try:
        request = parse_seed(url, spider, _Config())  # type: ignore[arg-type]
    except Exception as exc:  # a rejection is an answer too
        return repr(exc)
    assert request is not None
    return (
        RequestFingerprinter().fingerprint(request),
        slot_of(request),
        encode_request(request, spider),
    )


def _random_url(rnd: random.Random) -> str:
    # Mostly characters the fast path takes, sometimes any URL character.
    path_chars = rnd.choice(["abcXYZ09._~/-", "abcXYZ09._~/-", "abc/%+!:@;,=()"])
    query_chars = rnd.choice(["abAB09._~-", "abAB09._~-", "ab%+ ;"])
    host = rnd.choice(
        [
            "example.com",
            "a.test",
            "shop.example-1.org",
            "www.ex-ample.co.uk",
            "127.0.0.1",
            "a" * 63 + ".test",
            "a" * 64 + ".test",
            "Example.COM",
            "xn--bcher-kva.example",
            "-a.test",
            "a-.test",
            "a..b",
            "a.test.",
            "".join(rnd.choice("ab0-.") for _ in range(rnd.randint(1, 8))),
        ]
    )
    url = rnd.choice(["http", "https", "http", "https", "HTTP", "ftp"]) + "://" + host
    if rnd.random() < 0.3:
        url += ":" + rnd.choice(["80", "443", "8080", "1", "65535", "65536", "0", "08080", ""])
    if rnd.random() < 0.8:
        segments = rnd.choice(["", "", "", "/.", "/..", "/./x", "/a/../b"])
        url += "/" + "".join(rnd.choice(path_chars) for _ in range(rnd.randint(0, 15))) + segments
    if rnd.random() < 0.5:
        pairs = [
            "".join(rnd.choice(query_chars) for _ in range(rnd.randint(0, 4)))
            + rnd.choice(["=", "=", "=", ""])
            + "".join(rnd.choice(query_chars) for _ in range(rnd.randint(0, 3)))
            for _ in range(rnd.randint(1, 4))
        ]
        url += "?" + "&".join(pairs)
    if rnd.random() < 0.1:
        url += "#frag"
    return url


def test_fast_path_equals_full_path_on_random_urls():
    rnd = random.Random(20261123)
    fast = 0
    for _ in range(40_000):
        url = _random_url(rnd)
        got = simple_seed(url, 2083)
        if got is None:
            continue
        fast += 1
        assert got == _full(url), url
    # Not vacuous: a good share of the shapes above takes the fast path.
    assert fast > 2_000


@pytest.mark.parametrize(
    "url",
    [
        "http://example.com/a?b=2&a=1",
        "https://example.com",
        "http://127.0.0.1:8080/page/1.html",
        "https://a.example/x/y_z~1.html?q=&a=b",
    ],
)
def test_fast_path_takes_common_urls(url):
    assert simple_seed(url, 2083) == _full(url)


@pytest.mark.parametrize(
    "url",
    [
        "http://Example.com/",  # host lower-cased by Scrapy
        "HTTP://example.com/",  # scheme lower-cased
        "http://example.com/a%7Eb",  # escapes normalised
        "http://example.com/a b",  # quoted
        "http://example.com/a/../b",  # dot segments resolved
        "http://example.com/a#frag",  # fragment dropped
        "http://example.com?a=1",  # Request() adds "/"
        "http://xn--bcher-kva.example/",  # IDNA
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com./",
        "http://user@example.com/",
        "http://example.com/?a+b=1",  # '+' means a space in a query
        "http://example.com/" + "x" * 3000,  # too long: rejected by the full path
    ],
)
def test_fast_path_leaves_other_urls_to_the_full_path(url):
    assert simple_seed(url, 2083) is None


def test_fast_path_only_with_scrapys_default_fingerprinter():
    spider = _Spider()

    class Custom(RequestFingerprinter):
        pass

    assert simple_path_agrees(spider, RequestFingerprinter())
    assert not simple_path_agrees(spider, Custom())


def test_urls_seeded_by_either_path_are_one_url(redis_url, rclient, tmp_path):
    """Equivalent URLs, one taking the fast path and one the full path,
    are one fingerprint in Redis."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text(
        "\n".join(
            [
                "http://a.test/p?b=2&a=1",  # fast
                "http://A.TEST/p?a=1&b=2",  # full (upper case): same URL
                "http://a.test/q#top",  # full (fragment)
                "http://a.test/q",  # fast: same URL
                '{"url": "http://a.test/r"}',  # full (JSON)
                "  http://a.test/r  ",  # fast: same URL
            ]
        )
        + "\n"
    )
    result = run_scrapy(["seed", "site", "-i", str(seeds)], redis_url)
    assert result.returncode == 0, result.stderr
    assert "3 queued, 3 already seen, 0 rejected (6 lines read)" in result.stdout
    urls = sorted(e["url"] for e in queued_entries(rclient))
    assert urls == ["http://a.test/p?b=2&a=1", "http://a.test/q#top", "http://a.test/r"]


def test_short_url_limit_still_seeds(redis_url, tmp_path):
    """The start-up check of the fast path is not subject to the user's
    URL length limit; the limit still applies to every line."""
    seeds = tmp_path / "seeds.txt"
    seeds.write_text("http://a.test/1\nhttp://a.test/" + "x" * 40 + "\n")
    result = run_scrapy(
        ["seed", "site", "-i", str(seeds), "-s", "CRAWLER_SEED_MAX_URL_LENGTH=30"], redis_url
    )
    assert result.returncode == 1, result.stderr
    assert "line 2: rejected: URL is 54 characters" in result.stderr
    assert "1 queued, 0 already seen, 1 rejected (2 lines read)" in result.stdout
