"""Not from scrapy-redis: spiders for tests/test_scrapy_redis.py beside
upstream's example spiders."""

import json

from scrapy import Request
from scrapy.linkextractors import LinkExtractor
from scrapy.spiders import Rule
from scrapy_redis.spiders import RedisCrawlSpider, RedisSpider
from scrapy_redis.utils import bytes_to_str


class OverrideSpider(RedisSpider):
    """make_request_from_data reads JSON seeds of its own shape, written as
    scrapy-redis's README suggests (``bytes_to_str`` with the spider's
    ``redis_encoding``, then ``json.loads``)."""

    name = "override_redis"
    redis_key = "%(name)s:jobs"

    def make_request_from_data(self, data):
        job = json.loads(bytes_to_str(data, self.redis_encoding))
        # One seed, two pages: the job's page and its "about" page.
        return [
            Request(job["page"], callback=self.parse_job, cb_kwargs={"job": job["id"]}),
            Request(
                job["page"] + "?about=1", callback=self.parse_job, cb_kwargs={"job": job["id"]}
            ),
        ]

    def parse_job(self, response, job):
        # scrapy-redis's client on the spider: the framework's Redis too.
        self.server.incr(f"{self.name}:parsed")
        yield {"job": job, "url": response.url, "name": response.css("title::text").get()}


class FollowSpider(RedisCrawlSpider):
    """A RedisCrawlSpider as scrapy-redis's README writes one, with its
    allowed domains a list (upstream's mycrawler_redis makes them a one-shot
    ``filter``, which Scrapy 2.19's offsite middleware reads as empty)."""

    name = "follow_redis"
    allowed_domains = ["127.0.0.1"]
    rules = (Rule(LinkExtractor(), callback="parse_page", follow=True),)

    def parse_page(self, response):
        return {"name": response.css("title::text").get(), "url": response.url}
