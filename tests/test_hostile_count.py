"""README.md's count of hostile cases is the suite's own (see tests/count_hostile.py)."""

import count_hostile


def test_readme_states_the_collected_number_of_hostile_cases():
    count = count_hostile.collect()
    assert count > 100
    found = count_hostile.stated(count_hostile.README.read_text(encoding="utf-8"))
    assert found == count, f"README.md says {found}, the suite collects {count}: run python tests/count_hostile.py --write"


def test_stated_reads_only_the_marked_line():
    text = "12 apples\n<!-- hostile-count -->345 hostile cases tested, none loses data.<!-- /hostile-count -->\n"
    assert count_hostile.stated(text) == 345 and count_hostile.stated("no marker, 99 cases") is None
