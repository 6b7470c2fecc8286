"""scrapy-redis's example project's ``myspider_redis``, unchanged but
for one line (allowed_domains, see below)."""

from scrapy_redis.spiders import RedisSpider


class MySpider(RedisSpider):
    """Spider that reads urls from redis queue (myspider:start_urls)."""

    name = "myspider_redis"
    redis_key = "myspider:start_urls"

    def __init__(self, *args, **kwargs):
        # Dynamically define the allowed domains list.
        domain = kwargs.pop("domain", "")
        # The example has filter(...): Scrapy 2.19's OffsiteMiddleware reads
        # allowed_domains twice, and an exhausted filter object allows no
        # domain, so plain Scrapy drops every link (and robots.txt) as offsite.
        self.allowed_domains = list(filter(None, domain.split(",")))
        super().__init__(*args, **kwargs)

    def parse(self, response):
        return {
            "name": response.css("title::text").extract_first(),
            "url": response.url,
        }
