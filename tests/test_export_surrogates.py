"""Items holding lone surrogates (``response.json()`` of ``"cut emoji
\\ud83d"``) are stored, and ``scrapy export`` writes them as Scrapy's own
exporters do, where those can; where Scrapy's would raise, JSON formats get
the JSON escape (the same string for a JSON reader) and other formats U+FFFD
with a note naming the item."""

from __future__ import annotations

import io
import json
import threading
from http.server import BaseHTTPRequestHandler

import pytest
from scrapy.exporters import (
    CsvItemExporter,
    JsonItemExporter,
    JsonLinesItemExporter,
    XmlItemExporter,
)

from crawler.codec import encode_item
from crawler.commands._common import CommandFailed
from crawler.commands.export import _decode_page, _export
from crawler.demosite import QuietServer
from tests.conftest import read_jsonl, run_scrapy, start_node
from tests.test_meta_crawl import META

CUT = "cut emoji \ud83d"
ITEMS = [{"url": "http://a/1", "name": CUT, "ok": "caf\u00e9"}, {"url": "http://a/2", "name": "x"}]
EXPORTERS = [JsonLinesItemExporter, JsonItemExporter, CsvItemExporter, XmlItemExporter]


def scrapy_writes(cls, encoding, items):
    out = io.BytesIO()
    exporter = cls(out, encoding=encoding)
    exporter.start_exporting()
    for item in items:
        exporter.export_item(item)
    exporter.finish_exporting()
    return out.getvalue()


def we_write(cls, encoding, items):
    out = io.BytesIO()
    exporter = cls(out, encoding=encoding)
    exporter.start_exporting()
    assert _export(exporter, iter(_decode_page([encode_item(i).encode() for i in items]))) == 2
    exporter.finish_exporting()
    return out.getvalue()


@pytest.mark.parametrize("encoding", [None, "utf-8"])
@pytest.mark.parametrize("cls", EXPORTERS)
def test_lone_surrogates_export_as_scrapy_would(cls, encoding, capsys):
    try:
        expected = scrapy_writes(cls, encoding, ITEMS)
    except UnicodeEncodeError:
        expected = None  # Scrapy's exporter raises for this item
    got = we_write(cls, encoding, ITEMS)
    got.decode("utf-8")  # valid UTF-8 in every case
    if expected is not None:
        assert got == expected
    elif cls in (JsonLinesItemExporter, JsonItemExporter):
        # The JSON escape: what Scrapy writes without an encoding, read back
        # as the same string.
        assert b"cut emoji \\ud83d" in got and "caf\u00e9".encode() in got
        text = got.decode()
        lines = text.splitlines() if cls is JsonLinesItemExporter else [text]
        decoded = [json.loads(line) for line in lines]
        assert (decoded if cls is JsonLinesItemExporter else decoded[0]) == ITEMS
    else:
        assert "cut emoji \ufffd".encode() in got
        err = capsys.readouterr().err
        assert "1 items held lone surrogates" in err and "'http://a/1'" in err


def test_an_encoding_that_cannot_hold_a_character_names_the_item():
    items = [{"url": "http://a/1", "name": "\u2713"}, {"url": "http://a/2"}]
    for cls in EXPORTERS[:3]:
        with pytest.raises(
            CommandFailed, match=r"url 'http://a/1' holds '✓', which FEED_EXPORT_ENCODING='latin-1'"
        ):
            we_write(cls, "latin-1", items)


class _Api(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b'{"name": "cut emoji \\ud83d", "ok": "caf\\u00e9"}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_a_crawled_item_with_a_lone_surrogate_is_stored_and_exported(redis_url, tmp_path):
    server = QuietServer(("127.0.0.1", 0), _Api)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/api.json"
    try:
        assert run_scrapy(["seed", "api", url], redis_url, cwd=META).returncode == 0
        node = start_node("api", redis_url, tmp_path / "n.log", "ROBOTSTXT_OBEY=False", cwd=META)
        assert node.wait(timeout=60) == 0, (tmp_path / "n.log").read_text()[-3000:]
    finally:
        server.shutdown()
        server.server_close()
    out = tmp_path / "items.jsonl"
    result = run_scrapy(["export", "api", "-o", str(out)], redis_url, cwd=META)
    assert result.returncode == 0, result.stderr
    assert "exported 1 items" in result.stderr
    # FEED_EXPORT_ENCODING is utf-8 in the project: the surrogate as its escape.
    assert b'"name": "cut emoji \\ud83d", "ok": "caf\xc3\xa9"' in out.read_bytes()
    assert read_jsonl(out) == [{"url": url, "name": CUT, "ok": "caf\u00e9"}]
    csv_out = tmp_path / "items.csv"
    result = run_scrapy(["export", "api", "-o", str(csv_out)], redis_url, cwd=META)
    assert result.returncode == 0, result.stderr
    assert "cut emoji \ufffd" in csv_out.read_text() and url in result.stderr
