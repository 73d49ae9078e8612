"""The evaluation protocol (CONTRACT.md, section 5): every shipped file can be replayed on the deterministic env and
with sticky actions, and DQN plays epsilon-greedy at 0.05.

- `make_env(..., sticky=p)` really plays with sticky actions: fed the same actions from the same seed, an env made
  with sticky 0.25 parts from one made with sticky 0 (and two made with sticky 0 never part).
- `--eval-checkpoint` evaluates in an env made with `--eval-sticky`'s probability, or without the flag with the trained
  env's own; eval.json's "env_id" and "sticky" say which. Recorded where it counts: every ale-py vector env the script
  makes, with the keyword arguments it was made with, in this process (`main` runs here). One real game per shipped
  file; the other cases end their game after one step (they test which env is made and what is reported, not play).
- DQN's evaluation explores at 0.05 by default: in that real game, the actions played differ from the network's
  greedy ones at about 0.05 * (n - 1) / n of the steps; `evaluate` itself does so with a network that always
  prefers action 0.
"""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import ale_py
import gymnasium as gym
import numpy as np
import pytest
import torch

from conftest import ROOT, assert_eval_report, load_script, run_main, saved_args

gym.register_envs(ale_py)
REAL_ALE_VECTOR_ENV = ale_py.vector_env.AtariVectorEnv
UP, DOWN = 2, 3  # Pong's minimal action set: RIGHT and LEFT move the paddle up and down
SHIPPED = {"dqn_cnn.py": "dqn_cnn.pt", "ppo_mlp.py": "ppo_mlp.pt", "pg_numpy.py": "pg_numpy.npz",
           "ppo_ray.py": "ppo_ray.pt"}
SCRIPTS = sorted(SHIPPED)


def shipped(script: str) -> Path:
    return ROOT / "benchmark" / "checkpoints" / SHIPPED[script]


def trained_env_id(path: Path) -> str:
    """The env id a shipped file was trained on, read from the file itself."""
    return saved_args(path)["env_id"]


def own_sticky(env_id: str) -> float:
    """The sticky-action probability Gymnasium registers for an id (ale-py's default 0.25 where it names none)."""
    return float(gym.spec(env_id).kwargs.get("repeat_action_probability", 0.25))


# ---------------------------------------------------------------------------- make_env(sticky=...)
def sticky_env(script: str, sticky: float):
    """One game of `script`'s training env family, made by its own make_env with this sticky-action probability."""
    m = load_script(script)
    if script == "dqn_cnn.py":
        return m.make_env("PongNoFrameskip-v4", 1, sticky=sticky)
    if script == "ppo_mlp.py":
        return m.make_env("PongNoFrameskip-v4", 1, 4, sticky=sticky)
    if script == "pg_numpy.py":
        return m.make_env("ALE/Pong-v5", 1, sticky=sticky)
    if script == "ppo_ray.py":
        return m.make_env("pong", sticky, 4, 1)
    raise AssertionError(f"no env factory for {script}")


def first_parting_step(script: str, sticky_a: float, sticky_b: float, steps: int = 100):
    """Two envs, same seed, fed the same alternating UP/DOWN actions: the first step whose observations differ."""
    envs = [sticky_env(script, s) for s in (sticky_a, sticky_b)]
    try:
        obs = [e.reset(seed=7)[0] for e in envs]
        assert np.array_equal(*obs), "the same seed must give the same first frame"
        for t in range(steps):
            obs = [e.step(np.array([UP if t % 2 == 0 else DOWN]))[0] for e in envs]
            if not np.array_equal(*obs):
                return t
        return None
    finally:
        for e in envs:
            e.close()


@pytest.mark.parametrize("script", SCRIPTS)
def test_make_env_sticky_makes_the_game_sticky(script):
    assert first_parting_step(script, 0.0, 0.0) is None, "two non-sticky envs from one seed must play alike"
    assert first_parting_step(script, 0.0, 0.25) is not None, (
        "sticky 0.25 played exactly as sticky 0 for 100 steps of alternating UP/DOWN: the probability does not "
        "reach the game")


