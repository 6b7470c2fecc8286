"""A node's local cache of seen fingerprints, in front of the shared seen-set.

It saves Redis the work of checking a link the node already sent (the same
menu link on every page). It must never know more than Redis does: a
fingerprint is *pending* from the moment its request is queued for a commit
and *seen* only once that commit succeeded. A request Redis refused is
forgotten, so a later copy is sent again; and after Redis was unreachable
(a restart or failover may have lost acknowledged writes) the cache starts
afresh, so a re-processed page's links are checked by Redis again.
"""

from __future__ import annotations

from collections.abc import Iterable


class LocalSeen:
    """Fingerprints this node knows Redis holds (``seen``) or will hold once
    a commit in flight succeeds (``pending``). *capacity* 0 turns it off."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.seen: set[int] = set()
        self.pending: dict[int, int] = {}  # member -> requests in flight with it

    def __contains__(self, fp: bytes) -> bool:
        member = hash(fp)
        return member in self.seen or member in self.pending

    def add_pending(self, fp: bytes) -> None:
        if self.capacity:
            member = hash(fp)
            self.pending[member] = self.pending.get(member, 0) + 1

    def committed(self, fps: Iterable[bytes | None]) -> None:
        """These fingerprints' commit succeeded: Redis holds them."""
        for fp in fps:
            if fp is not None and self._drop_pending(hash(fp)) and self.capacity:
                if len(self.seen) >= self.capacity:
                    self.seen.clear()
                self.seen.add(hash(fp))

    def refused(self, fp: bytes | None) -> None:
        """Redis refused the request with *fp*: a later copy may be sent."""
        if fp is not None:
            self._drop_pending(hash(fp))

    def forget_seen(self) -> None:
        """Redis may have lost acknowledged writes: trust nothing learnt."""
        self.seen.clear()

    def _drop_pending(self, member: int) -> bool:
        left = self.pending.get(member, 0) - 1
        if left > 0:
            self.pending[member] = left
        else:
            self.pending.pop(member, None)
        return left >= 0
