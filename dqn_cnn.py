"""Nature DQN that learns Atari Pong from pixels: CNN, replay buffer, target network, epsilon-greedy.

Lineage: Mnih et al. 2015 ("Human-level control through deep RL"), by way of Lapan, *Deep RL Hands-On*, ch. 6
(its Pong chapter: PongNoFrameskip-v4, replay 10k, lr 1e-4, target sync every 1000 steps, epsilon
1 -> 0.01, stop at a mean-100 return of 19) and CleanRL's `dqn_atari.py` (flag names, logging).
Usage: `python dqn_cnn.py --cuda` (`--help` for the flags); the reported score, its command and curve are in
`benchmark/RESULTS.md`.

Preprocessing is the DeepMind stack, done in C++ by ale-py's threaded `AtariVectorEnv` (no Python wrappers): 30
random no-ops and FIRE on reset, action repeat 4 with a max over the last two frames, 84x84 grayscale, a stack of
the last 4 frames (zeros before an episode's first frame). A CNN needs the stack to see the ball's velocity, and it
is the seed's and the Nature paper's stack, so scores compare. Rewards are clipped to their sign for learning only;
`charts/episodic_return` and `progress.csv` report the true game score.

Where it departs from the seed (the seed's setup stays reachable: `--env-id PongNoFrameskip-v4 --n-step 1
--train-frequency 1 --batch-size 32 --learning-rate 1e-4 --num-envs 1 --buffer-size 10000 --no-compile
--no-bf16`; Nature's 32 samples
every 4 agent steps at the seed's rate: `--batch-size 32 --train-frequency 4 --learning-rate 1e-4`):
- `ALE/Pong-v5`: sticky actions (an action repeats with probability 0.25, Machado et al. 2018), so that the agent
  learns to play rather than to replay one memorised game; the seed, Nature and CleanRL play `PongNoFrameskip-v4`;
- `--batch-size 128 --train-frequency 16 --learning-rate 2e-4`: Nature's 8 replayed samples per agent step, in a
  quarter of the gradient steps. On 2 CPU cores one batch of 128 costs far less than four of 32 (small batches leave
  the cores idle), and the gradient step is most of the time; the learning rate grows with the square root of the
  batch, a common rule for Adam;
- `--total-timesteps 2000000`: a fixed budget of agent steps, so that seeds compare at equal steps; the seed stops
  at a mean-100 of 19 (`--target-return 19` stops there too);
- `--num-envs 8`: one forward pass picks 8 actions, and ale-py steps the 8 games in C++ threads;
- `--n-step 3`: 3-step returns carry Pong's sparse reward back 3x faster per update (Lapan ch. 8); 1 is Nature's;
- `--buffer-size 50000`: 5x the seed's 10k, nearer Nature's 1M; stored once, its frames take 350 MB;
- `--compile` and `--bf16`: `torch.compile` of the gradient step, where most of the time goes, its convolutions and
  hidden layer in bfloat16 where the CPU or GPU computes in it (the Q-value head, the loss, the weights, their
  gradients and Adam stay float32; acting and evaluation compute in float32; benchmark/RESULTS.md);
- the replay stores each 84x84 frame once and rebuilds the stacks when sampling: 8x less memory than stored pairs of
  stacks, the same samples. Under NextStep autoreset the step after an episode's end only resets that env: it is no
  agent step, and its transition is never sampled.
Off by default, for probes (`benchmark/probes/`): `--double-q`, the Double DQN target (van Hasselt et al. 2016);
`--dueling`, the dueling head (Wang et al. 2016); `--adam-eps 1.5e-4`, Adam's epsilon in Rainbow and Dopamine.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import math
import os
import random
import shlex
import shutil
import signal
import statistics
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
CHECKPOINT = "checkpoint.pt"
RESUME_MUST_MATCH = ("env_id", "num_envs", "buffer_size", "n_step", "dueling")  # what the replay and weights depend on


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch and the environments"""
    env_id: str = "ALE/Pong-v5"
    """a Gymnasium id registered by ale-py (the seed's: PongNoFrameskip-v4, no sticky actions)"""
    total_timesteps: int = 2_000_000
    """agent steps (environment steps after frame skip, summed over envs) to train for"""
    cuda: bool = True
    """use CUDA when present"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic`"""
    compile: bool = True
    """`torch.compile` the gradient step (needs a C++ compiler on CPU; about 20 s to compile)"""
    bf16: bool = True
    """compute the gradient step in bfloat16 (`torch.autocast`) where the device has bf16 arithmetic (AVX512-BF16 or
    AMX CPUs, Ampere or later GPUs), float32 elsewhere; the weights, acting and evaluation stay float32"""
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

    num_envs: int = 8
    """parallel environments (ale-py's threaded C++ vector env)"""
    buffer_size: int = 50_000
    """replay capacity in transitions (frames stored once each)"""
    learning_rate: float = 2e-4
    """Adam learning rate"""
    adam_eps: float = 1e-8
    """Adam's epsilon, added to the root of its second moment (1e-8: torch's and the seed's; 1.5e-4: Rainbow's and
    Dopamine's, which damps the steps of weights whose gradients are small)"""
    gamma: float = 0.99
    """discount factor"""
    n_step: int = 3
    """length of the multi-step return (1: the Nature DQN target)"""
    double_q: bool = False
    """the Double DQN target: the online network picks the next action, the target network values it (off: the
    target network's max, as Nature)"""
    dueling: bool = False
    """the dueling head (Wang et al. 2016): a value and an advantage stream of 512 units each after the convolutions,
    Q = V + A - mean(A) (off: Nature's one 512-unit layer and Q-value head)"""
    tau: float = 1.0
    """target network update rate (1: hard copy)"""
    target_network_frequency: int = 1000
    """agent steps between target network updates"""
    batch_size: int = 128
    """transitions per gradient step"""
    start_e: float = 1.0
    """starting epsilon"""
    end_e: float = 0.01
    """final epsilon"""
    exploration_fraction: float = 0.1
    """fraction of `--total-timesteps` over which epsilon falls from start to end"""
    learning_starts: int = 10_000
    """agent steps of random play before learning starts"""
    train_frequency: int = 16
    """agent steps per gradient step"""


