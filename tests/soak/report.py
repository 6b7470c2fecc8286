"""What the soak found: pages lost, items, duplicate fetches per fault, the
longest stall, and a PASS/FAIL line per target."""

from __future__ import annotations

import itertools
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tests.soak.faults import Fault

# A request sent just before its node froze may be read by the site just after.
SKEW = 0.5
_STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \[([^\]]+)\] (ERROR|CRITICAL|WARNING): ")


@dataclass
class Outcome:
    """Everything the soak recorded; ``started`` is the soak's time zero."""

    started: float
    pages: int
    lease: float
    renew: float
    arrivals: list[tuple[float, str, str]]
    faults: list[Fault]
    redis_down: list[tuple[float, float]]
    events: list[tuple[float, str]]
    exported: list[str]
    base: str
    logs: list[Path]
    dead_letters: int
    results: list[tuple[bool, str]] = field(default_factory=list)

    def clock(self, t: float) -> str:
        minutes, seconds = divmod(t - self.started, 60)
        return f"{int(minutes):02d}:{seconds:04.1f}"


def charge(o: Outcome, first: tuple[float, str], again: tuple[float, str]) -> int | None:
    """The fault that explains fetching a page again: the first fault after
    the first fetch that stopped the node which fetched it or restarted
    Redis (a request is in flight for a moment, so the first such fault is
    the one it was in flight at); else the first cut, CLIENT KILL or fault of
    the node that fetched it again; None if there is none."""
    (t1, node1), (t2, node2) = first, again
    window = [i for i, f in enumerate(o.faults) if t1 - SKEW <= f.at <= t2]
    for index in window:
        if o.faults[index].victim in (node1, "redis"):
            return index
    for index in window:
        if o.faults[index].victim in (node2, "proxy", "redis"):
            return index
    return None


def refetch_delays(o: Outcome) -> list[float]:
    """Seconds from each fetch of a page to its next fetch, sorted."""
    fetches: dict[str, list[float]] = {}
    for at, path, _ in o.arrivals:
        fetches.setdefault(path, []).append(at)
    return sorted(b - a for seen in fetches.values() for a, b in itertools.pairwise(sorted(seen)))


def duplicates_by_fault(o: Outcome) -> tuple[list[int], list[str]]:
    """Extra fetches charged to each fault, and those no fault explains."""
    fetches: dict[str, list[tuple[float, str]]] = {}
    for at, path, node in o.arrivals:
        fetches.setdefault(path, []).append((at, node))
    per_fault = [0] * len(o.faults)
    unexplained = []
    for path, seen in fetches.items():
        for first, again in itertools.pairwise(sorted(seen)):
            index = charge(o, first, again)
            if index is None:
                unexplained.append(
                    f"{path} by {first[1]} at {o.clock(first[0])}, "
                    f"by {again[1]} at {o.clock(again[0])}"
                )
            else:
                per_fault[index] += 1
    return per_fault, unexplained


def down_within(o: Outcome, start: float, end: float) -> float:
    return sum(max(0.0, min(end, b) - max(start, a)) for a, b in o.redis_down)


def stalls(o: Outcome) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """(gap, start, allowance) of the longest gap between successive page
    fetches, and of the gap most over its allowance."""
    times = sorted(at for at, _, _ in o.arrivals)
    longest = worst = (0.0, o.started, o.lease + o.renew)
    for a, b in itertools.pairwise(times):
        allowed = o.lease + o.renew + down_within(o, a, b)
        if b - a > longest[0]:
            longest = (b - a, a, allowed)
        if b - a - allowed > worst[0] - worst[2]:
            worst = (b - a, a, allowed)
    return longest, worst


def log_lines(o: Outcome) -> Counter[str]:
    """ERROR, CRITICAL and WARNING lines of every node log, by message."""
    found: Counter[str] = Counter()
    for path in o.logs:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            match = _STAMP.match(line)
            if match:
                text = re.sub(r"\d+(\.\d+)?", "N", line[match.end() :])[:150]
                found[f"{match[2]} [{match[1]}] {text}"] += 1
            elif line.startswith("Traceback"):
                found["Traceback (in a .out file)"] += 1
    return found


def verdict(o: Outcome, ok: bool, text: str) -> None:
    o.results.append((ok, text))


