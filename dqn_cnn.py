"""Nature DQN that learns Atari Pong from pixels: CNN, replay buffer, target network, epsilon-greedy.

Lineage: Mnih et al. 2015 ("Human-level control through deep RL"), by way of Lapan, *Deep RL
Hands-On*, ch. 6 (`../shared/seeds/001_*.txt`: PongNoFrameskip-v4, replay 10k, lr 1e-4, target sync
every 1000 steps, epsilon 1 -> 0.01, stop at a mean-100 return of 19) and CleanRL's `dqn_atari.py`
(flag names, logging). Usage: `python dqn_cnn.py --cuda` (see `--help`); the reported score, its
command and curve are in `benchmark/RESULTS.md`.

Preprocessing is the DeepMind stack, done in C++ by ale-py's `AtariVectorEnv` (threaded, no
Python wrappers): 30 random no-ops on reset, FIRE on reset, action repeat 4 with a max over the
last two frames, 84x84 grayscale, a stack of the last 4 frames (zeros before the episode's first
frame). A CNN needs the stack to see the ball's velocity; the wrapper stack is the one the seed
and the Nature paper use, so scores compare. Rewards are clipped to their sign for learning only;
`charts/episodic_return` and `progress.csv` report the true game score.

Where this departs from the seed, and why (all are flags, so the seed's setup stays reachable:
`--n-step 1 --train-frequency 1 --num-envs 1 --buffer-size 10000 --no-compile`):
- `--train-frequency 4` with `--num-envs 4`: one gradient step per 4 agent steps. On a 2-core CPU
  the update costs ~15x an environment step, so updating every step (the seed) makes wall time
  4x longer, and reaching a *mean-100* of 19 needs ~100 good games (~200k agent steps) after the
  policy is good, which is cheap in updates only at a lower replay ratio.
- `--n-step 3`: 3-step returns propagate Pong's sparse reward back 3x faster per update (Lapan
  ch. 8 shows n-step speeding Pong up over 1-step DQN); `--n-step 1` is the Nature target.
- `--buffer-size 50000`: the seed's 10k replay at 4x the data per update would hold only 2.5k
  updates of history; 50k keeps roughly the seed's age of data in updates.
- `--compile`: `torch.compile` of the gradient step cuts it from 18.4 to 13.7 ms on this 2-core CPU
  (benchmark/RESULTS.md, "where the time goes": learning is ~90% of a step; acting, the env and
  replay sampling share the rest), so it is on by default. Whole loop there: 213 agent steps/s with
  the defaults against 137 for Stable-Baselines3's DQN at the same training settings.
- Replay stores each 84x84 frame once (uint8) and rebuilds the stacks at sampling time with one
  fancy-index copy: 1M transitions take ~7 GB, not the ~56 GB of stored stacked pairs.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import os
import random
import shlex
import signal
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT = "dqn_cnn"
EVAL_SEED_OFFSET = 10_000  # evaluation games differ from training games, and match between the two eval paths


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch and the environments"""
    env_id: str = "PongNoFrameskip-v4"
    """a Gymnasium id registered by ale-py"""
    total_timesteps: int = 2_000_000
    """agent steps (environment steps after frame skip, summed over envs) to train for"""
    cuda: bool = True
    """use CUDA when present"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic`"""
    compile: bool = True
    """`torch.compile` the gradient step (needs a C++ compiler on CPU; about 20 s to compile)"""
    capture_video: bool = False
    """record the first evaluation episode to `<run-dir>/videos/`"""
    track: bool = False
    """log to Weights & Biases (imported only when asked)"""
    wandb_project_name: str = "pong-from-pixels"
    """W&B project, with `--track`"""
    save_every: int = 100_000
    """checkpoint period in agent steps"""
    resume: Optional[str] = None
    """continue a run from a checkpoint (a `checkpoint.pt` or the run dir holding it)"""
    eval_checkpoint: Optional[str] = None
    """no training: load this checkpoint, play `--eval-episodes` episodes, report"""
    eval_episodes: int = 10
    """episodes for the final and the `--eval-checkpoint` evaluation"""
    eval_sticky: Optional[float] = None
    """evaluate with this sticky-action probability, not the env's own (0.25: Machado et al. 2018; 0: none)"""
    eval_epsilon: float = 0.05
    """epsilon of the evaluation policy (0.05: the Nature DQN evaluation; 0: greedy)"""
    run_dir: Optional[str] = None
    """where outputs go; default `runs/<env>__<exp-name>__<seed>__<unix-time>`"""
    target_return: Optional[float] = None
    """stop early once the mean of the last 100 episodic returns reaches this (the seed used 19)"""

    num_envs: int = 4
    """parallel environments (ale-py's threaded C++ vector env)"""
    buffer_size: int = 50_000
    """replay capacity in transitions (frames stored once each)"""
    learning_rate: float = 1e-4
    """Adam learning rate"""
    gamma: float = 0.99
    """discount factor"""
    n_step: int = 3
    """length of the multi-step return (1: the Nature DQN target)"""
    tau: float = 1.0
    """target network update rate (1: hard copy)"""
    target_network_frequency: int = 1000
    """agent steps between target network updates"""
    batch_size: int = 32
    """transitions per gradient step"""
    start_e: float = 1.0
    """starting epsilon"""
    end_e: float = 0.01
    """final epsilon"""
    exploration_fraction: float = 0.1
    """fraction of `--total-timesteps` over which epsilon falls from start to end"""
    learning_starts: int = 10_000
    """agent steps of random play before learning starts"""
    train_frequency: int = 4
    """agent steps per gradient step"""


