"""--instructions: reading callgrind's dumps and the A/B table."""

from bench.instructions import _read_dump, render


def test_the_dump_of_a_process_is_read_from_its_summary_line(tmp_path):
    (tmp_path / "cg.41.1").write_text("# callgrind format\nevents: Ir\nsummary: 1000\ntotals: 1200\n")
    before = {tmp_path / "cg.41.1"}
    (tmp_path / "cg.41.2").write_text("events: Ir\nsummary: 2500\n")
    assert _read_dump(tmp_path, 41, before) == 2500


def test_the_table_gives_medians_and_this_checkout_over_the_commit():
    def run(edge, worker):
        return {"per_round_trip": {"edge": edge, "worker": worker, "total": edge + worker}}

    table = render({"djws-threaded": [run(90, 50), run(110, 50)],
                    "djws-threaded@abc123": [run(100, 50), run(100, 50)]})
    assert "edge 100 [90-110]" in table
    assert "djws-threaded / djws-threaded@abc123: edge 1.000x, worker 1.000x, total 1.000x" in table
