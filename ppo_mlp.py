"""PPO-clip with an MLP that learns Atari Pong from Karpathy-style difference frames.

Lineage: Karpathy's "Pong from Pixels" (2016) made into PPO by the post "Learning to play Pong using PPO in PyTorch"
(2019-05-23; PyTorch, UP/DOWN, hidden 512, clip 0.1, Adam 1e-3, returns reset at each point and standardised, no
critic, 5 epochs),
with the algorithm, flag names and logging of CleanRL's `ppo_atari.py` ("The 37 implementation details of PPO").
Usage: `python ppo_mlp.py` (`--help` for the flags); the reported scores, commands and curves are in
`benchmark/RESULTS.md`.

Preprocessing is Karpathy's, not the DeepMind stack: an MLP has no convolutions and no frame stack, so the
difference of two binary 80x80 images (crop rows 35..194, every second pixel, both court colours erased, paddles
and ball 1) is what shows it the ball's motion (`--num-differences K`: the last K, the newest first). ale-py's
threaded vector env gives raw 210x160 grayscale screens with 30 random no-ops and FIRE on reset. The first layer is
computed from the non-zero pixels only (`F.embedding_bag`; the same function as `nn.Linear`, tested): a difference
frame has a few dozen of 6400.

Where it departs from the seed (the seed's run is roughly `--env-id PongNoFrameskip-v4 --advantages point-returns
--no-norm-adv --ent-coef 0 --learning-rate 1e-3 --no-anneal-lr --max-grad-norm 0 --update-epochs 5 --num-envs 1
--num-steps 8192 --frameskip 1 --crop-bottom 185`):
- `ALE/Pong-v5`: sticky actions (an action repeats with probability 0.25, Machado et al. 2018), so that the policy
  learns to play rather than to replay one memorised game; the seed and CleanRL play `PongNoFrameskip-v4`;
- a value head and GAE (`--advantages point-returns` is the seed's estimator): updates every rollout of
  `--num-envs` x `--num-steps` steps instead of every 10 whole games, with lower variance;
- CleanRL's Atari PPO settings otherwise (8 envs x 128 steps, Adam 2.5e-4 annealed to 0, entropy 0.01, value
  clipping, grad norm 0.5, 4 epochs), but one minibatch per epoch, as the seed, not CleanRL's 4 (`--num-minibatches 4`):
  fewer, larger gradient steps that learned Pong as well per step (`benchmark/probes/ppo_mlp_sticky/`);
- `--frameskip 4` (the seed played every frame) and Karpathy's 80x80 crop (`--crop-bottom 185`: the seed's
  75x80, which cuts off the court's bottom rows);
- `--torch-threads 1`: the sparse per-step ops are slower with a second thread beside the env's threads.
Under NextStep autoreset the step after an episode's end only resets that env: it is no agent step, is left
out of the loss, and GAE does not carry advantages across it.
Off by default, for probes (`benchmark/probes/`): `--hidden-layers 2`, `--num-differences 2`, `--trail-decay 0.5`
(fading trails of where things were, in one frame's width), `--separate-critic`
(the value head on its own layers; the seed had none), `--pool 2` (the image max-pooled to 40x40;
`--pool 1 2`: both side by side).
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
import statistics
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
CHECKPOINT = "checkpoint.pt"
# what a checkpoint's model and games need
RESUME_MUST_MATCH = ("env_id", "crop_bottom", "pool", "frameskip", "hidden", "hidden_layers", "num_differences",
                     "trail_decay", "separate_critic")


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch and the environments"""
    env_id: str = "ALE/Pong-v5"
    """a Gymnasium id registered by ale-py; Pong only (the preprocessing knows Pong's court and colours)"""
    total_timesteps: int = 6_000_000
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
    pool: tuple[int, ...] = (1,)
    """max-pool Karpathy's image over pool x pool blocks, a block lit where any pixel is (1: none, the seed; 2: 40x40,
    so that each input is lit 4x as often); several: those images side by side (1 2: 80x80 and 40x40)"""
    hidden: int = 512
    """ReLU units of each hidden layer (the seed's 512; Karpathy's network has 200)"""
    hidden_layers: int = 1
    """hidden layers of `--hidden` ReLU units (the seed: 1); the policy and value heads share them"""
    separate_critic: bool = False
    """the value head on its own hidden layers, of the same shapes (off: one trunk for both, as CleanRL's Atari
    PPO; the seed had no value head)"""
    num_differences: int = 1
    """difference frames the policy sees, the newest first (the seed: 1); 2 or more show how the motion changes"""
    trail_decay: float = 0.0
    """the input is this image minus a decaying average of the earlier ones, each older image weighted
    `trail-decay` times the newer (0: minus the previous image, the seed's difference frame): where ball and paddles
    were over the last few steps, in one frame's width, as fading negative trails"""
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
    num_minibatches: int = 1
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


