"""The linear schedules (epsilon, an annealed learning rate) that the scripts keep in their checkpoints:
their values, and how a resume with a new `--total-timesteps` continues them without a jump."""

from __future__ import annotations

import pytest

from conftest import SCRIPTS, load_script

pytestmark = pytest.mark.parametrize("script", SCRIPTS)  # the schedule is part of the run-plumbing block


def test_schedule_falls_linearly_then_holds(script):
    epsilon = load_script(script).LinearSchedule(0, 1.0, 100, 0.01)
    assert epsilon(0) == 1.0
    assert epsilon(50) == pytest.approx(0.505)
    assert epsilon(100) == pytest.approx(0.01) and epsilon(10_000) == pytest.approx(0.01)


def test_resume_with_more_steps_continues_from_the_value_reached_and_stretches_the_rest(script):
    lr = load_script(script).LinearSchedule(0, 1.0, 1000, 0.0)  # annealed to 0 over a 1000-step run
    resumed = lr.resumed(500, 1000, 2000, "x")  # stopped half-way, resumed for 2000 steps in all
    assert resumed(500) == pytest.approx(lr(500)) == pytest.approx(0.5)
    assert resumed(1250) == pytest.approx(0.25) and resumed(2000) == 0.0
    squeezed = lr.resumed(500, 1000, 600, "x")  # ... or for fewer: what remained ends at the new total
    assert squeezed(500) == pytest.approx(0.5) and squeezed(550) == pytest.approx(0.25) and squeezed(600) == 0.0


def test_epsilon_ending_early_is_stretched_in_proportion_to_the_steps_left(script):
    epsilon = load_script(script).LinearSchedule(0, 1.0, 100, 0.0)  # the first 10% of a 1000-step run
    resumed = epsilon.resumed(50, 1000, 1950, "x")  # 950 steps left became 1900: the 50 left of epsilon become 100
    assert resumed(50) == pytest.approx(0.5) and resumed(100) == pytest.approx(0.25) and resumed(150) == 0.0


def test_a_finished_schedule_stays_finished(script):
    lr = load_script(script).LinearSchedule(0, 1.0, 1000, 0.0)
    resumed = lr.resumed(1000, 1000, 5000, "x")
    assert resumed(1000) == resumed(3000) == 0.0
    assert lr.resumed(400, 1000, 1000, "x") is lr  # the same total: nothing to change