# ---------------------------------------------------------------------------- --eval-checkpoint and --eval-sticky
class RecordedAleEnv(REAL_ALE_VECTOR_ENV):
    """A real ale-py vector env made with the keyword arguments the script gave, every call passed through; keeps the
    actions it was sent, its rewards and episode ends (and its observations, if asked). `one_step_games`: every
    step ends every game, lost 0-21, so that an evaluation finishes at once."""

    def __init__(self, kwargs: dict, one_step_games: bool, keep_obs: bool):
        super().__init__(**kwargs)
        self.kwargs = kwargs
        self.one_step_games, self.keep_obs = one_step_games, keep_obs
        self.actions, self.rewards, self.dones, self.obs = [], [], [], []

    def reset(self, *args, **kwargs):
        obs, info = super().reset(*args, **kwargs)
        self.obs = [obs.copy()] if self.keep_obs else []  # what the agent sees before its next action
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = super().step(actions)
        if self.one_step_games:
            reward, terminated = np.full_like(reward, -21), np.ones_like(terminated)
        self.actions.append(np.array(actions).copy())
        self.rewards.append(np.array(reward, np.float64))
        self.dones.append(np.array(terminated) | np.array(truncated))
        if self.keep_obs:
            self.obs.append(obs.copy())
        return obs, reward, terminated, truncated, info


def record_ale_envs(monkeypatch, one_step_games: bool = False, keep_obs: bool = False) -> list[RecordedAleEnv]:
    """Every ale-py vector env made from now on, by any script, recorded (in the order made)."""
    made: list[RecordedAleEnv] = []

    def recording(*args, **kwargs):
        assert not args, "the recorder expects keyword arguments only"
        made.append(RecordedAleEnv(kwargs, one_step_games, keep_obs))
        return made[-1]

    monkeypatch.setattr(ale_py.vector_env, "AtariVectorEnv", recording)
    return made


def retargeted(script: str, env_id: str, folder: Path) -> Path:
    """A copy of the shipped file that says it was trained on `env_id` (the weights are the same)."""
    path = folder / ("retargeted" + shipped(script).suffix)
    if path.suffix == ".npz":
        with np.load(shipped(script), allow_pickle=False) as data:
            saved = {k: data[k] for k in data.files}
        saved["args"] = np.array(json.dumps({**json.loads(str(saved["args"])), "env_id": env_id}))
        with open(path, "wb") as f:
            np.savez(f, **saved)
    else:
        saved = torch.load(shipped(script), map_location="cpu", weights_only=True)
        saved["args"] = {**saved["args"], "env_id": env_id}
        torch.save(saved, path)
    assert trained_env_id(path) == env_id
    return path


def eval_flags(checkpoint: Path, run_dir: Path, sticky) -> list[str]:
    return (["--eval-checkpoint", str(checkpoint), "--eval-episodes", "1", "--run-dir", str(run_dir)]
            + ([] if sticky is None else ["--eval-sticky", str(sticky)]))


OTHER_ID = {"PongNoFrameskip-v4": "ALE/Pong-v5", "ALE/Pong-v5": "PongNoFrameskip-v4"}


@pytest.mark.parametrize("trained_on", ["shipped", "other"])
@pytest.mark.parametrize("sticky", [None, 0.0, 0.25], ids=["own", "sticky0", "sticky0.25"])
@pytest.mark.parametrize("script", SCRIPTS)
def test_eval_checkpoint_plays_in_the_env_eval_sticky_names(script, sticky, trained_on, tmp_path, monkeypatch):
    """Which env the evaluation is made in, and what eval.json says; the game is cut to one step. `other`: the
    shipped weights in a file that says they were trained on the other Pong id (v4 <-> v5), so that the env of
    the file, not the command line's default --env-id, must decide the id and (without the flag) the probability."""
    checkpoint = shipped(script)
    env_id = trained_env_id(checkpoint)
    if trained_on == "other":
        env_id = OTHER_ID[env_id]
        checkpoint = retargeted(script, env_id, tmp_path)
    expected = own_sticky(env_id) if sticky is None else sticky
    made = record_ale_envs(monkeypatch, one_step_games=True)
    run_main(script, *eval_flags(checkpoint, tmp_path / "eval", sticky))
    assert len(made) == 1, f"expected one evaluation env, {len(made)} made"
    assert made[0].kwargs["repeat_action_probability"] == pytest.approx(expected), (sticky, made[0].kwargs)
    assert made[0].kwargs["game"] == gym.spec(env_id).kwargs["game"], made[0].kwargs
    assert len(made[0].actions) == 1, "the evaluation should have ended with the cut game"
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert report["env_id"] == env_id, report
    assert report["sticky"] == pytest.approx(expected), report
    assert report["returns"] == [-21.0], report


def game_return(rec: RecordedAleEnv) -> tuple[float, int]:
    """Env 0's first game in the recording: its return and its agent steps."""
    ends = np.flatnonzero([d[0] for d in rec.dones])
    assert len(ends), "the recorded env finished no game"
    end = ends[0]
    return float(sum(r[0] for r in rec.rewards[:end + 1])), int(end + 1)


