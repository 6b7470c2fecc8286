"""deploy/grafana's dashboard, checked offline: a well-formed Grafana
dashboard whose every query names metrics the nodes really export: the
families ``crawler.metrics.NodeCollector`` yields (read from its source),
named as prometheus_client exposes them (counters with ``_total``)."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector

from tests.conftest import ROOT

BOARD = ROOT / "deploy" / "grafana" / "crawler-dashboard.json"
PANEL_TYPES = {"timeseries", "stat", "gauge", "table", "bargauge", "text"}


class Families(Collector):
    """The metric families NodeCollector.collect yields: its counter(...)
    and gauge(...) calls with their literal names."""

    def collect(self) -> Iterator[Any]:
        tree = ast.parse((ROOT / "crawler" / "metrics.py").read_text())
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
                continue
            kind = {"counter": CounterMetricFamily, "gauge": GaugeMetricFamily}.get(node.func.id)
            if kind and node.args and isinstance(node.args[0], ast.Constant):
                yield kind(str(node.args[0].value), "doc", value=1)


def exported_names() -> set[str]:
    """The sample names a node's /metrics endpoint serves."""
    registry = CollectorRegistry()
    registry.register(Families())
    text = generate_latest(registry).decode()
    return {s.name for f in text_string_to_metric_families(text) for s in f.samples}


def queries(board: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in board["panels"] for t in p["targets"]]
    for var in board["templating"]["list"]:
        if var["type"] == "query":
            found.append(var["query"]["query"] if isinstance(var["query"], dict) else var["query"])
    return found


def test_grafana_dashboard_is_well_formed():
    board = json.loads(BOARD.read_text())
    assert board["title"] and board["uid"] and isinstance(board["schemaVersion"], int)
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in board["panels"]:
        assert panel["type"] in PANEL_TYPES, panel["type"]
        pos = panel["gridPos"]
        assert all(isinstance(pos[k], int) for k in "xywh") and pos["x"] + pos["w"] <= 24
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]
    names = {v["name"] for v in board["templating"]["list"]}
    for expr in queries(board):
        assert expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"), expr
        assert set(re.findall(r"\$(\w+)", expr)) <= names, expr


def test_every_query_names_a_metric_the_nodes_export():
    exported = exported_names()
    assert {"crawler_pages_total", "crawler_frontier_queued"} <= exported
    board = json.loads(BOARD.read_text())
    used: set[str] = set()
    for expr in queries(board):
        metrics = set(re.findall(r"\b(crawler_\w+)", expr))
        assert metrics, f"{expr!r} names no crawler metric"
        assert metrics <= exported, f"{expr!r} names {metrics - exported}, not exported"
        used |= metrics
    base = {re.sub(r"_total$", "", n) for n in exported}
    assert {re.sub(r"_total$", "", n) for n in used} == base, "every exported metric is shown"
