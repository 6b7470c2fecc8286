"""Offline checks of deploy/k8s/: the Kubernetes manifests.

No cluster and no network: every document is validated against the Kubernetes
OpenAPI JSON schemas that the ``kubernetes-validate`` package bundles (strict
mode, so unknown or misspelt fields are errors, as the API server's strict field
validation would make them), then the deployment policy is checked on the parsed
YAML: Redis durable and password-protected, credentials only from the Secret,
crawl nodes given time to stop gracefully, and so on.
"""

from __future__ import annotations

import ast
import copy
import re
import shlex
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

try:
    import kubernetes_validate
    import yaml
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.fail(
        f"{exc.name} is not installed; deploy/k8s checks need kubernetes-validate (which "
        "bundles the Kubernetes JSON schemas) and PyYAML: pip install -r requirements.txt",
        pytrace=False,
    )

ROOT = Path(__file__).resolve().parents[1]
K8S = ROOT / "deploy" / "k8s"
KUSTOMIZATION = K8S / "kustomization.yaml"

#: Schemas validated against: an older release still in wide use and the newest
#: one kubernetes-validate (>= 1.37, see requirements.txt) bundles.
KUBERNETES_VERSIONS = ("1.30", "1.37")

EXPECTED_FILES = {
    "kustomization.yaml",
    "secret.yaml",
    "redis.yaml",
    "crawler.yaml",
    "crawler-job.yaml",
    "seed-job.yaml",
    "export-job.yaml",
}
SECRET = "crawler-redis"
APP_IMAGE = "scrapy-redis-crawler"
DEFAULT_STOP_TIMEOUT = 30.0  # CRAWLER_STOP_TIMEOUT in crawler/default_settings.py
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}

Doc = dict[str, Any]


# --------------------------------------------------------------------------
# helpers


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*") if p.suffix in (".yaml", ".yml"))


@cache
def load(path: Path) -> tuple[Doc, ...]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        pytest.fail(f"{path.name} is not valid YAML: {exc}", pytrace=False)
    for i, doc in enumerate(docs):
        assert isinstance(doc, dict), f"{path.name}: document {i} is not a mapping: {doc!r}"
    return tuple(docs)


def resources() -> list[tuple[str, Doc]]:
    """(file name, document) of every Kubernetes object, the kustomization left out."""
    return [
        (path.name, doc) for path in manifest_files() if path != KUSTOMIZATION for doc in load(path)
    ]


def label(doc: Doc) -> str:
    return f"{doc.get('kind')}/{(doc.get('metadata') or {}).get('name')}"


def find(kind: str, name: str) -> tuple[str, Doc]:
    found = [(f, d) for f, d in resources() if d.get("kind") == kind and name_of(d) == name]
    have = sorted(label(d) for _, d in resources())
    assert len(found) == 1, f"expected one {kind} named {name!r} in deploy/k8s, have {have}"
    return found[0]


def name_of(doc: Doc) -> str:
    return str((doc.get("metadata") or {}).get("name"))


def pod_spec(doc: Doc) -> Doc | None:
    kind = doc.get("kind")
    if kind == "Pod":
        return doc["spec"]
    if kind == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind in WORKLOAD_KINDS:
        return doc["spec"]["template"]["spec"]
    return None


def pod_specs() -> list[tuple[str, Doc, Doc]]:
    """(file name, workload, its pod spec) for every workload."""
    out = []
    for fname, doc in resources():
        spec = pod_spec(doc)
        if spec is not None:
            out.append((fname, doc, spec))
    return out


def containers(spec: Doc) -> list[Doc]:
    return [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]


def only_container(doc: Doc) -> Doc:
    spec = pod_spec(doc)
    assert spec is not None, f"{label(doc)} has no pod template"
    found = spec.get("containers") or []
    assert len(found) == 1, f"{label(doc)} should run one container, has {len(found)}"
    return found[0]


