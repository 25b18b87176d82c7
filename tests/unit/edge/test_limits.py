"""The edge's rate limits (django_ws/edge/limits.py), event by event, with a clock the test moves."""

import math
import sys

import pytest

from django_ws.edge.limits import AddressLimits, LimitSettings, MessageLimits, TokenBucket


def test_the_module_needs_neither_tornado_nor_zmq():
    import subprocess

    code = ("import sys, django_ws.edge.limits; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tornado', 'zmq')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]", f"limits.py must stay free of I/O imports, imported {result.stdout}"


def test_a_token_bucket_starts_full_and_refills_evenly():
    bucket = TokenBucket(3, 1.0, now=0.0)
    assert [bucket.take(1, 0.0) for _ in range(4)] == [True, True, True, False]
    assert bucket.wait(1, 0.0) == pytest.approx(1.0)
    assert not bucket.take(1, 0.5), "half a token is not a token"
    assert bucket.take(1, 1.0)
    assert bucket.take(1, 100.0) and bucket.tokens == pytest.approx(2), "refills to its capacity, no further"


def test_one_amount_larger_than_the_bucket_passes_only_when_it_is_full():
    bucket = TokenBucket(100, 10.0, now=0.0)
    assert bucket.take(250, 0.0), "a full bucket lets one oversized amount through"
    assert bucket.tokens == -150
    assert not bucket.take(1, 10.0), "and then pays it back before anything else"
    assert bucket.wait(1, 10.0) == pytest.approx(5.1)


def test_new_connections_per_address_are_a_token_bucket_with_retry_after():
    limits = AddressLimits(LimitSettings(new_per_window=3, window=6.0))
    assert [limits.admit("1.2.3.4", 0.0) for _ in range(3)] == [None, None, None]
    refusal = limits.admit("1.2.3.4", 0.0)
    assert (refusal.limit, refusal.retry_after) == ("new_connections", 2), "one token refills in 6 s / 3"
    assert limits.admit("5.6.7.8", 0.0) is None, "another address has its own budget"
    assert limits.admit("1.2.3.4", 1.0).retry_after == 1, "Retry-After is rounded up, at least 1"
    assert limits.admit("1.2.3.4", 2.0) is None


def test_concurrent_connections_per_address_count_until_released():
    limits = AddressLimits(LimitSettings(concurrent=2, window=10.0))
    assert limits.admit("a", 0.0) is None and limits.admit("a", 0.0) is None
    refusal = limits.admit("a", 0.0)
    assert (refusal.limit, refusal.retry_after) == ("concurrent", 10)
    limits.release("a")
    assert limits.open_connections("a") == 1
    assert limits.admit("a", 0.0) is None
    limits.release("b")  # never admitted: nothing to release, nothing breaks
    assert limits.open_connections("b") == 0


def test_a_refused_handshake_does_not_count_as_open():
    limits = AddressLimits(LimitSettings(new_per_window=1, window=10.0, concurrent=5))
    assert limits.admit("a", 0.0) is None
    assert limits.admit("a", 0.0).limit == "new_connections"
    assert limits.open_connections("a") == 1


def test_idle_addresses_are_forgotten():
    limits = AddressLimits(LimitSettings(new_per_window=2, window=1.0, concurrent=10))
    for i in range(1000):
        limits.admit(f"10.0.{i // 256}.{i % 256}", 0.0)
        limits.release(f"10.0.{i // 256}.{i % 256}")
    limits.admit("busy", 0.0)  # still open at the prune
    assert len(limits.addresses) == 1001
    limits.admit("late", 5.0)  # a window later: the prune runs
    assert set(limits.addresses) == {"busy", "late"}, "only addresses with something open or owed remain"


def test_message_limits_close_on_messages_or_bytes():
    settings = LimitSettings(messages_per_window=3, bytes_per_window=1000, message_window=1.0)
    limits = MessageLimits.for_connection(settings, 0.0)
    assert [limits.allow(10, 0.0) for _ in range(3)] == [None, None, None]
    assert limits.allow(10, 0.0) == "messages"
    assert limits.allow(10, 1.0) is None, "a window later, the budget is back"
    by_bytes = MessageLimits.for_connection(LimitSettings(bytes_per_window=1000, message_window=1.0), 0.0)
    assert by_bytes.allow(600, 0.0) is None
    assert by_bytes.allow(600, 0.0) == "bytes"
    assert by_bytes.allow(600, 0.7) is None, "refilled at 1000 bytes per second"


def test_no_limits_no_per_connection_state():
    assert MessageLimits.for_connection(LimitSettings(), 0.0) is None
    assert not AddressLimits(LimitSettings()).enabled


@pytest.mark.parametrize("kwargs", [{"new_per_window": 5, "window": 0}, {"messages_per_window": 5, "message_window": -1}])
def test_a_window_of_zero_is_refused(kwargs):
    with pytest.raises(ValueError, match="must be more than 0 seconds"):
        LimitSettings(**kwargs)


def test_retry_after_is_never_below_one_second():
    limits = AddressLimits(LimitSettings(new_per_window=1000, window=1.0))
    for _ in range(1000):
        limits.admit("a", 0.0)
    assert limits.admit("a", 0.0).retry_after == max(1, math.ceil(1 / 1000))
