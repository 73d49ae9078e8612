"""The script contract of CONTRACT.md, checked for every agent script in the repository root."""

from __future__ import annotations

import ast
import difflib
import json
import re
import shutil
import signal
import time
from pathlib import Path

import pytest

from conftest import (ROOT, SCRIPTS, assert_eval_report, assert_one_line_error, assert_schedules_do_not_jump,
                      checkpoint_name, checkpoint_step, copy_alone, is_whole_pong_game, read_progress, run_script,
                      smoke_flags, start_script, tensorboard_tags, uses_torch)

COMMON_FLAGS = ["--exp-name", "--seed", "--env-id", "--total-timesteps", "--capture-video", "--track",
                "--save-every", "--resume", "--eval-checkpoint", "--eval-episodes", "--run-dir"]
TORCH_FLAGS = ["--cuda", "--no-cuda", "--torch-deterministic"]
REPO_MODULES = {Path(s).stem for s in SCRIPTS} | {"tests", "benchmark", "conftest"}

PLUMBING_MARK = "# " + "=" * 96 + " run plumbing\n"

each_script = pytest.mark.parametrize("script", SCRIPTS)


def plumbing_block(script: str) -> str:
    """The run-plumbing block: from its marker line to the end of the file."""
    text = (ROOT / script).read_text()
    assert PLUMBING_MARK in text, f"{script} has no run-plumbing block"
    return text[text.index(PLUMBING_MARK):]


@each_script
def test_help_lists_the_common_flags(script):
    proc = run_script(ROOT / script, "--help")
    assert proc.returncode == 0, proc.stderr
    wanted = COMMON_FLAGS + (TORCH_FLAGS if uses_torch(script) else [])
    missing = [flag for flag in wanted if not re.search(rf"(^|\s){re.escape(flag)}[\s,]", proc.stdout, re.M)]
    assert not missing, f"{script} --help lacks {missing}"


