"""PPO-clip with an MLP that learns Atari Pong from Karpathy-style difference frames, on CPU.

Lineage: Karpathy's "Pong from Pixels" (2016: crop, downsample, erase background, binarize, one
hidden layer, two actions) made into PPO by the seed `../shared/seeds/000_*.txt` (PyTorch, 6000
inputs, hidden 512, UP/DOWN, clip 0.1, gamma 0.99, Adam 1e-3, returns reset at each point and
standardised over the batch, no critic, 5 epochs; it reports +14 after 4000 episodes), with the
algorithm, flag names and logging of CleanRL's `ppo_atari.py` (Huang et al., "The 37
implementation details of PPO"). Usage: `python ppo_mlp.py` (see `--help`); the reported score,
its command and curve are in `benchmark/RESULTS.md`.

Preprocessing is Karpathy's, batched in NumPy on ale-py's threaded C++ `AtariVectorEnv`, which
returns raw 210x160 grayscale screens (no resize, no stack, no max-pool; 30 random no-ops and FIRE
on reset; each action repeated `--frameskip` times). Each screen is cropped to rows 35..194,
every second row and column is kept, both of the court's background colours (gray 87 and 107,
the seed's red values 144 and 109; Pong draws some episodes' first frames in the second) are erased
and everything else set to 1: an 80x80 binary image. The input is the difference of the last two
such images (int8 in {-1, 0, 1}; the first of an episode is the image itself). An MLP has no
convolutions and no frame stack, so the difference frame is what shows it the ball's motion;
Karpathy's preprocessing is what the seed and this MLP were designed for, so the DeepMind stack
(84x84 stacks of 4, for a CNN) is not used. 80x80 (Karpathy's crop 35:195), not the seed's 75x80
(crop 35:185): the court spans screen rows 34..193 and the seed's crop cuts off its bottom 9 rows,
where the ball and both paddles still play (`--crop-bottom 185` gives the seed's 6000 inputs).

The network: 6400 inputs -> 512 ReLU -> 2 logits (UP, DOWN; env actions 2, 3) and a value head
on the same hidden layer. A binary difference frame has ~10-60 non-zero pixels of 6400, so the
first layer is computed as a weighted sum of the weight rows of the non-zero pixels
(`F.embedding_bag`): the same function as `nn.Linear` (tested). Measured on this 2-core machine
(1 torch thread, under a background training run): forward+backward of a 256-row minibatch 6.5 ms
instead of 44 ms dense, and Adam's fused CPU kernel steps the 3.3M weights in 1.4 ms instead of
6-10 ms, so an update no longer dominates the loop.

Defaults, and why (every seed setting stays reachable; the seed's run is roughly
`--advantages point-returns --no-norm-adv --ent-coef 0 --learning-rate 1e-3 --no-anneal-lr
--max-grad-norm 0 --update-epochs 5 --num-minibatches 1 --num-envs 1 --num-steps 8192
--frameskip 1 --crop-bottom 185`):
- A value head and GAE (gamma 0.99, lambda 0.95) instead of the seed's per-point returns: the
  advantage is then available for every step of a fixed-length rollout, so updates come every
  `--num-envs` x `--num-steps` steps instead of every 10 whole games, and the variance is lower
  (GAE paper; CleanRL's Pong runs). `--advantages point-returns` is the seed's estimator: a
  rollout's steps after its last point have no return yet and are left out of that update.
- CleanRL's Atari PPO settings otherwise (8 envs x 128 steps, 4 epochs of 4 minibatches, Adam
  2.5e-4 annealed to 0, entropy 0.01, value coefficient 0.5, value clipping, grad norm 0.5,
  per-minibatch advantage normalisation): tested on Pong by CleanRL (~+20 in 10M frames) and by
  the PPO paper; clip 0.1 is both theirs and the seed's.
- `--frameskip 4` (the seed played every frame): 4x fewer decisions and updates per second of
  game, as in every Atari PPO/DQN result; a lost game (0-21) is ~820 agent steps instead of ~3300.
- `--torch-threads 1`: the per-step inference and the sparse update are small ops that a second
  thread slows down (embedding-bag step 6.5 ms on 1 thread, 75 ms on 2 with the env threads and
  a background run competing for the 2 cores).
Evidence for these defaults: the reported run, its curve and its command in benchmark/RESULTS.md.

Rollouts are stored per vector step: under NextStep autoreset the step after an episode's end
only resets that env and ignores its action, so it is no agent step (not counted, left out of
the loss, and GAE does not carry advantages across it). A truncated episode's final value is
bootstrapped from the final frame, which that reset step holds.
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
from typing import Literal, Optional

import ale_py
import gymnasium as gym
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT = "ppo_mlp"


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch and the environments"""
    env_id: str = "PongNoFrameskip-v4"
    """a Gymnasium id registered by ale-py; Pong only (the preprocessing knows Pong's court and colours)"""
    total_timesteps: int = 10_000_000
    """agent steps (environment steps after frame skip, summed over envs) to train for"""
    cuda: bool = True
    """use CUDA when present"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic`"""
    torch_threads: int = 1
    """torch CPU threads (1 is fastest for these small sparse ops on 2 cores, see the docstring)"""
    capture_video: bool = False
    """record one evaluation episode to `<run-dir>/videos/`"""
    track: bool = False
    """log to Weights & Biases (imported only when asked)"""
    wandb_project_name: str = "pong-from-pixels"
    """W&B project, with `--track`"""
    save_every: int = 100_000
    """checkpoint period in agent steps"""
    resume: Optional[str] = None
    """continue a run from a checkpoint (a `checkpoint.pt` or the run dir holding it)"""
    eval_checkpoint: Optional[str] = None
    """no training: load this checkpoint (or `final_model.pt`), play `--eval-episodes` episodes, report"""
    eval_episodes: int = 10
    """episodes for the final and the `--eval-checkpoint` evaluation"""
    eval_sticky: Optional[float] = None
    """evaluate with this sticky-action probability, not the env's own (0.25: Machado et al. 2018; 0: none)"""
    eval_deterministic: bool = False
    """evaluate with the most probable action instead of sampling as in training (the seed's `deterministic`)"""
    run_dir: Optional[str] = None
    """where outputs go; default `runs/<env>__<exp-name>__<seed>__<unix-time>`"""
    target_return: Optional[float] = None
    """stop early once the mean of the last 100 episodic returns reaches this (the seed reported 14)"""

    frameskip: int = 4
    """action repeat: emulator frames per agent step (the seed played every frame: 1)"""
    crop_bottom: int = 195
    """screen rows 35..crop-bottom-1 are kept, every second one: 195 gives 80x80 (Karpathy), 185 the seed's 75x80"""
    num_envs: int = 8
    """parallel environments (ale-py's threaded C++ vector env)"""
    num_steps: int = 128
    """vector steps per rollout; the batch is num-envs x num-steps"""
    learning_rate: float = 2.5e-4
    """Adam learning rate"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over `--total-timesteps`"""
    gamma: float = 0.99
    """discount factor"""
    advantages: Literal["gae", "point-returns"] = "gae"
    """gae: value head and GAE; point-returns: the seed's returns, reset at each point and standardised, no critic"""
    gae_lambda: float = 0.95
    """lambda of GAE"""
    num_minibatches: int = 4
    """minibatches per epoch; must divide the batch"""
    update_epochs: int = 4
    """epochs over each batch"""
    norm_adv: bool = True
    """normalise advantages within each minibatch"""
    clip_coef: float = 0.1
    """the surrogate clipping coefficient epsilon: ratios outside [1-eps, 1+eps] earn nothing"""
    clip_vloss: bool = True
    """clip the value loss around the rollout's values, as CleanRL does"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    vf_coef: float = 0.5
    """value loss coefficient"""
    max_grad_norm: float = 0.5
    """global gradient norm clip (0: no clipping, as the seed)"""
    target_kl: Optional[float] = None
    """stop an update's epochs early once the approximate KL exceeds this"""


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
    need(args.num_steps > 0, "--num-steps", "at least 1", args.num_steps)
    batch = args.num_envs * args.num_steps
    need(args.num_minibatches > 0 and batch % args.num_minibatches == 0, "--num-minibatches",
         f"a divisor of the batch, --num-envs x --num-steps = {batch}", args.num_minibatches)
    need(args.update_epochs > 0, "--update-epochs", "at least 1", args.update_epochs)
    need(0 < args.clip_coef < 1, "--clip-coef", "in (0, 1)", args.clip_coef)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(0 <= args.gae_lambda <= 1, "--gae-lambda", "in [0, 1]", args.gae_lambda)
    need(args.ent_coef >= 0, "--ent-coef", "at least 0", args.ent_coef)
    need(args.vf_coef >= 0, "--vf-coef", "at least 0", args.vf_coef)
    need(args.max_grad_norm >= 0, "--max-grad-norm", "at least 0 (0: no clipping)", args.max_grad_norm)
    need(args.target_kl is None or args.target_kl > 0, "--target-kl", "positive", args.target_kl)
    need(args.save_every > 0, "--save-every", "a positive number of agent steps", args.save_every)
    need(args.eval_episodes > 0, "--eval-episodes", "at least 1", args.eval_episodes)
    need(args.frameskip >= 1, "--frameskip", "at least 1", args.frameskip)
    need(37 <= args.crop_bottom <= 210, "--crop-bottom", "in 37..210 (195: 80x80, 185: the seed's 75x80)",
         args.crop_bottom)
    need(args.torch_threads >= 1, "--torch-threads", "at least 1", args.torch_threads)
    ale_game(args.env_id)
    need(args.eval_sticky is None or 0 <= args.eval_sticky < 1, "--eval-sticky", "in [0, 1)", args.eval_sticky)
    if args.track and importlib.util.find_spec("wandb") is None:
        raise BadInput("--track: needs Weights & Biases (pip install wandb)")