def print_faults(o: Outcome) -> int:
    """The fault table; returns the requests held at all faults together."""
    per_fault, unexplained = duplicates_by_fault(o)
    print(f"faults ({len(o.faults)}), each with what was held then and the extra fetches after it:")
    print(f"  {'time':>7}  {'fault':<13} {'victim':<6} {'held':>5} {'dup fetches':>11}  detail")
    for fault, dups in zip(o.faults, per_fault, strict=True):
        print(
            f"  {o.clock(fault.at):>7}  {fault.kind:<13} {fault.victim:<6} {fault.held:>5} "
            f"{dups:>11}  {fault.detail}"
        )
    by_kind: Counter[str] = Counter(f.kind for f in o.faults)
    print("  by kind: " + ", ".join(f"{k} {n}" for k, n in sorted(by_kind.items())))
    over = sum(1 for f, d in zip(o.faults, per_fault, strict=True) if d > f.held)
    print(f"  faults followed by more extra fetches than were held then: {over}")
    print(f"  extra fetches no fault explains: {len(unexplained)}")
    for text in unexplained[:10]:
        print(f"    {text}")
    for at, text in o.events:
        print(f"  {o.clock(at):>7}  node exit: {text}")
    return sum(f.held for f in o.faults)


def print_pages(o: Outcome, held: int) -> None:
    counts = Counter(path for _, path, _ in o.arrivals)
    lost = [i for i in range(o.pages) if f"/page/{i}.html" not in counts]
    dups = sum(n - 1 for n in counts.values())
    print(
        f"pages: {len(counts):,} of {o.pages:,} fetched, {len(o.arrivals):,} fetches; "
        f"lost {len(lost)}{' e.g. ' + str(lost[:10]) if lost else ''}; "
        f"duplicate fetches {dups} (held at the faults: {held}); dead letters {o.dead_letters}"
    )
    delays = refetch_delays(o)
    if delays:
        print(
            f"  a page was fetched again {delays[0]:.1f}s to {delays[-1]:.1f}s after its first "
            f"fetch (median {delays[len(delays) // 2]:.1f}s)"
        )
    verdict(o, not lost, f"pages lost: {len(lost)} (target 0)")


def print_items(o: Outcome) -> None:
    expected = {f"{o.base}/page/{i}.html" for i in range(o.pages)}
    urls = Counter(o.exported)
    missing = expected - set(urls)
    duplicated = sum(n - 1 for n in urls.values())
    unexpected = set(urls) - expected
    print(
        f"items: {len(o.exported):,} exported by `scrapy export`; missing {len(missing)}, "
        f"duplicated {duplicated}, not a page of the site {len(unexpected)}"
    )
    for url in sorted(missing)[:10]:
        print(f"  missing: {url}")
    ok = not missing and not duplicated and not unexpected
    verdict(o, ok, f"items missing {len(missing)}, duplicated {duplicated} (target 0 and 0)")


def print_stall(o: Outcome) -> None:
    (gap, at, allowed), (wgap, wat, wallowed) = stalls(o)
    down = sum(b - a for a, b in o.redis_down)
    print(
        f"longest stall (gap between successive page fetches at the server): {gap:.2f}s "
        f"at {o.clock(at)}, allowed {allowed:.2f}s; Redis down {len(o.redis_down)} times, "
        f"{down:.1f}s in all"
    )
    if (wgap, wat) != (gap, at):
        print(f"  most over its allowance: {wgap:.2f}s at {o.clock(wat)}, allowed {wallowed:.2f}s")
    base = o.lease + o.renew
    verdict(
        o,
        wgap <= wallowed,
        f"longest stall {gap:.2f}s, worst {wgap:.2f}s against {wallowed:.2f}s allowed "
        f"(lease {o.lease:g}s + heartbeat {o.renew:g}s = {base:g}s, plus Redis downtime "
        f"within the gap)",
    )


def print_logs(o: Outcome) -> None:
    lines = log_lines(o)
    print(f"node logs ({len(o.logs)} files): {sum(lines.values())} ERROR/CRITICAL/WARNING lines")
    for text, count in lines.most_common(15):
        print(f"  {count:>5} x {text}")


def print_verdicts(o: Outcome) -> bool:
    for ok, text in o.results:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return all(ok for ok, _ in o.results)
