"""Every framework setting is documented, in order, in one module and the README,
and a value that is not a number is refused by name."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from scrapy.settings import Settings

from crawler import default_settings
from crawler.config import CrawlConfig
from crawler.exceptions import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_settings_module_is_alphabetical_and_documented():
    source = (ROOT / "crawler" / "default_settings.py").read_text()
    names = re.findall(r"^(CRAWLER_\w+) =", source, re.M)
    assert names == sorted(names)
    assert names == sorted(n for n in dir(default_settings) if n.startswith("CRAWLER_"))
    for name in names:
        assert re.search(rf"#: .*\n(#: .*\n)*{name} =", source), f"{name} has no #: comment"


def test_readme_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    listed = re.findall(r"^\| `(CRAWLER_\w+)` \|", readme, re.M)
    expected = sorted(n for n in dir(default_settings) if n.startswith("CRAWLER_"))
    assert listed == expected


@pytest.mark.parametrize(
    "name",
    ["CRAWLER_MAX_CRAWL_DELAY", "CRAWLER_BACKOFF_BASE", "CRAWLER_LEASE_TIME", "DOWNLOAD_DELAY"],
)
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_setting_that_is_not_a_finite_number_is_named(name, value):
    """float() reads "nan" and "inf": NaN passed every range check, and a
    Crawl-delay cut to an infinite CRAWLER_MAX_CRAWL_DELAY never ended."""
    with pytest.raises(ConfigError, match=rf"{name}='{value}' is not a finite number"):
        CrawlConfig.from_settings(Settings({name: value}), "t")


@pytest.mark.parametrize(
    "value", ["dont_obey_robotstxt,depth", ["dont_obey_robotstxt", "depth"], " dont_obey_robotstxt"]
)
def test_a_list_setting_reads_as_it_does_on_the_command_line(value):
    """``-s CRAWLER_SEED_ALLOWED_META=dont_obey_robotstxt`` is text: read as
    a set of its characters, every seed carrying that key was refused and
    dead-lettered (helper 38). Read as Scrapy's getlist reads it."""
    config = CrawlConfig.from_settings(Settings({"CRAWLER_SEED_ALLOWED_META": value}), "t")
    assert "dont_obey_robotstxt" in config.seed_allowed_meta
    assert "d" not in config.seed_allowed_meta
