"""The learning-rate schedule follows the time budget: it shrinks on a slow machine, and grows
back (never past the plan) when a slow start was only a passing load."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from exporters.schedule import LinearSchedule as _Schedule  # noqa: E402


def test_pace_is_not_trusted_before_the_first_hundred_steps() -> None:
    s = _Schedule(total=1000, warmup=60)
    assert not s.fit_budget(step=50, elapsed=500.0, budget=600.0)
    assert s.total == 1000


def test_a_slow_pace_shortens_the_run_to_fit_the_budget() -> None:
    s = _Schedule(total=1000, warmup=60)
    # 2 s/step so far, 400 s left: 200 more steps.
    assert s.fit_budget(step=100, elapsed=200.0, budget=600.0)
    assert s.total == 300
    assert s(299) == pytest.approx(1 / 240)
    assert s(300) == 0.0


def test_the_run_grows_back_to_the_plan_when_the_pace_recovers_but_never_past_it() -> None:
    s = _Schedule(total=1000, warmup=60)
    s.fit_budget(step=100, elapsed=200.0, budget=600.0)
    assert s.total == 300
    # The load went away: 0.2 s/step on average now, room for far more than planned.
    assert s.fit_budget(step=250, elapsed=50.0, budget=600.0)
    assert s.total == 1000
    assert not s.fit_budget(step=260, elapsed=52.0, budget=600.0)


def test_out_of_time_ends_at_the_next_step() -> None:
    s = _Schedule(total=1000, warmup=60)
    s.fit_budget(step=400, elapsed=700.0, budget=600.0)
    assert s.total == 401


def test_early_stopping_waits_for_the_annealed_part_of_the_schedule() -> None:
    from exporters.train import may_stop_early

    assert not may_stop_early(stale=6, patience=4, step=868, total=2604, min_progress=0.75)
    assert may_stop_early(stale=4, patience=4, step=1953, total=2604, min_progress=0.75)
    assert not may_stop_early(stale=3, patience=4, step=2400, total=2604, min_progress=0.75)
    # min_progress 0 is plain patience.
    assert may_stop_early(stale=4, patience=4, step=10, total=2604, min_progress=0.0)
