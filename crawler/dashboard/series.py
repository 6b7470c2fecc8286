"""The dashboard's charts, from the nodes' time series (``crawler.timeseries``):
pages/min and items/min per node and in total, frontier size, dead letters."""

from __future__ import annotations

import itertools
from typing import Any

from crawler.keys import Keys
from crawler.timeseries import Sample, read_series

# Samples of different nodes this close in time (seconds) share a point of
# the totals.
_BUCKET = 10


def node_rates(samples: list[Sample]) -> dict[str, list[float]]:
    """Per-minute rates between consecutive samples of one node."""
    out: dict[str, list[float]] = {"t": [], "pages_per_min": [], "items_per_min": []}
    for before, after in itertools.pairwise(samples):
        minutes = (after.time - before.time) / 60
        if minutes <= 0:
            continue
        out["t"].append(after.time)
        out["pages_per_min"].append(round(max(0, after.pages - before.pages) / minutes, 1))
        out["items_per_min"].append(round(max(0, after.items - before.items) / minutes, 1))
    return out


def totals(per_node: dict[str, list[Sample]], bucket: int) -> dict[str, list[float]]:
    """The cluster's rates summed over nodes, frontier size and dead letters,
    one point per *bucket* seconds."""
    points: dict[int, dict[str, float]] = {}
    for samples in per_node.values():
        rates = node_rates(samples)
        for i, t in enumerate(rates["t"]):
            point = points.setdefault(int(t) // bucket * bucket, _empty())
            point["pages_per_min"] += rates["pages_per_min"][i]
            point["items_per_min"] += rates["items_per_min"][i]
        for s in samples:
            point = points.setdefault(int(s.time) // bucket * bucket, _empty())
            point["queued"] = max(point["queued"], s.queued)
    out: dict[str, list[float]] = {"t": [], "pages_per_min": [], "items_per_min": [], "queued": []}
    for t in sorted(points):
        out["t"].append(t)
        for name in ("pages_per_min", "items_per_min", "queued"):
            out[name].append(round(points[t][name], 1))
    out["dead"] = _dead_over_time(per_node, out["t"], bucket)
    return out


def _empty() -> dict[str, float]:
    return {"pages_per_min": 0.0, "items_per_min": 0.0, "queued": 0.0}


def _dead_over_time(
    per_node: dict[str, list[Sample]], times: list[float], bucket: int
) -> list[float]:
    """Dead letters the nodes made so far, at each time of *times*."""
    out = []
    for t in times:
        total = 0
        for samples in per_node.values():
            before = [s.dead for s in samples if int(s.time) // bucket * bucket <= t]
            total += before[-1] if before else 0
        out.append(float(total))
    return out


def crawl_series(client: Any, keys: Keys, nodes: list[str]) -> dict[str, Any]:
    """Every chart of one crawl: ``nodes`` maps a node to its rates, ``total``
    holds the cluster's lines (times in unix seconds)."""
    per_node = {node: read_series(client, keys, node) for node in nodes}
    per_node = {node: samples for node, samples in per_node.items() if samples}
    bucket = _BUCKET
    gaps = [b.time - a.time for s in per_node.values() for a, b in itertools.pairwise(s)]
    if gaps:
        bucket = max(1, min(_BUCKET, int(min(gaps))))
    return {
        "nodes": {node: node_rates(samples) for node, samples in per_node.items()},
        "total": totals(per_node, bucket),
    }
