"""Every algorithm's first updates match the stored snapshot (``tests/data/determinism.json``).

A failure means a change moved an algorithm's numbers. If that was the intent, rerun its
benchmark suite entries, then regenerate: ``python tests/determinism_snapshot.py --write``.
"""

from __future__ import annotations

import json

import pytest

from determinism_snapshot import CASES, SNAPSHOT_FILE, compare, run_case

SNAPSHOT = json.loads(SNAPSHOT_FILE.read_text())


def test_every_case_is_recorded():
    assert sorted(SNAPSHOT) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_numbers_match_the_snapshot(name: str):
    problems = compare(SNAPSHOT[name], run_case(*CASES[name]))
    assert not problems, f"{name} moved:\n" + "\n".join(problems)


def test_compare_reports_a_moved_number():
    assert compare({"loss": [1.0, 2.0]}, {"loss": [1.0, 2.0 + 1e-3]})
    assert not compare({"loss": [1.0, 2.0]}, {"loss": [1.0, 2.0 + 1e-9]})
