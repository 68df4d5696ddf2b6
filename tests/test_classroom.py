"""A classroom at once against a real server: every result as if the request had been made alone."""
from __future__ import annotations

import pytest

from demo.tools import classroom as loadtest
from demo.tools.launcher import launch_app


@pytest.mark.slow
def test_twelve_students_at_once_get_what_each_would_get_alone(tmp_path):
    students = [loadtest.Student(label=k % 10, seed=100 + k, num_samples=4, num_steps=8) for k in range(12)]
    with launch_app() as (url, process):
        served = loadtest.classroom(url, students, tmp_path)
        assert process.poll() is None
    assert served["errors"] == []
    match = loadtest.compare_pictures(served["pictures"], loadtest.alone(students))
    assert match["compared"] == len(students)
    assert match["max_grey_levels"] <= 1 and match["identical_fraction"] > 0.99, match
