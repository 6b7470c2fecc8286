"""``scrapy export``: one feed of the cluster's items, format by extension;
and each node's own FEEDS still work."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import re
import xml.etree.ElementTree as ET

import pytest
import scrapy
from scrapy.exporters import (
    CsvItemExporter,
    JsonItemExporter,
    JsonLinesItemExporter,
    XmlItemExporter,
)

from crawler.codec import encode_item
from crawler.commands.export import _decode_page, _export
from tests.conftest import read_jsonl, run_scrapy, start_node


@pytest.fixture
def crawled(make_site, redis_url, tmp_path):
    site = make_site(30)
    assert run_scrapy(["seed", "site", site.url("/page/0.html")], redis_url).returncode == 0
    node_feed = tmp_path / "node-feed.jsonl"
    node = start_node(
        "site",
        redis_url,
        tmp_path / "node.log",
        f"FEEDS={json.dumps({str(node_feed): {'format': 'jsonl'}})}",
    )
    assert node.wait(timeout=120) == 0
    return site, node_feed


def test_formats_by_extension(crawled, redis_url, tmp_path):
    expected = {crawled[0].url(f"/page/{i}.html") for i in range(30)}
    out = tmp_path / "items.jsonl"
    result = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert result.returncode == 0, result.stderr
    assert "exported 30 items of crawl 'site'" in result.stderr
    items = read_jsonl(out)
    assert {i["url"] for i in items} == expected
    assert all(i["status"] == 200 and i["title"].startswith("Page ") for i in items)

    out = tmp_path / "items.json"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    assert {i["url"] for i in json.loads(out.read_text())} == expected

    out = tmp_path / "items.csv"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    rows = list(csv.DictReader(out.open()))
    assert {r["url"] for r in rows} == expected and set(rows[0]) == {"url", "title", "status"}

    out = tmp_path / "items.xml"
    assert run_scrapy(["export", "site", "-o", str(out)], redis_url).returncode == 0
    assert {e.findtext("url") for e in ET.parse(out).getroot()} == expected


def test_node_feeds_keep_working(crawled):
    site, node_feed = crawled
    assert {i["url"] for i in read_jsonl(node_feed)} == {
        site.url(f"/page/{i}.html") for i in range(30)
    }


def test_feed_uri_parameters_and_batches_as_scrapys_o(crawled, redis_url, tmp_path):
    """``%(name)s``, ``%(time)s`` and ``%(batch_id)d`` in the output name, and
    FEED_EXPORT_BATCH_ITEM_COUNT, as ``scrapy crawl -o`` fills them in and
    rotates: the export went to one file named with the placeholders
    themselves (helper 49)."""
    expected = {crawled[0].url(f"/page/{i}.html") for i in range(30)}
    out = tmp_path / "%(name)s-%(batch_id)02d.csv"
    batched = ["-s", "FEED_EXPORT_BATCH_ITEM_COUNT=12"]
    result = run_scrapy(["export", "site", "-o", str(out), *batched], redis_url)
    assert result.returncode == 0, result.stderr
    assert "(csv, 3 files of at most 12)" in result.stderr
    files = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert files == ["site-01.csv", "site-02.csv", "site-03.csv"]
    rows = [list(csv.DictReader((tmp_path / name).open())) for name in files]
    assert [len(r) for r in rows] == [12, 12, 6]
    assert {r["url"] for batch in rows for r in batch} == expected

    result = run_scrapy(["export", "site", "-o", str(tmp_path / "t" / "%(time)s.jsonl")], redis_url)
    assert result.returncode == 0, result.stderr
    [timed] = (tmp_path / "t").glob("*.jsonl")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d-\d\d-\d\d\+00-00\.jsonl", timed.name)

    # A batch size with nothing to number the files by: refused, as Scrapy's
    # feed export refuses it, the file untouched.
    out = tmp_path / "items.jsonl"
    result = run_scrapy(["export", "site", "-o", str(out), *batched], redis_url)
    assert result.returncode == 1 and "put %(batch_id)d" in result.stderr
    assert not out.exists()


def test_unknown_format_keeps_existing_file(crawled, redis_url, tmp_path):
    out = tmp_path / "items.parquetx"
    out.write_text("precious")
    result = run_scrapy(["export", "site", "-o", str(out)], redis_url)
    assert result.returncode == 1
    assert "unknown feed format 'parquetx'" in result.stderr and "jsonl" in result.stderr
    assert out.read_text() == "precious"


def test_products_spider_extracts_structured_items(make_site, redis_url, tmp_path):
    site = make_site(1)
    assert run_scrapy(["seed", "products", site.url("/shop/")], redis_url).returncode == 0
    nodes = [start_node("products", redis_url, tmp_path / f"p{i}.log") for i in range(2)]
    assert [n.wait(timeout=120) for n in nodes] == [0, 0]
    out = tmp_path / "products.csv"
    assert run_scrapy(["export", "products", "-o", str(out)], redis_url).returncode == 0
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 200 == len({r["sku"] for r in rows})
    first = next(r for r in rows if r["sku"] == "SKU-00007")
    assert first["name"] == "Product 7" and first["category"] == "Category 2"
    assert float(first["price"]) == pytest.approx(7 * 37 / 10 + 1)


@pytest.mark.parametrize("encoding", [None, "utf-8"])
def test_jsonl_fast_path_writes_what_scrapys_exporter_writes(encoding):
    """``scrapy export`` writes JSON lines without the exporter's per-field
    loop; the bytes are those of Scrapy's own JsonLinesItemExporter."""
    items = [
        {"url": "http://a.test/1", "title": "Café ✓ 𝄞", "price": 1.5, "n": 3},
        {"nested": {"b": [1, 2.0, None, True]}, "empty": "", "zero": 0, "none": None},
        {"quote": 'say "hi"\n\ttab', "big": 2**70, "tiny": 1e-300},
        {},
    ]
    stored = [encode_item(item).encode() for item in items]

    def write(fast: bool) -> bytes:
        out = io.BytesIO()
        exporter = JsonLinesItemExporter(out, encoding=encoding)
        exporter.start_exporting()
        if fast:
            assert _export(exporter, iter(_decode_page(stored))) == len(items)
        else:
            for data in stored:
                exporter.export_item(json.loads(data))
        exporter.finish_exporting()
        return out.getvalue()

    assert write(fast=True) == write(fast=False)
    assert len(write(fast=True).splitlines()) == len(items)