def check_args(args: Args) -> None:
    check_run_args(args)
    need(args.num_envs > 0, "--num-envs", "at least 1", args.num_envs)
    need(0 <= args.eval_epsilon <= 1, "--eval-epsilon", "in [0, 1]", args.eval_epsilon)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(args.adam_eps > 0, "--adam-eps", "positive", args.adam_eps)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.n_step >= 1, "--n-step", "at least 1", args.n_step)
    need(0 < args.tau <= 1, "--tau", "in (0, 1]", args.tau)
    need(args.target_network_frequency > 0, "--target-network-frequency", "positive", args.target_network_frequency)
    need(args.batch_size > 0, "--batch-size", "positive", args.batch_size)
    need(0 <= args.end_e <= args.start_e <= 1, "--start-e/--end-e", "0 <= end-e <= start-e <= 1",
         (args.start_e, args.end_e))
    need(0 < args.exploration_fraction <= 1, "--exploration-fraction", "in (0, 1]", args.exploration_fraction)
    need(args.train_frequency > 0, "--train-frequency", "positive", args.train_frequency)
    need(args.buffer_size // args.num_envs >= args.n_step + 8, "--buffer-size",
         f"at least {(args.n_step + 8) * args.num_envs} for {args.num_envs} envs", args.buffer_size)
    need(args.batch_size <= args.buffer_size, "--batch-size", f"at most --buffer-size ({args.buffer_size})",
         args.batch_size)
    need(args.learning_starts >= args.batch_size, "--learning-starts",
         f"at least --batch-size ({args.batch_size}) so the first batch can be drawn", args.learning_starts)
    need(args.learning_starts >= args.num_envs * (args.n_step + 4), "--learning-starts",
         f"at least {args.num_envs * (args.n_step + 4)} (n-step + 4 frames per env)", args.learning_starts)
    need(args.learning_starts <= args.buffer_size, "--learning-starts",
         f"at most --buffer-size ({args.buffer_size})", args.learning_starts)
    ale_game(args.env_id)


# ---------------------------------------------------------------------------- environment
def make_env(env_id: str, num_envs: int, sticky: Optional[float] = None):
    """DeepMind-preprocessed Atari in ale-py's threaded vector env: observations (num_envs, 4, 84, 84) uint8, with
    gymnasium's episode statistics. `sticky`, when given, replaces the env id's sticky-action probability."""
    game = ale_game(env_id)
    if sticky is not None:
        game["repeat_action_probability"] = sticky
    return gym.wrappers.vector.RecordEpisodeStatistics(ale_py.vector_env.AtariVectorEnv(
        num_envs=num_envs, game=game["game"], repeat_action_probability=game["repeat_action_probability"],
        frameskip=4, stack_num=4, img_height=84, img_width=84,
        grayscale=True, maxpool=True, noop_max=30, use_fire_reset=True, episodic_life=False,
        reward_clipping=False, autoreset_mode="NextStep"))


# ---------------------------------------------------------------------------- model
class QNetwork(nn.Module):
    """The Nature CNN: 3 conv layers and a 512-unit layer; input uint8 frames, output one Q-value per action. With
    `dueling`, two 512-unit streams after the convolutions, a state value and each action's advantage."""

    def __init__(self, num_actions: int, dueling: bool = False):
        super().__init__()
        self.num_actions, self.dueling = num_actions, dueling
        convolutions = (nn.Conv2d(4, 32, 8, stride=4), nn.ReLU(),
                        nn.Conv2d(32, 64, 4, stride=2), nn.ReLU(),
                        nn.Conv2d(64, 64, 3, stride=1), nn.ReLU(), nn.Flatten())
        if dueling:
            self.net = nn.Sequential(*convolutions)
            self.value = nn.Sequential(nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, 1))
            self.advantage = nn.Sequential(nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, num_actions))
        else:
            self.net = nn.Sequential(*convolutions, nn.Linear(3136, 512), nn.ReLU(), nn.Linear(512, num_actions))

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        x = frames.float() / 255.0
        if not self.dueling:
            return with_float32_output(self.net, x)
        features = self.net(x)
        value, advantage = with_float32_output(self.value, features), with_float32_output(self.advantage, features)
        # Less the mean advantage, so that V and A are identifiable (Wang et al.'s eq. 9).
        return value + advantage - advantage.mean(dim=1, keepdim=True)


