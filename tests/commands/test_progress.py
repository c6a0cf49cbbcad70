"""Progress lines of a multi-day `gov-warehouse generate` / `run`: the day's place, time spent, time left."""

from __future__ import annotations

from datetime import date

import pytest

from commands import cli

pytestmark = pytest.mark.unit


def test_each_day_says_where_it_is_and_how_long_is_left():
    now = [100.0]
    progress = cli.Progress(30, clock=lambda: now[0])
    assert progress.start(date(2023, 11, 1)) == "day 1/30 2023-11-01 (0:00:00 elapsed)"
    now[0] += 40  # day 1 took 40 s
    assert progress.start(date(2023, 11, 2)) == "day 2/30 2023-11-02 (0:00:40 elapsed, about 0:19:20 left)"
    now[0] += 80  # day 2 took 80 s: 60 s a day on average, 28 days left
    assert progress.start(date(2023, 11, 3)) == "day 3/30 2023-11-03 (0:02:00 elapsed, about 0:28:00 left)"

