"""benchmark/report.py's seed summary: when a curve first reaches a level, on curves made by hand."""

from __future__ import annotations

import sys

import numpy as np

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
import report  # noqa: E402


def rows(returns, steps=None) -> dict[str, np.ndarray]:
    n = len(returns)
    steps = np.arange(1, n + 1) * 1000 if steps is None else np.asarray(steps)
    return {"episodic_return": np.asarray(returns, float), "global_step": steps, "wall_time_s": steps / 100.0,
            "running_mean": np.asarray(returns, float)}


def test_mean_100_counts_only_once_100_games_are_in_it():
    curve = rows([-21.0] * 100 + [21.0] * 100)
    # the last 100 games at game 150 are 50 lost 0-21 and 50 won 21-0: their mean first reaches 0 there
    assert report.first_reached(curve, "mean-100", 0) == (150_000, 1500.0)
    assert report.first_reached(curve, "mean-100", 21) == (200_000, 2000.0)
    assert report.first_reached(rows([21.0] * 99), "mean-100", 0) is None  # a high start of 99 games is no mean-100


def test_the_running_mean_counts_from_the_first_game_and_a_level_never_reached_is_none():
    curve = rows([-20.0, -5.0, 3.0, 2.0])
    assert report.first_reached(curve, "running_mean", 0) == (3000, 30.0)
    assert report.first_reached(curve, "running_mean", 5) is None


def test_seeds_table_times_every_seed_and_keeps_a_seed_that_never_got_there(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    header = "global_step,episode,episodic_return,episodic_length,wall_time_s,sps\n"
    for seed, losses, wins in ((1, 100, 100), (2, 150, 100), (3, 200, 0)):  # seed 3 never wins
        scores = [-21.0] * losses + [21.0] * wins
        folder = tmp_path / "results" / f"ppo_mlp_seed{seed}"
        folder.mkdir(parents=True)
        (folder / "progress.csv").write_text(header + "".join(
            f"{1000 * (i + 1)},{i + 1},{r},800,{10.0 * (i + 1)},100\n" for i, r in enumerate(scores)))
    lines = report.seeds_table()
    assert "| 3 | not reached | not reached | not reached | not reached |" in lines, lines
    median = next(line for line in lines if line.startswith("| median"))
    # mean-100 reaches +14 at game 184 (seed 1) and 234 (seed 2): the median of the two seeds that got there
    assert median.startswith("| median | 209,000 steps") and "(2/3)" in median, median
    assert (tmp_path / "plots" / "ppo_mlp_seeds.png").exists()
