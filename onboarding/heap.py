"""Keep what a warm process holds for good out of the cyclic garbage collector's way.

A warm process (a Lambda container, the CLI's backfill or audit) holds for its whole life
botocore's parsed service models and endpoint data (~160,000 containers once onboarding has
used its services: the shared loader of `onboarding.sessions`), the imported modules and the
launcher session. Every account then allocates ~75,000 objects that live as long as it does (its
~36 clients: 34 of them regional), so Python's full collection runs about once per account at
17 regions, and each one walks that whole permanent heap again: ~60 ms of CPU, with every
region thread stopped, to find nothing to free. Measured on this repository's model of AWS
(docs/operations.md, "Watershed's own cost at scale").

`WarmHeap.account()` brackets each account's work; an Onboarder (what a warm process keeps:
its sessions and clients into the management account, its caches) has one. The first time no
account is in flight in the process after the Onboarder's first one has finished - the models it
needed are loaded, its long-lived sessions exist, what the account allocated is garbage - the
heap is collected once and frozen (`gc.freeze`): later full collections walk only what was
allocated since (about one account's objects), and nothing frozen is looked at again. A process
has one Onboarder (the Lambda function, the CLI), so it freezes once; a bench that builds one per
case, each standing for a warm container, freezes once per case.

Objects frozen here are still freed by reference counting; only a reference cycle among them
that is dropped later stays in memory: the launcher session renewed every hour, with its
clients (~40,000 objects once it has read the GuardDuty administrators of 17 regions), is kept
once. While accounts overlap (the CLI's parallel backfill) the freeze waits: freezing an
account in flight would keep its clients for the process's life.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _collect_and_freeze() -> None:
    gc.collect()  # what the first account left behind is garbage: freed, not frozen
    gc.freeze()


class _InFlight:
    """Accounts in flight in this process, whichever Onboarder runs them: the collector is the
    process's, so no freeze while any account is in flight."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.count = 0


_PROCESS = _InFlight()


class WarmHeap:
    """Freeze the heap once, at the first moment no account is in flight after this heap's
    first account. `freeze` defaults to collecting and freezing the process's heap."""

    def __init__(self, freeze: Callable[[], None] | None = None) -> None:
        self._freeze = freeze
        self._frozen = False

    @contextmanager
    def account(self) -> Iterator[None]:
        """Bracket one account's work (onboarding, a plan, a removal)."""
        with _PROCESS.lock:
            _PROCESS.count += 1
        try:
            yield
        finally:
            with _PROCESS.lock:
                _PROCESS.count -= 1
                if not _PROCESS.count and not self._frozen:
                    self._frozen = True
                    (self._freeze or _collect_and_freeze)()
