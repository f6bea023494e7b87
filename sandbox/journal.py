"""What happened to each event on its way, with the time of every hop.

Every part of the sandbox that moves an event (the EventBridge delivery patch, the Kinesis
shim, the poller, the demo itself) writes a hop here under the event's EventBridge id, which
AWS keeps unchanged from the bus it was raised on to the last Kinesis record. The journey
printer reads it back; nothing in the pipeline depends on it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Hop:
    """One step of one event: what moved it, where it is now, when (a monotonic clock)."""

    at: float
    step: str
    where: str
    note: str = ""


@dataclass(frozen=True)
class Notice:
    """Something the sandbox did instead of AWS, or that AWS would have refused."""

    kind: str
    message: str


class Journal:
    """Thread-safe record of hops per event id, plus sandbox notices."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._hops: dict[str, list[Hop]] = {}
        self._notices: list[Notice] = []

    def now(self) -> float:
        return self._clock()

    def from_wall_clock(self, epoch_seconds: float) -> float:
        """A wall-clock time (e.g. a Kinesis ApproximateArrivalTimestamp) on this clock."""
        return self._clock() - (time.time() - epoch_seconds)

    def record(
        self, event_id: str, step: str, where: str, note: str = "", at: float | None = None
    ) -> None:
        hop = Hop(self._clock() if at is None else at, step, where, note)
        with self._lock:
            hops = self._hops.setdefault(event_id, [])
            hops.append(hop)
            hops.sort(key=lambda h: h.at)

    def record_last(self, event_id: str, step: str, where: str, note: str, at: float) -> None:
        """A hop that follows every hop recorded so far for the event — its arrival at the
        destination stream. `at` comes from a wall-clock time (ApproximateArrivalTimestamp) put
        on this clock, which can land a millisecond before the put that wrote the record; an
        arrival never precedes its cause, so it is shown no earlier than the last hop."""
        with self._lock:
            hops = self._hops.setdefault(event_id, [])
            hops.append(Hop(max([at, *(h.at for h in hops)]), step, where, note))

    def notice(self, kind: str, message: str) -> None:
        with self._lock:
            self._notices.append(Notice(kind, message))

    def hops(self, event_id: str) -> list[Hop]:
        with self._lock:
            return list(self._hops.get(event_id, ()))

    def event_ids(self) -> list[str]:
        with self._lock:
            return list(self._hops)

    def notices(self, kind: str | None = None) -> list[Notice]:
        with self._lock:
            return [n for n in self._notices if kind is None or n.kind == kind]
