"""The aligned text tables of the command line and the reports."""

from findvl.tables import format_table, format_value


def test_cells_and_alignment():
    assert [format_value(v) for v in (None, 1.0 / 3, 7, "x")] == ["-", "0.33", "7", "x"]
    text = format_table(("", "PQ", "n"), [["All", 12.345, 3], ["Things", None, 10]])
    assert text.splitlines() == [
        "           PQ   n",
        "------  -----  --",
        "All     12.35   3",
        "Things      -  10",
    ]
