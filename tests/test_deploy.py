"""Offline checks of deploy/: the compose file and the Dockerfile.

No Docker engine is needed: ``docker-compose config`` validates and renders the
compose file without talking to a daemon. The ``docker-compose`` binary itself
(Debian's package, 1.29) is required: CI installs it, so its absence is a
failure, not a skip.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
COMPOSE_FILE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"

INSTALL_HINT = (
    "docker-compose is not installed; these deploy checks need it "
    "(it validates deploy/docker-compose.yml offline, no Docker engine needed). "
    "Install it with: apt-get install docker-compose"
)

# docker-compose reads these from the environment; keep the caller's out of it.
_COMPOSE_ENV_VARS = re.compile(r"^(COMPOSE_|DOCKER_)|^SPIDER$")


# --------------------------------------------------------------------------
# helpers


def compose_binary() -> str:
    path = shutil.which("docker-compose")
    if path is None:
        pytest.fail(INSTALL_HINT, pytrace=False)
    return path


def run_compose(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not _COMPOSE_ENV_VARS.search(k)}
    clean.update(env or {})
    return subprocess.run(
        [compose_binary(), "-f", str(COMPOSE_FILE), *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def yaml_to_data(text: str) -> Any:
    """Parse docker-compose's YAML output.

    PyYAML is used from this interpreter if it has it; otherwise from the
    interpreter that runs docker-compose (Debian's package depends on
    python3-yaml, so that one always has it).
    """
    try:
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        return yaml.safe_load(text)
    with open(compose_binary(), "rb") as f:
        first = f.readline().decode("utf-8", "replace")
    if not first.startswith("#!"):
        pytest.fail(
            "cannot parse `docker-compose config` output: PyYAML is not importable here "
            f"and {compose_binary()} is not a Python script. " + INSTALL_HINT,
            pytrace=False,
        )
    interpreter = shlex.split(first[2:].strip())
    proc = subprocess.run(
        [
            *interpreter,
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"could not parse compose config as YAML:\n{proc.stderr}"
    return json.loads(proc.stdout)


@cache
def _config(spider: str | None) -> dict[str, Any]:
    env = {"SPIDER": spider} if spider else None
    proc = run_compose("config", env=env)
    assert proc.returncode == 0, (
        f"`docker-compose -f deploy/docker-compose.yml config` exited {proc.returncode}:\n"
        f"{proc.stderr}{proc.stdout}"
    )
    data = yaml_to_data(proc.stdout)
    assert isinstance(data, dict) and isinstance(data.get("services"), dict), proc.stdout
    return data


def config(spider: str | None = None) -> dict[str, Any]:
    return _config(spider)


def service(name: str) -> dict[str, Any]:
    services = config()["services"]
    assert name in services, f"service {name!r} missing; have {sorted(services)}"
    return services[name]


def argv(svc: dict[str, Any]) -> list[str]:
    command = svc.get("command")
    assert command, f"no command in {svc}"
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def environment(svc: dict[str, Any]) -> dict[str, str]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def volume_map(svc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """container path -> (source, mode) from the rendered short syntax."""
    out: dict[str, tuple[str, str]] = {}
    for vol in svc.get("volumes") or []:
        if isinstance(vol, dict):
            mode = "ro" if vol.get("read_only") else "rw"
            out[vol["target"]] = (str(vol.get("source", "")), mode)
            continue
        parts = vol.split(":")
        source, target = parts[0], parts[1]
        out[target] = (source, parts[2] if len(parts) > 2 else "rw")
    return out


def duration_seconds(value: Any) -> float:
    if isinstance(value, (int, float)):
        return float(value)
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}
    total, matched = 0.0, ""
    for number, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", str(value)):
        total += float(number) * units[unit]
        matched += number + unit
    assert matched == str(value), f"unparsable duration {value!r}"
    return total


@cache
def spider_names() -> frozenset[str]:
    """Spider ``name`` attributes in spiders/, read without importing them."""
    names = set()
    for path in (ROOT / "spiders").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef):
                continue
            for stmt in node.body:
                if (
                    isinstance(stmt, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id == "name" for t in stmt.targets)
                    and isinstance(stmt.value, ast.Constant)
                    and isinstance(stmt.value.value, str)
                ):
                    names.add(stmt.value.value)
    return frozenset(names)


def project_commands() -> set[str]:
    return {
        p.stem for p in (ROOT / "crawler" / "commands").glob("*.py") if not p.stem.startswith("_")
    } | {"crawl"}


def assert_scrapy_command(args: list[str], command: str) -> str:
    """``args`` is ``scrapy COMMAND SPIDER ...`` with a known command and spider."""
    assert args[:2] == ["scrapy", command], args
    assert command in project_commands(), f"no scrapy command {command!r} in the project"
    assert args[2] in spider_names(), f"spider {args[2]!r} not in {sorted(spider_names())}"
    return args[2]


# --------------------------------------------------------------------------
# docker-compose.yml


def test_compose_config_is_valid() -> None:
    proc = run_compose("config", "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip() == "", f"docker-compose warned:\n{proc.stderr}"


def test_services_exist() -> None:
    proc = run_compose("config", "--services")
    assert proc.returncode == 0, proc.stderr
    listed = set(proc.stdout.split())
    assert {"redis", "crawler", "seed", "export"} <= listed, listed
    assert {"redis", "crawler", "seed", "export"} <= set(config()["services"])


def test_redis_is_durable_and_healthchecked() -> None:
    redis = service("redis")
    assert str(redis["image"]).startswith("redis:7"), redis["image"]
    args = argv(redis)
    assert args[0] == "redis-server", args
    assert "--appendonly" in args and args[args.index("--appendonly") + 1] == "yes", args
    source, _mode = volume_map(redis)["/data"]
    assert source in (config().get("volumes") or {}), f"/data is not a named volume: {source}"
    test = redis["healthcheck"]["test"]
    assert "redis-cli" in " ".join(test) and "ping" in " ".join(test), test


def test_crawler_node() -> None:
    crawler = service("crawler")
    assert environment(crawler).get("REDIS_URL") == "redis://redis:6379/0"
    assert "container_name" not in crawler, "a fixed container_name breaks --scale"
    assert "redis" in crawler.get("depends_on", {}), crawler.get("depends_on")
    assert crawler.get("stop_signal", "SIGTERM") == "SIGTERM"
    assert "stop_grace_period" in crawler, "crawl nodes need time to stop gracefully"
    assert duration_seconds(crawler["stop_grace_period"]) >= 30, crawler["stop_grace_period"]
    assert assert_scrapy_command(argv(crawler), "crawl") == "site"


def test_no_service_publishes_host_ports() -> None:
    for name, svc in config()["services"].items():
        assert not svc.get("ports"), f"{name} publishes host ports {svc['ports']}"
        assert svc.get("network_mode") != "host", name


def test_app_services_build_the_dockerfile() -> None:
    for name in ("crawler", "seed", "export"):
        svc = service(name)
        build = svc.get("build")
        assert isinstance(build, dict), f"{name}: no build section"
        context = Path(build["context"])
        if not context.is_absolute():
            context = DEPLOY / context
        assert context.resolve() == ROOT, f"{name}: build context {context} is not the repo root"
        assert (context / build["dockerfile"]).resolve() == DOCKERFILE, build
        assert environment(svc).get("REDIS_URL") == "redis://redis:6379/0", name


def test_seed_tool() -> None:
    seed = service("seed")
    assert assert_scrapy_command(argv(seed), "seed") == "site"
    args = argv(seed)
    seeds_file = args[args.index("-i") + 1]
    source, mode = volume_map(seed)["/seeds"]
    assert mode == "ro", mode
    assert Path(source).resolve() == DEPLOY / "seeds", source
    local = DEPLOY / "seeds" / Path(seeds_file).relative_to("/seeds")
    urls = [ln for ln in local.read_text().splitlines() if ln.strip()]
    assert urls and all(u.startswith(("http://", "https://")) for u in urls), urls


def test_export_tool() -> None:
    export = service("export")
    args = argv(export)
    assert assert_scrapy_command(args, "export") == "site"
    out = args[args.index("-o") + 1]
    assert out.startswith("/out/"), out
    source, mode = volume_map(export)["/out"]
    assert mode == "rw", mode
    assert Path(source).resolve() == DEPLOY / "out" and (DEPLOY / "out").is_dir(), source


def test_one_shot_tools_are_not_started_by_plain_up() -> None:
    # Profiles: compose >= 1.28. `run SERVICE` still works on a profiled service.
    for name in ("seed", "export"):
        assert "tools" in (service(name).get("profiles") or []), name
    for name in ("redis", "crawler"):
        assert not service(name).get("profiles"), name


def test_spider_is_chosen_by_the_spider_variable() -> None:
    assert "products" in spider_names()
    services = config("products")["services"]
    assert argv(services["crawler"])[:3] == ["scrapy", "crawl", "products"]
    assert argv(services["seed"])[:3] == ["scrapy", "seed", "products"]
    assert argv(services["export"])[:3] == ["scrapy", "export", "products"]


# --------------------------------------------------------------------------
# Dockerfile


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped, continuations joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line = pending + line
        pending = ""
        keyword, _, rest = line.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not pending, "Dockerfile ends in a line continuation"
    return out


def test_dockerfile_base_and_install() -> None:
    instructions = dockerfile_instructions()
    assert instructions[0] == ("FROM", "python:3.11-slim"), instructions[0]
    assert ("WORKDIR", "/app") in instructions
    runs = [args for kw, args in instructions if kw == "RUN"]
    assert any("pip install --no-cache-dir -r requirements.txt" in r for r in runs), runs


def test_dockerfile_copy_sources_exist() -> None:
    copied = []
    for keyword, args in dockerfile_instructions():
        if keyword not in ("COPY", "ADD"):
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        assert not any(p.startswith("--from") for p in shlex.split(args)), args
        for source in parts[:-1]:
            assert (ROOT / source).exists(), f"COPY source {source!r} not in the repo"
            copied.append(source.rstrip("/"))
    for needed in ("requirements.txt", "scrapy.cfg", "crawler", "spiders"):
        assert needed in copied, f"{needed} is not copied into the image"
    # requirements.txt must be installed before the code is copied (layer caching).
    assert copied.index("requirements.txt") < copied.index("crawler")


def test_dockerfile_cmd_runs_an_existing_spider() -> None:
    cmds = [args for kw, args in dockerfile_instructions() if kw == "CMD"]
    assert len(cmds) == 1, cmds
    cmd = json.loads(cmds[0])  # exec form, so SIGTERM reaches scrapy
    assert cmd == ["scrapy", "crawl", "site"], cmd
    assert_scrapy_command(cmd, "crawl")