# ---------------------------------------------------------------------------- environment
CROP_TOP = 35
# Pong's court has two colours (the second on some episodes' first frames): in ale-py's grayscale
# screen 87 and 107, in an RGB screen's red channel 144 and 109 (the seed's values).
BACKGROUND_GRAY = (87, 107)
BACKGROUND_RED = (144, 109)
UP_DOWN = np.array([2, 3])  # Pong's minimal action set: NOOP, FIRE, RIGHT (up), LEFT (down), ...


def ale_game(env_id: str) -> dict:
    """The ALE settings behind a registered Gymnasium id, e.g. PongNoFrameskip-v4 -> pong, no sticky actions."""
    gym.register_envs(ale_py)
    try:
        kwargs = gym.spec(env_id).kwargs
    except gym.error.Error:
        raise BadInput(f"--env-id {env_id!r}: not a Gymnasium id registered by ale-py "
                       "(e.g. PongNoFrameskip-v4, ALE/Pong-v5)") from None
    if kwargs.get("game") != "pong" or kwargs.get("obs_type", "rgb") != "rgb":
        raise BadInput(f"--env-id {env_id!r}: must be a Pong id with pixel observations (e.g. PongNoFrameskip-v4, "
                       "ALE/Pong-v5): the preprocessing knows Pong's court and colours")
    return {"game": kwargs["game"], "repeat_action_probability": kwargs.get("repeat_action_probability", 0.25)}


