"""Both seen-set modes: crawls fetch each page once, the Bloom filter grows
past its capacity without losing members, and concurrent writers in
several processes check-and-add atomically."""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import subprocess

import pytest
import redis.asyncio as aioredis
from scrapy.settings import Settings

from crawler.config import CrawlConfig
from crawler.fingerprints import bloom_layer
from crawler.frontier import Batch, Frontier
from tests.conftest import ROOT, SCRAPY, scrapy_env, start_node


def fps(start: int, stop: int) -> list[bytes]:
    return [hashlib.sha1(f"url-{i}".encode()).digest() for i in range(start, stop)]


async def commit_all(frontier: Frontier, fingerprints: list[bytes], size: int = 200) -> int:
    """Commit in batches; returns how many were reported duplicates."""
    dups = 0
    for start in range(0, len(fingerprints), size):
        batch = Batch(pushes=[(fp, 0, "0|d|{}") for fp in fingerprints[start : start + size]])
        dups += (await frontier.commit(batch)).duplicates
    return dups


@pytest.mark.parametrize("mode", ["exact", "bloom"])
def test_crawl_fetches_each_page_once(mode, make_site, redis_url, tmp_path):
    site = make_site(600)
    settings = [f"CRAWLER_SEEN_MODE={mode}", "CRAWLER_BLOOM_CAPACITY=1000"]
    seed = [SCRAPY, "seed", "site", site.url("/page/0.html")] + [
        arg for s in settings for arg in ("-s", s)
    ]
    subprocess.run(seed, cwd=ROOT, env=scrapy_env(redis_url), check=True, capture_output=True)
    nodes = [start_node("site", redis_url, tmp_path / f"n{i}.log", *settings) for i in range(2)]
    assert [n.wait(timeout=120) for n in nodes] == [0, 0]
    counts = site.page_counts()
    assert len(counts) == 600 and set(counts.values()) == {1}


def test_bloom_grows_past_capacity_and_keeps_its_error_rate(redis_url, rclient):
    cfg = CrawlConfig.from_settings(
        Settings(
            {
                "CRAWLER_SEEN_MODE": "bloom",
                "CRAWLER_BLOOM_CAPACITY": 1000,
                "CRAWLER_BLOOM_ERROR_RATE": 0.01,
            }
        ),
        "bl",
    )

    async def scenario() -> tuple[int, int, int]:
        frontier = Frontier(aioredis.Redis.from_url(redis_url), cfg.keys, "n", cfg.seen)
        first = await commit_all(frontier, fps(0, 20_000))
        again = await commit_all(frontier, fps(0, 20_000))
        fresh = await commit_all(frontier, fps(20_000, 40_000))
        await frontier.client.aclose()
        return first, again, fresh

    first, again, fresh = asyncio.run(scenario())
    meta = {k.decode(): v.decode() for k, v in rclient.hgetall("{bl}:bloom").items()}
    # 1000 + 2000 + 4000 + 8000 < 20000: a fifth layer was needed, then a sixth.
    assert int(meta["layers"]) >= 5
    for layer in range(1, int(meta["layers"]) + 1):
        cap, bits, hashes = bloom_layer(1000, 0.01, layer - 1)
        assert (int(meta[f"cap{layer}"]), int(meta[f"m{layer}"]), int(meta[f"k{layer}"])) == (
            cap,
            bits,
            hashes,
        )
    assert again == 20_000, "a Bloom filter never forgets a member"
    # The error rate holds as it grows: about 1% of new URLs wrongly skipped
    # (the first, full layer alone gives 0.9%), with room for chance.
    observed = first + fresh
    assert observed <= 0.0125 * 40_000
    estimate = float(meta["fp_est"])
    assert observed / 2 <= estimate <= observed * 2
    print(
        f"Bloom growth: {meta['layers']} layers, {first + fresh} false positives "
        f"among 40,000 new URLs, estimated {estimate:.1f}"
    )


def test_every_url_probes_distinct_bloom_bits(redis_url, rclient):
    """A layer has a prime number of bits and is probed with h2 mod m: a URL
    whose h2 is a multiple of m (which once probed one bit k times, and was
    then taken for seen whenever that bit was set) sets k distinct bits."""
    settings = {"CRAWLER_SEEN_MODE": "bloom", "CRAWLER_BLOOM_CAPACITY": 4000}
    settings["CRAWLER_BLOOM_ERROR_RATE"] = 1e-9
    cfg = CrawlConfig.from_settings(Settings(settings), "pr")
    _, bits, hashes = bloom_layer(4000, 1e-9, 0)
    assert all(bits % d for d in range(2, math.isqrt(bits) + 1))  # prime
    h1, h2 = 12345, bits * 3  # odd, as bloom_hashes makes h2
    fingerprint = bytes(12) + h1.to_bytes(4, "big") + h2.to_bytes(4, "big")

    async def scenario() -> int:
        frontier = Frontier(aioredis.Redis.from_url(redis_url), cfg.keys, "n", cfg.seen)
        dups = await commit_all(frontier, [fingerprint])
        await frontier.client.aclose()
        return dups

    assert asyncio.run(scenario()) == 0
    assert rclient.hget("{pr}:bloom", "v1") == b"2"
    assert rclient.bitcount("{pr}:bloom:1") == hashes


@pytest.mark.parametrize("mode", ["exact", "bloom"])
def test_concurrent_seeders_check_and_add_atomically(mode, redis_url, rclient, tmp_path):
    """Four `scrapy seed` processes at once, with overlapping files: every URL
    is queued exactly once, and each duplicate is counted as already seen."""
    files = []
    for n in range(4):
        path = tmp_path / f"seeds{n}.txt"
        start = n * 5_000
        path.write_text("".join(f"http://seen.test/{i}\n" for i in range(start, start + 10_000)))
        files.append(path)
    union = 25_000  # 0 .. 24,999
    settings = [
        "-s",
        f"CRAWLER_SEEN_MODE={mode}",
        "-s",
        "CRAWLER_BLOOM_CAPACITY=4000",
        "-s",
        "CRAWLER_BLOOM_ERROR_RATE=1e-9",
    ]
    procs = [
        subprocess.Popen(
            [SCRAPY, "seed", "site", "-i", str(path), *settings],
            cwd=ROOT,
            env=scrapy_env(redis_url),
            stdout=subprocess.PIPE,
            text=True,
        )
        for path in files
    ]
    outputs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0, 0]
    queued = sum(int(out.split(": ", 1)[1].split(" queued")[0]) for out in outputs)
    seen = sum(int(out.split("queued, ", 1)[1].split(" already")[0]) for out in outputs)
    assert queued + seen == 40_000
    # Every queued URL is queued once, whoever checked it first.
    entries = rclient.lrange("{site}:q:0", 0, -1)
    assert len(entries) == queued == int(rclient.hget("{site}:stats", "seen"))
    assert len({json.loads(e.split(b"|", 2)[2])["url"] for e in entries}) == queued
    if mode == "exact":
        assert queued == union
    else:
        # Atomicity is what this test checks; a Bloom filter may still take
        # a new URL for seen. Layers once had any number of bits m, probed
        # with h2 as it is: http://seen.test/16287 probed only 2 distinct
        # bits of 37 in the third, and was taken for seen when the seeders
        # interleaved so (24,999 of 25,000 in CI). Now m is prime and h2 is
        # taken mod m (test_every_url_probes_distinct_bloom_bits).
        assert union - 3 <= queued <= union
    if mode == "bloom":
        assert int(rclient.hget("{site}:bloom", "layers")) >= 3  # grew while contended
