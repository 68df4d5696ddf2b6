"""A classroom at once against a real server: every result as if the request had been made alone."""
from __future__ import annotations

import pytest

from demo.tools import classroom as loadtest
from demo.tools.launcher import launch_app


@pytest.mark.slow
def test_twelve_students_at_once_get_what_each_would_get_alone():
    students = [loadtest.Student(label=k % 10, seed=100 + k, num_samples=4, num_steps=8) for k in range(12)]
    with launch_app() as (url, process):
        served = loadtest.classroom(url, students)
        assert process.poll() is None
    assert served["errors"] == []
    match = loadtest.compare_pictures(served["pictures"], loadtest.alone(students))
    assert match["compared"] == len(students)
    assert match["max_grey_levels"] <= 1 and match["identical_fraction"] > 0.99, match


def test_the_bench_s_class_asks_for_the_app_s_defaults():
    """Student k: digit k mod 10, seed 1000 + k; everything else as the app's form declares it."""
    from demo.ui import form
    students = loadtest.class_of(12)
    assert [(s.label, s.seed) for s in students[9:]] == [(9, 1009), (0, 1010), (1, 1011)]
    base, weights = students[3].comparison()
    want_base, want_weights = form.comparison_of(label=3, seed=1003)
    assert base == want_base and weights == want_weights
    assert students[3].kwargs() == form.COMPARE.api_defaults(label=3, seed=1003)
    small = loadtest.Student(2, 5, weight=1.5, num_samples=2, num_steps=4).kwargs()
    assert small["mode"] == "same" and small["w_cfg"] == 1.5 and (small["num_samples"], small["num_steps"]) == (2, 4)