def serialize_price(value):  # as in Scrapy's docs ("Declaring a serializer in the field")
    return f"$ {value}"


class Product(scrapy.Item):
    name = scrapy.Field()
    price = scrapy.Field(serializer=serialize_price)
    tags = scrapy.Field()


@dataclasses.dataclass
class Offer:
    shop: str
    price: int = dataclasses.field(metadata={"serializer": serialize_price})


@pytest.mark.parametrize(
    "exporter_cls", [JsonLinesItemExporter, JsonItemExporter, XmlItemExporter, CsvItemExporter]
)
def test_items_are_exported_as_plain_scrapys_exporters_write_them(exporter_cls):
    """An item is stored as JSON, without its class: a field's serializer
    and the declaration order of its fields are applied when it is stored,
    so ``scrapy export`` writes the bytes plain Scrapy's exporter writes for
    the item itself (they were left out: "100" for "$ 100", fields in the
    order they were set)."""
    items: list = [
        Product(tags=["a", "b"], price=100, name="Desk"),
        Product(price=7, name="Lamp", tags=["c"]),
    ]
    if exporter_cls is not CsvItemExporter:  # one item class per CSV file
        items += [Offer(shop="x", price=3), {"z": 1, "a": [2]}]

    def write(stored: bool) -> bytes:
        out = io.BytesIO()
        exporter = exporter_cls(out)
        exporter.start_exporting()
        if stored:
            data = [encode_item(item).encode() for item in items]
            assert _export(exporter, iter(_decode_page(data))) == len(items)
        else:
            for item in items:
                exporter.export_item(item)
        exporter.finish_exporting()
        return out.getvalue()

    assert b"$ 100" in write(stored=False)
    assert write(stored=True) == write(stored=False)


def test_a_page_of_stored_items_decodes_as_each_item_does():
    stored = [encode_item({"a": i, "s": 'x,]"['}).encode() for i in range(5)]
    assert _decode_page(stored) == [json.loads(data) for data in stored]
    assert _decode_page([]) == []
    with pytest.raises(json.JSONDecodeError):
        _decode_page([stored[0], b'{"broken": '])
    # Bad values that would still make a valid array are caught too.
    for bad in ([b""], [b'{"a":1},{"b":2}']):
        with pytest.raises(json.JSONDecodeError):
            _decode_page(bad)


def export_in(tmp_path, redis_url, *args):
    """``scrapy export site ARGS`` run from *tmp_path* (the project found by
    SCRAPY_SETTINGS_MODULE), so that a file named ``-`` lands there."""
    env = {"SCRAPY_SETTINGS_MODULE": "spiders.settings"}
    return run_scrapy(["export", "site", *args], redis_url, cwd=tmp_path, **env)


