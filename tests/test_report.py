"""benchmark/report.py's seed summary: when a curve first reaches a level, on curves made by hand."""

from __future__ import annotations

import json
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


def write_seed_record(results, name: str, scores: list[float], env_id: str = "ALE/Pong-v5") -> None:
    """A seed record as `seeds.py --record` leaves it: progress.csv (one game per 1,000 steps and 10 s) and args.json."""
    folder = results / name
    folder.mkdir(parents=True)
    (folder / "progress.csv").write_text("global_step,episode,episodic_return,episodic_length,wall_time_s,sps\n" +
                                         "".join(f"{1000 * (i + 1)},{i + 1},{r},800,{10.0 * (i + 1)},100\n"
                                                 for i, r in enumerate(scores)))
    (folder / "args.json").write_text(json.dumps({"env_id": env_id}))


def test_seeds_table_times_every_seed_and_keeps_a_seed_that_never_got_there(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    for seed, losses, wins in ((1, 100, 100), (2, 150, 100), (3, 200, 0)):  # seed 3 never wins
        write_seed_record(tmp_path / "results", f"ppo_mlp_seed{seed}", [-21.0] * losses + [21.0] * wins)
    lines = report.seeds_table()
    assert "| 3 | " + " | ".join(["not reached"] * 5) + " | -21.00 | - |" in lines, lines
    header = next(line for line in lines if line.startswith("| seed"))
    column = header.split(" | ").index("mean-100 +14 (threshold)")
    median = next(line for line in lines if line.startswith("| median")).split(" | ")[column]
    # mean-100 reaches +14 at game 184 (seed 1) and 234 (seed 2), never for seed 3: the median seed is seed 2
    assert median == "234,000 steps, 39 min (2/3 reached)", median
    last = next(line for line in lines if line.startswith("| max")).split(" | ")[column]
    assert last == "not reached (2/3 reached)", last
    assert (tmp_path / "plots" / "ppo_mlp_seeds.png").exists()


def test_seeds_run_with_another_setting_get_a_table_of_their_own(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    write_seed_record(tmp_path / "results", "ppo_ray_seed1", [-21.0] * 100)
    write_seed_record(tmp_path / "results", "ppo_ray_v4_seed1", [21.0] * 100, env_id="PongNoFrameskip-v4")
    write_seed_record(tmp_path / "results", "ppo_ray_1minibatch", [21.0] * 100)  # a single run, not a seed record
    titles = [line for line in report.seeds_table() if line.startswith("###")]
    assert len(titles) == 2, titles
    assert titles[0].startswith("### ppo_ray: 1 seed on ALE/Pong-v5")
    assert titles[1].startswith("### ppo_ray_v4: 1 seed on PongNoFrameskip-v4")


def test_shipping_a_seed_replaces_the_scripts_shipped_weights_and_keeps_the_old_records_scores(tmp_path, monkeypatch):
    for name, folder in (("RESULTS", "results"), ("CHECKPOINTS", "checkpoints")):
        monkeypatch.setattr(report, name, tmp_path / folder)
    monkeypatch.setattr(report, "BENCH", tmp_path / "bench")  # the repository root is its parent: tmp_path
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "ppo_ray_1minibatch.pt").write_bytes(b"old weights")
    records = {"ppo_ray_1minibatch": ("runs/old", "checkpoints/ppo_ray_1minibatch.pt"),
               "ppo_ray_seed2": ("runs/s2", None)}
    for name, (run_dir, weights) in records.items():
        (tmp_path / run_dir).mkdir(parents=True)
        (tmp_path / run_dir / "final_model.pt").write_bytes(f"weights of {name}".encode())
        dest = tmp_path / "results" / name
        dest.mkdir(parents=True)
        (dest / "commands.txt").write_text("2026-11-26T00:00:00 python ppo_ray.py --seed 2\n")
        (dest / "eval_sticky_0.json").write_text("{}")
        report.write_meta(dest, {"note": "A run.", "run_dir": str(tmp_path / run_dir), "weights": weights})
    report.ship_seed("ppo_ray_seed2")
    assert (tmp_path / "checkpoints" / "ppo_ray.pt").read_bytes() == b"weights of ppo_ray_seed2"
    assert not (tmp_path / "checkpoints" / "ppo_ray_1minibatch.pt").exists(), "one set of weights per script"
    old = json.loads((tmp_path / "results" / "ppo_ray_1minibatch" / "meta.json").read_text())
    assert old["weights"] is None and "no longer shipped" in old["note"]
    assert (tmp_path / "results" / "ppo_ray_1minibatch" / "eval_sticky_0.json").exists()
    new = json.loads((tmp_path / "results" / "ppo_ray_seed2" / "meta.json").read_text())
    assert new["weights"] == "checkpoints/ppo_ray.pt"  # relative to the repository root


def test_the_median_seed_is_not_reached_when_most_seeds_never_got_there():
    assert report.over_seeds([None, (1000, 60.0), None], "median") == "not reached (1/3 reached)"
    assert report.over_seeds([None, (1000, 60.0), None], "min") == "1,000 steps, 1 min (1/3 reached)"
    assert report.over_seeds([(3000, 300.0), (1000, 60.0), (2000, 120.0)], "median") == "2,000 steps, 2 min (3/3 reached)"


def test_seeds_are_ranked_by_agent_steps_not_by_wall_time():
    # the first seed took fewer steps than the second but more hours (a loaded machine): rank by steps
    reached = [(1000, 600.0), (2000, 300.0), (3000, 900.0)]
    assert report.over_seeds(reached, "min") == "1,000 steps, 10 min (3/3 reached)"
    assert report.over_seeds(reached, "median") == "2,000 steps, 5 min (3/3 reached)"
    assert report.over_seeds([(980, 4800.0), None, (997, 4250.0)], "median") == "997 steps, 1.18 h (2/3 reached)"


def test_the_median_of_an_even_count_is_the_slower_middle_seed():
    assert report.over_seeds([(1000, 60.0), None], "median") == "not reached (1/2 reached)"
    assert report.over_seeds([(1000, 60.0), (2000, 120.0)], "median") == "2,000 steps, 2 min (2/2 reached)"


def test_the_median_over_seeds_of_differently_long_curves_counts_each_curve_only_where_it_ran():
    curves = [(np.array([0.0, 10.0]), np.array([0.0, 10.0])),    # rises to 10 at x 10
              (np.array([0.0, 5.0]), np.array([-6.0, -6.0])),    # ends at x 5
              (np.array([2.0, 20.0]), np.array([20.0, 20.0]))]   # starts at x 2, ends at x 20
    stats = report.over_runs(curves, np.array([0.0, 4.0, 5.0, 10.0, 20.0, 30.0]))
    assert stats["runs"].tolist() == [2, 3, 3, 2, 1, 0]
    np.testing.assert_allclose(stats["median"], [-3.0, 4.0, 5.0, 15.0, 20.0, np.nan])
    np.testing.assert_allclose(stats["min"], [-6.0, -6.0, -6.0, 10.0, 20.0, np.nan])
    np.testing.assert_allclose(stats["max"], [0.0, 20.0, 20.0, 20.0, 20.0, np.nan])


def test_the_sticky_figure_takes_the_seeds_at_the_defaults_and_the_deterministic_one_every_run(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(report, "PLOTS", tmp_path / "plots")
    for name, env_id in (("ppo_ray_seed1", "ALE/Pong-v5"), ("ppo_ray_seed2", "ALE/Pong-v5"),
                         ("ppo_ray_lr_seed1", "ALE/Pong-v5"), ("pg_numpy", "ALE/Pong-v5"),
                         ("ppo_ray", "PongNoFrameskip-v4"), ("ppo_ray_v4_seed1", "PongNoFrameskip-v4")):
        write_seed_record(tmp_path / "results", name, [-21.0] * 50 + [0.0] * 50, env_id=env_id)
    sticky = report.protocol_groups("ALE/Pong-v5", seeds_only=True)
    assert {key: [d.name for d in ds] for key, ds in sticky.items()} == {("ppo_ray", True): ["ppo_ray_seed1",
                                                                                           "ppo_ray_seed2"]}
    assert list(report.protocol_groups("PongNoFrameskip-v4", seeds_only=False)) == [("ppo_ray", False),
                                                                                   ("ppo_ray_v4", True)]
    lines = report.protocol_figures()
    assert any("](plots/sticky.png)" in line for line in lines) and any("](plots/deterministic.png)" in line
                                                                     for line in lines)
    assert (tmp_path / "plots" / "sticky.png").exists() and (tmp_path / "plots" / "deterministic.png").exists()


def test_a_run_collected_inside_the_repository_is_recorded_with_relative_paths(tmp_path, monkeypatch):
    for name, folder in (("RESULTS", "results"), ("CHECKPOINTS", "checkpoints")):
        monkeypatch.setattr(report, name, tmp_path / folder)
    monkeypatch.setattr(report, "BENCH", tmp_path / "bench")  # the repository root is its parent: tmp_path
    run_dir = tmp_path / "runs" / "seeds" / "ppo_ray" / "seed2"
    run_dir.mkdir(parents=True)
    (run_dir / "final_model.pt").write_bytes(b"weights")
    (run_dir / "progress.csv").write_bytes(b"global_step,episodic_return\r\n1000,-21.0\r\n")
    (run_dir / "args.json").write_text(json.dumps({"run_dir": str(run_dir), "resume": None, "log": "/elsewhere/x"}))
    (run_dir / "commands.txt").write_text(f"2026-11-26T00:00:00 python ppo_ray.py --seed 2 --run-dir {run_dir}\n")
    (run_dir / "eval.json").write_text(json.dumps({"checkpoint": str(run_dir / "final_model.pt")}))
    report.collect(run_dir, "ppo_ray_seed2", note="A run.", ship=False)
    dest = tmp_path / "results" / "ppo_ray_seed2"
    meta = json.loads((dest / "meta.json").read_text())
    assert meta["run_dir"] == "runs/seeds/ppo_ray/seed2"
    assert json.loads((dest / "args.json").read_text()) == {"run_dir": "runs/seeds/ppo_ray/seed2", "resume": None,
                                                            "log": "/elsewhere/x"}  # outside the repository: as is
    assert (dest / "commands.txt").read_text().endswith("--run-dir runs/seeds/ppo_ray/seed2\n")
    assert json.loads((dest / "eval.json").read_text()) == {"checkpoint": "runs/seeds/ppo_ray/seed2/final_model.pt"}
    assert (dest / "progress.csv").read_bytes() == (run_dir / "progress.csv").read_bytes()
    (tmp_path / "checkpoints").mkdir()
    report.ship_seed("ppo_ray_seed2")  # finds the run by its relative run_dir, whatever the working directory
    assert (tmp_path / "checkpoints" / "ppo_ray.pt").read_bytes() == b"weights"


def test_a_probe_figure_draws_the_goals_of_the_script_its_folder_is_named_after(tmp_path, monkeypatch):
    drawn = {}
    monkeypatch.setattr(report, "plot_curves", lambda runs, title, name, folder, stems: drawn.update(
        labels=list(runs), folder=folder, stems=stems) or folder / f"{name}.png")
    csv_path = tmp_path / "progress.csv"
    csv_path.write_text("global_step,episode,episodic_return,episodic_length,wall_time_s,sps\n1000,1,-21.0,900,1.0,1000\n")
    for folder, stems in (("ppo_mlp_depth", ["ppo_mlp"]), ("elsewhere", [])):
        monkeypatch.setattr(sys, "argv", ["report.py", "--probe", str(tmp_path / folder), "a title", f"one={csv_path}"])
        report.main()
        assert drawn == {"labels": ["one"], "folder": tmp_path / folder, "stems": stems}
