"""The benchmark's arithmetic: medians over rounds, ratios taken within each round, the warning."""

from bench.report import check_targets, ratio_spread, render_tables, spread
from bench.targets import TARGETS

ECHO_HEADER = {"echo": "echo"}
BY_NAME = {t.name: t for t in TARGETS}


def rounds(*rates, p99=5.0):
    return [{"rate_per_s": r, "p50_ms": 1.0, "p99_ms": p99} for r in rates]


def test_a_ratio_is_the_median_of_the_per_round_ratios_not_the_ratio_of_the_medians():
    mine = rounds(100, 200, 300)
    ref = rounds(50, 400, 150)  # per round: 2.0, 0.5, 2.0
    s = ratio_spread(mine, ref, "rate_per_s")
    assert (s.median, s.low, s.high) == (2.0, 0.5, 2.0), "median and range of 2.0, 0.5, 2.0"
    assert spread(mine, "rate_per_s").median / spread(ref, "rate_per_s").median == 200 / 150


def test_a_ratio_whose_rounds_cross_one_is_marked_and_warned_about():
    results = {"echo": {"djws-threaded": rounds(90, 110, 120), "channels-async": rounds(100, 100, 100)}}
    table, warnings = render_tables(results, [BY_NAME["djws-threaded"], BY_NAME["channels-async"]], ["echo"],
                                    {}, ECHO_HEADER)
    assert "1.10x [0.90-1.20]!" in table, table
    assert any("djws-threaded" in w and "cross 1.0" in w and "round trips/s" in w for w in warnings), warnings


def test_a_ratio_on_one_side_of_one_is_not_warned_about():
    results = {"echo": {"djws-threaded": rounds(150, 160, 170, p99=2), "channels-async": rounds(100, 100, 100)}}
    table, warnings = render_tables(results, [BY_NAME["djws-threaded"], BY_NAME["channels-async"]], ["echo"],
                                    {}, ECHO_HEADER)
    assert "1.60x [1.50-1.70]" in table and "1.60x [1.50-1.70]!" not in table, table
    assert warnings == [], "no ratio of this run crosses 1.0"


def test_a_round_that_failed_shows_as_an_error_and_no_figure():
    results = {"echo": {"djws-threaded": [*rounds(150, 160), {"error": "RuntimeError: it died"}],
                        "channels-async": rounds(100, 100, 100)}}
    table, _ = render_tables(results, [BY_NAME["djws-threaded"], BY_NAME["channels-async"]], ["echo"], {}, ECHO_HEADER)
    assert "ERROR in 1 of 3 rounds: RuntimeError: it died" in table, table
    checks = check_targets(results)
    assert not [c for c in checks if c["target"] == "djws-threaded"], "no target judged on partial rounds"


def test_targets_are_judged_on_the_median_ratio():
    results = {"echo": {"djws-threaded": rounds(260, 240, 300, p99=4), "channels-sync": rounds(100, 100, 100),
                        "channels-async": rounds(200, 250, 250)}}
    checks = {c["goal"]: c for c in check_targets(results) if c["target"] == "djws-threaded"}
    assert checks["echo round trips/s >= 2.5x channels-sync"]["met"] is True  # median of 2.6, 2.4, 3.0
    assert checks["echo round trips/s >= 1.0x channels-async"]["met"] is True  # median of 1.3, 0.96, 1.2