def check_args(args: Args) -> None:
    check_run_args(args)
    need(args.hidden > 0, "--hidden", "at least 1", args.hidden)
    need(args.hidden_layers > 0, "--hidden-layers", "at least 1", args.hidden_layers)
    need(args.num_differences > 0, "--num-differences", "at least 1", args.num_differences)
    need(0 <= args.trail_decay < 1 and (args.trail_decay == 0 or args.num_differences == 1), "--trail-decay",
         "in [0, 1), and 0 with --num-differences above 1", args.trail_decay)
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
    need(args.frameskip >= 1, "--frameskip", "at least 1", args.frameskip)
    need(37 <= args.crop_bottom <= 210, "--crop-bottom", "in 37..210 (195: 80x80, 185: the seed's 75x80)",
         args.crop_bottom)
    rows = image_rows(args.crop_bottom)
    need(len(args.pool) > 0 and all(p >= 1 and rows % p == 0 and 80 % p == 0 for p in args.pool), "--pool",
         f"at least 1 and a divisor of the image's {rows} rows and 80 columns", args.pool)
    need(args.torch_threads >= 1, "--torch-threads", "at least 1", args.torch_threads)
    need(ale_game(args.env_id)["game"] == "pong", "--env-id", "a Pong id (e.g. PongNoFrameskip-v4, ALE/Pong-v5): "
         "the preprocessing knows Pong's court and colours", args.env_id)


# ---------------------------------------------------------------------------- environment
CROP_TOP = 35
# Pong's court has two colours (the second on some episodes' first frames): in ale-py's grayscale
# screen 87 and 107, in an RGB screen's red channel 144 and 109 (the seed's values).
BACKGROUND_GRAY = (87, 107)
BACKGROUND_RED = (144, 109)
TRAIL_LEVELS = 127  # a trail's values in [-1, 1] are stored in int8 as multiples of 1/127
UP_DOWN = np.array([2, 3])  # Pong's minimal action set: NOOP, FIRE, RIGHT (up), LEFT (down), ...


def make_env(env_id: str, num_envs: int, frameskip: int, sticky: Optional[float] = None):
    """Raw 210x160 grayscale Pong screens from ale-py's threaded vector env: observations (num_envs, 1, 210, 160),
    with gymnasium's episode statistics. `sticky`, when given, replaces the env id's sticky-action probability."""
    game = ale_game(env_id)
    if sticky is not None:
        game["repeat_action_probability"] = sticky
    return gym.wrappers.vector.RecordEpisodeStatistics(ale_py.vector_env.AtariVectorEnv(
        num_envs=num_envs, game=game["game"], repeat_action_probability=game["repeat_action_probability"],
        frameskip=frameskip, stack_num=1, img_height=210, img_width=160,
        grayscale=True, maxpool=False, noop_max=30, use_fire_reset=True, episodic_life=False,
        reward_clipping=False, autoreset_mode="NextStep"))


def image_rows(crop_bottom: int) -> int:
    return len(range(CROP_TOP, crop_bottom, 2))


