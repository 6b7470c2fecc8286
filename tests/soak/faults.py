"""Random faults at random intervals, one at a time, from a seeded RNG."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from tests.soak.fleet import AofRedis, Fleet, Node
from tests.soak.proxy import CuttingProxy

KINDS = {"kill-9": 2, "sigstop": 2, "sigterm": 2, "redis-restart": 1, "cut": 1, "client-kill": 1}
NODE_KINDS = ("kill-9", "sigstop", "sigterm")
GAP = (3.0, 20.0)  # seconds between the end of one fault and the next
WARMUP = 15.0  # no fault before the nodes are crawling
MIN_AGE = 8.0  # a node this old has its signal handlers and its lease
STOP_WAIT = 60.0  # CRAWLER_STOP_TIMEOUT is 30 s


@dataclass
class Fault:
    at: float
    kind: str
    victim: str
    held: int
    detail: str = ""
    until: float = 0.0


class Chaos:
    """Injects faults into the fleet and Redis until told to stop; restarts
    the nodes it kills and notes nodes that end on their own."""

    def __init__(
        self,
        rng: random.Random,
        fleet: Fleet,
        server: AofRedis,
        proxy: CuttingProxy,
        lease: float,
        progress: Callable[[], str],
        kinds: list[str],
    ) -> None:
        self.rng = rng
        self.fleet = fleet
        self.server = server
        self.proxy = proxy
        self.lease = lease
        self.progress = progress
        self.kinds = kinds
        self.started = time.time()
        self.faults: list[Fault] = []
        self.redis_down: list[tuple[float, float]] = []
        self.events: list[tuple[float, str]] = []
        self._seen_exits: set[str] = set()

    def say(self, text: str) -> None:
        stamp = f"[{time.time() - self.started:6.1f}s {self.progress()}]"
        print(f"{stamp} {text}", file=sys.stderr, flush=True)

    def run(self, until: float) -> None:
        self.wait(WARMUP, until)
        while not self.done():
            self.wait(self.rng.uniform(*GAP), until)
            if time.time() >= until or self.done():
                return
            kinds = list(self.kinds)
            if not self.fleet.live(MIN_AGE):
                kinds = [k for k in kinds if k not in NODE_KINDS]
            if not kinds:
                continue
            kind = self.rng.choices(kinds, [KINDS[k] for k in kinds])[0]
            fault = self.inject(kind)
            fault.until = fault.until or time.time()
            self.faults.append(fault)
            self.say(f"{fault.kind} {fault.victim}: held {fault.held}; {fault.detail}")

    def wait(self, seconds: float, until: float) -> None:
        end = min(time.time() + seconds, until)
        while time.time() < end and not self.done():
            self.watch()
            time.sleep(0.25)

    def done(self) -> bool:
        return all(not n.alive() and n.closed_with() == "finished" for n in self.fleet.nodes)

    def watch(self) -> None:
        """Note nodes that ended by themselves; restart any that did not finish."""
        for node in list(self.fleet.nodes):
            if node.alive() or node.name in self._seen_exits:
                continue
            self._seen_exits.add(node.name)
            reason = node.closed_with() or "no close reason"
            self.events.append(
                (time.time(), f"{node.name} exited {node.proc.returncode} ({reason})")
            )
            self.say(self.events[-1][1])
            if reason != "finished":
                time.sleep(1.0)  # no busy loop if it crashes at start
                self.fleet.restart(node)

    def inject(self, kind: str) -> Fault:
        if kind in NODE_KINDS:
            node = self.rng.choice(self.fleet.live(MIN_AGE))
            action: Callable[[Node], Fault] = {
                "kill-9": self.kill9,
                "sigstop": self.sigstop,
                "sigterm": self.sigterm,
            }[kind]
            return action(node)
        return {"redis-restart": self.redis_restart, "cut": self.cut, "client-kill": self.kill}[
            kind
        ]()

    def kill9(self, node: Node) -> Fault:
        node.signal(signal.SIGSTOP)  # frozen, so what it holds cannot change
        fault = Fault(time.time(), "kill-9", node.name, self.server.held(node.proc.pid))
        node.proc.kill()
        node.proc.wait()
        self._seen_exits.add(node.name)
        pause = self.rng.uniform(0.5, 3.0)
        time.sleep(pause)
        fault.detail = f"restarted as {self.fleet.restart(node).name} after {pause:.1f}s"
        return fault

    def sigstop(self, node: Node) -> Fault:
        node.signal(signal.SIGSTOP)
        fault = Fault(time.time(), "sigstop", node.name, self.server.held(node.proc.pid))
        pause = self.lease + self.rng.uniform(1.0, 5.0)
        time.sleep(pause)
        node.signal(signal.SIGCONT)
        fault.detail = f"SIGCONT after {pause:.1f}s"
        return fault

    def sigterm(self, node: Node) -> Fault:
        fault = Fault(time.time(), "sigterm", node.name, self.server.held(node.proc.pid))
        node.signal(signal.SIGTERM)
        try:
            code = node.proc.wait(STOP_WAIT)
        except subprocess.TimeoutExpired:
            node.proc.kill()
            code = node.proc.wait()
            fault.detail = f"did not stop in {STOP_WAIT:.0f}s, killed; "
        self._seen_exits.add(node.name)
        stopped = time.time() - fault.at
        reason = node.closed_with()
        fresh = self.fleet.restart(node)
        fault.detail += f"exit {code} ({reason}) in {stopped:.1f}s; restarted as {fresh.name}"
        return fault

    def redis_restart(self) -> Fault:
        fault = Fault(time.time(), "redis-restart", "redis", self.server.held())
        self.server.stop()
        down = self.rng.uniform(1.0, 2 * self.lease)
        time.sleep(down)
        self.server.start()
        fault.until = time.time()
        self.redis_down.append((fault.at, fault.until))
        code = self.server.exit_codes[-1]
        fault.detail = f"SIGTERM (exit {code}), down {fault.until - fault.at:.1f}s"
        return fault

    def cut(self) -> Fault:
        fault = Fault(time.time(), "cut", "proxy", self.server.held())
        fault.detail = f"{self.proxy.cut()} connections cut at the proxy"
        return fault

    def kill(self) -> Fault:
        fault = Fault(time.time(), "client-kill", "redis", self.server.held())
        client = redis.Redis(port=self.server.port, socket_timeout=5)
        killed = client.execute_command("CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")
        fault.detail = f"CLIENT KILL TYPE normal: {killed} connections"
        return fault
