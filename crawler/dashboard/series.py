"""The dashboard's charts, from the nodes' time series (``crawler.timeseries``):
pages/min and items/min per node and in total, frontier size, dead letters.

Samples are put in buckets of equal length (at least the sampling interval,
longer for a long history: at most MAX_POINTS a line), so a long crawl's
charts stay small and nodes sampling at different instants add up."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from typing import Any

from crawler.keys import Keys
from crawler.timeseries import Sample, read_series

MAX_POINTS = 600


def bucket_length(per_node: dict[str, list[Sample]]) -> int:
    """Seconds per point: the nodes' sampling interval, or more to keep
    every line under MAX_POINTS."""
    gaps = [b.time - a.time for s in per_node.values() for a, b in itertools.pairwise(s)]
    times = [s.time for samples in per_node.values() for s in samples]
    interval = max(1, round(sorted(gaps)[len(gaps) // 2])) if gaps else 10
    span = max(times) - min(times) if times else 0
    return int(max(interval, -(-span // MAX_POINTS)))


def thinned(samples: list[Sample], bucket: int) -> list[tuple[int, Sample]]:
    """(bucket start, its last sample) of each bucket holding samples."""
    last: dict[int, Sample] = {}
    for s in samples:
        last[int(s.time) // bucket * bucket] = s
    return sorted(last.items())


def node_rates(points: list[tuple[int, Sample]]) -> dict[str, list[float]]:
    """Per-minute rates of one node between consecutive points."""
    out: dict[str, list[float]] = {"t": [], "pages_per_min": [], "items_per_min": []}
    for (_, before), (t, after) in itertools.pairwise(points):
        minutes = (after.time - before.time) / 60
        if minutes <= 0:
            continue
        out["t"].append(t)
        out["pages_per_min"].append(round(max(0, after.pages - before.pages) / minutes, 1))
        out["items_per_min"].append(round(max(0, after.items - before.items) / minutes, 1))
    return out


def _at(times: Sequence[float], values: Sequence[float], t: float, hold: bool) -> float:
    """A line's value at *t*: its last point at or before *t*; past its end,
    that point again (*hold*) or 0 (the node stopped reporting)."""
    i = bisect.bisect_right(times, t)
    if i == 0 or (not hold and t > times[-1]):
        return 0.0
    return values[i - 1]


def totals(nodes: dict[str, list[tuple[int, Sample]]], rates: dict[str, Any]) -> dict[str, Any]:
    """The cluster's lines: rates summed over the nodes reporting at each
    time, the frontier's size, and the dead letters made so far."""
    times = sorted({t for points in nodes.values() for t, _ in points})
    out: dict[str, list[float]] = {k: [] for k in ("pages_per_min", "items_per_min")}
    for name in out:
        for t in times:
            out[name].append(
                round(sum(_at(r["t"], r[name], t, False) for r in rates.values() if r["t"]), 1)
            )
    for name, hold in (("queued", False), ("dead", True)):
        lines = [([t for t, _ in p], [getattr(s, name) for _, s in p]) for p in nodes.values()]
        join = max if name == "queued" else sum
        out[name] = [float(join(_at(ts, vs, t, hold) for ts, vs in lines)) for t in times]
    return {"t": times, **out}


def crawl_series(client: Any, keys: Keys, nodes: list[str]) -> dict[str, Any]:
    """Every chart of one crawl: ``nodes`` maps a node to its rates, ``total``
    holds the cluster's lines (times in unix seconds)."""
    per_node = {node: read_series(client, keys, node) for node in nodes}
    per_node = {node: samples for node, samples in per_node.items() if samples}
    bucket = bucket_length(per_node)
    points = {node: thinned(samples, bucket) for node, samples in per_node.items()}
    rates = {node: node_rates(p) for node, p in points.items()}
    return {"bucket_s": bucket, "nodes": rates, "total": totals(points, rates)}