def make_env(env_id: str, num_envs: int, frameskip: int, sticky: Optional[float] = None):
    """Raw 210x160 grayscale Pong screens from ale-py's threaded vector env: observations (num_envs, 1, 210, 160).
    `sticky`, when given, replaces the env id's sticky-action probability."""
    game = ale_game(env_id)
    if sticky is not None:
        game["repeat_action_probability"] = sticky
    return ale_py.vector_env.AtariVectorEnv(
        num_envs=num_envs, **game, frameskip=frameskip, stack_num=1, img_height=210, img_width=160,
        grayscale=True, maxpool=False, noop_max=30, use_fire_reset=True, episodic_life=False,
        reward_clipping=False, autoreset_mode="NextStep")


def num_inputs(crop_bottom: int) -> int:
    return len(range(CROP_TOP, crop_bottom, 2)) * 80


def preprocess(screens: np.ndarray, crop_bottom: int = 195,
               background: tuple[int, int] = BACKGROUND_GRAY) -> np.ndarray:
    """Karpathy's prepro, batched: (N, 210, 160) screens -> (N, rows * 80) int8 in {0, 1}.

    Crop rows 35..crop_bottom-1, keep every second row and column, erase both background colours, set the
    rest (paddles, ball) to 1. `background` is BACKGROUND_GRAY for ale-py's grayscale screens, BACKGROUND_RED
    for an RGB screen's red channel.
    """
    crop = screens[:, CROP_TOP:crop_bottom:2, ::2]
    image = (crop != background[0]) & (crop != background[1])
    return image.reshape(len(screens), -1).view(np.int8)


