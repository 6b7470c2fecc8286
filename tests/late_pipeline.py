"""An item pipeline a project orders after 999 (Scrapy's docs: orders are
customarily 0-1000), for the item store's order test."""

from __future__ import annotations

from typing import Any

from scrapy.exceptions import DropItem


class LatePipeline:
    def process_item(self, item: Any) -> Any:
        if item["url"].endswith("/page/1.html"):
            raise DropItem("not wanted")
        item["late"] = True
        return item