def num_inputs(crop_bottom: int, num_differences: int = 1, pool: tuple[int, ...] = (1,)) -> int:
    return sum(image_rows(crop_bottom) * 80 // p**2 for p in pool) * num_differences


def preprocess(screens: np.ndarray, crop_bottom: int = 195,
               background: tuple[int, int] = BACKGROUND_GRAY, pool: tuple[int, ...] = (1,)) -> np.ndarray:
    """Karpathy's prepro, batched: (N, 210, 160) screens -> (N, num_inputs(crop_bottom, 1, pool)) int8 in {0, 1}.

    Crop rows 35..crop_bottom-1, keep every second row and column, erase both background colours, set the
    rest (paddles, ball) to 1; a pool p > 1 lights each p x p block where any of its pixels is lit, and several
    pools put their images side by side, in `pool`'s order.
    `background` is BACKGROUND_GRAY for ale-py's grayscale screens, BACKGROUND_RED for an RGB screen's red channel.
    """
    crop = screens[:, CROP_TOP:crop_bottom:2, ::2]
    image = (crop != background[0]) & (crop != background[1])
    n, rows, cols = image.shape
    images = [image if p == 1 else image.reshape(n, rows // p, p, cols // p, p).any(axis=(2, 4)) for p in pool]
    flat = images[0].reshape(n, -1) if len(pool) == 1 else np.concatenate([i.reshape(n, -1) for i in images], 1)
    return flat.view(np.int8)


def input_scale(trail_decay: float) -> float:
    """What one unit of the int8 input stands for: a pixel of a difference frame, or 1 / TRAIL_LEVELS of a trail."""
    return 1 / TRAIL_LEVELS if trail_decay else 1.0


class DifferenceFrames:
    """The policy's input per env: this image minus the previous one, then the `num_differences` - 1 differences
    before it; an episode's first image stands alone, and differences from before the episode are 0.
    With `trail_decay` d > 0: this image minus the average of the earlier ones weighted (1-d), (1-d)d, (1-d)d^2, ...
    (d = 0 is the difference frame), in int8 steps of 1 / TRAIL_LEVELS; `scale` maps the int8 values back."""

    def __init__(self, num_envs: int, crop_bottom: int, background: tuple[int, int] = BACKGROUND_GRAY,
                 num_differences: int = 1, pool: tuple[int, ...] = (1,), trail_decay: float = 0.0):
        self.crop_bottom, self.background, self.pool, self.trail_decay = crop_bottom, background, pool, trail_decay
        self.scale = input_scale(trail_decay)
        self.pixels = num_inputs(crop_bottom, pool=pool)
        self.prev = np.zeros((num_envs, self.pixels), np.float32 if trail_decay else np.int8)  # or the average
        self.diff = torch.zeros((num_envs, num_inputs(crop_bottom, num_differences, pool)), dtype=torch.int8)
        self._diff = self.diff.numpy()  # shares memory: written in place, no new tensor per step

    def __call__(self, screens: np.ndarray, new_episode: np.ndarray) -> torch.Tensor:
        image = preprocess(screens, self.crop_bottom, self.background, self.pool)
        self.prev[new_episode] = 0
        if self.trail_decay:
            np.rint((image - self.prev) * TRAIL_LEVELS, out=self._diff, casting="unsafe")
            self.prev *= self.trail_decay  # in place, float32: the average now ends with this image
            self.prev += np.float32(1 - self.trail_decay) * image
            return self.diff
        if self._diff.shape[1] > self.pixels:  # older differences move one block on (NumPy copies overlaps safely)
            self._diff[:, self.pixels:] = self._diff[:, :-self.pixels]
            self._diff[new_episode, self.pixels:] = 0
        np.subtract(image, self.prev, out=self._diff[:, :self.pixels])
        self.prev = image
        return self.diff


# ---------------------------------------------------------------------------- model
class Agent(nn.Module):
    """MLP: difference frames -> `hidden_layers` layers of `hidden` ReLU units -> logits for UP/DOWN, and a value
    head on the same last layer (`separate_critic`: on a second stack of layers of the same shapes, its own).

    The first layer is an `nn.Linear(inputs, hidden)` stored input-major (`w1[p]` is pixel p's weights) and
    computed from the non-zero pixels only: it equals `relu(x @ w1 + b1)` up to float rounding.
    """

    def __init__(self, inputs: int, hidden: int = 512, num_actions: int = 2, hidden_layers: int = 1,
                 separate_critic: bool = False, input_scale: float = 1.0):
        super().__init__()
        self.input_scale = input_scale  # what one unit of the int8 input stands for
        self.w1, self.b1 = first_layer(inputs, hidden)
        self.deeper = deeper_layers(hidden, hidden_layers)  # empty at the seed's one layer: its checkpoints' keys
        self.separate_critic = separate_critic
        if separate_critic:  # the value's own layers, so that its regression does not shape the policy's features
            self.critic_w1, self.critic_b1 = first_layer(inputs, hidden)
            self.critic_deeper = deeper_layers(hidden, hidden_layers)
        self.actor = nn.Linear(hidden, num_actions)
        self.critic = nn.Linear(hidden, 1)
        nn.init.orthogonal_(self.actor.weight, 0.01)  # CleanRL: a near-uniform first policy
        nn.init.zeros_(self.actor.bias)
        nn.init.orthogonal_(self.critic.weight, 1.0)
        nn.init.zeros_(self.critic.bias)

    def _bags(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(pixel indices, bag offsets, pixel values) of a batch's non-zero pixels, for `F.embedding_bag`."""
        rows, cols = x.nonzero(as_tuple=True)  # row-major: each row's pixels are contiguous, as bags need
        counts = torch.bincount(rows, minlength=len(x))
        values = x[rows, cols].to(self.w1.dtype)
        return cols, counts.cumsum(0) - counts, values if self.input_scale == 1 else values * self.input_scale

    @staticmethod
    def _layers(bags: tuple, w1: torch.Tensor, b1: torch.Tensor, deeper: nn.Module) -> torch.Tensor:
        cols, offsets, values = bags
        h = F.embedding_bag(cols, w1, offsets, mode="sum", per_sample_weights=values)
        return deeper(F.relu(h + b1))

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """The policy's last hidden layer (and, unless `separate_critic`, the value's)."""
        return self._layers(self._bags(x), self.w1, self.b1, self.deeper)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits (B, actions), values (B,)) for int8 difference frames (B, inputs)."""
        bags = self._bags(x)
        h = self._layers(bags, self.w1, self.b1, self.deeper)
        hc = self._layers(bags, self.critic_w1, self.critic_b1, self.critic_deeper) if self.separate_critic else h
        return self.actor(h), self.critic(hc).squeeze(1)


def first_layer(inputs: int, hidden: int) -> tuple[nn.Parameter, nn.Parameter]:
    """The first layer's weights, input-major with Karpathy's Xavier init, and its zero biases."""
    return nn.Parameter(torch.randn(inputs, hidden) / math.sqrt(inputs)), nn.Parameter(torch.zeros(hidden))


def deeper_layers(hidden: int, hidden_layers: int) -> nn.Sequential:
    """The layers after the first: `hidden_layers - 1` ReLU layers of `hidden` units, CleanRL's init."""
    layers = nn.Sequential()
    for _ in range(hidden_layers - 1):
        layer = nn.Linear(hidden, hidden)
        nn.init.orthogonal_(layer.weight, math.sqrt(2))  # CleanRL's init for ReLU layers
        nn.init.zeros_(layer.bias)
        layers.extend([layer, nn.ReLU()])
    return layers


def make_agent(args: Args) -> Agent:
    return Agent(num_inputs(args.crop_bottom, args.num_differences, args.pool), args.hidden,
                 hidden_layers=args.hidden_layers, separate_critic=args.separate_critic,
                 input_scale=input_scale(args.trail_decay))


def make_frames(args: Args, num_envs: int, background: tuple[int, int] = BACKGROUND_GRAY) -> DifferenceFrames:
    """The policy's input maker for `num_envs` envs, as `args` trained it."""
    return DifferenceFrames(num_envs, args.crop_bottom, background, args.num_differences, args.pool, args.trail_decay)


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


def estimate_advantages(args: Args, rewards, values, next_value, terminated, dones, played) -> tuple:
    """(advantages, returns, the steps the update uses) of a rollout: GAE with the value head, or the seed's
    standardised per-point returns (`--advantages point-returns`), which skip steps whose point is not over yet."""
    if args.advantages == "gae":
        return (*compute_gae(rewards, values, next_value, terminated, dones, args.gamma, args.gae_lambda), played)
    returns, known = point_returns(rewards, dones, args.gamma)
    use = played & known
    returns[use] = standardise(returns[use])
    return returns, returns, use


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


def lr_schedule_for(learning_rate: float, total_timesteps: int, anneal_lr: bool) -> LinearSchedule:
    """Adam's learning rate over a run: annealed linearly to 0 at `total_timesteps` (`--anneal-lr`), else constant."""
    return LinearSchedule(0, learning_rate, total_timesteps if anneal_lr else 0, 0.0 if anneal_lr else learning_rate)


# ---------------------------------------------------------------------------- training loop
def train(args: Args, agent: Agent, optimizer: torch.optim.Optimizer, lr_schedule: LinearSchedule, run: RunLog,
          global_step: int, iteration: int, device: torch.device) -> tuple[int, int]:
    """Roll out `--num-steps` vector steps, compute advantages, run the PPO epochs; until the run stops.
    Returns the agent steps and iterations reached."""
    N, T, inputs = args.num_envs, args.num_steps, num_inputs(args.crop_bottom, args.num_differences, args.pool)
    obs = torch.zeros((T, N, inputs), dtype=torch.int8, device=device)
    actions = torch.zeros((T, N), dtype=torch.long, device=device)
    logprobs, values, rewards = (torch.zeros((T, N), device=device) for _ in range(3))
    terminated, dones, played = (torch.zeros((T, N), dtype=torch.bool, device=device) for _ in range(3))
    envs = make_env(args.env_id, N, args.frameskip)
    screens, _ = envs.reset(seed=args.seed + global_step)  # a resume restarts the games, reseeded
    frames = make_frames(args, N)
    x = frames(screens[:, 0], np.ones(N, bool)).to(device)
    prev_done = np.zeros(N, bool)
    while run.going(global_step):
        iteration += 1
        lr = lr_schedule(global_step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        # ALGO LOGIC: the rollout
        for t in range(T):
            obs[t] = x
            played[t] = torch.from_numpy(~prev_done)  # NextStep autoreset: the step after an end only resets
            actions[t], logprobs[t], values[t] = act(agent, x)
            screens, reward, term, trunc, info = envs.step(UP_DOWN[actions[t].cpu().numpy()])
            rewards[t], terminated[t] = torch.from_numpy(reward), torch.from_numpy(term)
            done = term | trunc
            dones[t] = torch.from_numpy(done)
            x = frames(screens[:, 0], prev_done).to(device)  # a reset step's screen starts a new difference
            global_step += int((~prev_done).sum())
            prev_done = done
            run.episodes_done(global_step, info)  # TRY NOT TO MODIFY: progress.csv and TensorBoard
            if run.stopped:
                break
        if run.stopped:
            break  # the unfinished rollout is dropped; its steps still count, their episodes are in the curve

        # ALGO LOGIC: advantages and the PPO update
        with torch.no_grad():
            next_value = agent(x)[1]
        advantages, returns, use = estimate_advantages(args, rewards, values, next_value, terminated, dones, played)
        batch = {"obs": obs.reshape(T * N, inputs), "actions": actions.reshape(-1), "logprobs": logprobs.reshape(-1),
                 "values": values.reshape(-1), "advantages": advantages.reshape(-1), "returns": returns.reshape(-1)}
        stats = ppo_update(agent, optimizer, batch, use.reshape(-1), args)

        # TRY NOT TO MODIFY: logging, checkpoints, the progress line
        run.log(global_step, {"charts/learning_rate": lr, "charts/SPS": run.sps(global_step),
                              **{f"losses/{k}": v for k, v in stats.items()},
                              **explained_variance(returns, values, use, args)})
        if run.checkpoint_due(global_step):
            save_checkpoint(args, agent, optimizer, lr_schedule, run, global_step, iteration)
        run.show(global_step)
    envs.close()
    return global_step, iteration


def explained_variance(returns: torch.Tensor, values: torch.Tensor, use: torch.Tensor, args: Args) -> dict:
    """How much of the returns' variance the value head predicts (CleanRL's `losses/explained_variance`)."""
    if args.advantages != "gae" or not use.any():
        return {}
    y, pred = returns[use], values[use]
    return {"losses/explained_variance": float(1 - (y - pred).var() / y.var())}


# ---------------------------------------------------------------------------- checkpoints and evaluation
def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(args: Args, agent: Agent, optimizer: torch.optim.Optimizer, lr_schedule: LinearSchedule,
                    run: RunLog, global_step: int, iteration: int) -> None:
    save_atomic({"script": SCRIPT, "args": asdict(args), "model": agent.state_dict(),
                 "optimizer": optimizer.state_dict(), "global_step": global_step, "iteration": iteration,
                 "lr_schedule": asdict(lr_schedule), **run.state(), "python_rng": random.getstate(),
                 "torch_rng": torch.get_rng_state()}, run.run_dir / CHECKPOINT)  # NumPy draws nothing


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag."""
    ckpt, p = read_checkpoint(path, flag, lambda f: torch.load(f, map_location="cpu", weights_only=True))
    checked_checkpoint(ckpt, path, flag, weights_only=isinstance(ckpt, dict) and "optimizer" not in ckpt)
    a = ckpt["args"]
    a.setdefault("hidden", len(ckpt["model"]["b1"]))  # written before the width was a flag: its weights' width
    pool = a.get("pool", 1)  # written before the flag: Karpathy's image; before several pools: one int
    a["pool"] = (pool,) if isinstance(pool, int) else tuple(pool)
    a.setdefault("num_differences", len(ckpt["model"]["w1"]) // num_inputs(a["crop_bottom"], pool=a["pool"]))
    a.setdefault("hidden_layers", 1)  # written before the flag: one layer
    a.setdefault("trail_decay", 0.0)  # written before the flag: the difference frame
    a.setdefault("separate_critic", False)  # written before the flag: one trunk
    if flag == "--resume" and "lr_schedule" not in ckpt:  # written before schedules were saved: its own total's
        ckpt["lr_schedule"] = asdict(lr_schedule_for(a["learning_rate"], a["total_timesteps"], a["anneal_lr"]))
    return ckpt, p


def pick_device(want_cuda: bool) -> torch.device:
    if want_cuda and not torch.cuda.is_available():
        print("CUDA not available: running on CPU")
    return torch.device("cuda" if want_cuda and torch.cuda.is_available() else "cpu")


def evaluate_checkpoint(args: Args, device: torch.device) -> None:
    """`--eval-checkpoint`: play the saved weights on the env and with the preprocessing they were trained with."""
    ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
    trained = Args(**{**asdict(args), **{k: ckpt["args"][k] for k in RESUME_MUST_MATCH}})
    agent = make_agent(trained).to(device)
    agent.load_state_dict(ckpt["model"])
    sticky = eval_sticky(args, trained.env_id)
    out_dir = new_run_dir(args, trained.env_id, "-eval")
    returns = evaluate(agent, trained, sticky, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, device,
                       out_dir / "videos" if args.capture_video else None)
    report_eval(out_dir, returns, path, trained.env_id, sticky)


def evaluate(agent: Agent, args: Args, sticky: float, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games; each env plays its fixed share, so short games are not favoured."""
    torch.manual_seed(seed)  # the sampled actions, so that the same seed replays the same games
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(args.env_id, num_envs, args.frameskip, sticky)
    screens, _ = envs.reset(seed=seed)
    frames = make_frames(args, num_envs)
    x = frames(screens[:, 0], np.ones(num_envs, bool))
    returns, ep_return, prev_done = [], np.zeros(num_envs), np.zeros(num_envs, bool)
    while (quota > 0).any():
        actions, _, _ = act(agent, x.to(device), args.eval_deterministic)
        screens, reward, terminated, truncated, _ = envs.step(UP_DOWN[actions.cpu().numpy()])
        ep_return += reward * ~prev_done
        done = terminated | truncated
        for e in np.flatnonzero(done & ~prev_done & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[done] = 0.0
        x = frames(screens[:, 0], prev_done)
        prev_done = done
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
    frames = make_frames(args, 1, BACKGROUND_RED)
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


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    torch.set_num_threads(args.torch_threads)
    device = pick_device(args.cuda)
    if args.eval_checkpoint is not None:
        return evaluate_checkpoint(args, device)
    ckpt, run_dir = open_run(args, load_checkpoint)

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    agent = make_agent(args).to(device)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    lr_schedule = lr_schedule_for(args.learning_rate, args.total_timesteps, args.anneal_lr)
    global_step, iteration = 0, 0
    if ckpt is not None:
        agent.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        global_step, iteration = ckpt["global_step"], ckpt["iteration"]
        random.setstate(ckpt["python_rng"])
        torch.set_rng_state(ckpt["torch_rng"])
        lr_schedule = LinearSchedule(**ckpt["lr_schedule"]).resumed(
            global_step, ckpt["args"]["total_timesteps"], args.total_timesteps, "learning-rate")
        print(f"resumed {run_dir} at step {global_step:,}, episode {ckpt['episode']}")

    from torch.utils.tensorboard import SummaryWriter

    run = RunLog(args, run_dir, ckpt, lambda logdir, purge_step: SummaryWriter(logdir, purge_step=purge_step))
    global_step, iteration = train(args, agent, optimizer, lr_schedule, run, global_step, iteration, device)
    save_checkpoint(args, agent, optimizer, lr_schedule, run, global_step, iteration)
    run.close(global_step)

    final = run_dir / "final_model.pt"
    save_atomic({"script": SCRIPT, "args": asdict(args), "model": agent.state_dict(), "global_step": global_step},
                final)
    sticky = eval_sticky(args, args.env_id)
    returns = evaluate(agent, args, sticky, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, device,
                       run_dir / "videos" if args.capture_video else None)
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