class DifferenceFrames:
    """The policy's input per env: this image minus the previous one; an episode's first image stands alone."""

    def __init__(self, num_envs: int, crop_bottom: int, background: tuple[int, int] = BACKGROUND_GRAY):
        self.crop_bottom, self.background = crop_bottom, background
        self.prev = np.zeros((num_envs, num_inputs(crop_bottom)), np.int8)
        self.diff = torch.zeros((num_envs, num_inputs(crop_bottom)), dtype=torch.int8)
        self._diff = self.diff.numpy()  # shares memory: written in place, no new tensor per step

    def __call__(self, screens: np.ndarray, new_episode: np.ndarray) -> torch.Tensor:
        image = preprocess(screens, self.crop_bottom, self.background)
        self.prev[new_episode] = 0
        np.subtract(image, self.prev, out=self._diff)
        self.prev = image
        return self.diff


# ---------------------------------------------------------------------------- model
class Agent(nn.Module):
    """MLP: difference frame -> 512 ReLU -> logits for UP/DOWN, and a value head on the same hidden layer.

    The first layer is an `nn.Linear(inputs, 512)` stored input-major (`w1[p]` is pixel p's weights) and
    computed from the non-zero pixels only; `hidden` equals `relu(x @ w1 + b1)` up to float rounding.
    """

    def __init__(self, inputs: int, hidden: int = 512, num_actions: int = 2):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(inputs, hidden) / math.sqrt(inputs))  # Karpathy's Xavier init
        self.b1 = nn.Parameter(torch.zeros(hidden))
        self.actor = nn.Linear(hidden, num_actions)
        self.critic = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.actor.weight, 0.01)  # CleanRL: a near-uniform first policy
        nn.init.zeros_(self.actor.bias)
        nn.init.orthogonal_(self.critic.weight, 1.0)
        nn.init.zeros_(self.critic.bias)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        rows, cols = x.nonzero(as_tuple=True)  # row-major: each row's pixels are contiguous, as bags need
        counts = torch.bincount(rows, minlength=len(x))
        h = F.embedding_bag(cols, self.w1, counts.cumsum(0) - counts, mode="sum",
                            per_sample_weights=x[rows, cols].to(self.w1.dtype))
        return F.relu(h + self.b1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, actions), values (B,)) for int8 difference frames (B, inputs)."""
        h = self.hidden(x)
        return self.actor(h), self.critic(h).squeeze(1)


def act(agent: Agent, x: torch.Tensor, deterministic: bool = False):
    """Actions, their log-probabilities and the values for a batch of frames (no gradient)."""
    with torch.no_grad():
        logits, values = agent(x)
        logp = F.log_softmax(logits, dim=1)
        if deterministic:
            actions = logits.argmax(dim=1)
        else:
            actions = torch.multinomial(logp.exp(), 1).squeeze(1)
        return actions, logp.gather(1, actions[:, None]).squeeze(1), values


# ---------------------------------------------------------------------------- returns and advantages
def compute_gae(rewards, values, next_value, terminated, dones, gamma: float, gae_lambda: float):
    """GAE over a (T, N) rollout; returns (advantages, returns = advantages + values).

    `dones` = terminated | truncated at that step. After a termination nothing is bootstrapped; after a
    truncation the next row's value (the final frame, which NextStep autoreset's reset step holds) is.
    The advantage never carries across an episode end. `next_value` (N,) is the value after the last row.
    """
    T = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(T)):
        next_v = next_value if t == T - 1 else values[t + 1]
        delta = rewards[t] + gamma * next_v * (~terminated[t]) - values[t]
        last = delta + gamma * gae_lambda * (~dones[t]) * last
        advantages[t] = last
    return advantages, advantages + values


def point_returns(rewards, dones, gamma: float):
    """The seed's returns over a (T, N) rollout: discounted, reset at each point (non-zero reward) and episode end.

    Returns (returns, known): a step is known once a point or an episode end follows it within the rollout.
    """
    T = rewards.shape[0]
    returns = torch.zeros_like(rewards)
    known = torch.zeros_like(dones)
    running = torch.zeros_like(rewards[0])
    seen = torch.zeros_like(dones[0])
    for t in reversed(range(T)):
        ends = (rewards[t] != 0) | dones[t]
        running = rewards[t] + gamma * running * ~ends
        seen = seen | ends
        returns[t], known[t] = running, seen
    return returns, known


def standardise(x: torch.Tensor) -> torch.Tensor:
    return (x - x.mean()) / (x.std() + 1e-8) if len(x) > 1 else x - x.mean()


# ---------------------------------------------------------------------------- losses and update
def clipped_surrogate(ratio: torch.Tensor, advantages: torch.Tensor, clip_coef: float) -> torch.Tensor:
    """Per-sample PPO-clip policy loss: -min(r A, clip(r, 1-eps, 1+eps) A)."""
    return torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef))


def ppo_loss(agent: Agent, mb: dict, args: Args) -> tuple[torch.Tensor, dict]:
    """The PPO loss on one minibatch (obs, actions, logprobs, values, advantages, returns); stats for logging."""
    logits, new_values = agent(mb["obs"])
    logp_all = F.log_softmax(logits, dim=1)
    new_logp = logp_all.gather(1, mb["actions"][:, None]).squeeze(1)
    entropy = -(logp_all.exp() * logp_all).sum(1).mean()
    logratio = new_logp - mb["logprobs"]
    ratio = logratio.exp()
    advantages = standardise(mb["advantages"]) if args.norm_adv else mb["advantages"]
    pg_loss = clipped_surrogate(ratio, advantages, args.clip_coef).mean()
    loss = pg_loss - args.ent_coef * entropy
    if args.advantages == "gae":
        if args.clip_vloss:
            v_clipped = mb["values"] + torch.clamp(new_values - mb["values"], -args.clip_coef, args.clip_coef)
            v_loss = 0.5 * torch.max((new_values - mb["returns"]) ** 2, (v_clipped - mb["returns"]) ** 2).mean()
        else:
            v_loss = 0.5 * ((new_values - mb["returns"]) ** 2).mean()
        loss = loss + args.vf_coef * v_loss
    else:
        v_loss = torch.zeros(())
    with torch.no_grad():
        stats = {"policy_loss": pg_loss, "value_loss": v_loss, "entropy": entropy,
                 "old_approx_kl": (-logratio).mean(), "approx_kl": ((ratio - 1) - logratio).mean(),
                 "clipfrac": ((ratio - 1).abs() > args.clip_coef).float().mean(), "ratio": ratio}
    return loss, stats


def ppo_update(agent: Agent, optimizer: torch.optim.Optimizer, batch: dict, use: torch.Tensor, args: Args) -> dict:
    """`--update-epochs` epochs of `--num-minibatches` shuffled minibatches over the batch rows where `use` is true.

    Rows left out (reset steps, and for point-returns the steps with no return yet) are dropped before shuffling,
    so a minibatch may be a row short of batch / num-minibatches. Returns the mean stats over all minibatches.
    """
    rows = use.nonzero().squeeze(1)
    if len(rows) == 0:
        return {}
    keys = ("policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac")
    totals, count = torch.zeros(len(keys)), 0
    for _ in range(args.update_epochs):
        epoch_kl, epoch_count = 0.0, 0
        for idx in rows[torch.randperm(len(rows), device=rows.device)].tensor_split(args.num_minibatches):
            if len(idx) == 0:
                continue
            loss, stats = ppo_loss(agent, {k: v[idx] for k, v in batch.items()}, args)
            optimizer.zero_grad(set_to_none=False)
            loss.backward()
            if args.max_grad_norm > 0:
                nn.utils.clip_grad_norm_(agent.parameters(), args.max_grad_norm)
            optimizer.step()
            totals += torch.stack([stats[k].float().cpu() for k in keys])
            count += 1
            epoch_kl += float(stats["approx_kl"])
            epoch_count += 1
        if args.target_kl is not None and epoch_kl / epoch_count > args.target_kl:
            break
    return dict(zip(keys, (totals / count).tolist()))


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


def evaluate(agent: Agent, args: Args, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games; each env plays its fixed share, so short games are not favoured."""
    torch.manual_seed(seed)  # the sampled actions, so that the same seed replays the same games
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(args.env_id, num_envs, args.frameskip, args.eval_sticky)
    screens, _ = envs.reset(seed=seed)
    frames = DifferenceFrames(num_envs, args.crop_bottom)
    x = frames(screens[:, 0], np.ones(num_envs, bool))
    returns, ep_return, done_before = [], np.zeros(num_envs), np.zeros(num_envs, bool)
    while (quota > 0).any():
        actions, _, _ = act(agent, x.to(device), args.eval_deterministic)
        screens, reward, terminated, truncated, _ = envs.step(UP_DOWN[actions.cpu().numpy()])
        ep_return += reward * ~done_before
        done = terminated | truncated
        for e in np.flatnonzero(done & ~done_before & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[done] = 0.0
        x = frames(screens[:, 0], done_before)
        done_before = done
    envs.close()
    if video_dir is not None:
        record_video(agent, args, seed, device, video_dir)
    return returns


def record_video(agent: Agent, args: Args, seed: int, device: torch.device, video_dir: Path) -> None:
    """One episode in a rendering Gymnasium env with the same preprocessing (on the red channel), as MP4."""
    import cv2

    env = gym.make(args.env_id, render_mode="rgb_array", frameskip=args.frameskip)
    video_dir.mkdir(parents=True, exist_ok=True)
    screen, _ = env.reset(seed=seed)
    frames = DifferenceFrames(1, args.crop_bottom, BACKGROUND_RED)
    x = frames(screen[None, ..., 0], np.ones(1, bool))
    writer = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15,
                             (screen.shape[1], screen.shape[0]))
    done = False
    while not done:
        writer.write(cv2.cvtColor(env.render(), cv2.COLOR_RGB2BGR))
        action, _, _ = act(agent, x.to(device), args.eval_deterministic)
        screen, _, terminated, truncated, _ = env.step(int(UP_DOWN[int(action)]))
        x = frames(screen[None, ..., 0], np.zeros(1, bool))
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
    torch.set_num_threads(args.torch_threads)
    device = pick_device(args.cuda)

    if args.eval_checkpoint is not None:
        ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
        trained = Args(**{**asdict(args), **{k: ckpt["args"][k] for k in ("env_id", "frameskip", "crop_bottom")}})
        sticky = ale_game(trained.env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
        agent = Agent(num_inputs(trained.crop_bottom)).to(device)
        agent.load_state_dict(ckpt["model"])
        out_dir = Path(args.run_dir or f"runs/{trained.env_id.replace('/', '-')}__{args.exp_name}-eval__"
                                       f"{args.seed}__{int(time.time())}")
        out_dir.mkdir(parents=True, exist_ok=True)
        returns = evaluate(agent, trained, args.eval_episodes, args.seed + 10_000, device,
                           out_dir / "videos" if args.capture_video else None)
        report = write_eval(out_dir, returns, str(path), trained.env_id, sticky)
        print(f"eval {path}: {report['episodes']} episodes of {trained.env_id} (sticky actions {sticky:g}), return "
              f"{report['mean']:.2f} ± {report['std']:.2f} (min {report['min']:.0f}, max {report['max']:.0f})"
              f" -> {out_dir / 'eval.json'}")
        return

    ckpt = None
    if args.resume is not None:
        ckpt, path = load_checkpoint(args.resume, "--resume")
        for flag in ("env_id", "crop_bottom", "frameskip"):
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

    inputs, N, T = num_inputs(args.crop_bottom), args.num_envs, args.num_steps
    agent = Agent(inputs).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    global_step, episode, iteration, wall_before, recent = 0, 0, 0, 0.0, []
    lr_schedule = LinearSchedule(0, args.learning_rate, args.total_timesteps if args.anneal_lr else 0,
                                 0.0 if args.anneal_lr else args.learning_rate)
    if ckpt is not None:
        agent.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        global_step, episode, iteration = ckpt["global_step"], ckpt["episode"], ckpt["iteration"]
        wall_before = ckpt["wall_time_s"]
        recent = list(ckpt["recent_returns"])
        random.setstate(ckpt["python_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        if "lr_schedule" in ckpt:
            lr_schedule = LinearSchedule(**ckpt["lr_schedule"])
        else:  # written before schedules were saved: the one its own total planned
            lr_schedule = LinearSchedule(0, args.learning_rate, ckpt["args"]["total_timesteps"] if args.anneal_lr
                                         else 0, 0.0 if args.anneal_lr else args.learning_rate)
        if ckpt["args"]["total_timesteps"] != args.total_timesteps:
            lr_schedule = lr_schedule.resumed(global_step, ckpt["args"]["total_timesteps"], args.total_timesteps)
            print(f"--total-timesteps changed: {lr_schedule.describe('learning-rate', global_step)}")
        print(f"resumed {path} at step {global_step:,}, episode {episode}")

    stop_signal = []
    signal.signal(signal.SIGINT, lambda s, f: stop_signal.append(s))
    signal.signal(signal.SIGTERM, lambda s, f: stop_signal.append(s))

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
        csv_file.flush()

    def checkpoint() -> None:
        save_atomic({
            "script": SCRIPT, "args": asdict(args), "model": agent.state_dict(), "optimizer": optimizer.state_dict(),
            "global_step": global_step, "episode": episode, "iteration": iteration,
            "lr_schedule": asdict(lr_schedule), "wall_time_s": wall_before + time.time() - start,
            "recent_returns": recent[-100:],
            "python_rng": random.getstate(), "torch_rng": torch.get_rng_state(),  # NumPy draws nothing
        }, run_dir / "checkpoint.pt")

    # The rollout, preallocated once: one row per vector step.
    obs = torch.zeros((T, N, inputs), dtype=torch.int8, device=device)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs, values, rewards = (torch.zeros((T, N), device=device) for _ in range(3))
    terminated, dones, played = (torch.zeros((T, N), dtype=torch.bool, device=device) for _ in range(3))

    # The emulators' state is not saved: on resume the envs restart their games, reseeded from the step reached.
    envs = make_env(args.env_id, N, args.frameskip)
    screens, _ = envs.reset(seed=args.seed + global_step)
    frames = DifferenceFrames(N, args.crop_bottom)
    x = frames(screens[:, 0], np.ones(N, bool)).to(device)
    prev_done = np.zeros(N, bool)
    ep_return = np.zeros(N)
    ep_length = np.zeros(N, np.int64)
    progress = Progress(args.total_timesteps)
    start, start_step, env_time = time.time(), global_step, 0.0
    next_save = (global_step // args.save_every + 1) * args.save_every
    stats: dict = {}
    reached_target = False

    while global_step < args.total_timesteps and not stop_signal and not reached_target:
        iteration += 1
        lr = lr_schedule(global_step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        for t in range(T):
            obs[t] = x
            # Under NextStep autoreset the step after an episode's end only resets: it is no agent step.
            played[t] = torch.from_numpy(~prev_done)
            actions[t], logprobs[t], values[t] = act(agent, x)
            tic = time.time()
            screens, reward, term, trunc, _ = envs.step(UP_DOWN[actions[t].cpu().numpy()])
            env_time += time.time() - tic
            rewards[t], terminated[t] = torch.from_numpy(reward), torch.from_numpy(term)
            done = term | trunc
            dones[t] = torch.from_numpy(done)
            x = frames(screens[:, 0], prev_done).to(device)

            ok = ~prev_done
            global_step += int(ok.sum())
            ep_return += reward * ok
            ep_length += ok
            sps = (global_step - start_step) / max(time.time() - start, 1e-9)
            for e in np.flatnonzero(done & ok):
                episode += 1
                recent.append(float(ep_return[e]))
                wall = wall_before + time.time() - start
                csv_writer.writerow([global_step, episode, ep_return[e], ep_length[e], f"{wall:.1f}", f"{sps:.1f}"])
                writer.add_scalar("charts/episodic_return", ep_return[e], global_step)
                writer.add_scalar("charts/episodic_length", ep_length[e], global_step)
                ep_return[e], ep_length[e] = 0.0, 0
            if done.any():
                csv_file.flush()
                if args.target_return is not None and len(recent) >= 100 and np.mean(recent[-100:]) >= args.target_return:
                    reached_target = True
            prev_done = done
            progress.update(global_step, sps, float(np.mean(recent[-100:])) if recent else math.nan,
                            f" | episodes {episode}")
            if stop_signal:
                break
        if stop_signal:
            break  # the unfinished rollout is dropped; its steps still count, their episodes are in the curve

        with torch.no_grad():
            next_value = agent(x)[1]
        if args.advantages == "gae":
            advantages, returns = compute_gae(rewards, values, next_value, terminated, dones, args.gamma,
                                              args.gae_lambda)
            use = played
        else:
            returns, known = point_returns(rewards, dones, args.gamma)
            use = played & known
            returns[use] = standardise(returns[use])
            advantages = returns
        batch = {"obs": obs.reshape(T * N, inputs), "actions": actions.reshape(-1), "logprobs": logprobs.reshape(-1),
                 "values": values.reshape(-1), "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
        stats = ppo_update(agent, optimizer, batch, use.reshape(-1), args)

        sps = (global_step - start_step) / max(time.time() - start, 1e-9)
        writer.add_scalar("charts/learning_rate", lr, global_step)
        writer.add_scalar("charts/SPS", sps, global_step)
        writer.add_scalar("charts/env_SPS", (global_step - start_step) / max(env_time, 1e-9), global_step)
        for k, v in stats.items():
            writer.add_scalar(f"losses/{k}", v, global_step)
        if args.advantages == "gae" and use.any():
            y, pred = returns[use], values[use]
            writer.add_scalar("losses/explained_variance", float(1 - (y - pred).var() / y.var()), global_step)
        if global_step >= next_save:
            checkpoint()
            next_save = (global_step // args.save_every + 1) * args.save_every

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

    final = {"script": SCRIPT, "args": asdict(args), "model": agent.state_dict(), "global_step": global_step}
    save_atomic(final, run_dir / "final_model.pt")
    sticky = ale_game(args.env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
    returns = evaluate(agent, args, args.eval_episodes, args.seed + 10_000, device,
                       run_dir / "videos" if args.capture_video else None)
    report = write_eval(run_dir, returns, str(run_dir / "final_model.pt"), args.env_id, sticky)
    writer.add_scalar("eval/mean_return", report["mean"], global_step)
    writer.close()
    elapsed = time.time() - start
    why = "reached --target-return" if reached_target else "done"
    print(f"{why}: {global_step:,} steps, {episode} episodes, {wall_before + elapsed:.0f} s; "
          f"{(global_step - start_step) / max(elapsed, 1e-9):.0f} SPS (env alone "
          f"{(global_step - start_step) / max(env_time, 1e-9):.0f}); eval {report['mean']:.2f} ± "
          f"{report['std']:.2f} over {report['episodes']} episodes -> {run_dir}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args, args=[*saved_settings(sys.argv[1:]), *sys.argv[1:]]))
    except BadInput as e:
        fail(str(e))