@each_script
def test_imports_nothing_of_this_repository(script):
    tree = ast.parse((ROOT / script).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not imported & REPO_MODULES, imported & REPO_MODULES


@each_script
def test_smoke_run_copied_alone_writes_the_contract_outputs(script, smoke_runs):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    rows = read_progress(run_dir)
    assert rows, "no episode finished in the smoke run"
    steps = [int(r["global_step"]) for r in rows]
    assert steps == sorted(steps) and [int(r["episode"]) for r in rows] == list(range(1, len(rows) + 1))
    # Each row is one whole game of Pong. That its return and length are the sums of that game's raw rewards and
    # agent steps is checked against the env's own rewards in test_episode_stats.py.
    assert all(is_whole_pong_game(float(r["episodic_return"])) for r in rows), [r["episodic_return"] for r in rows]
    assert all(float(r["episodic_length"]).is_integer() and float(r["episodic_length"]) > 0 for r in rows), rows
    assert re.search(r"\| left (\d\d:\d\d:\d\d|\?) \|", proc.stdout), proc.stdout[-1000:]  # the progress line's ETA
    tags = tensorboard_tags(run_dir)
    assert {"charts/episodic_return", "charts/episodic_length", "charts/SPS"} <= tags, tags
    assert any(t.startswith("losses/") for t in tags), tags
    assert checkpoint_step(run_dir / checkpoint_name(script)) >= int(smoke_flags(script)[1])
    report = json.loads((run_dir / "eval.json").read_text())
    assert_eval_report(report, 1)


@each_script
def test_resume_continues_from_the_step_it_stopped_at(script, smoke_runs):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = run_dir / checkpoint_name(script)
    stopped_at = checkpoint_step(ckpt)
    rows_before = read_progress(run_dir)
    with open(run_dir / "progress.csv", "a") as f:  # a row logged after the checkpoint, then a crash
        f.write(f"{stopped_at + 1},{len(rows_before) + 1},99,1,1.0,1.0\n")
    more = str(stopped_at + 3000)  # enough for new episodes to end, so the checks below check something
    flags = [f for f in smoke_flags(script)]
    flags[1] = more
    copied = run_dir.parent.parent / script
    resumed = run_script(copied, *flags, "--resume", str(run_dir), cwd=copied.parent)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_step(ckpt) >= int(more)
    rows_after = read_progress(run_dir)
    assert rows_after[:len(rows_before)] == rows_before, "resume rewrote the existing curve"
    new = rows_after[len(rows_before):]
    assert new, "no episode ended after the resume"
    assert all(float(r["episodic_return"]) != 99 for r in new), "the row logged after the checkpoint survived"
    assert all(int(r["global_step"]) > stopped_at for r in new)
    assert all(int(r["episode"]) > len(rows_before) for r in new)
    assert_schedules_do_not_jump(run_dir, stopped_at)  # a finished schedule stays finished


@each_script
def test_resuming_a_finished_run_says_so_exits_0_and_changes_nothing(script, smoke_runs, tmp_path):
    """Job schedulers re-run the same command after a preemption: a run that is done must take that calmly."""
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = shutil.copytree(run_dir, tmp_path / "done")
    files = {p: p.read_bytes() for p in done.rglob("*") if p.is_file()}
    again = run_script(ROOT / script, "--resume", str(done), timeout=120)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "nothing to do" in again.stdout, again.stdout[-2000:]
    assert {p: p.read_bytes() for p in done.rglob("*") if p.is_file()} == files, "a finished run was changed"


@each_script
def test_the_run_plumbing_block_is_the_same_text_in_every_script_and_needs_no_torch_or_numpy(script):
    block = plumbing_block(script)
    assert block == plumbing_block(SCRIPTS[0]), "".join(difflib.unified_diff(
        plumbing_block(SCRIPTS[0]).splitlines(True), block.splitlines(True), SCRIPTS[0], script, n=1))[:3000]
    names = {node.id for node in ast.walk(ast.parse(block)) if isinstance(node, ast.Name)}
    assert not names & {"torch", "np", "nn", "F"}, names & {"torch", "np", "nn", "F"}


@each_script
def test_eval_checkpoint_plays_and_reports(script, smoke_runs, tmp_path):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = tmp_path / "eval"
    evaluated = run_dir / checkpoint_name(script)
    before = evaluated.read_bytes()
    result = run_script(ROOT / script, "--eval-checkpoint", str(evaluated), "--eval-episodes", "2",
                        "--run-dir", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((out / "eval.json").read_text())
    assert_eval_report(report, 2)
    assert not (out / checkpoint_name(script)).exists(), "evaluation must not train"
    assert evaluated.read_bytes() == before, "evaluation changed the checkpoint it played"


# Values that type-check but make no sense: those of the flags every script has, then each script's own.
BAD_INPUT = {
    "every script": [(["--total-timesteps", "0"], "--total-timesteps"),
                     (["--total-timesteps", "-5"], "--total-timesteps"),
                     (["--env-id", "NotAGame-v9"], "--env-id"), (["--eval-episodes", "0"], "--eval-episodes"),
                     (["--eval-sticky", "1.5"], "--eval-sticky"),
                     (["--eval-checkpoint", "does/not/exist.pt"], "--eval-checkpoint"),
                     (["--resume", "does/not/exist"], "--resume")],
    "dqn_cnn.py": [(["--learning-starts", "16", "--batch-size", "32"], "--learning-starts"),
                   (["--exploration-fraction", "1.5"], "--exploration-fraction"),
                   (["--batch-size", "100000"], "--batch-size"), (["--gamma", "1.5"], "--gamma"),
                   (["--num-envs", "0"], "--num-envs"), (["--adam-eps", "0"], "--adam-eps")],
    "pg_numpy.py": [(["--batch-episodes", "0"], "--batch-episodes"), (["--learning-rate", "-1"], "--learning-rate"),
                    (["--gamma", "1.5"], "--gamma"), (["--hidden", "0"], "--hidden"),
                    (["--num-envs", "0"], "--num-envs"),
                    (["--decay-rate", "1"], "--decay-rate"), (["--env-id", "CartPole-v1"], "--env-id")],
    "ppo_mlp.py": [(["--num-envs", "0"], "--num-envs"),
                   (["--num-minibatches", "3"], "--num-minibatches"),  # 8 x 128 = 1024 is not a multiple of 3
                   (["--clip-coef", "0"], "--clip-coef"), (["--update-epochs", "0"], "--update-epochs"),
                   (["--hidden-layers", "0"], "--hidden-layers"), (["--env-id", "ALE/Breakout-v5"], "--env-id")],
}
BAD_INPUT_CASES = [(script, flags, flag) for script in SCRIPTS
                   for flags, flag in BAD_INPUT["every script"] + BAD_INPUT.get(script, [])]


@pytest.mark.parametrize("script, flags, flag", BAD_INPUT_CASES,
                         ids=[f"{s}-{' '.join(f)}" for s, f, _ in BAD_INPUT_CASES])
def test_bad_input_is_one_line_and_exit_2(script, flags, flag, tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(ROOT / script, *flags, "--run-dir", str(run_dir), timeout=120)
    assert_one_line_error(proc, flag)
    assert not run_dir.exists(), "a rejected command left a run dir behind"


def write_foreign_checkpoint(path: Path) -> None:
    """A well-formed checkpoint in this script's format that another script wrote."""
    if path.suffix == ".npz":
        import numpy as np

        np.savez(path, script=np.array("dqn_cnn"), global_step=np.array(100))
    else:
        import torch

        torch.save({"script": "pg_numpy", "global_step": 100, "model": {}}, path)


@each_script
@pytest.mark.parametrize("damage", ["truncated", "garbage", "foreign", "other_script"])
def test_resume_rejects_a_damaged_or_foreign_checkpoint(script, damage, smoke_runs, tmp_path):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    name = checkpoint_name(script)
    bad = tmp_path / name
    if damage == "truncated":
        data = (run_dir / name).read_bytes()
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        bad.write_bytes(b"not a checkpoint at all\n" * 100)
    elif damage == "foreign":
        write_foreign_checkpoint(bad)
    else:
        others = [s for s in SCRIPTS if s != script]
        if not others:
            pytest.skip("no other script in the repository to take a checkpoint from")
        other_proc, other_dir = smoke_runs(others[0])
        assert other_proc.returncode == 0, other_proc.stderr[-3000:]
        bad = other_dir / checkpoint_name(others[0])
    result = run_script(ROOT / script, *smoke_flags(script), "--resume", str(bad), timeout=120)
    assert_one_line_error(result, "--resume")


@each_script
@pytest.mark.parametrize("signum, code, resume_form", [(signal.SIGINT, 130, "dir"), (signal.SIGTERM, 143, "file=")])
def test_signal_mid_run_leaves_a_resumable_checkpoint(script, signum, code, resume_form, tmp_path):
    folder = tmp_path / "alone"
    copied = copy_alone(script, folder)
    run_dir = folder / "run"
    flags = smoke_flags(script)
    flags[1] = "10000000"  # far more than it gets to play before the signal
    proc = start_script(copied, *flags, "--run-dir", str(run_dir), cwd=folder)
    deadline = time.time() + 300
    while time.time() < deadline and not (run_dir / "progress.csv").exists():
        time.sleep(0.5)
    time.sleep(3)  # into the training loop
    proc.send_signal(signum)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == code, (proc.returncode, stderr[-3000:])
    assert f"--resume {run_dir}" in stderr, stderr
    ckpt = run_dir / checkpoint_name(script)
    step = checkpoint_step(ckpt)
    assert step > 0
    # Only --resume and a new step budget: every other setting comes from the run itself, not the defaults.
    resume = ["--resume", str(run_dir)] if resume_form == "dir" else [f"--resume={ckpt}"]
    resumed = run_script(copied, "--total-timesteps", str(step + 500), *resume, cwd=folder)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert checkpoint_step(ckpt) >= step + 500
    assert_schedules_do_not_jump(run_dir, step)  # what remained of each schedule is squeezed into 500 steps
    settings = json.loads((run_dir / "args.json").read_text())
    assert settings["num_envs"] == int(flags[flags.index("--num-envs") + 1]) == 2  # each script's default is more
    assert settings["total_timesteps"] == step + 500 and settings["eval_episodes"] == 1