class BadInput(Exception):
    """A flag value that type-checks but makes no sense; reported as one line, exit code 2."""


def check_args(args: Args) -> None:
    def need(ok: bool, flag: str, allowed: str, value) -> None:
        if not ok:
            raise BadInput(f"{flag} {value!r}: must be {allowed}")

    need(args.total_timesteps > 0, "--total-timesteps", "a positive number of agent steps", args.total_timesteps)
    need(args.eval_checkpoint is None or args.resume is None, "--eval-checkpoint", "used without --resume",
         args.eval_checkpoint)
    need(args.num_envs > 0, "--num-envs", "at least 1", args.num_envs)
    need(args.save_every > 0, "--save-every", "a positive number of agent steps", args.save_every)
    need(args.eval_episodes > 0, "--eval-episodes", "at least 1", args.eval_episodes)
    need(0 <= args.eval_epsilon <= 1, "--eval-epsilon", "in [0, 1]", args.eval_epsilon)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.n_step >= 1, "--n-step", "at least 1", args.n_step)
    need(0 < args.tau <= 1, "--tau", "in (0, 1]", args.tau)
    need(args.target_network_frequency > 0, "--target-network-frequency", "positive", args.target_network_frequency)
    need(args.batch_size > 0, "--batch-size", "positive", args.batch_size)
    need(0 <= args.end_e <= args.start_e <= 1, "--start-e/--end-e", "0 <= end-e <= start-e <= 1",
         (args.start_e, args.end_e))
    need(0 < args.exploration_fraction <= 1, "--exploration-fraction", "in (0, 1]", args.exploration_fraction)
    need(args.train_frequency > 0, "--train-frequency", "positive", args.train_frequency)
    per_env = args.buffer_size // args.num_envs
    need(per_env >= args.n_step + 8, "--buffer-size", f"at least {(args.n_step + 8) * args.num_envs} "
         f"for {args.num_envs} envs", args.buffer_size)
    need(args.batch_size <= args.buffer_size, "--batch-size", f"at most --buffer-size ({args.buffer_size})",
         args.batch_size)
    need(args.learning_starts >= args.batch_size, "--learning-starts",
         f"at least --batch-size ({args.batch_size}) so the first batch can be drawn", args.learning_starts)
    need(args.learning_starts >= args.num_envs * (args.n_step + 4), "--learning-starts",
         f"at least {args.num_envs * (args.n_step + 4)} (n-step + 4 frames per env)", args.learning_starts)
    need(args.learning_starts <= args.buffer_size, "--learning-starts",
         f"at most --buffer-size ({args.buffer_size})", args.learning_starts)
    ale_game(args.env_id)
    need(args.eval_sticky is None or 0 <= args.eval_sticky < 1, "--eval-sticky", "in [0, 1)", args.eval_sticky)
    if args.track and importlib.util.find_spec("wandb") is None:
        raise BadInput("--track: needs Weights & Biases (pip install wandb)")