def argv(container: Doc) -> list[str]:
    args = [*(container.get("command") or []), *(container.get("args") or [])]
    if args[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        args = shlex.split(args[2])
    return [str(a) for a in args]


def scrapy_settings(args: list[str]) -> dict[str, str]:
    """The ``-s NAME=VALUE`` options of a scrapy command line."""
    out = {}
    for i, arg in enumerate(args):
        if arg in ("-s", "--set") and i + 1 < len(args):
            key, _, value = args[i + 1].partition("=")
            out[key] = value
        elif arg.startswith("--set="):
            key, _, value = arg[len("--set=") :].partition("=")
            out[key] = value
    return out


def option(args: list[str], flag: str, where: str) -> str:
    assert flag in args and args.index(flag) + 1 < len(args), f"{where}: no {flag} VALUE in {args}"
    return args[args.index(flag) + 1]


def env_entry(container: Doc, name: str) -> Doc | None:
    for entry in container.get("env") or []:
        if entry.get("name") == name:
            return entry
    return None


def mounts(container: Doc, spec: Doc) -> dict[str, Doc]:
    """mount path -> the pod volume mounted there."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    out = {}
    for mount in container.get("volumeMounts") or []:
        assert mount["name"] in volumes, f"volumeMount {mount['name']!r} has no pod volume"
        out[mount["mountPath"]] = volumes[mount["name"]]
    return out


def resolve_port(container: Doc, port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    assert port in named, f"probe port {port!r} is not a named port of {container['name']}"
    return int(named[port])


def is_app(container: Doc) -> bool:
    return str(container.get("image", "")).split(":")[0].endswith(APP_IMAGE)


@cache
def spider_names() -> frozenset[str]:
    """Spider ``name`` attributes in spiders/, read without importing them."""
    names = set()
    for path in (ROOT / "spiders").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                if any(isinstance(t, ast.Name) and t.id == "name" for t in node.targets):
                    names.add(str(node.value.value))
    return frozenset(names)


def assert_scrapy_command(args: list[str], command: str, where: str) -> None:
    commands = {p.stem for p in (ROOT / "crawler" / "commands").glob("*.py")} | {"crawl"}
    assert args[:2] == ["scrapy", command], f"{where}: expected `scrapy {command} ...`, got {args}"
    assert command in commands, f"{where}: the project has no scrapy command {command!r}"
    assert len(args) > 2 and args[2] in spider_names(), (
        f"{where}: spider {args[2:3]} is not one of {sorted(spider_names())}"
    )


def stop_timeout(args: list[str]) -> float:
    return float(scrapy_settings(args).get("CRAWLER_STOP_TIMEOUT", DEFAULT_STOP_TIMEOUT))


# --------------------------------------------------------------------------
# files and schemas


def test_expected_manifests_exist() -> None:
    assert K8S.is_dir(), f"{K8S} is missing"
    have = {p.name for p in manifest_files()}
    missing = EXPECTED_FILES - have
    assert not missing, f"deploy/k8s is missing {sorted(missing)}; has {sorted(have)}"


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifest_parses(path: Path) -> None:
    docs = load(path)
    assert docs, f"{path.name} holds no YAML document"
    for doc in docs:
        for field in ("apiVersion", "kind"):
            assert doc.get(field), f"{path.name}: a document has no {field}: {doc}"
        if path != KUSTOMIZATION:
            name = (doc.get("metadata") or {}).get("name")
            assert name, f"{path.name}: a {doc['kind']} has no metadata.name"


def test_object_names_are_unique() -> None:
    seen: dict[str, str] = {}
    for fname, doc in resources():
        key = label(doc)
        assert key not in seen, f"{key} is defined in both {seen[key]} and {fname}"
        seen[key] = fname


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize(
    "path", [p for p in manifest_files() if p != KUSTOMIZATION], ids=lambda p: p.name
)
def test_manifest_matches_kubernetes_schema(path: Path, version: str) -> None:
    for doc in load(path):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path) or "(top level)"
            pytest.fail(
                f"{path.name}: {label(doc)} is invalid for Kubernetes {version} "
                f"at {where}: {exc.message}",
                pytrace=False,
            )
        except kubernetes_validate.SchemaNotFoundError as exc:
            pytest.fail(f"{path.name}: {label(doc)}: {exc.message}", pytrace=False)


def test_validator_is_strict() -> None:
    """Guards the check above: a misspelt field must be rejected, not ignored."""
    _, deployment = find("Deployment", "crawler")
    bad = copy.deepcopy(deployment)
    bad["spec"]["template"]["spec"]["terminationGracePeriod"] = 45
    with pytest.raises(kubernetes_validate.ValidationError, match="terminationGracePeriod"):
        kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load(KUSTOMIZATION)
    assert len(kustomization) == 1, "kustomization.yaml should hold one document"
    doc = kustomization[0]
    assert doc.get("apiVersion", "").startswith("kustomize.config.k8s.io/"), doc.get("apiVersion")
    assert doc.get("kind") == "Kustomization", doc.get("kind")
    listed = doc.get("resources") or []
    dupes = sorted({r for r in listed if listed.count(r) > 1})
    assert not dupes, f"kustomization.yaml lists {dupes} more than once"
    files = {p.name for p in manifest_files()} - {KUSTOMIZATION.name}
    missing, extra = files - set(listed), set(listed) - files
    assert not missing, f"kustomization.yaml resources do not list {sorted(missing)}"
    assert not extra, f"kustomization.yaml lists files that are not in deploy/k8s: {sorted(extra)}"


def test_references_resolve() -> None:
    """Every Secret, ConfigMap and claim a pod uses is defined in deploy/k8s."""
    defined = {label(doc) for _, doc in resources()}
    for fname, doc, spec in pod_specs():
        refs = []
        for container in containers(spec):
            for entry in container.get("env") or []:
                source = entry.get("valueFrom") or {}
                if "secretKeyRef" in source:
                    refs.append(("Secret", source["secretKeyRef"]["name"]))
                if "configMapKeyRef" in source:
                    refs.append(("ConfigMap", source["configMapKeyRef"]["name"]))
            for source in container.get("envFrom") or []:
                if "secretRef" in source:
                    refs.append(("Secret", source["secretRef"]["name"]))
                if "configMapRef" in source:
                    refs.append(("ConfigMap", source["configMapRef"]["name"]))
        for volume in spec.get("volumes") or []:
            if "configMap" in volume:
                refs.append(("ConfigMap", volume["configMap"]["name"]))
            if "secret" in volume:
                refs.append(("Secret", volume["secret"]["secretName"]))
            if "persistentVolumeClaim" in volume:
                refs.append(("PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]))
        for kind, name in refs:
            assert f"{kind}/{name}" in defined, (
                f"{fname}: {label(doc)} uses {kind} {name!r}, which deploy/k8s does not define"
            )


def test_selectors_match_pod_labels() -> None:
    for fname, doc, _spec in pod_specs():
        if doc["kind"] in ("Job", "CronJob", "Pod"):
            continue  # Jobs generate their own selector
        selector = doc["spec"]["selector"].get("matchLabels") or {}
        labels = doc["spec"]["template"]["metadata"].get("labels") or {}
        assert selector and selector.items() <= labels.items(), (
            f"{fname}: {label(doc)} selector {selector} does not match its pod labels {labels}"
        )
    for fname, service in [(f, d) for f, d in resources() if d["kind"] == "Service"]:
        selector = service["spec"].get("selector") or {}
        matched = [
            label(doc)
            for _, doc, _ in pod_specs()
            if selector.items() <= (doc["spec"]["template"]["metadata"].get("labels") or {}).items()
        ]
        assert matched, f"{fname}: Service {name_of(service)} selects no pods ({selector})"


# --------------------------------------------------------------------------
# credentials


def test_secret_holds_the_redis_credentials() -> None:
    fname, secret = find("Secret", SECRET)
    data = secret.get("stringData") or {}
    assert {"REDIS_PASSWORD", "REDIS_URL"} <= set(data), (
        f"{fname}: Secret {SECRET} needs stringData REDIS_PASSWORD and REDIS_URL: {sorted(data)}"
    )
    url = urlsplit(str(data["REDIS_URL"]))
    assert url.scheme in ("redis", "rediss"), f"REDIS_URL is not a redis:// URL: {url.scheme}"
    assert (url.hostname, url.port) == ("redis", 6379), (
        f"REDIS_URL should point at the redis Service (redis:6379), not {url.netloc}"
    )
    assert url.password == str(data["REDIS_PASSWORD"]), (
        "REDIS_URL's password differs from REDIS_PASSWORD, so the nodes could not log in"
    )
    assert "replace" in (K8S / fname).read_text().lower(), (
        f"{fname} should say that its placeholder password must be replaced"
    )


def test_credentials_come_only_from_the_secret() -> None:
    for fname, doc, spec in pod_specs():
        for container in containers(spec):
            where = f"{fname}: {label(doc)} container {container['name']}"
            for entry in container.get("env") or []:
                if entry["name"] not in ("REDIS_URL", "REDIS_PASSWORD"):
                    continue
                assert "value" not in entry, f"{where} sets {entry['name']} literally"
                ref = (entry.get("valueFrom") or {}).get("secretKeyRef") or {}
                assert ref.get("name") == SECRET and ref.get("key") == entry["name"], (
                    f"{where}: {entry['name']} must come from secretKeyRef "
                    f"{{name: {SECRET}, key: {entry['name']}}}, got {entry}"
                )
            if is_app(container):
                # Without REDIS_URL a node starts a private local Redis instead.
                assert env_entry(container, "REDIS_URL"), f"{where} has no REDIS_URL"


def test_no_password_outside_the_secret() -> None:
    fname, secret = find("Secret", SECRET)
    password = str(secret["stringData"]["REDIS_PASSWORD"])
    for path in manifest_files():
        if path.name == fname:
            continue
        text = path.read_text()
        assert password not in text, f"{path.name} contains the Redis password literally"
        assert not re.search(r"rediss?://[^\s'\"]*@", text), (
            f"{path.name} contains a Redis URL with credentials; use the Secret"
        )


# --------------------------------------------------------------------------
# Redis


def test_redis_is_a_durable_statefulset() -> None:
    fname, sts = find("StatefulSet", "redis")
    spec = sts["spec"]
    assert spec.get("replicas", 1) == 1, f"{fname}: Redis must run 1 replica"
    assert spec.get("serviceName") == "redis", f"{fname}: serviceName should be redis"
    container = only_container(sts)
    assert str(container["image"]).startswith("redis:7"), container["image"]
    args = argv(container)
    assert option(args, "--appendonly", fname) == "yes", (
        f"{fname}: Redis needs --appendonly yes: {args}"
    )
    assert option(args, "--requirepass", fname) == "$(REDIS_PASSWORD)", (
        f"{fname}: Redis should get --requirepass $(REDIS_PASSWORD) from the Secret: {args}"
    )
    assert env_entry(container, "REDIS_PASSWORD"), f"{fname}: $(REDIS_PASSWORD) has no env var"
    templates = {t["metadata"]["name"] for t in spec.get("volumeClaimTemplates") or []}
    assert templates, f"{fname}: Redis has no volumeClaimTemplates, so /data is not persistent"
    data_mounts = [m for m in container.get("volumeMounts") or [] if m["mountPath"] == "/data"]
    assert data_mounts and data_mounts[0]["name"] in templates, (
        f"{fname}: /data must be mounted from a volumeClaimTemplate ({sorted(templates)})"
    )


def test_redis_readiness_probe() -> None:
    fname, sts = find("StatefulSet", "redis")
    probe = only_container(sts).get("readinessProbe")
    assert probe, f"{fname}: Redis has no readinessProbe"
    if "exec" in probe:
        command = " ".join(probe["exec"]["command"])
        assert "redis-cli" in command and "ping" in command, f"{fname}: probe {command!r}"
    else:
        assert "tcpSocket" in probe, f"{fname}: readinessProbe should exec redis-cli ping"


def test_redis_service_is_headless() -> None:
    fname, service = find("Service", "redis")
    assert service["spec"].get("clusterIP") == "None", f"{fname}: Service redis is not headless"
    ports = {p["port"] for p in service["spec"].get("ports") or []}
    assert 6379 in ports, f"{fname}: Service redis does not expose 6379: {ports}"


# --------------------------------------------------------------------------
# crawl nodes


def crawl_workloads() -> list[tuple[str, Doc]]:
    return [find("Deployment", "crawler"), find("Job", "crawler-crawl")]


def test_crawler_deployment() -> None:
    fname, deployment = find("Deployment", "crawler")
    assert deployment["spec"].get("replicas") == 3, f"{fname}: crawler should run 3 replicas"
    container = only_container(deployment)
    assert container["image"] == f"{APP_IMAGE}:latest", container["image"]
    assert_scrapy_command(argv(container), "crawl", fname)
    requests = (container.get("resources") or {}).get("requests") or {}
    assert {"cpu", "memory"} <= set(requests), f"{fname}: crawler needs cpu and memory requests"


@pytest.mark.parametrize("kind,name", [("Deployment", "crawler"), ("Job", "crawler-crawl")])
def test_grace_period_exceeds_stop_timeout(kind: str, name: str) -> None:
    fname, doc = find(kind, name)
    spec = pod_spec(doc)
    assert spec is not None
    grace = spec.get("terminationGracePeriodSeconds", 30)
    timeout = stop_timeout(argv(only_container(doc)))
    assert grace > timeout, (
        f"{fname}: terminationGracePeriodSeconds={grace} must exceed CRAWLER_STOP_TIMEOUT="
        f"{timeout:g}, or nodes are SIGKILLed before their graceful stop finishes"
    )


@pytest.mark.parametrize("kind,name", [("Deployment", "crawler"), ("Job", "crawler-crawl")])
def test_crawl_nodes_serve_metrics(kind: str, name: str) -> None:
    fname, doc = find(kind, name)
    container = only_container(doc)
    port = scrapy_settings(argv(container)).get("CRAWLER_METRICS_PORT")
    assert port and int(port) > 0, f"{fname}: crawl nodes need -s CRAWLER_METRICS_PORT=PORT"
    named = {p.get("name"): p["containerPort"] for p in container.get("ports") or []}
    assert named.get("metrics") == int(port), (
        f"{fname}: containerPort 'metrics' should be {port}, ports are {named}"
    )
    probe = container.get("livenessProbe")
    assert probe, f"{fname}: {label(doc)} has no livenessProbe"
    get = probe.get("httpGet") or {}
    assert get.get("path") == "/metrics", f"{fname}: livenessProbe should GET /metrics: {probe}"
    assert resolve_port(container, get["port"]) == int(port), f"{fname}: probe port {get}"
    annotations = doc["spec"]["template"]["metadata"].get("annotations") or {}
    assert annotations.get("prometheus.io/scrape") == "true", f"{fname}: no scrape annotation"
    assert annotations.get("prometheus.io/port") == port, f"{fname}: prometheus.io/port != {port}"


def test_crawler_job_is_the_one_off_form() -> None:
    fname, job = find("Job", "crawler-crawl")
    spec = job["spec"]
    assert (spec.get("parallelism"), spec.get("completions")) == (3, 3), (
        f"{fname}: expected parallelism 3 and completions 3, got "
        f"{spec.get('parallelism')} and {spec.get('completions')}"
    )
    assert "backoffLimit" in spec, f"{fname}: set a backoffLimit"
    assert spec["template"]["spec"].get("restartPolicy") == "OnFailure", (
        f"{fname}: crawl nodes exit 0 when done; restartPolicy should be OnFailure"
    )
    _, deployment = find("Deployment", "crawler")
    ours, theirs = only_container(job), only_container(deployment)
    differ = sorted(k for k in ours.keys() | theirs.keys() if ours.get(k) != theirs.get(k))
    assert not differ, (
        f"{fname}: the Job's container should be the crawler Deployment's; {differ} differ"
    )


# --------------------------------------------------------------------------
# one-shot jobs


def test_seed_job() -> None:
    fname, job = find("Job", "crawler-seed")
    spec = pod_spec(job)
    assert spec is not None and spec.get("restartPolicy") in ("OnFailure", "Never"), fname
    container = only_container(job)
    args = argv(container)
    assert_scrapy_command(args, "seed", fname)
    seeds_file = Path(option(args, "-i", fname))
    assert seeds_file.parent == Path("/seeds"), f"{fname}: seeds should be read from /seeds"
    volume = mounts(container, spec).get("/seeds") or {}
    config_map = (volume.get("configMap") or {}).get("name")
    assert config_map == "crawler-seeds", f"{fname}: /seeds must be the crawler-seeds ConfigMap"
    _, seeds = find("ConfigMap", "crawler-seeds")
    text = (seeds.get("data") or {}).get(seeds_file.name)
    assert text, f"ConfigMap crawler-seeds has no key {seeds_file.name!r}"
    urls = [line.strip() for line in text.splitlines() if line.strip()]
    assert urls and all(u.startswith(("http://", "https://")) for u in urls), urls


def test_export_job() -> None:
    fname, job = find("Job", "crawler-export")
    spec = pod_spec(job)
    assert spec is not None and spec.get("restartPolicy") in ("OnFailure", "Never"), fname
    container = only_container(job)
    args = argv(container)
    assert_scrapy_command(args, "export", fname)
    output = Path(option(args, "-o", fname))
    assert output.parent == Path("/out"), f"{fname}: export should write under /out: {output}"
    volume = mounts(container, spec).get("/out") or {}
    claim = (volume.get("persistentVolumeClaim") or {}).get("claimName")
    assert claim == "crawler-export", f"{fname}: /out must be the crawler-export claim"
    find("PersistentVolumeClaim", "crawler-export")
