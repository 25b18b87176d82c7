"""The admin live view's arithmetic: what a page may ask the edges, and the plots' series."""

from django_ws.admin.live import GROUPS_SHOWN, PAGE_SIZE, parse_query, series


def test_a_page_asks_for_the_largest_groups_and_a_page_of_a_searched_group_only():
    assert parse_query({}) == {"groups": GROUPS_SHOWN}
    assert parse_query({"group": "  ", "offset": "5"}) == {"groups": GROUPS_SHOWN}
    assert parse_query({"group": " room.a ", "offset": "100", "limit": "1000000", "evil": 1}) == {
        "groups": GROUPS_SHOWN, "group": "room.a", "offset": 100, "limit": PAGE_SIZE}
    assert parse_query({"group": "g", "offset": "nope"})["offset"] == 0
    assert parse_query({"group": "g", "offset": -3})["offset"] == 0


def test_series_sums_the_edges_per_slot_and_turns_counters_into_rates():
    edge_a = {"samples": [[1000.0, 10, 0, 0], [1005.0, 12, 40, 60], [1010.0, 12, 40, 60]]}
    edge_b = {"samples": [[1001.0, 5, 100, 0], [1006.0, 5, 150, 0]]}
    assert series([edge_a, edge_b]) == [
        [1000.0, 15, 0.0],
        [1005.0, 17, 30.0],  # a: 100 frames in 5 s; b: 50 in 5 s
        [1010.0, 12, 0.0],
    ]
    assert series([{}]) == []