# ---------------------------------------------------------------------------- environment
def ale_game(env_id: str) -> dict:
    """The ALE settings behind a registered Gymnasium id, e.g. PongNoFrameskip-v4 -> pong, no sticky actions."""
    gym.register_envs(ale_py)
    try:
        kwargs = gym.spec(env_id).kwargs
    except gym.error.Error:
        raise BadInput(f"--env-id {env_id!r}: not a Gymnasium id registered by ale-py "
                       "(e.g. PongNoFrameskip-v4, ALE/Pong-v5)") from None
    if "game" not in kwargs or kwargs.get("obs_type", "rgb") != "rgb":
        raise BadInput(f"--env-id {env_id!r}: must be an ale-py Atari id with pixel observations")
    return {"game": kwargs["game"], "repeat_action_probability": kwargs.get("repeat_action_probability", 0.25)}


def make_env(env_id: str, num_envs: int, seed: int, sticky: Optional[float] = None):
    """DeepMind-preprocessed Atari in ale-py's threaded vector env; observations (num_envs, 4, 84, 84) uint8.
    `sticky`, when given, replaces the env id's sticky-action probability."""
    game = ale_game(env_id)
    if sticky is not None:
        game["repeat_action_probability"] = sticky
    envs = ale_py.vector_env.AtariVectorEnv(
        num_envs=num_envs, **game, frameskip=4, stack_num=4, img_height=84, img_width=84,
        grayscale=True, maxpool=True, noop_max=30, use_fire_reset=True, episodic_life=False,
        reward_clipping=False, autoreset_mode="NextStep")
    envs.reset(seed=seed)
    return envs


