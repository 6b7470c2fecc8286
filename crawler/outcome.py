"""How a crawl ended: what it gave up on, said plainly.

A crawl that dead-lettered or set aside anything must not look like a clean
success. Each node's last log lines and ``scrapy status`` show how many dead
letters the crawl holds and their commonest reasons, and ``scrapy crawl``
exits with ``CRAWLER_DEAD_LETTER_EXIT_CODE`` (3 by default) when the crawl
finished with dead letters. The close reason stays Scrapy's ``finished``:
reasons say why a spider closed, and extensions compare them with it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from crawler.keys import Keys

#: How many of the newest dead letters are read to rank the reasons.
SAMPLE = 1000
#: How many reasons are shown.
TOP = 5

_REQUEST = re.compile(r"<[A-Z]+ [^>]*>")
_URL = re.compile(r"\bhttps?://\S+")


def reason_kind(reason: str) -> str:
    """*reason* without the request or URL it names, so letters with the same
    cause group together."""
    kind = _URL.sub("URL", _REQUEST.sub("<request>", reason))
    return kind if len(kind) <= 200 else kind[:199] + "…"


def top_reasons(raw_letters: list[bytes], n: int = TOP) -> list[tuple[str, int]]:
    """The *n* commonest reasons among *raw_letters* (stored dead letters)."""
    kinds: Counter[str] = Counter()
    for raw in raw_letters:
        try:
            reason = str(json.loads(raw).get("reason", "?"))
        except (ValueError, AttributeError):
            reason = "unreadable dead letter"
        kinds[reason_kind(reason)] += 1
    return kinds.most_common(n)


@dataclass(frozen=True)
class Outcome:
    """The dead letters a crawl holds, and the commonest of their reasons
    (among the newest ``SAMPLE``)."""

    dead: int
    reasons: list[tuple[str, int]]

    def lines(self, crawl: str) -> list[str]:
        """What a node logs when it ends; empty if nothing was given up on."""
        if not self.dead:
            return []
        head = (
            f"Crawl {crawl!r} holds {self.dead:,} dead letters: requests it gave up on "
            f"or could not store. List them with `scrapy deadletters {crawl}`, "
            f"queue them again with `scrapy requeue {crawl}` once fixed. Top reasons:"
        )
        return [head, *(f"  {count:,} x {kind}" for kind, count in self.reasons)]


def read_pipe(pipe: Any, keys: Keys) -> None:
    """Queue the reads of an outcome on a Redis pipeline (sync or async)."""
    pipe.llen(keys.dead)
    pipe.lrange(keys.dead, -SAMPLE, -1)


def from_replies(dead: Any, sample: Any) -> Outcome:
    """The outcome from the replies to ``read_pipe`` (errors included: a
    dead-letter key of the wrong type cannot hide what the crawl lost)."""
    if isinstance(dead, Exception) or isinstance(sample, Exception):
        problem = dead if isinstance(dead, Exception) else sample
        return Outcome(1, [(f"the dead-letter list cannot be read: {problem}", 1)])
    return Outcome(int(dead or 0), top_reasons(sample))


async def read_outcome(client: Any, parts: list[Keys]) -> Outcome:
    """The crawl's outcome, from its dead-letter lists (one per partition)."""
    async with client.pipeline(transaction=False) as pipe:
        for keys in parts:
            read_pipe(pipe, keys)
        replies = await pipe.execute(raise_on_error=False)
    return merged_replies(replies)


def merged_replies(replies: list[Any]) -> Outcome:
    """The outcome from ``read_pipe``'s replies for each partition, in order."""
    dead, sample = 0, []
    for n in range(0, len(replies), 2):
        if any(isinstance(r, Exception) for r in replies[n : n + 2]):
            return from_replies(*replies[n : n + 2])
        dead += int(replies[n] or 0)
        sample += replies[n + 1]
    return from_replies(dead, sample)
