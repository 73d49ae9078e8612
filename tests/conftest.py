"""Shared harness: which scripts exist, how to run one, and how to read what a run leaves behind.

An agent script joins the contract tests by existing in the repository root. `SMOKE_FLAGS` holds
the tiny budget that makes its smoke run finish in seconds on 2 CPU cores; a script missing there
runs with `--total-timesteps 3000` alone.
"""

from __future__ import annotations

import ast
import contextlib
import csv
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the scripts are importable for tests of their pure functions
SCRIPTS = sorted(p.name for p in ROOT.glob("*.py"))

# Each budget lets at least one Pong episode end per env (a lost game is ~800-1300 agent steps) and learning run.
SMOKE_FLAGS = {
    "dqn_cnn.py": ["--total-timesteps", "2400", "--num-envs", "2", "--buffer-size", "4000",
                   "--learning-starts", "1000", "--no-compile", "--no-bf16", "--save-every", "1000",
                   "--batch-size", "32",  # Nature's batch: the default's 128 would make gradient steps ~60% of
                                          # every DQN run in the suite
                   "--exploration-fraction", "0.5"],  # epsilon ends mid-run: recomputed from a resume's larger
                                                      # total it would jump back up
    "pg_numpy.py": ["--total-timesteps", "4000", "--num-envs", "2", "--batch-episodes", "1",
                    "--save-every", "1000"],
    "ppo_mlp.py": ["--total-timesteps", "3000", "--num-envs", "2", "--num-steps", "128",
                   "--save-every", "1000"],
    "ppo_ray.py": ["--total-timesteps", "3072", "--num-workers", "1", "--num-envs", "2", "--num-steps", "256",
                   "--save-every", "1000"],
}
EVAL_FLAGS = ["--eval-episodes", "1"]
CSV_COLUMNS = ["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps"]


def uses_torch(script: str) -> bool:
    """Whether the script imports torch (statements, not docstrings or comments)."""
    tree = ast.parse((ROOT / script).read_text())
    return any(alias.name.split(".")[0] == "torch" for node in ast.walk(tree) if isinstance(node, ast.Import)
               for alias in node.names) or any(isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0]
                                              == "torch" for node in ast.walk(tree))


def checkpoint_name(script: str) -> str:
    return "checkpoint.pt" if uses_torch(script) else "checkpoint.npz"


def smoke_flags(script: str) -> list[str]:
    return SMOKE_FLAGS.get(script, ["--total-timesteps", "3000"]) + EVAL_FLAGS


def script_env() -> dict:
    # One OpenMP thread per run, whatever the caller's environment says: two runs (or a run beside other work) on 2
    # cores with 2 spinning threads each slow down tenfold, tiny smoke batches gain nothing from a second thread, and
    # the behaviour pins' losses depend on the threads' order of summation.
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def start_script(script_path: Path, *flags: str, cwd: Path) -> subprocess.Popen:
    """Start an agent script in a process session of its own, so that its children (Ray's) can be killed with it."""
    return subprocess.Popen([sys.executable, str(script_path), *flags], cwd=cwd, env=script_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def run_script(script_path: Path, *flags: str, cwd: Path | None = None, timeout: float = 600):
    """Run an agent script as a user would; returns the CompletedProcess (text output)."""
    proc = start_script(script_path, *flags, cwd=cwd or script_path.parent)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def copy_alone(script: str, folder: Path) -> Path:
    """The script copied into an empty folder, with nothing else of this repository beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(ROOT / script, folder / script))


def assert_one_line_error(proc, flag: str) -> None:
    """Exit code 2 and exactly one line on stderr, naming the flag; no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert flag in lines[0], lines[0]


def read_progress(run_dir: Path) -> list[dict]:
    with open(run_dir / "progress.csv", newline="") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames[:len(CSV_COLUMNS)] == CSV_COLUMNS, reader.fieldnames
        return list(reader)


def load_script(script: str):
    """An agent script imported as a module, once (its name in sys.modules, where dataclasses and tyro look)."""
    return importlib.import_module(script.removesuffix(".py"))


@contextlib.contextmanager
def process_state_kept():
    """Run an agent's `main` in this process and put back what it changes there: its SIGINT/SIGTERM handlers and
    torch's thread count (ppo_mlp sets it)."""
    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch else None
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handlers[0])
        signal.signal(signal.SIGTERM, handlers[1])
        if torch:
            torch.set_num_threads(threads)