def test_dash_writes_the_feed_to_stdout_as_scrapys_o(crawled, redis_url, tmp_path):
    """``-o -:FORMAT`` is Scrapy's feed on standard output (and ``-o -`` with
    ``-t FORMAT``): stdout holds the feed alone, the summary goes to stderr.
    It wrote a file named ``-`` (or refused ``-:jsonl`` as format '')."""
    expected = {crawled[0].url(f"/page/{i}.html") for i in range(30)}
    tmp_path = tmp_path / "cwd"
    tmp_path.mkdir()
    result = export_in(tmp_path, redis_url, "-o", "-:jsonl")
    assert result.returncode == 0, result.stderr
    assert {json.loads(line)["url"] for line in result.stdout.splitlines()} == expected
    assert len(result.stdout.splitlines()) == 30
    assert "exported 30 items of crawl 'site'" in result.stderr
    assert "to stdout (jsonl)" in result.stderr

    result = export_in(tmp_path, redis_url, "-o", "-", "-t", "json")
    assert result.returncode == 0, result.stderr
    assert {i["url"] for i in json.loads(result.stdout)} == expected

    result = export_in(tmp_path, redis_url, "-o", "-:csv")
    assert result.returncode == 0, result.stderr
    assert {r["url"] for r in csv.DictReader(io.StringIO(result.stdout))} == expected
    assert list(tmp_path.iterdir()) == []  # no file named "-"

    # With no format, refused as before (Scrapy refuses it too).
    result = export_in(tmp_path, redis_url, "-o", "-")
    assert result.returncode == 1 and "unknown feed format '' for '-'" in result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []

    # The follower cuts its file back after a crash, which a pipe cannot be.
    result = export_in(tmp_path, redis_url, "-o", "-:jsonl", "--follow")
    assert result.returncode == 1 and "--follow writes to a file" in result.stderr
    assert result.stdout == "" and list(tmp_path.iterdir()) == []


def test_file_colon_format_as_scrapys_o(crawled, redis_url, tmp_path):
    """``-o FILE:FORMAT`` (Scrapy's ``-o items.dat:jsonlines``) writes FILE in
    FORMAT; it wrote a file named ``items.dat:jsonlines``, or refused it."""
    expected = {crawled[0].url(f"/page/{i}.html") for i in range(30)}
    tmp_path = tmp_path / "cwd"
    tmp_path.mkdir()
    result = export_in(tmp_path, redis_url, "-o", "items.dat:jsonlines")
    assert result.returncode == 0, result.stderr
    assert {i["url"] for i in read_jsonl(tmp_path / "items.dat")} == expected
    assert "to items.dat (jsonlines)" in result.stderr

    result = export_in(tmp_path, redis_url, "-o", "feed.xml:csv")
    assert result.returncode == 0, result.stderr
    assert {r["url"] for r in csv.DictReader((tmp_path / "feed.xml").open())} == expected
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed.xml", "items.dat"]

    # A colon that is no format: the whole name, by its extension, as Scrapy
    # parses it; an unknown format is refused with the same message as before.
    result = export_in(tmp_path, redis_url, "-o", "items.dat:nope")
    assert result.returncode == 1, result.stderr
    assert "unknown feed format 'dat:nope' for 'items.dat:nope'" in result.stderr
    result = export_in(tmp_path, redis_url, "-o", "at:12.jsonl")
    assert result.returncode == 0, result.stderr
    assert len(read_jsonl(tmp_path / "at:12.jsonl")) == 30


def test_capital_o_as_scrapys_crawl_takes_it(crawled, redis_url, tmp_path):
    """``-O FILE`` (and ``-O -:FORMAT``), which Scrapy users give ``scrapy
    crawl`` to replace a feed, is what ``-o`` does here; it was refused as
    an unknown option."""
    expected = {crawled[0].url(f"/page/{i}.html") for i in range(30)}
    out = tmp_path / "items.jsonl"
    out.write_text('{"url": "stale"}\n')
    result = run_scrapy(["export", "site", "-O", str(out)], redis_url)
    assert result.returncode == 0, result.stderr
    assert {i["url"] for i in read_jsonl(out)} == expected

    result = run_scrapy(["export", "site", "-O", "-:jsonl"], redis_url)
    assert result.returncode == 0, result.stderr
    assert {json.loads(line)["url"] for line in result.stdout.splitlines()} == expected

    both = run_scrapy(["export", "site", "-o", str(out), "-O", str(out)], redis_url)
    assert both.returncode == 2, both.stderr
    assert "Please use only one of -o/--output and -O/--overwrite-output" in both.stderr
    follow = run_scrapy(["export", "site", "-O", str(out), "--follow"], redis_url)
    assert follow.returncode == 2 and "--follow goes with -o" in follow.stderr