# ---------------------------------------------------------------------------- model
class QNetwork(nn.Module):
    """The Nature CNN: 3 conv layers and a 512-unit layer; input uint8 frames, output one Q-value per action."""

    def __init__(self, num_actions: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
            nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
            nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(3136, 512), nn.ReLU(),
            nn.Linear(512, num_actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        return self.net(frames.float() / 255.0)


# ---------------------------------------------------------------------------- replay
class FrameReplay:
    """Replay that stores each 84x84 frame once, per environment stream, and rebuilds stacks when sampling.

    Row `t` of stream `e` holds the newest frame of the observation the agent acted on at vector step
    t, the action taken, the reward and whether that step ended the episode. The 4-frame state of
    row t is rows t-3..t, with frames before the episode's first frame zeroed, exactly as the env
    stacks them. Rows whose observation was an episode's final frame (the env ignores the action and
    resets) are never sampled.
    """

    def __init__(self, capacity: int, num_envs: int, n_step: int, gamma: float, frame_shape=(84, 84)):
        self.rows, self.num_envs, self.n_step, self.gamma = capacity // num_envs, num_envs, n_step, gamma
        self.frames = np.zeros((self.rows, num_envs, *frame_shape), dtype=np.uint8)
        self.actions = np.zeros((self.rows, num_envs), dtype=np.int64)
        self.rewards = np.zeros((self.rows, num_envs), dtype=np.float32)
        self.terminated = np.zeros((self.rows, num_envs), dtype=bool)  # the step from this row ended the game
        self.episode_end = np.zeros((self.rows, num_envs), dtype=bool)  # ... or was truncated
        self.first = np.zeros((self.rows, num_envs), dtype=bool)  # this row's frame starts an episode
        self.acted = np.zeros((self.rows, num_envs), dtype=bool)  # the action of this row was really played
        self.pos, self.count = 0, 0

    def __len__(self) -> int:
        return self.count * self.num_envs

    def add(self, newest_frame, first, acted, action, reward, terminated, truncated) -> None:
        p = self.pos
        self.frames[p] = newest_frame
        self.first[p], self.acted[p], self.actions[p] = first, acted, action
        self.rewards[p], self.terminated[p], self.episode_end[p] = reward, terminated, terminated | truncated
        self.pos, self.count = (p + 1) % self.rows, min(self.count + 1, self.rows)

    def cut_episodes(self) -> None:
        """End every stream's episode at its newest row: on resume the emulators restart, so nothing links
        the stored games to the new ones. The newest row's action led nowhere stored, so it is not sampled."""
        if self.count >= 2:
            last = (self.pos - 1) % self.rows
            self.acted[last] = False
            self.episode_end[(last - 1) % self.rows] |= self.acted[(last - 1) % self.rows]

    def _stack_offsets(self, rows: np.ndarray, envs: np.ndarray) -> np.ndarray:
        """Indices of the 4 rows of each state, plus a mask of the frames that precede an episode start."""
        idx = (rows[:, None] + np.arange(-3, 1)) % self.rows
        firsts = self.first[idx, envs[:, None]]
        # A frame is blank if a later frame within the stack starts a new episode.
        blank = np.flip(np.cumsum(np.flip(firsts[:, 1:], 1), 1), 1) > 0
        return idx, np.concatenate([blank, np.zeros((len(rows), 1), bool)], 1)

    def sample_rows(self, batch_size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """Uniform (row, env) pairs whose action was played and whose n later rows exist."""
        oldest = self.pos if self.count == self.rows else 0
        # Logical ages 3 .. count-1-n: the state's 3 earlier rows and the n later rows all exist.
        high = self.count - self.n_step
        rows = np.empty(0, np.int64)
        envs = np.empty(0, np.int64)
        while len(rows) < batch_size:
            r = (oldest + rng.integers(3, high, size=2 * batch_size)) % self.rows
            e = rng.integers(0, self.num_envs, size=2 * batch_size)
            ok = self.acted[r, e]
            rows, envs = np.concatenate([rows, r[ok]]), np.concatenate([envs, e[ok]])
        return rows[:batch_size], envs[:batch_size]

    def sample(self, batch_size: int, rng: np.random.Generator):
        return self.batch(*self.sample_rows(batch_size, rng))

    def batch(self, rows: np.ndarray, envs: np.ndarray):
        """(obs, actions, n-step returns, bootstrap discounts, next_obs); obs and next_obs views of one uint8 copy."""
        batch_size = len(rows)
        # n-step return, cut at the first episode end; the bootstrap state is the row after the cut.
        returns = np.zeros(batch_size, np.float32)
        discount = np.ones(batch_size, np.float32)
        steps = np.zeros(batch_size, np.int64)
        running = np.ones(batch_size, bool)
        for k in range(self.n_step):
            rk = (rows + k) % self.rows
            returns += running * discount * np.sign(self.rewards[rk, envs])
            discount = np.where(running, discount * self.gamma, discount)
            steps += running
            ended = running & self.episode_end[rk, envs]
            discount[ended & self.terminated[rk, envs]] = 0.0
            running &= ~ended
        next_rows = (rows + steps) % self.rows

        idx, blank = self._stack_offsets(rows, envs)
        next_idx, next_blank = self._stack_offsets(next_rows, envs)
        both = self.frames[np.concatenate([idx, next_idx], 1), envs[:, None]]  # the one copy: (B, 8, 84, 84)
        both[np.concatenate([blank, next_blank], 1)] = 0
        return both[:, :4], self.actions[rows, envs], returns, discount, both[:, 4:]

    def state_dict(self) -> dict:
        # Until the buffer wraps, rows count.. are empty: leave them out of the checkpoint.
        arrays = {k: torch.from_numpy(getattr(self, k)[:self.count]) for k in
                  ("frames", "actions", "rewards", "terminated", "episode_end", "first", "acted")}
        return {**arrays, "pos": self.pos, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            if isinstance(v, torch.Tensor):
                getattr(self, k)[:len(v)] = v.numpy()
        self.pos, self.count = state["pos"], state["count"]


# ---------------------------------------------------------------------------- loss
def td_loss(q_network: nn.Module, target_network: nn.Module, obs, actions, returns, discount, next_obs):
    """Mean squared TD error against the frozen target network: r + gamma^n * max_a' Q_target(s', a')."""
    with torch.no_grad():
        target = returns + discount * target_network(next_obs).max(dim=1).values
    q_taken = q_network(obs).gather(1, actions[:, None]).squeeze(1)
    return F.mse_loss(q_taken, target), q_taken


def gradient_step(q_network: nn.Module, target_network: nn.Module, optimizer: torch.optim.Optimizer,
                  obs, actions, returns, discount, next_obs):
    """One optimizer step on the TD loss of a batch; returns the loss and the mean Q-value of the actions taken."""
    loss, q_taken = td_loss(q_network, target_network, obs, actions, returns, discount, next_obs)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), q_taken.detach().mean()


# ---------------------------------------------------------------------------- run plumbing
def fail(message: str) -> None:
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    sys.exit(2)


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.pt"
    if not p.is_file():
        raise BadInput(f"{flag} {path!r}: no such checkpoint file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception:
        raise BadInput(f"{flag} {path!r}: not a readable torch checkpoint (truncated, or written by "
                       "another script)") from None
    if not isinstance(ckpt, dict) or ckpt.get("script") != SCRIPT:
        other = ckpt.get("script") if isinstance(ckpt, dict) else None
        raise BadInput(f"{flag} {path!r}: checkpoint written by {other or 'something else'}, not {SCRIPT}.py")
    if flag == "--resume" and "optimizer" not in ckpt:
        raise BadInput(f"{flag} {path!r}: holds weights only (final_model.pt); resume from checkpoint.pt")
    return ckpt, p


def resume_command(run_dir: Path) -> str:
    """How to continue this run: a resume takes the run's saved settings as its defaults (`saved_settings`)."""
    return f"python {SCRIPT}.py --resume {shlex.quote(str(run_dir))}"


def saved_settings(argv: list[str]) -> list[str]:
    """With `--resume`, the run's own settings (its args.json) as flags to put before the command line's: a
    resume continues the run as it was started, a flag given beside `--resume` still wins (the last one
    does), and tyro checks the saved values as it checks typed ones."""
    for i, arg in enumerate(argv):
        if arg.startswith("--resume="):
            path = Path(arg.split("=", 1)[1])
        elif arg == "--resume" and i + 1 < len(argv):
            path = Path(argv[i + 1])
        else:
            continue
        saved_at = (path if path.is_dir() else path.parent) / "args.json"
        try:
            saved = json.loads(saved_at.read_text())
        except (OSError, ValueError):
            return []  # `main` says so once the checkpoint itself has loaded
        tokens = []
        for f in fields(Args):
            if f.name in ("resume", "eval_checkpoint", "run_dir") or f.name not in saved:
                continue
            flag, value = "--" + f.name.replace("_", "-"), saved[f.name]
            if isinstance(value, bool):
                tokens.append(flag if value else "--no-" + flag[2:])
            else:
                tokens += [flag, "None" if value is None else str(value)]
        return tokens
    return []


@dataclass
class LinearSchedule:
    """A value that moves linearly from `start_value` at agent step `start_step` to `end_value` at `end_step`,
    then stays there (epsilon, an annealed learning rate). Saved in the checkpoint, so a resume continues it."""
    start_step: int
    start_value: float
    end_step: float
    end_value: float

    def __call__(self, step: int) -> float:
        if step >= self.end_step:
            return self.end_value
        return self.start_value + (self.end_value - self.start_value) * (step - self.start_step) / (
            self.end_step - self.start_step)

    def resumed(self, step: int, old_total: int, new_total: int) -> LinearSchedule:
        """The schedule a resume at `step` with a new `--total-timesteps` follows: it starts from the value
        reached and stretches (or squeezes) what remains in proportion to the steps left, so it never jumps;
        a finished schedule stays finished."""
        if step >= self.end_step or new_total == old_total:
            return self
        end = step + (self.end_step - step) * (new_total - step) / max(old_total - step, 1)
        return LinearSchedule(step, self(step), end, self.end_value)

    def describe(self, name: str, step: int) -> str:
        if step >= self.end_step:
            return f"{name} schedule finished: stays at {self.end_value:.4g}"
        return f"{name} schedule: {self(step):.4g} at step {step:,}, {self.end_value:.4g} at step {self.end_step:,.0f}"


def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


class Progress:
    """One live line on a terminal; plain lines every `every_s` seconds otherwise (CI, nohup)."""

    def __init__(self, total: int, every_s: float = 30.0):
        self.total, self.tty, self.every_s, self.last = total, sys.stdout.isatty(), every_s, 0.0

    def update(self, step: int, sps: float, recent_return: float, extra: str = "", force: bool = False):
        now = time.time()
        if not force and now - self.last < (0.5 if self.tty else self.every_s):
            return
        self.last = now
        pct = 100.0 * step / self.total
        line = (f"step {step:,}/{self.total:,} ({pct:5.1f}%) | {sps:6.0f} SPS | "
                f"mean-100 return {recent_return:6.2f}{extra}")
        print(("\r" + line + "   ") if self.tty else line, end="" if self.tty else "\n", flush=True)

    def close(self):
        if self.tty:
            print()


def evaluate(q_network: QNetwork, env_id: str, episodes: int, seed: int, epsilon: float, sticky: float,
             device: torch.device, video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` whole games; each env plays a fixed share, so that short games are not favoured."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(env_id, num_envs, seed, sticky)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    returns, ep_return, done_before = [], np.zeros(num_envs), np.zeros(num_envs, bool)
    q_network.eval()
    while (quota > 0).any():
        with torch.inference_mode():
            actions = q_network(torch.from_numpy(obs).to(device)).argmax(1).cpu().numpy()
        explore = rng.random(num_envs) < epsilon
        actions[explore] = rng.integers(0, envs.single_action_space.n, explore.sum())
        obs, reward, terminated, truncated, _ = envs.step(actions)
        ep_return += reward * ~done_before
        done = terminated | truncated
        for e in np.flatnonzero(done & ~done_before & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[done] = 0.0
        done_before = done
    envs.close()
    if video_dir is not None:
        record_video(q_network, env_id, seed, device, video_dir)
    q_network.train()
    return returns


def record_video(q_network: QNetwork, env_id: str, seed: int, device: torch.device, video_dir: Path) -> None:
    """One greedy episode in a rendering Gymnasium env with the same preprocessing, written as MP4 with OpenCV."""
    import cv2

    env = gym.make(env_id, render_mode="rgb_array", frameskip=1)
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, grayscale_obs=True)
    env = gym.wrappers.FrameStackObservation(env, 4, padding_type="zero")
    video_dir.mkdir(parents=True, exist_ok=True)
    obs, _ = env.reset(seed=seed)
    frame = env.render()
    writer = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15,
                             (frame.shape[1], frame.shape[0]))
    done = False
    obs, *_ = env.step(1)  # FIRE, as the vector env does on reset
    while not done:
        writer.write(cv2.cvtColor(env.render(), cv2.COLOR_RGB2BGR))
        with torch.inference_mode():
            action = int(q_network(torch.from_numpy(np.asarray(obs))[None].to(device)).argmax(1))
        obs, _, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
    writer.release()
    env.close()


def write_eval(run_dir: Path, returns: list[float], checkpoint: str, env_id: str, sticky: float) -> dict:
    report = {"env_id": env_id, "sticky": sticky, "episodes": len(returns), "mean": float(np.mean(returns)),
              "std": float(np.std(returns)), "min": float(np.min(returns)), "max": float(np.max(returns)),
              "returns": returns, "checkpoint": checkpoint}
    (run_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def trim_progress(csv_path: Path, episodes: int) -> None:
    """Drop rows an interrupted run logged after its last checkpoint, so the resumed curve continues from there."""
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    kept = rows[:1] + [r for r in rows[1:] if int(r[1]) <= episodes]
    if len(kept) != len(rows):
        with open(csv_path, "w", newline="") as f:
            csv.writer(f).writerows(kept)


def pick_device(want_cuda: bool) -> torch.device:
    if want_cuda and not torch.cuda.is_available():
        print("CUDA not available: running on CPU")
    return torch.device("cuda" if want_cuda and torch.cuda.is_available() else "cpu")


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    device = pick_device(args.cuda)

    if args.eval_checkpoint is not None:
        ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
        env_id = ckpt["args"]["env_id"]
        sticky = ale_game(env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
        q_network = QNetwork(ckpt["num_actions"]).to(device)
        q_network.load_state_dict(ckpt["model"])
        out_dir = Path(args.run_dir or f"runs/{env_id.replace('/', '-')}__{args.exp_name}-eval__{args.seed}__"
                                       f"{int(time.time())}")
        out_dir.mkdir(parents=True, exist_ok=True)
        returns = evaluate(q_network, env_id, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, args.eval_epsilon,
                           sticky, device, out_dir / "videos" if args.capture_video else None)
        report = write_eval(out_dir, returns, str(path), env_id, sticky)
        print(f"eval {path}: {report['episodes']} episodes of {env_id} (sticky actions {sticky:g}), return "
              f"{report['mean']:.2f} ± {report['std']:.2f} (min {report['min']:.0f}, max {report['max']:.0f})"
              f" -> {out_dir / 'eval.json'}")
        return

    ckpt = None
    if args.resume is not None:
        ckpt, path = load_checkpoint(args.resume, "--resume")
        for flag in ("env_id", "num_envs", "buffer_size", "n_step"):
            if ckpt["args"][flag] != getattr(args, flag):
                raise BadInput(f"--{flag.replace('_', '-')} {getattr(args, flag)!r}: the checkpoint was "
                               f"trained with {ckpt['args'][flag]!r}; resume with the same value")
        if ckpt["global_step"] >= args.total_timesteps:
            raise BadInput(f"--total-timesteps {args.total_timesteps}: the checkpoint is already at step "
                           f"{ckpt['global_step']}; ask for more steps to resume")
        run_dir = path.parent
        if not (run_dir / "args.json").is_file():
            print(f"note: no args.json beside {path}: resuming with the flags given and the defaults", file=sys.stderr)
    else:
        run_dir = Path(args.run_dir or f"runs/{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__"
                                        f"{int(time.time())}")
        if (run_dir / "checkpoint.pt").exists():
            raise BadInput(f"--run-dir {str(run_dir)!r}: holds a run already; use --resume {run_dir} to continue it")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)

    envs = make_env(args.env_id, args.num_envs, args.seed)
    num_actions = int(envs.single_action_space.n)
    q_network = QNetwork(num_actions).to(device)
    target_network = QNetwork(num_actions).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate)
    replay = FrameReplay(args.buffer_size, args.num_envs, args.n_step, args.gamma)
    global_step, episode, grad_steps, wall_before, recent = 0, 0, 0, 0.0, []
    epsilon_schedule = LinearSchedule(0, args.start_e, args.exploration_fraction * args.total_timesteps, args.end_e)

    if ckpt is not None:
        q_network.load_state_dict(ckpt["model"])
        target_network.load_state_dict(ckpt["target_model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        replay.load_state_dict(ckpt["replay"])
        replay.cut_episodes()
        global_step, episode, grad_steps = ckpt["global_step"], ckpt["episode"], ckpt["grad_steps"]
        wall_before = ckpt["wall_time_s"]
        recent = list(ckpt["recent_returns"])
        random.setstate(ckpt["python_rng"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        if "epsilon_schedule" in ckpt:
            epsilon_schedule = LinearSchedule(**ckpt["epsilon_schedule"])
        else:  # written before schedules were saved: the one its own total planned
            epsilon_schedule = LinearSchedule(0, args.start_e, args.exploration_fraction *
                                              ckpt["args"]["total_timesteps"], args.end_e)
        if ckpt["args"]["total_timesteps"] != args.total_timesteps:
            epsilon_schedule = epsilon_schedule.resumed(global_step, ckpt["args"]["total_timesteps"],
                                                        args.total_timesteps)
            print(f"--total-timesteps changed: {epsilon_schedule.describe('epsilon', global_step)}")
        # The emulators' state is not saved: the envs restart their games, reseeded from the step reached.
        envs.reset(seed=args.seed + global_step)
        print(f"resumed {path} at step {global_step:,}, episode {episode}")

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
    with open(run_dir / "commands.txt", "a") as f:  # every start of this run, resumes included
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} python {SCRIPT}.py {shlex.join(sys.argv[1:])}\n")
    from torch.utils.tensorboard import SummaryWriter

    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=asdict(args),
                   name=run_dir.name, dir=str(run_dir), resume="allow")
    writer = SummaryWriter(str(run_dir), purge_step=global_step if ckpt else None)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" +
                    "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    csv_path = run_dir / "progress.csv"
    new_csv = not csv_path.exists() or ckpt is None
    if not new_csv:
        trim_progress(csv_path, episode)
    csv_file = open(csv_path, "w" if new_csv else "a", newline="")
    csv_writer = csv.writer(csv_file)
    if new_csv:
        csv_writer.writerow(["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps"])

    def checkpoint() -> None:
        save_atomic({
            "script": SCRIPT, "args": asdict(args), "num_actions": num_actions,
            "model": q_network.state_dict(), "target_model": target_network.state_dict(),
            "optimizer": optimizer.state_dict(), "replay": replay.state_dict(),
            "global_step": global_step, "episode": episode, "grad_steps": grad_steps,
            "epsilon_schedule": asdict(epsilon_schedule), "wall_time_s": wall_before + time.time() - start,
            "recent_returns": recent[-100:], "python_rng": random.getstate(),
            "numpy_rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        }, run_dir / "checkpoint.pt")

    stop_signal = []
    signal.signal(signal.SIGINT, lambda s, f: stop_signal.append(s))
    signal.signal(signal.SIGTERM, lambda s, f: stop_signal.append(s))

    step_fn = torch.compile(gradient_step) if args.compile else gradient_step

    obs, _ = envs.reset(seed=args.seed + global_step)
    first = np.ones(args.num_envs, bool)
    prev_done = np.zeros(args.num_envs, bool)
    ep_return = np.zeros(args.num_envs)
    ep_length = np.zeros(args.num_envs, np.int64)
    progress = Progress(args.total_timesteps)
    start, start_step = time.time(), global_step
    next_save = (global_step // args.save_every + 1) * args.save_every
    loss_value = q_value = None
    reached_target = False

    def crossed(period: int) -> bool:  # did the last vector step pass a multiple of `period` agent steps?
        return global_step // period != step_before // period

    while global_step < args.total_timesteps and not stop_signal and not reached_target:
        epsilon = epsilon_schedule(global_step)
        with torch.inference_mode():
            actions = q_network(torch.from_numpy(obs).to(device)).argmax(1).cpu().numpy()
        explore = rng.random(args.num_envs) < epsilon
        actions[explore] = rng.integers(0, num_actions, explore.sum())

        next_obs, reward, terminated, truncated, _ = envs.step(actions)
        replay.add(obs[:, -1], first, ~prev_done, actions, reward, terminated, truncated)
        done = terminated | truncated
        # Under NextStep autoreset the step after an episode's end only resets: it is no agent step.
        played = ~prev_done
        step_before, global_step = global_step, global_step + int(played.sum())
        ep_return += reward * played
        ep_length += played
        sps = (global_step - start_step) / max(time.time() - start, 1e-9)
        for e in np.flatnonzero(done & played):
            episode += 1
            recent.append(float(ep_return[e]))
            wall = wall_before + time.time() - start
            csv_writer.writerow([global_step, episode, ep_return[e], ep_length[e], f"{wall:.1f}", f"{sps:.1f}"])
            writer.add_scalar("charts/episodic_return", ep_return[e], global_step)
            writer.add_scalar("charts/episodic_length", ep_length[e], global_step)
            ep_return[e], ep_length[e] = 0.0, 0
        if done.any():
            csv_file.flush()
            mean100 = float(np.mean(recent[-100:]))
            if args.target_return is not None and len(recent) >= 100 and mean100 >= args.target_return:
                reached_target = True
        first, prev_done, obs = prev_done.copy(), done, next_obs

        if global_step >= args.learning_starts:
            # One gradient step per --train-frequency agent steps, however many envs step at once.
            while grad_steps <= (global_step - args.learning_starts) // args.train_frequency:
                grad_steps += 1
                b_obs, b_actions, b_returns, b_discount, b_next = replay.sample(args.batch_size, rng)
                loss_value, q_value = step_fn(
                    q_network, target_network, optimizer,
                    torch.from_numpy(b_obs).to(device), torch.from_numpy(b_actions).to(device),
                    torch.from_numpy(b_returns).to(device), torch.from_numpy(b_discount).to(device),
                    torch.from_numpy(b_next).to(device))
            if crossed(args.target_network_frequency):
                for tp, qp in zip(target_network.parameters(), q_network.parameters()):
                    tp.data.copy_(args.tau * qp.data + (1.0 - args.tau) * tp.data)

        if crossed(100) or step_before == start_step:  # and once at every start, so a resume shows its epsilon
            writer.add_scalar("charts/SPS", sps, global_step)
            writer.add_scalar("charts/epsilon", epsilon, global_step)
            if loss_value is not None:
                writer.add_scalar("losses/td_loss", float(loss_value), global_step)
                writer.add_scalar("losses/q_values", float(q_value), global_step)
        if global_step >= next_save:
            checkpoint()
            next_save += args.save_every
        progress.update(global_step, sps, float(np.mean(recent[-100:])) if recent else math.nan,
                        f" | eps {epsilon:.3f} | episodes {episode}")

    checkpoint()
    # From here on (final evaluation) Ctrl-C interrupts as usual: the checkpoint is written.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    progress.close()
    csv_file.close()
    envs.close()
    if stop_signal:
        writer.close()
        code = 128 + stop_signal[0]
        print(f"stopped by signal {stop_signal[0]} at step {global_step:,}; checkpoint written. "
              f"Resume with: {resume_command(run_dir)}", file=sys.stderr)
        sys.exit(code)

    final = {"script": SCRIPT, "args": asdict(args), "num_actions": num_actions, "model": q_network.state_dict(),
             "global_step": global_step}
    save_atomic(final, run_dir / "final_model.pt")
    sticky = ale_game(args.env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
    returns = evaluate(q_network, args.env_id, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, args.eval_epsilon,
                       sticky, device,
                       run_dir / "videos" if args.capture_video else None)
    report = write_eval(run_dir, returns, str(run_dir / "final_model.pt"), args.env_id, sticky)
    writer.add_scalar("eval/mean_return", report["mean"], global_step)
    writer.close()
    why = "reached --target-return" if reached_target else "done"
    print(f"{why}: {global_step:,} steps, {episode} episodes, {wall_before + time.time() - start:.0f} s; "
          f"eval {report['mean']:.2f} ± {report['std']:.2f} over {report['episodes']} episodes -> {run_dir}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args, args=[*saved_settings(sys.argv[1:]), *sys.argv[1:]]))
    except BadInput as e:
        fail(str(e))