def run_main(script: str, *flags: str):
    """An agent script's `main` run in this process with these command-line flags; returns its parsed Args."""
    import tyro

    module = load_script(script)
    args = tyro.cli(module.Args, args=list(flags))
    with process_state_kept():
        module.main(args)
    return args


def is_whole_pong_game(score: float) -> bool:
    """A game of Pong ends when one side has 21 points: its score is a whole number in [-21, -1] or [1, 21]."""
    return float(score).is_integer() and 1 <= abs(score) <= 21


def assert_eval_report(report: dict, episodes: int) -> None:
    """eval.json: `episodes` returns, each a whole game of Pong, and the statistics of exactly those returns."""
    returns = report["returns"]
    assert report["episodes"] == episodes == len(returns), (episodes, report)
    assert all(is_whole_pong_game(r) for r in returns), f"not whole games of Pong: {returns}"
    assert report["mean"] == pytest.approx(np.mean(returns)) and report["std"] == pytest.approx(np.std(returns))
    assert report["min"] == min(returns) and report["max"] == max(returns), report
    assert report["checkpoint"], report


SHIPPED = sorted((ROOT / "benchmark" / "checkpoints").glob("*.*"))  # one file per script, the median seed's


def script_of(weights: Path) -> str:
    """The script a shipped file belongs to: its name is the script's stem."""
    return next(s for s in SCRIPTS if weights.stem == s.removesuffix(".py"))


def saved_args(path: Path) -> dict:
    """The settings a checkpoint or shipped file was made with, read from the file itself (.pt and .npz alike)."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["args"]))
    import torch

    return torch.load(path, map_location="cpu", weights_only=True)["args"]


def checkpoint_step(path: Path) -> int:
    """The agent step a checkpoint was written at, for .pt and .npz alike."""
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return int(data["global_step"])
    import torch

    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


def tensorboard_events(run_dir: Path):
    """All TensorBoard event files of a run dir, read in order (so a resume's purge applies), as one accumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return acc


def tensorboard_tags(run_dir: Path) -> set[str]:
    return set(tensorboard_events(run_dir).Tags()["scalars"])


def scalars(run_dir: Path, tag: str) -> list[tuple[int, float]]:
    """(step, value) of every logged point of one scalar."""
    acc = tensorboard_events(run_dir)
    return [(e.step, e.value) for e in acc.Scalars(tag)] if tag in acc.Tags()["scalars"] else []


SCHEDULE_TAGS = ("charts/epsilon", "charts/learning_rate")


def assert_schedules_do_not_jump(run_dir: Path, resumed_at: int) -> None:
    """Across a resume at `resumed_at`, each scheduled value (epsilon, learning rate) moves no faster than it was
    moving just before: at most the last logged interval's change per agent step times the steps between the last
    point before and the first point after (and 20% for the uneven steps of a vector env)."""
    for tag in SCHEDULE_TAGS:
        points = scalars(run_dir, tag)
        if not points:
            continue
        before = [p for p in points if p[0] <= resumed_at]
        after = [p for p in points if p[0] > resumed_at]
        assert len(before) >= 2 and after, (tag, resumed_at, points)
        (s0, v0), (s1, v1) = before[-2:]
        allowed = 1.2 * abs(v1 - v0) / (s1 - s0) * (after[0][0] - s1) + 1e-9
        assert abs(after[0][1] - v1) <= allowed, (f"{tag} jumped at the resume: {v1:.6g} at step {s1}, "
                                                  f"{after[0][1]:.6g} at step {after[0][0]}", before[-3:], after[:3])


def as_run(run_dir: Path) -> Path:
    """Where `smoke_runs` keeps a copy of a smoke run's dir as the run left it."""
    return run_dir.with_name(run_dir.name + "-as-run")


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory):
    """One smoke run per script, made from a copy of the script alone in an empty folder; run lazily, reused."""
    done: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}

    def get(script: str):
        if script not in done:
            folder = tmp_path_factory.mktemp(script.removesuffix(".py") + "-alone")
            copied = copy_alone(script, folder)
            run_dir = folder / "runs" / "smoke"
            proc = run_script(copied, *smoke_flags(script), "--run-dir", str(run_dir), cwd=folder)
            if run_dir.exists():  # as the run left it: some tests resume the run itself
                shutil.copytree(run_dir, as_run(run_dir))
            done[script] = (proc, run_dir)
        return done[script]

    return get
