"""benchmark/seeds.py: several seeds of one script in turn, and a rerun that continues only what is unfinished."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, checkpoint_step, read_progress, script_env

TINY = ["--", "--num-envs", "2", "--batch-episodes", "1", "--eval-episodes", "1", "--save-every", "500"]


def seeds(runs, *flags: str) -> subprocess.CompletedProcess:
    command = [sys.executable, str(ROOT / "benchmark" / "seeds.py"), "pg_numpy.py", "--runs-dir", str(runs), *flags]
    return subprocess.run(command, capture_output=True, text=True, env=script_env(), timeout=600)


def test_each_seed_trains_in_its_own_run_dir_and_a_rerun_changes_nothing(tmp_path):
    first = seeds(tmp_path, "--seeds", "1", "2", "--total-timesteps", "1500", *TINY)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    run_dirs = [tmp_path / "pg_numpy" / f"seed{seed}" for seed in (1, 2)]
    for seed, run_dir in zip((1, 2), run_dirs):
        settings = json.loads((run_dir / "args.json").read_text())
        assert settings["seed"] == seed and settings["num_envs"] == 2 and settings["total_timesteps"] == 1500
        assert (run_dir / "eval.json").exists() and checkpoint_step(run_dir / "checkpoint.npz") >= 1500
    files = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    again = seeds(tmp_path, "--seeds", "1", "2", "--total-timesteps", "1500", *TINY)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "seed 1: done" in again.stdout and "seed 2: done" in again.stdout, again.stdout
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == files, "a finished seed was changed"


def test_a_larger_budget_continues_a_finished_seed_from_its_checkpoint(tmp_path):
    assert seeds(tmp_path, "--seeds", "3", "--total-timesteps", "1500", *TINY).returncode == 0
    run_dir = tmp_path / "pg_numpy" / "seed3"
    rows_before = read_progress(run_dir)
    more = seeds(tmp_path, "--seeds", "3", "--total-timesteps", "3000", *TINY)
    assert more.returncode == 0, more.stdout[-2000:] + more.stderr[-2000:]
    assert "--resume" in more.stdout and checkpoint_step(run_dir / "checkpoint.npz") >= 3000
    assert read_progress(run_dir)[:len(rows_before)] == rows_before
    assert json.loads((run_dir / "args.json").read_text())["total_timesteps"] == 3000


def test_a_labelled_batch_trains_in_its_own_folder_and_a_label_must_name_the_script(tmp_path):
    labelled = seeds(tmp_path, "--label", "pg_numpy_v4", "--seeds", "1", "--total-timesteps", "1500", *TINY[:1],
                     "--env-id", "PongNoFrameskip-v4", *TINY[1:])
    assert labelled.returncode == 0, labelled.stdout[-2000:] + labelled.stderr[-2000:]
    settings = json.loads((tmp_path / "pg_numpy_v4" / "seed1" / "args.json").read_text())
    assert settings["env_id"] == "PongNoFrameskip-v4" and not (tmp_path / "pg_numpy").exists()
    wrong = seeds(tmp_path, "--label", "ppo_mlp_v4", "--seeds", "1", "--total-timesteps", "1500", *TINY)
    assert wrong.returncode != 0 and wrong.stderr.strip().splitlines() == [
        "seeds.py: error: --label ppo_mlp_v4: must start with pg_numpy_ (the report groups by script)"], wrong.stderr


def test_a_seed_recorded_as_it_is_now_is_not_recorded_again(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "benchmark"))
    import seeds as runner

    monkeypatch.setattr(runner, "BENCH", tmp_path / "bench")
    run_dir, dest = tmp_path / "run", tmp_path / "bench" / "results" / "pg_numpy_seed1"
    for folder in (run_dir, dest):
        folder.mkdir(parents=True)
        (folder / "progress.csv").write_text("global_step\n1000\n")
        (folder / "eval.json").write_text('{"mean": 1.0}')
    assert runner.recorded(run_dir, "pg_numpy_seed1")
    (run_dir / "progress.csv").write_text("global_step\n1000\n2000\n")  # the run went on: record it again
    assert not runner.recorded(run_dir, "pg_numpy_seed1")
    assert not runner.recorded(run_dir, "pg_numpy_seed2")


def test_without_a_budget_a_seed_starts_as_the_bare_command_and_a_shorter_run_goes_on_to_the_default(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmark"))
    import seeds as runner

    default = runner.default_budget("pg_numpy.py")
    assert runner.seed_command("pg_numpy.py", 2, tmp_path / "fresh", default, [])[1:] == [
        "pg_numpy.py", "--seed", "2", "--run-dir", str(tmp_path / "fresh")]
    run_dir = tmp_path / "shorter"  # a run that ended at a smaller budget than today's default
    run_dir.mkdir()
    (run_dir / "args.json").write_text(json.dumps({"total_timesteps": default // 2}))
    (run_dir / "eval.json").write_text("{}")
    (run_dir / "checkpoint.npz").write_bytes(b"")
    assert not runner.finished(run_dir, default) and runner.finished(run_dir, default // 2)
    assert runner.seed_command("pg_numpy.py", 2, run_dir, default, [])[2:] == [
        "--resume", str(run_dir), "--total-timesteps", str(default)]
