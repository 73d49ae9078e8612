"""What a run logs for an episode is what the game gave: on real ALE Pong, each progress.csv row's
`episodic_return` is the sum of the raw rewards of one finished episode, its `episodic_length` that
episode's number of agent steps, its `global_step` the agent steps played by all envs when it ended,
and eval.json's returns are the evaluation env's finished games.

The scripts run in this process, with their env factory wrapped by a recorder that passes every call
through to the real ale-py vector env and keeps what each `reset` and `step` returned. The episodes are
then recomputed from the recording alone, per env, under the env's own autoreset mode: with
"NextStep" the step after an episode's end only resets that env (its action is ignored, it is no
agent step and its reward belongs to no episode); with "SameStep" every step is an agent step.
ppo_ray.py plays in Ray actors, which a monkeypatch does not reach: its `Worker` class is run here
directly, without Ray.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pytest
import tyro

from conftest import (SCRIPTS, SMOKE_FLAGS, assert_eval_report, checkpoint_name, checkpoint_step, load_script,
                      process_state_kept, read_progress, smoke_flags)


# ---------------------------------------------------------------------------- the recorder
class RecordingEnv:
    """A real vector env, every call passed through untouched, that keeps what each `reset` and `step` returned."""

    def __init__(self, envs):
        self._envs = envs
        self.num_envs = envs.num_envs
        mode = envs.metadata["autoreset_mode"]
        self.autoreset_mode = str(getattr(mode, "value", mode))
        assert self.autoreset_mode in ("NextStep", "SameStep"), self.autoreset_mode
        self.events: list[tuple] = []  # ("reset", mask) or ("step", reward, terminated, truncated), in call order

    def reset(self, *args, **kwargs):
        out = self._envs.reset(*args, **kwargs)
        mask = (kwargs.get("options") or {}).get("reset_mask", np.ones(self.num_envs, bool))
        self.events.append(("reset", np.array(mask, bool)))
        return out

    def step(self, actions):
        out = self._envs.step(actions)
        _, reward, terminated, truncated, info = out
        if "env_id" in info:  # the arrays are in env order (ale-py answers a whole batch when batch_size == num_envs)
            assert np.array_equal(info["env_id"], np.arange(self.num_envs)), info["env_id"]
        self.events.append(("step", np.array(reward, np.float64), np.array(terminated, bool),
                            np.array(truncated, bool)))
        return out

    def send(self, *args, **kwargs):
        raise AssertionError("the recorder sees `step` only: a script that sends and receives needs it extended")

    recv = send

    def __getattr__(self, name):
        return getattr(self._envs, name)


@dataclass(frozen=True)
class Game:
    env: int
    vector_step: int  # index of the `step` call that ended it
    global_step: int  # agent steps played by all envs up to and including that call
    ret: float  # the sum of its raw rewards
    length: int  # its agent steps


def games_played(rec: RecordingEnv) -> tuple[list[Game], int]:
    """Every episode that ended in the recording, in the order they ended, and the agent steps played in all."""
    steps = [e for e in rec.events if e[0] == "step"]
    played = np.zeros((len(steps), rec.num_envs), bool)
    ended = []
    for env in range(rec.num_envs):  # one env at a time: its own sequence of resets and steps
        ret, length, resetting, t = 0.0, 0, False, -1
        for kind, *data in rec.events:
            if kind == "reset":
                if data[0][env]:
                    ret, length, resetting = 0.0, 0, False  # a game in progress is abandoned, not finished
                continue
            t += 1
            reward, terminated, truncated = (a[env] for a in data)
            if resetting:  # NextStep: this call only reset the env after its game ended; no agent step
                resetting = False
                continue
            played[t, env] = True
            ret += reward
            length += 1
            if terminated or truncated:
                ended.append((t, env, ret, length))
                ret, length, resetting = 0.0, 0, rec.autoreset_mode == "NextStep"
    agent_steps = np.cumsum(played.sum(1))
    games = [Game(env, t, int(agent_steps[t]), float(ret), length) for t, env, ret, length in sorted(ended)]
    return games, int(agent_steps[-1]) if len(steps) else 0


def record_make_env(monkeypatch, module) -> list[RecordingEnv]:
    """Wrap every env the module's `make_env` makes from now on; returns the recorders, in the order made."""
    made: list[RecordingEnv] = []
    real = module.make_env

    def recording_make_env(*args, **kwargs):
        made.append(RecordingEnv(real(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(module, "make_env", recording_make_env)
    return made


# ---------------------------------------------------------------------------- in-process smoke runs
IN_PROCESS = [s for s in SCRIPTS if s != "ppo_ray.py"]  # ppo_ray plays in Ray actors: its Worker is tested below


@pytest.fixture(scope="module")
def recorded_runs(tmp_path_factory):
    """One smoke run per script (the contract tests' budget), in this process, its envs recorded; run lazily."""
    done: dict[str, tuple] = {}

    def get(script: str):
        if isinstance(done.get(script), BaseException):
            pytest.fail(f"the in-process smoke run of {script} failed: {done[script]!r}")
        if script not in done:
            module = load_script(script)
            run_dir = tmp_path_factory.mktemp(script.removesuffix(".py") + "-recorded") / "run"
            args = tyro.cli(module.Args, args=[*smoke_flags(script), "--run-dir", str(run_dir)])
            with pytest.MonkeyPatch.context() as mp, process_state_kept():  # main installs its own signal handlers
                made = record_make_env(mp, module)
                try:
                    module.main(args)
                except BaseException as e:
                    done[script] = e  # the next test of this script fails at once, without running it again
                    raise
            done[script] = (args, run_dir, made)
        return done[script]

    return get


@pytest.mark.parametrize("script", IN_PROCESS)
def test_progress_rows_are_the_games_the_env_played(script, recorded_runs):
    args, run_dir, made = recorded_runs(script)
    assert len(made) == 2, f"expected one training env, then one evaluation env; {len(made)} made"
    games, agent_steps = games_played(made[0])
    assert {g.env for g in games} == set(range(args.num_envs)), "the budget must let every env finish a game"
    rows = read_progress(run_dir)
    logged = sorted((int(r["global_step"]), float(r["episodic_return"]), float(r["episodic_length"])) for r in rows)
    played = sorted((g.global_step, g.ret, float(g.length)) for g in games)
    assert logged == played, f"progress.csv (global_step, return, length)\n{logged}\nthe env's episodes\n{played}"
    assert [int(r["episode"]) for r in rows] == list(range(1, len(games) + 1))
    assert checkpoint_step(run_dir / checkpoint_name(script)) == agent_steps, "the step count is not agent steps"


@pytest.mark.parametrize("script", IN_PROCESS)
def test_eval_report_is_the_games_the_eval_env_played(script, recorded_runs):
    args, run_dir, made = recorded_runs(script)
    report = json.loads((run_dir / "eval.json").read_text())
    assert_eval_report(report, args.eval_episodes)
    rec = made[-1]
    assert len(made) == 2 and rec is not made[0], "the evaluation must play in an env of its own"
    games, _ = games_played(rec)
    # Each eval env plays a fixed share of the episodes (CONTRACT.md, section 5): its first games, whatever their length.
    n = rec.num_envs
    shares = [args.eval_episodes // n + (e < args.eval_episodes % n) for e in range(n)]
    expected = [g.ret for e in range(n) for g in [g for g in games if g.env == e][:shares[e]]]
    assert sorted(report["returns"]) == sorted(expected), (report["returns"], [(g.env, g.ret) for g in games])


# ---------------------------------------------------------------------------- ppo_ray's Worker, without Ray
def test_ppo_ray_worker_reports_the_games_its_env_played(monkeypatch):
    pr = load_script("ppo_ray.py")
    made = record_make_env(monkeypatch, pr)
    args = tyro.cli(pr.Args, args=SMOKE_FLAGS["ppo_ray.py"])
    game = pr.ale_game(args.env_id)
    pr.torch.manual_seed(args.seed)
    weights = pr.weights_numpy(pr.Policy())
    worker = pr.Worker(0, game["game"], game["repeat_action_probability"], args.frameskip, args.num_envs,
                       args.num_steps, args.gamma, args.clip_coef, args.ent_coef)  # as `train` makes its actors
    assert len(made) == 1
    rounds = -(-2600 // args.num_steps)  # agent steps per env for a second game (a lost game: ~800-1300 steps)
    answers = [worker.rollout(weights, args.seed) for _ in range(rounds)]
    games, agent_steps = games_played(made[0])
    assert {g.env for g in games} == set(range(args.num_envs)), "every env must finish a game"
    assert max([g.env for g in games].count(e) for e in range(args.num_envs)) >= 2, "no env played a second game"
    assert sum(a["steps"] for a in answers) == agent_steps, "the reported step count is not agent steps"
    reported = sorted((k, t, float(r), float(n)) for k, a in enumerate(answers) for t, r, n in a["episodes"])
    played = sorted((g.vector_step // args.num_steps, g.vector_step % args.num_steps, g.ret, float(g.length))
                    for g in games)
    assert reported == played, f"reported (round, step, return, length)\n{reported}\nthe env's episodes\n{played}"
