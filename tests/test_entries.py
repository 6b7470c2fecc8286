"""A frontier entry leaves its domain out when it is its URL's host; the Lua
scripts and Python must read the same domain back from every entry."""

from __future__ import annotations

from importlib import resources

import pytest
import scrapy

from crawler.politeness import request_entry, slot_of, split_entry

URLS = [
    "http://127.0.0.1:8000/page/1.html",
    "https://www.Example.COM/x",  # Scrapy's slot is lower case: the URL keeps its case
    "http://user:pw@h.example/",  # userinfo: the domain stays in the entry
    "https://b.example?x=1",
    "https://ex.example#frag",
    "https://xn--bcher-kva.example/",
    "http://[::1]:8080/ipv6",
    "https://a.example/with|pipe?q=|",
]


class Spider(scrapy.Spider):
    name = "entries"

    def parse(self, response):
        pass


def lua_domain(rclient, entry: str, held: bool) -> str | None:
    source = resources.files("crawler").joinpath("lua", "_polite.lua").read_text()
    fn = "p_held_domain" if held else "p_entry_domain"
    script = source + f"\nreturn {fn}(ARGV[1])"
    value = rclient.eval(script, 1, "{t}:stats", ("3|" + entry) if held else entry)
    return None if value is None else value.decode()


@pytest.mark.parametrize("url", URLS)
def test_python_and_lua_read_the_same_domain(url, rclient):
    spider = Spider()
    for request in (
        scrapy.Request(url, callback=spider.parse),
        scrapy.Request(url, callback=spider.parse, meta={"download_slot": "elsewhere"}),
        # An empty slot is a domain of its own, not the URL's host.
        scrapy.Request(url, callback=spider.parse, meta={"download_slot": ""}),
    ):
        entry = request_entry(request, spider)
        slot = slot_of(request)
        assert split_entry(entry.encode())[0] == slot
        assert lua_domain(rclient, entry, held=False) == slot
        assert lua_domain(rclient, entry, held=True) == slot
    plain = request_entry(scrapy.Request("http://plain.example/p", callback=spider.parse), spider)
    assert plain.startswith("0||")  # the common case is the short one