@pytest.mark.parametrize("script", SCRIPTS)
def test_shipped_file_replays_a_whole_game_with_sticky_actions(script, tmp_path, monkeypatch):
    """One real game of the shipped file with `--eval-sticky 0.25`, played in the recorded sticky env."""
    env_id = trained_env_id(shipped(script))
    made = record_ale_envs(monkeypatch, keep_obs=script == "dqn_cnn.py")
    args = run_main(script, *eval_flags(shipped(script), tmp_path, 0.25))
    assert len(made) == 1, f"expected one evaluation env, {len(made)} made"
    rec = made[0]
    assert rec.kwargs["repeat_action_probability"] == pytest.approx(0.25), rec.kwargs
    report = json.loads((tmp_path / "eval.json").read_text())
    assert_eval_report(report, 1)
    assert (report["env_id"], report["sticky"]) == (env_id, pytest.approx(0.25)), report
    ret, steps = game_return(rec)
    assert report["returns"] == [ret], f"eval.json {report['returns']}, the recorded env's game {ret} ({steps} steps)"
    if script == "dqn_cnn.py":
        assert_explores_at(rec, args.eval_epsilon, 0.05)


# ---------------------------------------------------------------------------- DQN: epsilon-greedy at 0.05
def binomial_ok(k: int, n: int, p: float, sigmas: float = 4.0) -> bool:
    return abs(k - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


def assert_explores_at(rec: RecordedAleEnv, eval_epsilon: float, expected_epsilon: float) -> None:
    """The actions the DQN evaluation played differ from the shipped network's greedy actions at the rate
    epsilon-greedy gives: a random action among n differs from the greedy one with probability (n - 1) / n."""
    dqn = load_script("dqn_cnn.py")
    assert eval_epsilon == expected_epsilon, "the default --eval-epsilon is not Nature's 0.05"
    ckpt, _ = dqn.load_checkpoint(str(shipped("dqn_cnn.py")), "--eval-checkpoint")
    q_network = dqn.saved_q_network(ckpt, torch.device("cpu"))
    q_network.eval()
    _, steps = game_return(rec)
    seen = np.concatenate(rec.obs[:steps])  # env 0 is the only env: one game
    with torch.inference_mode():
        greedy = np.concatenate([q_network(torch.from_numpy(seen[i:i + 256])).argmax(1).numpy()
                                 for i in range(0, steps, 256)])
    played = np.concatenate(rec.actions[:steps])
    n = rec.single_action_space.n
    off = int((played != greedy).sum())
    p = expected_epsilon * (n - 1) / n
    assert binomial_ok(off, steps, p), (f"{off} of {steps} actions were not the greedy one ({off / steps:.4f}); "
                                        f"epsilon {expected_epsilon} gives about {p:.4f}")


class AlwaysActionZero(torch.nn.Module):
    """A Q-network whose greedy action is always 0."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.num_actions = num_actions

    def forward(self, x):
        q = torch.zeros(x.shape[0], self.num_actions)
        q[:, 0] = 1.0
        return q


class EndlessGame:
    """A stand-in vector env of one game that ends after `length` steps; keeps the actions it was sent."""

    def __init__(self, num_envs: int, length: int, num_actions: int):
        assert num_envs == 1
        self.length, self.actions = length, []
        self.single_action_space = gym.spaces.Discrete(num_actions)
        self.obs = np.zeros((1, 4, 84, 84), np.uint8)

    def reset(self, seed=None, options=None):
        return self.obs, {}

    def step(self, actions):
        self.actions.append(int(actions[0]))
        end = np.array([len(self.actions) == self.length])
        return self.obs, np.zeros(1), end, np.zeros(1, bool), {}

    def close(self):
        pass


def test_dqn_eval_epsilon_defaults_to_nature_0_05():
    import tyro

    dqn = load_script("dqn_cnn.py")
    assert tyro.cli(dqn.Args, args=[]).eval_epsilon == 0.05
    assert inspect.signature(dqn.Args).parameters["eval_epsilon"].default == 0.05


def test_dqn_evaluate_explores_at_epsilon(monkeypatch):
    dqn = load_script("dqn_cnn.py")
    length, n = 6000, 6
    games = []

    def make_game(*args, **kwargs):
        games.append(EndlessGame(1, length, n))
        return games[-1]

    monkeypatch.setattr(dqn, "make_env", make_game)
    returns = dqn.evaluate(AlwaysActionZero(n), "PongNoFrameskip-v4", 1, 0, 0.05, 0.0, torch.device("cpu"))
    assert returns == [0.0] and len(games) == 1 and len(games[0].actions) == length
    actions = np.array(games[0].actions)
    off = int((actions != 0).sum())
    assert binomial_ok(off, length, 0.05 * (n - 1) / n), f"{off} of {length} actions explored ({off / length:.4f})"
    assert set(actions[actions != 0]) == set(range(1, n)), "exploration must draw from every action"
