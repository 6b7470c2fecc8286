"""Never to be imported by a node: a stored entry naming ``metatrap:Trap``
must be refused before any import. Importing it leaves a marker file."""

import os
from pathlib import Path

import scrapy

if os.environ.get("METATRAP_MARKER"):
    Path(os.environ["METATRAP_MARKER"]).write_text("imported")


class Trap(scrapy.Item):
    pass
