"""What a crawl's key layout needs from the Redis it runs on.

On Redis Cluster a Lua script may only touch keys of one hash slot. Every
key of a crawl carries its hash tag ``{NAME}`` except the scrapy-redis seed
key (``NAME:start_urls``), which the scripts that lease and return raw seeds
touch next to the crawl's own keys. On a cluster that key must share the
crawl's slot: a spider that never reads it gets ``{NAME}:start_urls``; a
scrapy-redis spider, whose users push seeds to its key by name, is stopped
with a message naming the key to use.
"""

from __future__ import annotations

import dataclasses
import logging

from redis.crc import key_slot
from scrapy import Spider
from scrapy_redis.spiders import RedisMixin

from crawler.config import CrawlConfig
from crawler.connection import is_cluster, sync_client
from crawler.exceptions import ConfigError
from crawler.partitions import record_tags, recorded_tags

logger = logging.getLogger(__name__)


def fit_to_redis(config: CrawlConfig, url: str, spidercls: type[Spider]) -> CrawlConfig:
    """*config*, its seed key moved into the crawl's slot on a cluster."""
    keys = config.keys
    if not is_cluster(url) or key_slot(keys.start_urls.encode()) == key_slot(keys.tag.encode()):
        return config
    tagged = keys.start_urls.replace(keys.name, keys.tag, 1)
    if keys.name not in keys.start_urls:
        tagged = f"{keys.tag}:start_urls"
    if issubclass(spidercls, RedisMixin) or keys.start_urls != f"{keys.name}:start_urls":
        raise ConfigError(
            f"on Redis Cluster the seed key {keys.start_urls!r} must share the crawl's hash "
            f"tag {keys.tag}: set redis_key = {tagged!r} on the spider (or "
            f"CRAWLER_START_URLS_KEY = {tagged!r}) and push seeds to that key."
        )
    logger.info("Redis Cluster: the scrapy-redis seed key of this crawl is %s.", tagged)
    return dataclasses.replace(config, keys=dataclasses.replace(keys, start_urls=tagged))


def with_partitions(config: CrawlConfig, url: str, record: bool) -> CrawlConfig:
    """*config* with the crawl's partition tags (crawler.partitions): the
    recorded ones; with *record* (a process that writes to the crawl), new
    ones are recorded if there are none."""
    with sync_client(url) as client:
        if record:
            tags = record_tags(client, config.keys, config.partition_count, is_cluster(url))
        else:
            tags = recorded_tags(client, config.keys)
    return dataclasses.replace(config, parts=tags)
