"""Threaded mode's pool: order per connection, one message at a time, blocking handlers."""

import threading
import time

import pytest

from django_ws.worker.connection import STOP
from django_ws.worker.pool import SerialMailbox, ThreadPool


class FakeRunner:
    """Records what the pool calls, from which thread, and whether two calls overlapped."""

    def __init__(self, accept=True, on_handle=None):
        self.accept = accept
        self.on_handle = on_handle
        self.handled = []
        self.threads = set()
        self.busy = False
        self.overlapped = False
        self.finished = threading.Event()

    def _enter(self):
        if self.busy:
            self.overlapped = True
        self.busy = True
        self.threads.add(threading.current_thread().name)

    def handshake(self):
        self._enter()
        self.busy = False
        return self.accept

    def handle(self, event):
        self._enter()
        try:
            if event is STOP:
                return False
            if self.on_handle:
                self.on_handle(event)
            self.handled.append(event)
            return True
        finally:
            self.busy = False

    def finish(self):
        self.finished.set()


def start(pool, runner):
    mailbox = SerialMailbox(pool, threading.Condition())
    mailbox.start(runner)
    return mailbox


@pytest.mark.parametrize("awake_limit", [None, 1, 2])
def test_messages_of_one_connection_run_in_order_and_never_at_once(awake_limit):
    pool = ThreadPool(awake_limit=awake_limit)
    runners = [FakeRunner(on_handle=lambda e: time.sleep(0) if e % 7 else None) for _ in range(20)]
    mailboxes = [start(pool, r) for r in runners]
    for n in range(500):
        for mailbox in mailboxes:
            mailbox.put(n)
    for mailbox in mailboxes:
        mailbox.put(STOP)
    for runner, mailbox in zip(runners, mailboxes):
        assert mailbox.join(10)
        assert runner.handled == list(range(500))
        assert not runner.overlapped


def test_a_refused_handshake_finishes_without_handling_anything():
    pool = ThreadPool()
    runner = FakeRunner(accept=False)
    mailbox = start(pool, runner)
    assert mailbox.join(10)
    mailbox.put("too late")  # after the end: dropped, nothing runs
    assert runner.handled == []


def serve_others_while_one_blocks(pool: ThreadPool, why: str) -> list[FakeRunner]:
    """One handler blocks a pool thread; five other connections must each be served meanwhile."""
    release = threading.Event()
    blocker = FakeRunner(on_handle=lambda e: release.wait(30))
    blocked = start(pool, blocker)
    blocked.put("block")
    others = [FakeRunner() for _ in range(5)]
    boxes = [start(pool, r) for r in others]
    for box in boxes:
        box.put("hello")
        box.put(STOP)
    try:
        for box in boxes:
            assert box.join(10), why
    finally:
        release.set()
    blocked.put(STOP)
    assert blocked.join(10)
    assert blocker.handled == ["block"]
    return others


def test_a_blocked_handler_does_not_hold_up_other_connections():
    serve_others_while_one_blocks(ThreadPool(starvation_delay=0.01), "served although a handler blocks a pool thread")


def test_past_the_awake_limit_a_blocked_handler_gets_an_idle_thread_woken_for_the_others():
    pool = ThreadPool(starvation_delay=0.01, awake_limit=1)
    # Three threads, all idle again: the ones the watcher must wake.
    arrived = threading.Barrier(4, timeout=30)
    warm = [start(pool, FakeRunner(on_handle=lambda e: arrived.wait())) for _ in range(3)]
    for box in warm:
        box.put("together")
    arrived.wait()
    for box in warm:
        box.put(STOP)
        assert box.join(10)
    started = pool._started
    others = serve_others_while_one_blocks(pool, "served by an idle thread although the only awake one is blocked")
    assert [r.handled for r in others] == [["hello"]] * 5
    assert pool._started == started, "idle threads were woken rather than new ones started"


@pytest.mark.parametrize("awake_limit", [None, 2])
def test_many_handlers_blocked_at_once_each_get_a_thread(awake_limit):
    pool = ThreadPool(starvation_delay=0.005, awake_limit=awake_limit)
    n = 30
    arrived = threading.Barrier(n + 1, timeout=30)
    runners = [FakeRunner(on_handle=lambda e: arrived.wait()) for _ in range(n)]
    boxes = [start(pool, r) for r in runners]
    for box in boxes:
        box.put("wait for all")
    arrived.wait()  # all 30 inside a handler at the same moment
    assert pool.threads >= n
    for box in boxes:
        box.put(STOP)
        assert box.join(10)


def pool_threads(name):
    return [t for t in threading.enumerate() if t.name.startswith(f"{name}-") and t.is_alive()]


def wait_for_threads(name, predicate):
    deadline = time.monotonic() + 10
    while not predicate(pool_threads(name)):
        assert time.monotonic() < deadline, [t.name for t in pool_threads(name)]
        time.sleep(0.02)  # no event to wait on: the threads' own timeouts end them


def test_idle_threads_end_after_the_idle_timeout():
    pool = ThreadPool(idle_timeout=0.2, name="ws-idle-test")
    runner = FakeRunner()
    box = start(pool, runner)
    box.put(STOP)
    assert box.join(10)
    wait_for_threads("ws-idle-test", lambda threads: [t.name for t in threads] == ["ws-idle-test-watcher"])
    assert pool.threads == 0
    # ...and the pool still works afterwards.
    again = FakeRunner()
    box = start(pool, again)
    box.put("x")
    box.put(STOP)
    assert box.join(10) and again.handled == ["x"]
    pool.stop()


@pytest.mark.parametrize("setting, expected", [(None, None), (0, None), (2, 2.0), ("1.5", 1.5)])
def test_ws_thread_idle_timeout_none_means_idle_threads_never_end(setting, expected):
    from django.test import override_settings

    from django_ws.worker.modes import ThreadedMode

    with override_settings(WS_THREAD_IDLE_TIMEOUT=setting):
        mode = ThreadedMode()
    try:
        assert mode.pool.idle_timeout == expected
    finally:
        mode.close()


def test_stop_ends_the_watcher_and_the_idle_threads():
    pool = ThreadPool(name="ws-stop-test")
    boxes = [start(pool, FakeRunner()) for _ in range(5)]
    for box in boxes:
        box.put(STOP)
        assert box.join(10)
    assert pool_threads("ws-stop-test")
    pool.stop()
    wait_for_threads("ws-stop-test", lambda threads: not threads)
    assert pool.threads == 0


def test_under_a_steady_stream_the_pool_stays_small():
    # A long starvation delay: this is about busy threads taking queued work, not about timing.
    pool = ThreadPool(starvation_delay=0.05)
    runners = [FakeRunner() for _ in range(50)]
    boxes = [start(pool, r) for r in runners]
    for n in range(200):
        for box in boxes:
            box.put(n)
    for box in boxes:
        box.put(STOP)
        assert box.join(10)
    # Short tasks are picked up by busy threads, not one new thread each.
    assert pool._started <= 10, pool._started


def test_gevent_mode_refuses_a_process_that_gevent_has_not_patched():
    from django_ws.worker.modes import GeventMode

    with pytest.raises(RuntimeError, match="monkey-patched"):
        GeventMode()
