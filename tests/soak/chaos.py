"""Chaos soak (issue 12): a 50,000-page crawl by 3 nodes under random faults.

    .venv/bin/python -m tests.soak.chaos                  # the full soak, about 20 minutes
    .venv/bin/python -m tests.soak.chaos --seed 1234      # replay a run's faults
    .venv/bin/python -m tests.soak.chaos --minutes 3 --pages 5000   # a quick check

Run from the repository root. Separate from the tests: pytest does not collect
this folder (no ``test_*.py`` files). It starts, on loopback:

* the demo site (``crawler.demosite``, ``tree=True``: each page has one parent)
  with ``--pages`` pages, recording every page fetch with its time, and paced
  so the crawl ends a little after the faults stop (no faster than
  pages / remaining time; it never slows a crawl that is behind);
* a redis-server with AOF, ``appendfsync everysec``: the soak restarts Redis
  with SIGTERM, which makes Redis write and fsync the AOF before it exits, so
  a restart loses nothing acknowledged and "0 lost" is a fair target
  (``always`` would add an fsync per write and protect only against a
  ``kill -9`` of Redis, which the soak does not do);
* a TCP proxy between the nodes and Redis, that can cut every connection;
* 3 ``scrapy crawl site`` nodes with short leases (``CRAWLER_LEASE_TIME=5``,
  ``CRAWLER_LEASE_RENEW_INTERVAL=1.5``) and ``CONCURRENT_REQUESTS_PER_DOMAIN=24``
  (the limit is cluster-wide: 8 slots per node).

Then, from a seeded RNG (the seed is printed; ``--seed`` replays it), one
fault at a time, 3-20 s apart: ``kill -9`` of a node (restarted),
SIGSTOP and SIGCONT 1-5 s past the lease, SIGTERM (a graceful stop;
restarted), a Redis restart (down 1-10 s, same port and dir), all
connections cut at the proxy, and ``CLIENT KILL TYPE normal``. Faults stop
about 90 s before the time is up; the nodes must then finish and exit by
themselves. It prints every fault with its time, the requests the victim
held (all nodes' for Redis-side faults; a node is frozen with SIGSTOP before
its ``kill -9`` so the count is exact) and the duplicate fetches charged to
it (each node fetches with its own User-Agent; a page fetched again is
charged to the first fault, after its first fetch, that stopped the node
which fetched it or restarted Redis), pages lost, items missing or
duplicated in ``scrapy export``, the longest stall, the nodes' warnings and
errors, and a PASS/FAIL line per target; the exit status is 1 if a target
failed. Targets: 0 pages lost; 0 items missing or duplicated; no gap
between successive page fetches longer than a lease plus a heartbeat
(6.5 s) plus the time Redis was down within that gap (nothing can be leased
while Redis is down; once it is back, a node finds it within its reconnect
backoff, at most 5 s, which the 6.5 s covers); every node ends by
itself with ``finished`` and status 0. Node logs, every page fetch
(``fetches.tsv``: time, path, node), the export and Redis's AOF stay in the
work directory it prints. The site serves about 135 pages/s unpaced on the
2-core VM (measured at start with 6 keep-alive connections, client in the
same process), three times the 45 pages/s the soak needs.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

import redis

from tests.conftest import free_port, run_scrapy
from tests.soak import report
from tests.soak.faults import KINDS, Chaos
from tests.soak.fleet import AofRedis, Fleet
from tests.soak.pacedsite import PacedSite, measure_capacity
from tests.soak.proxy import CuttingProxy

LEASE = 5.0
RENEW = 1.5
WEDGED = 120.0  # no page fetched for this long after the faults stopped: wedged


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="whole run (default 20)")
    parser.add_argument("--pages", type=int, default=50_000, help="site size (default 50,000)")
    parser.add_argument("--seed", type=int, help="RNG seed of the faults (default: random)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument(
        "--faults",
        default=",".join(KINDS),
        help=f"comma-separated kinds of fault to inject (default: all of {','.join(KINDS)})",
    )
    parser.add_argument("--workdir", type=Path, help="logs and export (default: a new tmp dir)")
    return parser.parse_args(argv)


def node_settings() -> list[str]:
    return [
        f"CRAWLER_LEASE_TIME={LEASE}",
        f"CRAWLER_LEASE_RENEW_INTERVAL={RENEW}",
        "CONCURRENT_REQUESTS_PER_DOMAIN=24",
        "TELNETCONSOLE_ENABLED=False",
    ]


def wait_finished(chaos: Chaos, site: PacedSite, since: float) -> bool:
    """Wait until every node ended with 'finished'; False if the crawl wedged."""
    while not chaos.done():
        chaos.watch()
        if time.time() - max(site.last_arrival(), since) > WEDGED:
            chaos.say(f"no page fetched for {WEDGED:.0f}s and the nodes still run: wedged")
            return False
        time.sleep(0.5)
    chaos.watch()
    return True


def export(url: str, workdir: Path) -> list[str]:
    out = workdir / "items.jsonl"
    result = run_scrapy(["export", "site", "-o", str(out)], url, timeout=600)
    if result.returncode != 0:
        print(f"scrapy export failed ({result.returncode}):\n{result.stderr[-3000:]}")
        return []
    lines = out.read_text().splitlines()
    return [json.loads(line)["url"] for line in lines if line.strip()]


def soak(args: argparse.Namespace, seed: int, workdir: Path) -> bool:
    started = time.time()
    total = args.minutes * 60
    tail = min(90.0, max(30.0, total / 10))
    faults_end, finish_by = started + total - tail, started + total - tail * 2 / 3
    capacity = measure_capacity(args.pages)
    need = args.pages / (finish_by - time.time())
    print(f"site: {capacity:.0f} pages/s unpaced (6 connections); paced to {need:.0f} pages/s")
    server = AofRedis(free_port(), workdir / "redis")
    server.start()
    proxy = CuttingProxy(server.port)
    site = PacedSite(args.pages, finish_by)
    fleet: Fleet | None = None
    try:
        seeded = run_scrapy(["seed", "site", f"{site.base}/page/0.html"], server.url)
        if seeded.returncode != 0:
            raise RuntimeError(f"scrapy seed failed: {seeded.stderr[-2000:]}")
        fleet = Fleet(workdir, proxy.url, node_settings(), args.nodes)
        kinds = args.faults.split(",")
        rng = random.Random(seed)
        chaos = Chaos(rng, fleet, server, proxy, LEASE, lambda: progress(site), kinds)
        chaos.started = started
        chaos.run(faults_end)
        chaos.say("faults stopped; waiting for the nodes to finish")
        finished = wait_finished(chaos, site, time.time())
        fleet.kill_all()
        return summarize(args, chaos, site, server, workdir, finished)
    finally:
        if fleet is not None:
            fleet.kill_all()
        site.close()
        proxy.close()
        server.stop()


def progress(site: PacedSite) -> str:
    return f"{site.fetched():>6} pages"


def summarize(
    args: argparse.Namespace,
    chaos: Chaos,
    site: PacedSite,
    server: AofRedis,
    workdir: Path,
    finished: bool,
) -> bool:
    dead = int(redis.Redis(port=server.port).llen("{site}:dead"))
    site.save(workdir / "fetches.tsv")
    logs = [n.log for n in chaos.fleet.history] + [
        n.log.with_suffix(".out") for n in chaos.fleet.history
    ]
    outcome = report.Outcome(
        chaos.started, args.pages, LEASE, RENEW, list(site.arrivals), chaos.faults,
        chaos.redis_down, chaos.events, export(server.url, workdir), site.base, logs, dead,
    )  # fmt: skip
    held = report.print_faults(outcome)
    report.print_pages(outcome, held)
    report.print_items(outcome)
    report.print_stall(outcome)
    report.print_logs(outcome)
    last = chaos.fleet.nodes
    ends = ", ".join(f"{n.name} {n.proc.returncode} ({n.closed_with()})" for n in last)
    last_fetch = site.last_arrival()
    crashed = [
        text
        for at, text in chaos.events
        if not text.endswith("(finished)") or at < last_fetch  # finished too early
    ]
    ok = finished and not crashed and all(n.proc.returncode == 0 for n in last)
    report.verdict(outcome, ok, f"nodes ended by themselves with 'finished', status 0: {ends}")
    print(f"work directory (node logs, fetches.tsv, items.jsonl, redis/): {workdir}")
    print(f"wall time {(time.time() - chaos.started) / 60:.1f} min")
    return report.print_verdicts(outcome)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    unknown = set(args.faults.split(",")) - set(KINDS)
    if unknown:
        sys.exit(
            f"--faults: unknown kind(s) {', '.join(sorted(unknown))}; known: {', '.join(KINDS)}"
        )
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(2**32)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="chaos-soak-"))
    workdir.mkdir(parents=True, exist_ok=True)
    print(
        f"chaos soak: seed {seed}, {args.pages:,} pages, {args.nodes} nodes, "
        f"{args.minutes:g} min, lease {LEASE:g}s, heartbeat {RENEW:g}s; "
        f"replay: .venv/bin/python -m tests.soak.chaos --minutes {args.minutes:g} "
        f"--pages {args.pages} --seed {seed}"
        + (f" --faults {args.faults}" if args.faults != ",".join(KINDS) else ""),
        flush=True,
    )
    return 0 if soak(args, seed, workdir) else 1


if __name__ == "__main__":
    sys.exit(main())