def with_float32_output(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """`layers` applied to x, the last one in float32 even under bf16 autocast: bf16's 8-bit mantissa (0.4%) is coarser
    than the TD errors the values learn from."""
    hidden = layers[:-1](x)
    with torch.autocast(hidden.device.type, enabled=False):
        return layers[-1](hidden.float())


def epsilon_greedy(q_network: QNetwork, obs: np.ndarray, epsilon: float, rng: np.random.Generator,
                   device: torch.device) -> np.ndarray:
    """Each env's greedy action, replaced with probability epsilon by a uniformly random one."""
    with torch.inference_mode():
        actions = q_network(torch.from_numpy(obs).to(device)).argmax(1).cpu().numpy()
    explore = rng.random(len(actions)) < epsilon
    actions[explore] = rng.integers(0, q_network.num_actions, explore.sum())
    return actions


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


def step_and_store(envs, replay: FrameReplay, obs: np.ndarray, actions: np.ndarray, first: np.ndarray,
                   prev_done: np.ndarray):
    """One vector step, stored in the replay as a row: obs's newest frame, the actions and what they led to.
    `first`: that frame starts an episode; `prev_done`: the last step ended one. Returns the next obs, its `first`
    and `prev_done`, which envs really played this step, and the step's info."""
    next_obs, reward, terminated, truncated, info = envs.step(actions)
    played = ~prev_done  # NextStep autoreset: the step after an episode's end only resets that env
    replay.add(obs[:, -1], first, played, actions, reward, terminated, truncated)
    return next_obs, prev_done, terminated | truncated, played, info  # a reset step's frame is an episode's first


# ---------------------------------------------------------------------------- learning
def td_loss(q_network: nn.Module, target_network: nn.Module, obs, actions, returns, discount, next_obs,
            double_q: bool = False):
    """Mean squared TD error against the frozen target network: r + gamma^n * max_a' Q_target(s', a') (Nature), or
    with `double_q` r + gamma^n * Q_target(s', argmax_a' Q(s', a')) (Double DQN, van Hasselt et al. 2016): the
    online network picks the next action and the target network values it, so one network's noise is not maxed."""
    with torch.no_grad():
        next_q = target_network(next_obs)
        if double_q:
            next_value = next_q.gather(1, q_network(next_obs).argmax(dim=1, keepdim=True)).squeeze(1)
        else:
            next_value = next_q.max(dim=1).values
        target = returns + discount * next_value
    q_taken = q_network(obs).gather(1, actions[:, None]).squeeze(1)
    return F.mse_loss(q_taken, target), q_taken


def gradient_step(q_network: nn.Module, target_network: nn.Module, optimizer: torch.optim.Optimizer,
                  obs, actions, returns, discount, next_obs, bf16: bool = False, double_q: bool = False):
    """One optimizer step on the TD loss of a batch; returns the loss and the mean Q-value of the actions taken.
    `bf16`: the layers before the Q-value head in bfloat16 (autocast); the head, the loss, the weights' gradients and
    Adam in float32."""
    with torch.autocast(obs.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss, q_taken = td_loss(q_network, target_network, obs, actions, returns, discount, next_obs, double_q)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), q_taken.detach().float().mean()


def cpu_compile_blocker() -> Optional[str]:
    """Why torch.compile's CPU backend (inductor) cannot build the gradient step here, or None where it can: it needs
    a C++ compiler ($CXX, else g++), and torch 2.13's scalar code for this step fails to build where inductor finds
    no vector instruction set (AVX2 or better) to compile for, as under ATEN_CPU_CAPABILITY=default."""
    from torch._inductor import config, cpu_vec_isa

    names = config.cpp.cxx if isinstance(config.cpp.cxx, (list, tuple)) else (config.cpp.cxx,)
    if not any(name and shutil.which(name) for name in names):
        return "needs a C++ compiler on a CPU ($CXX, else g++) and none was found"
    if not cpu_vec_isa.pick_vec_isa():
        return "finds no vector instruction set (AVX2 or better) to compile for"
    return None


def compiled(step, device: torch.device):
    """`torch.compile` of the gradient step, or the step itself where it cannot be compiled (`cpu_compile_blocker`),
    saying so in one line rather than failing at the first step with a traceback. Dynamo warns once that it ignores
    the profiler's `record_function` in torch.optim's step (no profiler runs here); that line would land in the
    progress line, so it is dropped."""
    blocker = cpu_compile_blocker() if device.type == "cpu" else None
    if blocker:
        print(f"{SCRIPT}.py: --compile {blocker}: the gradient step runs uncompiled (slower); pass --no-compile to "
              "skip this line", flush=True)
        return step
    logging.getLogger("torch._dynamo.variables.ctx_manager").addFilter(
        lambda record: not str(record.msg).startswith("Profiler record function"))
    return torch.compile(step)


BF16_HARDWARE = {"cpu": "AVX512-BF16 or AMX", "cuda": "Ampere or later"}


def bf16_arithmetic(device: torch.device) -> bool:
    """Whether the device computes in bfloat16 natively; elsewhere autocast would emulate it, slower than float32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported(including_emulation=False)
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def update_target(target_network: nn.Module, q_network: nn.Module, tau: float) -> None:
    """Move the target network's weights towards the Q-network's by `tau` (1: a hard copy)."""
    for tp, qp in zip(target_network.parameters(), q_network.parameters()):
        tp.data.copy_(tau * qp.data + (1.0 - tau) * tp.data)


def crossed(before: int, after: int, period: int) -> bool:
    """Whether going from agent step `before` to `after` passed a multiple of `period`."""
    return after // period != before // period


# ---------------------------------------------------------------------------- training loop
def train(args: Args, envs, q_network: QNetwork, target_network: QNetwork, optimizer: torch.optim.Optimizer,
          replay: FrameReplay, epsilon_schedule: LinearSchedule, rng: np.random.Generator, run: RunLog,
          global_step: int, grad_steps: int, device: torch.device) -> tuple[int, int]:
    """Act epsilon-greedily, store in the replay, learn every `--train-frequency` agent steps; until the run stops.
    Returns the agent steps and gradient steps reached."""
    step_fn = compiled(gradient_step, device) if args.compile else gradient_step
    bf16 = args.bf16 and bf16_arithmetic(device)
    if args.bf16 and not bf16:
        print(f"{SCRIPT}.py: --bf16: this {device.type.upper()} has no bfloat16 arithmetic "
              f"({BF16_HARDWARE.get(device.type, 'none known')}): the gradient step runs in float32 (slower); pass "
              "--no-bf16 to skip this line", flush=True)
    obs, _ = envs.reset(seed=args.seed + global_step)  # a resume restarts the games, reseeded
    first, prev_done = np.ones(args.num_envs, bool), np.zeros(args.num_envs, bool)
    losses = {}
    while run.going(global_step):
        # ALGO LOGIC: act, step, store
        epsilon = epsilon_schedule(global_step)
        actions = epsilon_greedy(q_network, obs, epsilon, rng, device)
        obs, first, prev_done, played, info = step_and_store(envs, replay, obs, actions, first, prev_done)
        step_before, global_step = global_step, global_step + int(played.sum())  # a reset step is no agent step
        run.episodes_done(global_step, info)  # TRY NOT TO MODIFY: progress.csv and TensorBoard

        # ALGO LOGIC: one gradient step per --train-frequency agent steps, however many envs step at once
        if global_step >= args.learning_starts:
            while grad_steps <= (global_step - args.learning_starts) // args.train_frequency:
                grad_steps += 1
                batch = [torch.from_numpy(x).to(device) for x in replay.sample(args.batch_size, rng)]
                losses["losses/td_loss"], losses["losses/q_values"] = step_fn(
                    q_network, target_network, optimizer, *batch, bf16=bf16, double_q=args.double_q)
            if crossed(step_before, global_step, args.target_network_frequency):
                update_target(target_network, q_network, args.tau)

        # TRY NOT TO MODIFY: logging every 100 agent steps and at every start (a resume shows its epsilon), checkpoints
        if crossed(step_before, global_step, 100) or step_before == run.start_step:
            run.log(global_step, {"charts/SPS": run.sps(global_step), "charts/epsilon": epsilon,
                                  **{tag: float(value) for tag, value in losses.items()}})
        if run.checkpoint_due(global_step):
            save_checkpoint(args, q_network, target_network, optimizer, replay, epsilon_schedule, rng, run,
                            global_step, grad_steps)
        run.show(global_step, f" | eps {epsilon:.3f}")
    return global_step, grad_steps


# ---------------------------------------------------------------------------- checkpoints and evaluation
def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(args: Args, q_network: QNetwork, target_network: QNetwork, optimizer: torch.optim.Optimizer,
                    replay: FrameReplay, epsilon_schedule: LinearSchedule, rng: np.random.Generator, run: RunLog,
                    global_step: int, grad_steps: int) -> None:
    save_atomic({"script": SCRIPT, "args": asdict(args), "num_actions": q_network.num_actions,
                 "model": q_network.state_dict(), "target_model": target_network.state_dict(),
                 "optimizer": optimizer.state_dict(), "replay": replay.state_dict(), "global_step": global_step,
                 "grad_steps": grad_steps, "epsilon_schedule": asdict(epsilon_schedule), **run.state(),
                 "python_rng": random.getstate(), "numpy_rng": rng.bit_generator.state,
                 "torch_rng": torch.get_rng_state()}, run.run_dir / CHECKPOINT)


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag."""
    ckpt, p = read_checkpoint(path, flag, lambda f: torch.load(f, map_location="cpu", weights_only=True))
    checked_checkpoint(ckpt, path, flag, weights_only=isinstance(ckpt, dict) and "optimizer" not in ckpt)
    ckpt["args"].setdefault("double_q", False)  # written before the flags: the Nature target and head, all there was
    ckpt["args"].setdefault("dueling", False)
    ckpt["args"].setdefault("adam_eps", 1e-8)  # torch's default, all there was before the flag
    return ckpt, p


def saved_q_network(ckpt: dict, device: torch.device) -> QNetwork:
    """The Q-network a checkpoint (from `load_checkpoint`) holds, with the head it was trained with."""
    q_network = QNetwork(ckpt["num_actions"], ckpt["args"]["dueling"]).to(device)
    q_network.load_state_dict(ckpt["model"])
    return q_network


def pick_device(want_cuda: bool) -> torch.device:
    if want_cuda and not torch.cuda.is_available():
        print("CUDA not available: running on CPU")
    return torch.device("cuda" if want_cuda and torch.cuda.is_available() else "cpu")


def evaluate_checkpoint(args: Args, device: torch.device) -> None:
    """`--eval-checkpoint`: play the saved weights on the env they were trained on."""
    ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
    env_id = ckpt["args"]["env_id"]
    q_network = saved_q_network(ckpt, device)
    sticky, out_dir = eval_sticky(args, env_id), new_run_dir(args, env_id, "-eval")
    returns = evaluate(q_network, env_id, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, args.eval_epsilon,
                       sticky, device, out_dir / "videos" if args.capture_video else None)
    report_eval(out_dir, returns, path, env_id, sticky)


def evaluate(q_network: QNetwork, env_id: str, episodes: int, seed: int, epsilon: float, sticky: float,
             device: torch.device, video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` whole games; each env plays a fixed share, so that short games are not favoured."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(env_id, num_envs, sticky)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    returns, ep_return, prev_done = [], np.zeros(num_envs), np.zeros(num_envs, bool)
    q_network.eval()
    while (quota > 0).any():
        obs, reward, terminated, truncated, _ = envs.step(epsilon_greedy(q_network, obs, epsilon, rng, device))
        ep_return += reward * ~prev_done  # NextStep autoreset: a reset step's reward belongs to no episode
        done = terminated | truncated
        for e in np.flatnonzero(done & ~prev_done & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[done] = 0.0
        prev_done = done
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


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    device = pick_device(args.cuda)
    if args.eval_checkpoint is not None:
        return evaluate_checkpoint(args, device)
    ckpt, run_dir = open_run(args, load_checkpoint)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    rng = np.random.default_rng(args.seed)
    envs = make_env(args.env_id, args.num_envs)
    q_network = QNetwork(int(envs.single_action_space.n), args.dueling).to(device)
    target_network = QNetwork(q_network.num_actions, args.dueling).to(device)
    target_network.load_state_dict(q_network.state_dict())
    optimizer = torch.optim.Adam(q_network.parameters(), lr=args.learning_rate, eps=args.adam_eps)
    replay = FrameReplay(args.buffer_size, args.num_envs, args.n_step, args.gamma)
    # An old checkpoint without a saved epsilon schedule resumes the one its own total planned.
    planned = ckpt["args"]["total_timesteps"] if ckpt else args.total_timesteps
    epsilon_schedule = LinearSchedule(0, args.start_e, args.exploration_fraction * planned, args.end_e)
    global_step, grad_steps = 0, 0
    if ckpt is not None:
        if "bf16" not in ckpt["args"]:  # a run begun before --bf16 existed goes on in float32, as it began
            args.bf16 = False
        q_network.load_state_dict(ckpt["model"])
        target_network.load_state_dict(ckpt["target_model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        for group in optimizer.param_groups:  # the saved ones would override a flag given beside --resume
            group.update(lr=args.learning_rate, eps=args.adam_eps)
        replay.load_state_dict(ckpt["replay"])
        replay.cut_episodes()  # the emulators' state is not saved: the envs restart their games
        global_step, grad_steps = ckpt["global_step"], ckpt["grad_steps"]
        random.setstate(ckpt["python_rng"])
        rng.bit_generator.state = ckpt["numpy_rng"]
        torch.set_rng_state(ckpt["torch_rng"])
        epsilon_schedule = LinearSchedule(**ckpt.get("epsilon_schedule", asdict(epsilon_schedule))).resumed(
            global_step, ckpt["args"]["total_timesteps"], args.total_timesteps, "epsilon")
        print(f"resumed {run_dir} at step {global_step:,}, episode {ckpt['episode']}")

    from torch.utils.tensorboard import SummaryWriter

    run = RunLog(args, run_dir, ckpt, lambda logdir, purge_step: SummaryWriter(logdir, purge_step=purge_step))
    global_step, grad_steps = train(args, envs, q_network, target_network, optimizer, replay, epsilon_schedule, rng,
                                    run, global_step, grad_steps, device)
    save_checkpoint(args, q_network, target_network, optimizer, replay, epsilon_schedule, rng, run, global_step,
                    grad_steps)
    envs.close()
    run.close(global_step)

    final = run_dir / "final_model.pt"
    save_atomic({"script": SCRIPT, "args": asdict(args), "num_actions": q_network.num_actions,
                 "model": q_network.state_dict(), "global_step": global_step}, final)
    sticky = eval_sticky(args, args.env_id)
    returns = evaluate(q_network, args.env_id, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, args.eval_epsilon,
                       sticky, device, run_dir / "videos" if args.capture_video else None)
    run.finish(global_step, report_eval(run_dir, returns, final, args.env_id, sticky))


# ================================================================================================ run plumbing
# Boring book-keeping, the same text in all four scripts from this line to the end (a test fails when the copies
# differ): bad flags, the run dir, progress.csv, TensorBoard, the progress line, signals, resume, eval.json. It needs
# neither torch nor NumPy; what does (checkpoints, the TensorBoard writer) is above.
EVAL_SEED_OFFSET = 10_000  # evaluation games differ from the training games, and match between the two eval paths


class BadInput(Exception):
    """A flag value that type-checks but makes no sense: reported as one line on stderr, exit code 2."""


def need(ok: bool, flag: str, allowed: str, value) -> None:
    if not ok:
        raise BadInput(f"{flag} {value!r}: must be {allowed}")


def check_run_args(args: Args) -> None:
    """The checks of the flags that every script has; each script's `check_args` adds its algorithm's."""
    need(args.total_timesteps > 0, "--total-timesteps", "a positive number of agent steps", args.total_timesteps)
    need(args.eval_checkpoint is None or args.resume is None, "--eval-checkpoint", "used without --resume",
         args.eval_checkpoint)
    need(args.save_every > 0, "--save-every", "a positive number of agent steps", args.save_every)
    need(args.eval_episodes > 0, "--eval-episodes", "at least 1", args.eval_episodes)
    need(args.eval_sticky is None or 0 <= args.eval_sticky < 1, "--eval-sticky", "in [0, 1)", args.eval_sticky)
    need(not args.track or importlib.util.find_spec("wandb") is not None, "--track",
         "used with Weights & Biases installed (pip install wandb)", args.track)


def ale_game(env_id: str) -> dict:
    """The ALE settings behind a Gymnasium id registered by ale-py, checked to be an Atari game with pixel frames,
    the sticky-action probability filled in: e.g. PongNoFrameskip-v4 -> pong, frameskip 1, sticky actions 0."""
    gym.register_envs(ale_py)
    try:
        kwargs = dict(gym.spec(env_id).kwargs)
    except gym.error.Error:
        raise BadInput(f"--env-id {env_id!r}: not a Gymnasium id registered by ale-py "
                       "(e.g. PongNoFrameskip-v4, ALE/Pong-v5)") from None
    if "game" not in kwargs:
        raise BadInput(f"--env-id {env_id!r}: must be an ale-py Atari id (e.g. PongNoFrameskip-v4, ALE/Pong-v5)")
    if kwargs.get("obs_type", "rgb") != "rgb":
        raise BadInput(f"--env-id {env_id!r}: observations are {kwargs['obs_type']!r}; 210x160x3 RGB frames needed")
    return {**kwargs, "repeat_action_probability": kwargs.get("repeat_action_probability", 0.25)}


def eval_sticky(args: Args, env_id: str) -> float:
    """The sticky-action probability an evaluation plays with: `--eval-sticky`, or else the env id's own."""
    return ale_game(env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky


def parse_args(argv: list[str]) -> Args:
    """The command line; with `--resume`, the run's saved settings (its args.json) are the defaults, so a resume
    continues the run as it was started and a flag typed beside `--resume` still wins."""
    resume = next((a.split("=", 1)[1] for a in argv if a.startswith("--resume=")), None)
    if resume is None and "--resume" in argv[:-1]:
        resume = argv[argv.index("--resume") + 1]
    saved = {}
    if resume is not None:
        try:  # a missing args.json is said by `open_run`, once the checkpoint itself has loaded
            saved = json.loads(((Path(resume) if Path(resume).is_dir() else Path(resume).parent) / "args.json")
                               .read_text())
        except (OSError, ValueError):
            pass
    settings = {f.name for f in fields(Args)} - {"resume", "eval_checkpoint", "run_dir"}
    saved = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items() if k in settings}  # JSON's tuples
    return tyro.cli(Args, args=argv, default=Args(**saved))


def new_run_dir(args: Args, env_id: str, kind: str = "") -> Path:
    return Path(args.run_dir or f"runs/{env_id.replace('/', '-')}__{args.exp_name}{kind}__{args.seed}__"
                                f"{int(time.time())}")


def open_run(args: Args, load_checkpoint) -> tuple[Optional[dict], Path]:
    """A new run's dir, or the checkpoint and dir of the run that `--resume` names, once checked that it can go on
    with these settings (`RESUME_MUST_MATCH`). A run already at `--total-timesteps` has nothing to do: exit 0."""
    if args.resume is None:
        run_dir = new_run_dir(args, args.env_id)
        if (run_dir / CHECKPOINT).exists():
            raise BadInput(f"--run-dir {str(run_dir)!r}: holds a run already; use --resume {run_dir} to continue it")
        return None, run_dir
    ckpt, path = load_checkpoint(args.resume, "--resume")
    for name in RESUME_MUST_MATCH:
        if ckpt["args"][name] != getattr(args, name):
            raise BadInput(f"--{name.replace('_', '-')} {getattr(args, name)!r}: the checkpoint was trained with "
                           f"{ckpt['args'][name]!r}; resume with the same value")
    if ckpt["global_step"] >= args.total_timesteps:
        print(f"{path} is at step {ckpt['global_step']:,} of --total-timesteps {args.total_timesteps:,}: nothing "
              "to do (a larger --total-timesteps trains on)")
        sys.exit(0)
    if not (path.parent / "args.json").is_file():
        print(f"note: no args.json beside {path}: resuming with the flags given and the defaults", file=sys.stderr)
    return ckpt, path.parent


def read_checkpoint(path: str, flag: str, load) -> tuple[object, Path]:
    """The checkpoint a flag names (the file, or `CHECKPOINT` in the run dir named) as `load(file)` reads it."""
    p = Path(path) / CHECKPOINT if Path(path).is_dir() else Path(path)
    if not p.is_file():
        raise BadInput(f"{flag} {path!r}: no such checkpoint file")
    try:
        return load(p), p
    except Exception:
        raise BadInput(f"{flag} {path!r}: not a readable {SCRIPT}.py checkpoint (truncated, or written by another "
                       "script)") from None


def checked_checkpoint(ckpt, path: str, flag: str, weights_only: bool) -> dict:
    """A loaded checkpoint, if this script wrote it and, for `--resume`, it holds more than the weights."""
    if not isinstance(ckpt, dict) or ckpt.get("script") != SCRIPT:
        other = ckpt.get("script") if isinstance(ckpt, dict) else None
        raise BadInput(f"{flag} {path!r}: checkpoint written by {other or 'something else'}, not {SCRIPT}.py")
    if flag == "--resume" and weights_only:
        raise BadInput(f"{flag} {path!r}: holds weights only (a final model); resume from {CHECKPOINT}")
    return ckpt


def catch_stop_signals() -> list[int]:
    """From now on Ctrl-C and SIGTERM only note themselves in the returned list, which the loop checks."""
    caught: list[int] = []
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda s, f: caught.append(s))
    return caught


class RunLog:
    """A training run's outputs besides its checkpoints, and when it stops: the run dir with args.json and
    commands.txt (every start, resumes included); progress.csv and TensorBoard, one row per finished episode (a
    resume drops the rows logged after its checkpoint); a progress line; the stop at `--total-timesteps`,
    `--target-return` or Ctrl-C/SIGTERM."""

    def __init__(self, args: Args, run_dir: Path, ckpt: Optional[dict], make_writer, extra_columns: tuple = (),
                 stop_signal: Optional[list[int]] = None):
        self.args, self.run_dir, self.shown, self.reached_target = args, run_dir, 0.0, False
        self.stop_signal = catch_stop_signals() if stop_signal is None else stop_signal
        self.episode, self.recent = (ckpt["episode"], list(ckpt["recent_returns"])) if ckpt else (0, [])
        self.wall_before, self.start_step = (ckpt["wall_time_s"], ckpt["global_step"]) if ckpt else (0.0, 0)
        self.start, self.next_save = time.time(), (self.start_step // args.save_every + 1) * args.save_every
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
        with open(run_dir / "commands.txt", "a") as f:
            f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} python {SCRIPT}.py {shlex.join(sys.argv[1:])}\n")
        if args.track:
            import wandb

            wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=asdict(args),
                       name=run_dir.name, dir=str(run_dir), resume="allow")
        self.writer = make_writer(str(run_dir), self.start_step if ckpt else None)
        self.writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" +
                             "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
        kept, csv_path = [], run_dir / "progress.csv"
        if ckpt is not None and csv_path.exists():
            with open(csv_path, newline="") as f:
                kept = [row for row in list(csv.reader(f))[1:] if int(row[1]) <= self.episode]
        self.csv_file = open(csv_path, "w", newline="")
        self.csv = csv.writer(self.csv_file)
        self.csv.writerows([["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps",
                             *extra_columns], *kept])
        self.csv_file.flush()

    @property
    def stopped(self) -> bool:
        return bool(self.stop_signal)

    def going(self, global_step: int) -> bool:
        return global_step < self.args.total_timesteps and not self.stop_signal and not self.reached_target

    def sps(self, global_step: int) -> float:
        return (global_step - self.start_step) / max(time.time() - self.start, 1e-9)

    def wall_time(self) -> float:
        return self.wall_before + time.time() - self.start

    def mean_recent(self) -> float:
        return statistics.fmean(self.recent[-100:]) if self.recent else math.nan

    def episode_done(self, global_step: int, episodic_return: float, episodic_length: int, *extra) -> None:
        self.episode += 1
        self.recent.append(float(episodic_return))
        self.csv.writerow([global_step, self.episode, episodic_return, episodic_length, f"{self.wall_time():.1f}",
                           f"{self.sps(global_step):.1f}", *extra])
        self.csv_file.flush()
        self.log(global_step, {"charts/episodic_return": episodic_return, "charts/episodic_length": episodic_length})
        target = self.args.target_return
        self.reached_target |= target is not None and len(self.recent) >= 100 and self.mean_recent() >= target

    def episodes_done(self, global_step: int, info: dict) -> None:
        """The episodes that gymnasium's `RecordEpisodeStatistics` says ended at this vector step."""
        for e in (i for i, ended in enumerate(info.get("_episode", ())) if ended):
            self.episode_done(global_step, float(info["episode"]["r"][e]), int(info["episode"]["l"][e]))

    def log(self, global_step: int, scalars: dict) -> None:
        for tag, value in scalars.items():
            self.writer.add_scalar(tag, value, global_step)

    def checkpoint_due(self, global_step: int) -> bool:
        due, self.next_save = global_step >= self.next_save, max(
            self.next_save, (global_step // self.args.save_every + 1) * self.args.save_every)
        return due

    def state(self) -> dict:
        """What a checkpoint keeps of this log, so that a resume continues the curves where they stopped."""
        return {"episode": self.episode, "recent_returns": self.recent[-100:], "wall_time_s": self.wall_time()}

    def show(self, global_step: int, extra: str = "") -> None:
        """The progress line: redrawn twice a second on a terminal, a plain line every 30 s otherwise."""
        tty, now, total, sps = sys.stdout.isatty(), time.time(), self.args.total_timesteps, self.sps(global_step)
        if now - self.shown < (0.5 if tty else 30.0):
            return
        self.shown, left = now, time.strftime("%H:%M:%S", time.gmtime((total - global_step) / max(sps, 1e-9)))
        line = (f"step {global_step:,}/{total:,} ({100 * global_step / total:5.1f}%) | {sps:6.0f} SPS | left "
                f"{left if sps > 0 else '?'} | mean-100 return {self.mean_recent():6.2f} | episodes {self.episode}"
                + extra)
        print(("\r" + line + "   ") if tty else line, end="" if tty else "\n", flush=True)

    def close(self, global_step: int) -> None:
        """After the run's last checkpoint. A signal stopped it: exit 128 + its number with the line that resumes
        it. Otherwise Ctrl-C interrupts as usual from here on (the final evaluation)."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        print("\n" * sys.stdout.isatty(), end="")
        self.csv_file.close()
        if self.stop_signal:
            self.writer.close()
            print(f"stopped by signal {self.stop_signal[0]} at step {global_step:,}; checkpoint written. Resume "
                  f"with: python {SCRIPT}.py --resume {shlex.quote(str(self.run_dir))}", file=sys.stderr)
            sys.exit(128 + self.stop_signal[0])

    def finish(self, global_step: int, report: dict) -> None:
        self.log(global_step, {"eval/mean_return": report["mean"]})
        self.writer.close()
        print(f"{'reached --target-return' if self.reached_target else 'done'}: {global_step:,} steps, "
              f"{self.episode} episodes, {self.wall_time():.0f} s -> {self.run_dir}")


def report_eval(out_dir: Path, returns: list[float], checkpoint: Path, env_id: str, sticky: float, **details) -> dict:
    """eval.json (the episodes' returns, their statistics, what was played) and one line saying so."""
    report = {"env_id": env_id, "sticky": sticky, **details, "episodes": len(returns),
              "mean": statistics.fmean(returns), "std": statistics.pstdev(returns), "min": min(returns),
              "max": max(returns), "returns": returns, "checkpoint": str(checkpoint)}
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"eval {checkpoint}: {len(returns)} episodes of {env_id} (sticky actions {sticky:g}), return "
          f"{report['mean']:.2f} ± {report['std']:.2f} (min {report['min']:.0f}, max {report['max']:.0f}) -> "
          f"{out_dir / 'eval.json'}")
    return report


@dataclass
class LinearSchedule:
    """A value (epsilon, an annealed learning rate) that moves linearly from `start_value` at agent step
    `start_step` to `end_value` at `end_step`, then stays. Saved in checkpoints, so a resume continues it."""
    start_step: int
    start_value: float
    end_step: float
    end_value: float

    def __call__(self, step: int) -> float:
        if step >= self.end_step:
            return self.end_value
        return self.start_value + (self.end_value - self.start_value) * (step - self.start_step) / (
            self.end_step - self.start_step)

    def resumed(self, step: int, old_total: int, new_total: int, name: str) -> LinearSchedule:
        """After a resume at `step` with another `--total-timesteps`: from the value reached, what remains is
        stretched (or squeezed) in proportion to the steps left, so it never jumps; a finished one stays."""
        if new_total == old_total:
            return self
        if step >= self.end_step:
            print(f"--total-timesteps changed: the {name} schedule had finished; it stays at {self.end_value:.4g}")
            return self
        end = step + (self.end_step - step) * (new_total - step) / max(old_total - step, 1)
        print(f"--total-timesteps changed: {name} {self(step):.4g} at step {step:,} reaches {self.end_value:.4g} "
              f"at step {end:,.0f}")
        return LinearSchedule(step, self(step), end, self.end_value)


if __name__ == "__main__":
    try:
        main(parse_args(sys.argv[1:]))
    except BadInput as e:
        print(f"{SCRIPT}.py: error: {e}", file=sys.stderr)
        sys.exit(2)
