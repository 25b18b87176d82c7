"""Delivery latency: a fixed-bucket histogram of the time from a sender's call to the client's socket.

The sender stamps its wall clock in GroupSend and SendTo (``sent_at``); the
edge, when it hands the frame to the clients' sockets, observes ``now -
sent_at`` once per message, weighted by the clients it reached. The buckets
are fixed, as Prometheus histograms are, so an observation is one bisect and
three additions: no allocation per message, and a size that never grows.

Both clocks are wall clocks. On one host they are the same clock; across
hosts the figure also holds the difference between the two hosts' clocks
(NTP keeps it to about a millisecond on a LAN), and an observation below
zero, a clock behind the sender's, counts in the first bucket and in
``negative``.
"""

from __future__ import annotations

import bisect
import math

#: Upper bounds of the buckets, in seconds; a last one, +Inf, holds the rest.
BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

#: What the figure measures, for the stats JSON and the admin page.
MEASURED = ("from the sender's call (send_to_group, send_to_connection, the HTTP publish API) to the frame "
            "handed to the client's socket, by the wall clocks of the sender's and the edge's host "
            "(one clock on one host; across hosts it includes their clock offset)")


class LatencyHistogram:
    """Counts of observations per fixed bucket, their sum, and those below zero."""

    __slots__ = ("count", "counts", "negative", "sum")

    def __init__(self) -> None:
        #: Non-cumulative counts, one per bound of BUCKETS and one for +Inf.
        self.counts = [0] * (len(BUCKETS) + 1)
        self.count = 0
        self.sum = 0.0
        #: Observations below zero (the edge's clock behind the sender's), counted as 0.
        self.negative = 0

    def observe(self, seconds: float, times: int = 1) -> None:
        """Record ``times`` deliveries that took ``seconds`` each."""
        if seconds < 0:
            self.negative += times
            seconds = 0.0
        self.counts[bisect.bisect_left(BUCKETS, seconds)] += times
        self.count += times
        self.sum += seconds * times

    def cumulative(self) -> list[tuple[float, int]]:
        """``(le, cumulative count)`` per bucket, ascending, the last ``le`` being ``math.inf``."""
        total, out = 0, []
        for bound, n in zip((*BUCKETS, math.inf), self.counts):
            total += n
            out.append((bound, total))
        return out

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile, interpolated within its bucket as Prometheus' histogram_quantile does.

        None without observations; the largest finite bound when it falls in +Inf.
        """
        if not self.count:
            return None
        rank = q * self.count
        lower, below = 0.0, 0
        for bound, total in self.cumulative():
            if total >= rank and total > below:
                if math.isinf(bound):
                    return BUCKETS[-1]
                return lower + (bound - lower) * (rank - below) / (total - below)
            lower, below = bound, total
        return BUCKETS[-1]  # pragma: no cover  (the +Inf bucket holds every count)

    def figures(self) -> dict:
        """The stats JSON's ``delivery_latency``: +Inf rendered as None (JSON null)."""
        return {
            "count": self.count,
            "sum_s": self.sum,
            "buckets": [[None if math.isinf(le) else le, n] for le, n in self.cumulative()],
            "p50_s": self.quantile(0.5),
            "p90_s": self.quantile(0.9),
            "p99_s": self.quantile(0.99),
            "negative": self.negative,
            "measured": MEASURED,
        }
