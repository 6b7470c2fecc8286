"""Every framework setting is documented, in order, in one module and the README."""

from __future__ import annotations

import re
from pathlib import Path

from crawler import default_settings

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
