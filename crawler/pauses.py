"""Domains paused after 429/503 answers, as this node knows them.

The pause itself is kept in Redis for the whole cluster (``dbackoff``, see
``crawler.backoff``); a node re-reads it whenever a commit returns a new
backoff version, and requests it had leased of a paused domain are put back
instead of sent.
"""

from __future__ import annotations

import time

from crawler.frontier import CommitResult
from crawler.partfrontier import AnyFrontier


class DomainPauses:
    def __init__(self) -> None:
        self.until: dict[str, float] = {}  # domain -> local time.time()
        self.version = 0
        # Redis's clock (ms) when the news last read was current.
        self._news_ms = 0
        self._result: CommitResult | None = None

    def pause(self, domain: str, until: float) -> None:
        self.until[domain] = max(self.until.get(domain, 0.0), until)

    def paused(self, domain: str) -> bool:
        return bool(self.until) and self.until.get(domain, 0.0) > time.time()

    def ends_in(self, domain: str) -> float:
        """Seconds until *domain*'s pause ends (0 if it is not paused)."""
        return max(0.0, self.until.get(domain, 0.0) - time.time())

    async def refresh(self, frontier: AnyFrontier, result: CommitResult | None) -> None:
        """Re-read the pauses if the commit says they changed. The worker
        passes the last commit's result at every flush, and a flush may
        send no commit: a result is looked at once."""
        if result is None or result.replayed or result is self._result:
            return
        await self.refresh_from(frontier, (result.backoff_version, result.redis_ms))
        self._result = result

    async def refresh_from(self, frontier: AnyFrontier, news: tuple[int, int] | None) -> None:
        """Re-read the pauses if *news* (backoff version, Redis ms), from a
        commit or a lease call, says they changed. News older than the
        news last read is not: a commit before a pause, looked at after a
        lease call told of the pause, read the pauses again and timed them
        from its old Redis clock, so they never ended (``offset`` below)."""
        if news is None or news[0] == self.version or news[1] < self._news_ms:
            return
        version, redis_ms = news
        offset = redis_ms / 1000 - time.time()  # Redis's clock minus ours
        pauses = await frontier.backoffs()
        self.until = {d: ms / 1000 - offset for d, ms in pauses.items()}
        self.version = version
        self._news_ms = redis_ms
