"""An Onboarder's warm heap is frozen once, when no account is in flight, after the first one's
garbage is collected (onboarding/heap.py)."""

from __future__ import annotations

import gc
import threading
import weakref

from onboarding import heap
from onboarding.events import OnboardingRequest
from onboarding.heap import WarmHeap, _collect_and_freeze
from onboarding.service import Onboarder
from onboarding.sessions import SessionFactory


def test_the_heap_is_frozen_once_and_only_when_no_account_is_in_flight():
    frozen: list[int] = []
    heap = WarmHeap(freeze=lambda: frozen.append(1))

    with heap.account():
        with heap.account():
            pass
        assert frozen == []  # the outer account is still in flight
    assert frozen == [1]

    with heap.account():
        pass
    assert frozen == [1]


def test_an_account_that_raises_still_counts_as_finished():
    frozen: list[int] = []
    heap = WarmHeap(freeze=lambda: frozen.append(1))

    try:
        with heap.account():
            raise RuntimeError("boom")
    except RuntimeError:
        pass

    assert frozen == [1]


def test_accounts_in_other_threads_hold_the_freeze_back():
    frozen: list[int] = []
    heap = WarmHeap(freeze=lambda: frozen.append(1))
    started, release = threading.Event(), threading.Event()

    def other_account() -> None:
        with heap.account():
            started.set()
            release.wait()

    thread = threading.Thread(target=other_account)
    thread.start()
    started.wait()
    with heap.account():
        pass
    assert frozen == []  # the other thread's account is still in flight
    release.set()
    thread.join()

    assert frozen == [1]


def test_garbage_is_collected_before_the_freeze_not_kept_for_good():
    class Node:
        pass

    cycle = Node()
    cycle.self = cycle  # type: ignore[attr-defined]  # only the cyclic collector frees it
    gone = weakref.ref(cycle)
    del cycle
    before = gc.get_freeze_count()
    try:
        _collect_and_freeze()
        assert gone() is None
        assert gc.get_freeze_count() > before
    finally:
        gc.unfreeze()  # leave the test process's collector as it was


def test_each_onboarder_freezes_once_after_its_first_account(org, settings, monkeypatch):
    frozen: list[int] = []
    monkeypatch.setattr(heap, "_collect_and_freeze", lambda: frozen.append(1))
    first, second = (Onboarder(settings, SessionFactory(settings)) for _ in range(2))

    reports = [first.onboard(OnboardingRequest(org.member)) for _ in range(2)]
    assert frozen == [1]
    reports.append(second.onboard(OnboardingRequest(org.other_member)))

    assert [r.status for r in reports] == ["ok"] * 3
    assert frozen == [1, 1]


def test_heaps_of_different_onboarders_wait_for_each_others_accounts():
    frozen: list[str] = []
    one = WarmHeap(freeze=lambda: frozen.append("one"))
    other = WarmHeap(freeze=lambda: frozen.append("other"))

    with other.account():
        with one.account():
            pass
        assert frozen == []  # an account of the other onboarder is still in flight
    assert frozen == ["other"]

    with one.account():
        pass
    assert frozen == ["other", "one"]
