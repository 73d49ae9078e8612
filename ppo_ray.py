"""PPO-clip on Karpathy's Pong policy network, with the rollouts and the gradients computed in Ray actors.

Lineage: Karpathy's "Pong from Pixels" (80x80 difference frame, 200 hidden ReLU units, one sigmoid output P(UP),
returns restarted at each point and standardised, no critic) as parallelised over Ray actors by Ray's pg-pong
documentation example "Learning to Play Pong", with PPO's clipped surrogate and CleanRL's `ppo_atari.py` flag names,
defaults and logging. Usage: `python ppo_ray.py --num-workers 2` (`--ray-address host:6379` joins a running
cluster; `--help` for the flags); the reported scores, commands and curves are in `benchmark/RESULTS.md`.

Each worker (a Ray actor) plays `--num-envs` games in ale-py's vector env. An iteration is a rollout round (every
worker plays `--num-steps` steps per game with the same weights and keeps the steps of the points that ended; a
point still running waits on its worker, the PPO ratio corrects the lag) and `--update-epochs` x
`--num-minibatches` gradient rounds (each worker sends the gradient of a minibatch of its own samples; the learner
averages them weighted by sample counts and steps Adam). Only weights and gradients travel. A dead worker (its node
lost, say) is left out of the rounds until Ray has restarted it where there is room (`--max-restarts`,
`--worker-timeout`; `workers.csv` logs where each ran). Without `--ray-address` a private local Ray sized to the
workers lives as long as the run; Ray's processes ignore SIGINT.
Worker RNG, games and pending steps are not checkpointed: `--resume` restarts the games. Preprocessing is
Karpathy's (rows 35..194, every second pixel of the red channel, court colours erased): the difference of two such
images shows the MLP the ball's motion without a frame stack.

Where it departs from the seed (roughly `--update-epochs 1 --learning-rate 1e-4 --no-anneal-lr --ent-coef 0`, where
one epoch of one batch is the plain policy gradient): PPO-clip, 4 epochs of one batch each (CleanRL's 4 minibatches,
`--num-minibatches 4`, cost 4x the gradient rounds, each a hand-over of the weights and the gradients);
Adam annealed, grad norm 0.5 and entropy 0.01 as CleanRL (the seed's RMSProp has no flag); `--num-steps` per game
instead of whole episodes, so workers finish rounds together; `ALE/Pong-v5`: a 4-frame skip, not Pong-v0's random
2-4, and sticky actions (an action repeats with probability 0.25, Machado et al. 2018), so that the policy learns to
play rather than to replay one memorised game (`--env-id PongNoFrameskip-v4` for the deterministic game of CleanRL).
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
import signal
import socket
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import ray
import torch
import torch.nn as nn
import torch.nn.functional as F
import tyro

SCRIPT = "ppo_ray"
CHECKPOINT = "checkpoint.pt"
RESUME_MUST_MATCH = ("env_id", "frameskip")  # what a checkpoint's model and games depend on


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch, the workers' action sampling and the environments"""
    env_id: str = "ALE/Pong-v5"
    """a Gymnasium id registered by ale-py (its game and sticky-action probability are used)"""
    total_timesteps: int = 6_000_000
    """agent steps (environment steps after frame skip, summed over all workers' games) to train for"""
    cuda: bool = True
    """use CUDA for the learner (averaging, Adam step) and evaluation when present; actors use CPU"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic`"""
    torch_threads: int = 1
    """the learner's torch CPU threads (1: more would spin, idle, on the cores the workers play on)"""
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
    """no training: load this checkpoint, play `--eval-episodes` episodes, report"""
    eval_episodes: int = 10
    """episodes for the final and the `--eval-checkpoint` evaluation (the policy samples its actions)"""
    eval_sticky: Optional[float] = None
    """evaluate with this sticky-action probability, not the env's own (0.25: Machado et al. 2018; 0: none)"""
    run_dir: Optional[str] = None
    """where outputs go; default `runs/<env>__<exp-name>__<seed>__<unix-time>`"""
    target_return: Optional[float] = None
    """stop early once the mean of the last 100 episodic returns reaches this"""

    num_workers: int = 2
    """Ray actors that each play `--num-envs` games and compute gradients of their own data"""
    ray_address: str = ""
    """empty: start a private local Ray sized to the workers; else a running cluster to join (`host:6379`, `auto`)"""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each actor (fractions allowed); all workers must fit the cluster's CPUs"""
    max_restarts: int = 3
    """Ray restarts of each actor after it dies (-1: unlimited); a worker out of restarts is dropped"""
    worker_timeout: float = 300.0
    """seconds a dead worker may take to come back (Ray places it again once the cluster has room) before it is
    dropped; a run left with no worker stops with a checkpoint"""
    num_envs: int = 4
    """games per worker (ale-py's vector env, one thread)"""
    num_steps: int = 128
    """agent steps per game in each rollout"""
    frameskip: int = 4
    """emulator frames per agent step (the action repeats)"""
    learning_rate: float = 2.5e-4
    """Adam learning rate (CleanRL's PPO; the seed's RMSProp used 1e-4)"""
    anneal_lr: bool = True
    """anneal the learning rate linearly to 0 over `--total-timesteps`"""
    gamma: float = 0.99
    """discount factor within a point"""
    norm_adv: bool = True
    """standardise the returns over the iteration's samples (all workers) into advantages"""
    update_epochs: int = 4
    """PPO epochs per rollout over all workers' data"""
    num_minibatches: int = 1
    """gradient rounds (optimizer steps) per epoch; each worker contributes that share of its own samples"""
    clip_coef: float = 0.1
    """PPO's surrogate clipping coefficient"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    max_grad_norm: float = 0.5
    """clip the averaged gradient to this global norm"""
    target_kl: Optional[float] = None
    """stop an iteration's epochs early once the approximate KL to the behaviour policy exceeds this"""


def check_args(args: Args) -> None:
    check_run_args(args)
    need(args.torch_threads > 0, "--torch-threads", "at least 1", args.torch_threads)
    need(args.num_workers > 0, "--num-workers", "at least 1", args.num_workers)
    need(args.cpus_per_worker > 0, "--cpus-per-worker", "positive", args.cpus_per_worker)
    need(args.max_restarts >= -1, "--max-restarts", "-1 (unlimited) or at least 0", args.max_restarts)
    need(args.worker_timeout > 0, "--worker-timeout", "a positive number of seconds", args.worker_timeout)
    need(args.num_envs > 0, "--num-envs", "at least 1", args.num_envs)
    need(args.num_steps > 0, "--num-steps", "at least 1", args.num_steps)
    need(args.frameskip > 0, "--frameskip", "at least 1", args.frameskip)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.update_epochs > 0, "--update-epochs", "at least 1", args.update_epochs)
    need(args.num_minibatches > 0, "--num-minibatches", "at least 1", args.num_minibatches)
    need(args.clip_coef > 0, "--clip-coef", "positive", args.clip_coef)
    need(args.ent_coef >= 0, "--ent-coef", "at least 0", args.ent_coef)
    need(args.max_grad_norm > 0, "--max-grad-norm", "positive", args.max_grad_norm)
    need(args.target_kl is None or args.target_kl > 0, "--target-kl", "positive", args.target_kl)
    need(ale_game(args.env_id)["game"] == "pong", "--env-id", "a Pong id (e.g. PongNoFrameskip-v4, ALE/Pong-v5): "
         "the preprocessing knows Pong's court and colours", args.env_id)


# ---------------------------------------------------------------------------- environment
D = 80 * 80  # input: one 80x80 difference frame
UP, DOWN = 2, 3  # Pong's minimal action set: NOOP, FIRE, RIGHT (paddle up), LEFT (paddle down), ...


def make_env(game: str, sticky: float, frameskip: int, num_envs: int, num_threads: int = 1):
    """Raw 210x160 RGB frames from ale-py's vector env, `sticky` its sticky-action probability. SameStep autoreset:
    every step is an agent step, and the step that ends an episode returns the next one's first frame."""
    return ale_py.vector_env.AtariVectorEnv(
        game=game, num_envs=num_envs, frameskip=frameskip, stack_num=1, grayscale=False, img_height=210,
        img_width=160, maxpool=False, noop_max=30, use_fire_reset=False, episodic_life=False,
        reward_clipping=False, repeat_action_probability=sticky, autoreset_mode="SameStep", num_threads=num_threads)


def preprocess(frames: np.ndarray) -> np.ndarray:
    """Karpathy's preprocessing, batched: (..., 210, 160, 3) uint8 -> (..., 6400) uint8 in {0, 1}."""
    f = frames[..., 35:195:2, ::2, 0]  # crop, downsample by 2, red channel
    out = (f != 144) & (f != 109) & (f != 0)  # erase both backgrounds; paddles and ball -> 1
    return out.reshape(*frames.shape[:-3], D).astype(np.uint8)


class DifferenceFrames:
    """The policy's input per game: this frame's image minus the previous one; zeros on an episode's first step."""

    def __init__(self, num_envs: int):
        self.prev = np.zeros((num_envs, D), np.uint8)

    def __call__(self, frames: np.ndarray, new_episode: np.ndarray) -> np.ndarray:
        """(N, 210, 160, 3) frames, (N,) bool -> (N, 6400) int8 in {-1, 0, 1}."""
        image = preprocess(frames)
        x = image.astype(np.int8) - self.prev.astype(np.int8)
        x[new_episode] = 0
        self.prev = image
        return x


# ---------------------------------------------------------------------------- model
class Policy(nn.Module):
    """The seed's network: 6400 -> 200 ReLU -> 1 logit of P(UP), no biases, its "Xavier" initialisation. W1 is
    stored input-major (`w1[p]`: pixel p's weights) and computed from the few dozen non-zero pixels of a difference
    frame only (`F.embedding_bag`): the same function and gradient as `relu(x @ w1)` (tested), at a fraction of the
    cost."""

    def __init__(self, hidden: int = 200):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(D, hidden) / math.sqrt(D))
        self.w2 = nn.Parameter(torch.randn(hidden) / math.sqrt(hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logit of P(UP) for a batch (B, 6400) of difference frames (any numeric dtype)."""
        rows, cols = x.nonzero(as_tuple=True)  # row-major: each row's pixels are contiguous, as bags need
        counts = torch.bincount(rows, minlength=len(x))
        h = F.embedding_bag(cols, self.w1, counts.cumsum(0) - counts, mode="sum",
                            per_sample_weights=x[rows, cols].to(self.w1.dtype))
        return F.relu(h) @ self.w2


def act(model: Policy, x: np.ndarray, rng: np.random.Generator, device: torch.device = torch.device("cpu")):
    """Sample UP (True) or DOWN for each difference frame, UP with probability sigmoid(logit); and the logits."""
    with torch.inference_mode():
        logits = model(torch.from_numpy(x).to(device)).cpu()
    return rng.random(len(x)) < torch.sigmoid(logits).numpy(), logits


def log_prob(logits: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of the two-action Bernoulli policy: log sigmoid(z) for UP, log sigmoid(-z) for DOWN."""
    return F.logsigmoid(torch.where(up.bool(), logits, -logits))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))


def weights_numpy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, weights: dict) -> None:
    """Copy the weights a worker receives (read-only arrays in Ray's object store) into its CPU model in place."""
    for name, p in model.state_dict().items():
        np.copyto(p.numpy(), weights[name])


# ---------------------------------------------------------------------------- rollout: the Ray actor
def discount_rewards(rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Karpathy's discounted return; the running sum restarts at every non-zero reward (a Pong point boundary)."""
    out = np.zeros(len(rewards), np.float64)
    running = 0.0
    for t in reversed(range(len(rewards))):
        if rewards[t] != 0:
            running = 0.0
        running = running * gamma + rewards[t]
        out[t] = running
    return out


def return_stats(returns: np.ndarray) -> tuple[int, float, float]:
    """(count, sum, sum of squares) of one worker's returns; `combine_stats` turns them into a global mean and std."""
    r = np.asarray(returns, np.float64)
    return len(r), float(r.sum()), float((r * r).sum())


def combine_stats(stats: list[tuple[int, float, float]]) -> tuple[float, float]:
    n = sum(s[0] for s in stats)
    mean = sum(s[1] for s in stats) / n
    var = max(sum(s[2] for s in stats) / n - mean * mean, 0.0)
    return mean, math.sqrt(var)


class Worker:
    """Owns `num_envs` games; plays them with the weights it is sent and computes PPO gradients of its own data.
    A plain class: `WorkerPool` turns it into a Ray actor, tests use it directly."""

    def __init__(self, index: int, game: str, sticky: float, frameskip: int, num_envs: int, num_steps: int,
                 gamma: float, clip_coef: float, ent_coef: float):
        torch.set_num_threads(1)
        self.index, self.num_envs, self.num_steps, self.gamma = index, num_envs, num_steps, gamma
        self.clip_coef, self.ent_coef = clip_coef, ent_coef
        self.envs = make_env(game, sticky, frameskip, num_envs, num_threads=1)
        self.model = Policy()
        self.obs = None  # games start at the first rollout, seeded by the learner
        self.batch = None
        self.order = None  # this batch's samples in the current epoch's order; dealt out at each minibatch 0

    def info(self) -> dict:
        node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        return {"pid": os.getpid(), "host": socket.gethostname(), "node": node}

    def _start(self, seed: int) -> None:
        seq = np.random.SeedSequence([seed, self.index])
        self.obs, _ = self.envs.reset(seed=(seq.generate_state(self.num_envs) & 0x7FFFFFFF).astype(np.int64))
        self.rng = np.random.default_rng(seq.spawn(1)[0])
        self.frames, self.prev_done = DifferenceFrames(self.num_envs), np.ones(self.num_envs, bool)
        self.ep_return, self.ep_length = np.zeros(self.num_envs), np.zeros(self.num_envs, np.int64)
        self.pending = [[] for _ in range(self.num_envs)]  # per game: (x, up, logp, reward) of its point so far

    def rollout(self, weights: dict, seed: int) -> dict:
        """Play `num_steps` steps per game; keep the samples of the points that ended; report counts and episodes
        (each as the step of this round that ended it, its return and length)."""
        load_weights(self.model, weights)
        if self.obs is None:
            self._start(seed)
        ready, returns, episodes = [], [], []
        for t in range(self.num_steps):
            x = self.frames(self.obs[:, 0], self.prev_done)  # SameStep autoreset: after a done, a new game's frame
            up, logits = act(self.model, x, self.rng)
            logp = log_prob(logits, torch.from_numpy(up)).numpy()
            self.obs, reward, terminated, truncated, _ = self.envs.step(np.where(up, UP, DOWN))
            self.prev_done = terminated | truncated
            self.ep_return += reward
            self.ep_length += 1
            for e in range(self.num_envs):
                self.pending[e].append((x[e], up[e], logp[e], reward[e]))
                if reward[e] != 0 or self.prev_done[e]:  # the point is over: its returns are known
                    returns.append(discount_rewards(np.array([s[3] for s in self.pending[e]]), self.gamma))
                    ready += self.pending[e]
                    self.pending[e] = []
                if self.prev_done[e]:
                    episodes.append((t, float(self.ep_return[e]), int(self.ep_length[e])))
                    self.ep_return[e], self.ep_length[e] = 0.0, 0
        self.order = None
        self.batch = None if not ready else {
            "x": np.stack([s[0] for s in ready]), "up": np.array([s[1] for s in ready], bool),
            "logp": np.array([s[2] for s in ready], np.float32), "returns": np.concatenate(returns)}
        return {"pid": os.getpid(), "steps": self.num_steps * self.num_envs, "episodes": episodes,
                "stats": return_stats(self.batch["returns"] if ready else np.zeros(0)),
                "pending": sum(len(p) for p in self.pending)}

    def gradient(self, weights: dict, adv_mean: float, adv_std: float, minibatch: int = 0,
                 num_minibatches: int = 1) -> dict:
        """The PPO-clip gradient of one minibatch of this worker's batch at the given weights (n = 0: it holds none).

        Minibatch 0 of an epoch deals the batch out afresh in a random order; minibatches 0..num_minibatches-1
        then cover every sample once, as in CleanRL's shuffled minibatches, but each actor's share stays local."""
        if self.batch is None:
            return {"pid": os.getpid(), "n": 0}
        if minibatch == 0:
            self.order = self.rng.permutation(len(self.batch["x"]))
        elif self.order is None:
            raise RuntimeError("gradient: minibatch 0 of an epoch must come first, to deal the batch out")
        idx = np.array_split(self.order, num_minibatches)[minibatch]
        if len(idx) == 0:
            return {"pid": os.getpid(), "n": 0}
        load_weights(self.model, weights)
        part = {k: v[idx] for k, v in self.batch.items()}
        return {"pid": os.getpid(), **batch_gradient(self.model, part, adv_mean, adv_std, self.clip_coef,
                                                      self.ent_coef)}


def round_episodes(answers: dict[int, dict], step_before: int, num_envs: int) -> list[tuple[int, float, int]]:
    """The episodes a rollout round finished, in the order they ended, each with the agent step it ended at: all
    games step together, so the round's t-th step ends at `step_before` + (t + 1) x the games that played."""
    games = num_envs * len(answers)
    return [(step_before + (t + 1) * games, ep_return, ep_length) for t, _, ep_return, ep_length in
            sorted((t, i, r, n) for i, a in answers.items() for t, r, n in a["episodes"])]


# ---------------------------------------------------------------------------- learning
def ppo_loss(model: nn.Module, x: torch.Tensor, up: torch.Tensor, behaviour_logp: torch.Tensor,
             advantages: torch.Tensor, clip_coef: float, ent_coef: float):
    """Per-sample PPO-clip loss (surrogate minus entropy bonus) and its per-sample parts for logging."""
    # The behaviour policy and the advantages are data: the gradient moves the current policy only.
    behaviour_logp, advantages = behaviour_logp.detach(), advantages.detach()
    logits = model(x)
    logratio = log_prob(logits, up) - behaviour_logp
    ratio = logratio.exp()
    pg = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef))
    ent = entropy(logits)
    with torch.no_grad():
        parts = {"policy_loss": pg.detach(), "entropy": ent.detach(), "old_approx_kl": -logratio,
                 "approx_kl": (ratio - 1) - logratio, "clipfrac": ((ratio - 1).abs() > clip_coef).float()}
    return pg - ent_coef * ent, parts


def batch_gradient(model: nn.Module, batch: dict, adv_mean: float, adv_std: float, clip_coef: float,
                   ent_coef: float) -> dict:
    """What one worker sends back: the gradient of its mean loss, its sample count, and sums of the logged parts."""
    x = torch.from_numpy(batch["x"])
    up = torch.from_numpy(batch["up"])
    logp = torch.from_numpy(batch["logp"])
    adv = torch.from_numpy(((batch["returns"] - adv_mean) / (adv_std + 1e-8)).astype(np.float32))
    model.zero_grad(set_to_none=True)
    loss, parts = ppo_loss(model, x, up, logp, adv, clip_coef, ent_coef)
    loss.mean().backward()
    lit = np.flatnonzero(batch["x"].any(axis=0))  # W1's rows of pixels that no sample lit have no gradient: not sent
    return {"n": len(x), "w1_rows": lit, "grads": {"w1": model.w1.grad[lit].numpy(), "w2": model.w2.grad.numpy()},
            "sums": {k: float(v.sum()) for k, v in parts.items()}}


def average_gradients(results: list[dict]) -> tuple[dict, dict, int]:
    """Sample-weighted mean of the workers' gradients (= the gradient of the mean loss over all their samples), with
    W1 made whole again from each worker's lit rows."""
    results = [r for r in results if r["n"] > 0]
    n = sum(r["n"] for r in results)
    grads = {"w1": np.zeros((D, results[0]["grads"]["w1"].shape[1]), np.float32),
             "w2": np.zeros_like(results[0]["grads"]["w2"])}
    for r in results:
        grads["w1"][r["w1_rows"]] += r["grads"]["w1"] * np.float32(r["n"] / n)
        grads["w2"] += r["grads"]["w2"] * np.float32(r["n"] / n)
    means = {k: sum(r["sums"][k] for r in results) / n for k in results[0]["sums"]}
    return grads, means, n


def learner_step(model: nn.Module, optimizer: torch.optim.Optimizer, grads: dict, max_grad_norm: float) -> float:
    """One optimizer step along the averaged gradient, its global norm clipped; returns the norm before clipping."""
    for name, p in model.named_parameters():
        p.grad = torch.from_numpy(grads[name]).to(p.device)
    grad_norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(grad_norm)


def ppo_update(args: Args, model: Policy, optimizer: torch.optim.Optimizer, pool: WorkerPool, answers: dict,
               weights_ref, global_step: int) -> dict:
    """`--update-epochs` x `--num-minibatches` gradient rounds, each worker on a minibatch of its own samples, each
    followed by a learner step; a signal ends them early (the model and optimizer stay consistent). Returns the
    scalars to log: the last round's losses, the mean clip fraction, the number of learner steps."""
    stats = [a["stats"] for a in answers.values() if a["stats"][0] > 0]
    holders = [i for i, a in answers.items() if a["stats"][0] > 0]
    if not stats:
        return {"charts/gradient_steps": 0}
    adv_mean, adv_std = combine_stats(stats) if args.norm_adv else (0.0, 1.0)
    means, clipfracs, grad_norm = None, [], math.nan
    for epoch, minibatch in np.ndindex(args.update_epochs, args.num_minibatches):
        if pool.stop_signal:
            break
        if epoch + minibatch > 0:
            weights_ref = ray.put(weights_numpy(model))
        results = pool.round(global_step, "gradient", holders, weights_ref, adv_mean, adv_std, minibatch,
                             args.num_minibatches)
        holders = [i for i in holders if i in results]  # a worker that died lost its batch
        if not holders:
            break
        answered = [results[i] for i in holders if results[i]["n"] > 0]
        if answered:  # none: every worker holds fewer samples than minibatches; the next one has some
            grads, means, _ = average_gradients(answered)
            grad_norm = learner_step(model, optimizer, grads, args.max_grad_norm)
            clipfracs.append(means["clipfrac"])
        last_of_epoch = minibatch == args.num_minibatches - 1
        if last_of_epoch and args.target_kl is not None and means and means["approx_kl"] > args.target_kl:
            break  # as CleanRL: checked once per epoch
    if means is None:
        return {"charts/gradient_steps": 0}
    return {"charts/gradient_steps": len(clipfracs), "charts/batch_samples": sum(s[0] for s in stats),
            **{f"losses/{k}": means[k] for k in ("policy_loss", "entropy", "old_approx_kl", "approx_kl")},
            "losses/clipfrac": float(np.mean(clipfracs)), "losses/grad_norm": grad_norm}


def lr_schedule_for(learning_rate: float, total_timesteps: int, anneal_lr: bool) -> LinearSchedule:
    """Adam's learning rate over a run: annealed linearly to 0 at `total_timesteps` (`--anneal-lr`), else constant."""
    return LinearSchedule(0, learning_rate, total_timesteps if anneal_lr else 0, 0.0 if anneal_lr else learning_rate)


# ---------------------------------------------------------------------------- training loop
def train(args: Args, model: Policy, optimizer: torch.optim.Optimizer, lr_schedule: LinearSchedule, run: RunLog,
          pool: WorkerPool, global_step: int, iteration: int) -> tuple[int, int]:
    """A rollout round, its episodes, the gradient rounds; until the run stops or no worker is left.
    Returns the agent steps and iterations reached."""
    while run.going(global_step) and pool.alive:
        if not pool.up():  # every worker is down: wait for Ray to restart one, or for --worker-timeout
            pool.ask_the_dead()
            time.sleep(0.5)
            continue
        iteration += 1
        lr = lr_schedule(global_step)
        optimizer.param_groups[0]["lr"] = lr
        # ALGO LOGIC: the rollout round: the weights go out once, every worker plays `--num-steps` per game
        t0 = time.time()
        weights_ref = ray.put(weights_numpy(model))
        answers = pool.round(global_step, "rollout", pool.up(), weights_ref, args.seed + global_step)
        step_before, global_step = global_step, global_step + sum(a["steps"] for a in answers.values())
        for step, episodic_return, episodic_length in round_episodes(answers, step_before, args.num_envs):
            run.episode_done(step, episodic_return, episodic_length)  # TRY NOT TO MODIFY: progress.csv, TensorBoard
        rollout_s, t0 = time.time() - t0, time.time()
        if not answers:  # every worker is restarting, or a second signal abandoned the round
            time.sleep(0.5)
            continue

        # ALGO LOGIC: the gradient rounds and learner steps on the workers' samples
        scalars = ppo_update(args, model, optimizer, pool, answers, weights_ref, global_step)

        # TRY NOT TO MODIFY: logging, checkpoints, the progress line
        run.log(global_step, {"charts/SPS": run.sps(global_step), "charts/learning_rate": lr, **scalars,
                              "charts/worker_failures": pool.failures, "charts/workers": len(answers),
                              "charts/rollout_time_s": rollout_s, "charts/update_time_s": time.time() - t0,
                              "charts/pending_steps": sum(a["pending"] for a in answers.values())})
        if run.checkpoint_due(global_step):
            save_checkpoint(args, model, optimizer, lr_schedule, run, pool, global_step, iteration)
        run.show(global_step, f" | workers {len(answers)}/{args.num_workers}"
                 + (f" | failures {pool.failures}" if pool.failures else ""))
    return global_step, iteration


# ---------------------------------------------------------------------------- checkpoints and evaluation
def save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(args: Args, model: Policy, optimizer: torch.optim.Optimizer, lr_schedule: LinearSchedule,
                    run: RunLog, pool: WorkerPool, global_step: int, iteration: int) -> None:
    save_atomic({"script": SCRIPT, "args": asdict(args), "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(), "global_step": global_step, "iteration": iteration,
                 "worker_failures": pool.failures, "lr_schedule": asdict(lr_schedule), **run.state(),
                 "python_rng": random.getstate(), "torch_rng": torch.get_rng_state()}, run.run_dir / CHECKPOINT)


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag."""
    ckpt, p = read_checkpoint(path, flag, lambda f: torch.load(f, map_location="cpu", weights_only=True))
    checked_checkpoint(ckpt, path, flag, weights_only=isinstance(ckpt, dict) and "optimizer" not in ckpt)
    if "fc1.weight" in ckpt.get("model", {}):
        raise BadInput(f"{flag} {path!r}: written by an older ppo_ray.py (dense fc1/fc2 layout); retrain, or "
                       "load it with that version")
    if flag == "--resume" and "lr_schedule" not in ckpt:  # written before schedules were saved: its own total's
        a = ckpt["args"]
        ckpt["lr_schedule"] = asdict(lr_schedule_for(a["learning_rate"], a["total_timesteps"], a["anneal_lr"]))
    return ckpt, p


def pick_device(want_cuda: bool) -> torch.device:
    if want_cuda and not torch.cuda.is_available():
        print("CUDA not available: running on CPU")
    return torch.device("cuda" if want_cuda and torch.cuda.is_available() else "cpu")


def evaluate_checkpoint(args: Args, device: torch.device) -> None:
    """`--eval-checkpoint`: play the saved weights on the env they were trained on."""
    ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
    trained = Args(**{**asdict(args), **{k: ckpt["args"][k] for k in ("env_id", "frameskip")}})
    model = Policy().to(device)
    model.load_state_dict(ckpt["model"])
    evaluate_and_report(model, trained, new_run_dir(args, trained.env_id, "-eval"), path, device)


def evaluate_and_report(model: Policy, args: Args, out_dir: Path, checkpoint: Path, device: torch.device) -> dict:
    """`--eval-episodes` games after training or for `--eval-checkpoint`, on `--eval-sticky` or the env's own."""
    sticky = eval_sticky(args, args.env_id)
    returns = evaluate(model, args, sticky, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, device,
                       out_dir / "videos" if args.capture_video else None)
    return report_eval(out_dir, returns, checkpoint, args.env_id, sticky)


def evaluate(model: Policy, args: Args, sticky: float, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games, sampling actions as in training; each game plays its fixed share of episodes."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(ale_game(args.env_id)["game"], sticky, args.frameskip, num_envs, num_threads=0)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames, prev_done = DifferenceFrames(num_envs), np.ones(num_envs, bool)
    returns, ep_return = [], np.zeros(num_envs)
    model.eval()
    while (quota > 0).any():
        up, _ = act(model, frames(obs[:, 0], prev_done), rng, device)
        obs, reward, terminated, truncated, _ = envs.step(np.where(up, UP, DOWN))
        ep_return += reward
        prev_done = terminated | truncated  # SameStep autoreset: `obs` already shows the next game's first frame
        for e in np.flatnonzero(prev_done & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[prev_done] = 0.0
    envs.close()
    if video_dir is not None:
        record_video(model, args, seed, device, video_dir)
    model.train()
    return returns


def record_video(model: Policy, args: Args, seed: int, device: torch.device, video_dir: Path) -> None:
    """One episode in a rendering Gymnasium env with the same preprocessing, written as MP4 with OpenCV."""
    import cv2

    env = gym.make(args.env_id, render_mode="rgb_array", frameskip=args.frameskip)
    video_dir.mkdir(parents=True, exist_ok=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frame = env.render()
    writer = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15,
                             (frame.shape[1], frame.shape[0]))
    frames, new_episode, done = DifferenceFrames(1), np.ones(1, bool), False
    while not done:
        writer.write(cv2.cvtColor(env.render(), cv2.COLOR_RGB2BGR))
        up, _ = act(model, frames(obs[None], new_episode), rng, device)
        obs, _, terminated, truncated, _ = env.step(UP if up[0] else DOWN)
        new_episode[0], done = False, terminated or truncated
    writer.release()
    env.close()


# ---------------------------------------------------------------------------- Ray: the cluster and the workers
def start_ray(args: Args) -> list[int]:
    """A private local Ray sized to the workers, or the cluster at `--ray-address`, once the workers are known to
    fit its CPUs. Ray's processes start with SIGINT ignored, so a terminal's Ctrl-C (sent to the whole process
    group) reaches only this driver. Returns the list in which Ctrl-C and SIGTERM note themselves from then on."""
    cpus = args.num_workers * args.cpus_per_worker
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if args.ray_address:
        check_reachable(args.ray_address)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if args.ray_address:
            join_cluster(args.ray_address)
        elif cpus <= usable:  # else refused below, without starting Ray
            ray.init(address="local", num_cpus=max(1, math.ceil(cpus)), num_gpus=0, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR,
                     object_store_memory=(100 + 20 * args.num_workers) * 1024 ** 2)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    have, where = (ray.cluster_resources().get("CPU", 0), "the Ray cluster") if args.ray_address else \
        (usable, "this machine")
    if cpus > have:
        raise BadInput(f"--num-workers {args.num_workers}: needs {cpus:g} CPUs at --cpus-per-worker "
                       f"{args.cpus_per_worker:g}, {where} has {have:g}; use fewer workers, a smaller "
                       "--cpus-per-worker, or --ray-address of a bigger cluster")
    return catch_stop_signals()


def check_reachable(address: str) -> None:
    """Fail in seconds, not minutes, when nothing listens at `--ray-address` (ray.init would keep retrying)."""
    if address in ("auto", "local"):
        return
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise BadInput(f"--ray-address {address!r}: must be empty (local Ray), 'auto', or host:port of a running "
                       "Ray cluster's head (e.g. 127.0.0.1:6379)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=3).close()
    except OSError as e:
        raise BadInput(f"--ray-address {address!r}: no Ray cluster reachable there ({e.strerror or e}); start one "
                       "with `ray start --head` or leave the flag empty for a local Ray") from None


def join_cluster(address: str) -> None:
    """`ray.init` on a running cluster, its connection retries' log lines kept off stderr unless it fails. As `ray
    start --head` (not `ray.init`) does, use token authentication when a token is at hand (RAY_AUTH_TOKEN,
    RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token): Ray has no public call for this, hence its private helper."""
    try:
        from ray._private.authentication.authentication_token_setup import \
            maybe_enable_token_auth_if_token_available as use_token_if_any
    except ImportError:  # a Ray without token authentication
        def use_token_if_any(**_):
            return False
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            use_token_if_any(warn_if_disabled=False)
            ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR)
            return
        except Exception as e:
            error = e
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        said = log.read().decode(errors="replace")
    if "Unauthenticated" in said or "AuthToken" in said or "uthentication" in str(error):
        raise BadInput(f"--ray-address {address!r}: the cluster refused this machine's Ray auth token; make the "
                       "head's token available here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    raise BadInput(f"--ray-address {address!r}: could not join a Ray cluster there: {first}")


# A worker's answer is lost with it: its process died (RayActorError), or its node did, with the answer still in
# that node's object store (ObjectLostError)
LOST = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError)


class WorkerPool:
    """The Ray actors and what becomes of them. Ray restarts a dead one (`max_restarts`) once the cluster has room
    for it; with `max_task_retries=0` a call in flight when it dies fails rather than being replayed. A round calls
    the workers that are up and goes on with the answers that arrive. A dead worker is left out of the rounds and
    asked in the background (a cheap `info` call, never waited on) until it answers: restarted, it plays fresh
    games from the next round, so the survivors keep their own pace meanwhile. Out of restarts, or not back
    `--worker-timeout` s after its death (its node is gone, say): dropped. Deaths, restarts and drops are printed,
    logged to `workers.csv` (step, time, worker, pid, host, Ray node) and counted in `charts/worker_failures`."""

    def __init__(self, args: Args, stop_signal: list[int], failures: int):
        game = ale_game(args.env_id)
        actor = ray.remote(num_cpus=args.cpus_per_worker, max_restarts=args.max_restarts, max_task_retries=0)(Worker)
        self.workers = [actor.remote(i, game["game"], game["repeat_action_probability"], args.frameskip,
                                     args.num_envs, args.num_steps, args.gamma, args.clip_coef, args.ent_coef)
                        for i in range(args.num_workers)]
        self.args, self.stop_signal, self.failures = args, stop_signal, failures
        self.alive, self.deaths = list(range(args.num_workers)), [0] * args.num_workers
        self.where: dict[int, dict] = {}  # worker -> pid, host and node of its latest process
        self.down: dict[int, float] = {}  # worker -> when it died; left out of rounds until it answers again
        self.probes: dict[int, ray.ObjectRef] = {}  # worker -> the pending `info` call that asks if it is back
        self.events: list[tuple] = []  # workers.csv rows, written once the run dir exists
        self.run, self.file, self.step = None, None, 0

    def start(self, global_step: int) -> None:
        """Wait until every worker has answered once (logging where it runs), or a signal came."""
        while not self.stop_signal and any(i not in self.where for i in self.alive):
            self.round(global_step, "info", [i for i in self.alive if i not in self.where], within_s=60)
            if any(i not in self.where for i in self.alive) and not self.stop_signal:
                print(f"still waiting for {sum(i not in self.where for i in self.alive)} workers to start (are "
                      "the cluster's CPUs busy?)", file=sys.stderr, flush=True)
        self.exit_if_gone()

    def round(self, global_step: int, method: str, targets: list[int], *call_args,
              within_s: Optional[float] = None) -> dict[int, dict]:
        """Call `method` on each target worker that is up; the answers that arrived, by worker. Left out: those not
        in within `within_s` (a timed round also ends at a first signal), and all of them at a second signal."""
        self.step, deadline = global_step, time.time() + (within_s or math.inf)
        self.ask_the_dead()
        up = set(self.up())
        refs = {getattr(self.workers[i], method).remote(*call_args): i for i in targets if i in up}
        pending, answers = list(refs), {}
        while pending and time.time() < deadline and not (within_s and self.stop_signal):
            if len(self.stop_signal) >= 2:
                print("second signal: the round in flight is abandoned", file=sys.stderr, flush=True)
                return {}
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            for ref in ready:
                i = refs[ref]
                try:
                    answers[i] = ray.get(ref)
                    self.answered(i, answers[i])
                except LOST as e:
                    self.failed(i, method, e)
        return dict(sorted(answers.items()))

    def up(self) -> list[int]:
        return [i for i in self.alive if i not in self.down]

    def ask_the_dead(self) -> None:
        """For each dead worker: take the answer of its background `info` call if it came (it is back), else drop
        it once Ray gives up on it or after `--worker-timeout` s, else keep one such call pending."""
        for i in list(self.down):
            probe = self.probes.pop(i, None)
            if probe is not None and ray.wait([probe], timeout=0)[0]:
                try:
                    self.answered(i, ray.get(probe))
                    continue
                except ray.exceptions.ActorDiedError:  # for good: Ray will not restart it
                    self.drop(i, "Ray will not restart it (out of --max-restarts)")
                    continue
                except LOST:  # not placed again yet
                    probe = None
            if time.time() - self.down[i] > self.args.worker_timeout:
                self.drop(i, f"not back {self.args.worker_timeout:g} s after it died (--worker-timeout)")
            else:
                self.probes[i] = probe or self.workers[i].info.remote()

    def answered(self, i: int, answer: dict) -> None:
        before = self.where.get(i)
        self.where[i] = {**(before or {}), **{k: answer[k] for k in ("pid", "host", "node") if k in answer}}
        if i in self.down and before is not None:  # back after a death
            del self.down[i]
            was = (before.get("node"), before["pid"])
            restarted = (self.where[i]["node"], answer["pid"]) != was
            print(f"worker {i} restarted: pid {answer['pid']} (was {was[1]}) on node "
                  f"{self.where[i]['node'][:8]}, fresh games, current weights" if restarted else
                  f"worker {i} answers again (pid {answer['pid']})", flush=True)
            self.event(i, "restarted" if restarted else "back")
        elif before is None:  # its first answer (it may have died once before giving one)
            self.down.pop(i, None)
            print(f"worker {i}: pid {answer['pid']} on {answer['host']}, Ray node {answer['node'][:8]}, "
                  f"{self.args.num_envs} games", flush=True)
            self.event(i, "started")

    def failed(self, i: int, method: str, error: Exception) -> None:
        self.failures += 1
        self.deaths[i] += 1
        self.down[i] = time.time()
        where = self.where.get(i, {})
        print(f"worker {i} (pid {where.get('pid')}, node {where.get('node', '?')[:8]}) died during {method} at step "
              f"{self.step:,} ({type(error).__name__}); the run goes on with the workers that are up", flush=True)
        self.event(i, "died")
        if self.run is not None:
            self.run.log(self.step, {"charts/worker_failures": self.failures})
        if 0 <= self.args.max_restarts < self.deaths[i]:
            self.drop(i, f"out of restarts (--max-restarts {self.args.max_restarts})")
        elif not self.up():
            print(f"no worker is up: waiting up to {self.args.worker_timeout:g} s (--worker-timeout) for Ray to "
                  "restart one", flush=True)

    def drop(self, i: int, why: str) -> None:
        if i not in self.alive:
            return
        self.alive.remove(i)
        self.down.pop(i, None)
        self.probes.pop(i, None)
        ray.kill(self.workers[i], no_restart=True)  # should Ray place it again later, it would hold a CPU for nothing
        self.gone = f"all {self.args.num_workers} workers are gone ({why})"
        print(f"worker {i} dropped: {why}; {len(self.alive)} workers left", flush=True)
        self.event(i, "dropped")

    def event(self, i: int, what: str) -> None:
        where = self.where.get(i, {})
        self.events.append((self.step, time.strftime("%Y-%m-%dT%H:%M:%S%z"), i, where.get("pid"),
                            where.get("host", ""), where.get("node", ""), what))
        self.write_events()

    def write_events(self) -> None:
        """To workers.csv, and as TensorBoard text (which worker, where, what), once the run dir exists."""
        if self.file is None:
            return
        for step, when, i, pid, host, node, what in self.events:
            self.run.writer.add_text("workers", f"{when}: worker {i} {what} (pid {pid}, {host}, Ray node {node})",
                                     step)
        self.csv.writerows(self.events)
        self.events.clear()
        self.file.flush()

    def log_to(self, run: RunLog) -> None:
        """From now on: `workers.csv` in the run dir (appended to on a resume), failures in TensorBoard too."""
        path = run.run_dir / "workers.csv"
        self.run, self.file = run, open(path, "a", newline="")
        self.csv = csv.writer(self.file)
        if path.stat().st_size == 0:
            self.csv.writerow(["global_step", "time", "worker", "pid", "host", "node", "event"])
        self.write_events()

    def close(self) -> None:
        self.file.close()

    def exit_if_gone(self, run: Optional[RunLog] = None, global_step: int = 0) -> None:
        """No worker left (all died more often than `--max-restarts` or never came back): one line, exit 1."""
        if self.alive:
            return
        resume = ""
        if run is not None:  # after the checkpoint
            run.writer.close()
            resume = (f"; checkpoint written at step {global_step:,}. Resume with: python {SCRIPT}.py --resume "
                      f"{shlex.quote(str(run.run_dir))}")
        print(f"{SCRIPT}.py: error: {self.gone}{resume}", file=sys.stderr)
        sys.exit(1)


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    torch.set_num_threads(args.torch_threads)
    device = pick_device(args.cuda)
    if args.eval_checkpoint is not None:
        return evaluate_checkpoint(args, device)
    ckpt, run_dir = open_run(args, load_checkpoint)
    try:
        stop_signal = start_ray(args)
        pool = WorkerPool(args, stop_signal, ckpt["worker_failures"] if ckpt else 0)
        pool.start(ckpt["global_step"] if ckpt else 0)
        if stop_signal:  # while the workers started: nothing to save, no run dir made
            print(f"stopped by signal {stop_signal[0]} before training started", file=sys.stderr)
            sys.exit(128 + stop_signal[0])

        random.seed(args.seed)
        np.random.seed(args.seed)
        torch.manual_seed(args.seed)
        torch.backends.cudnn.deterministic = args.torch_deterministic
        model = Policy().to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
        lr_schedule = lr_schedule_for(args.learning_rate, args.total_timesteps, args.anneal_lr)
        global_step, iteration = 0, 0
        if ckpt is not None:
            model.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
            global_step, iteration = ckpt["global_step"], ckpt["iteration"]
            random.setstate(ckpt["python_rng"])
            torch.set_rng_state(ckpt["torch_rng"])
            lr_schedule = LinearSchedule(**ckpt["lr_schedule"]).resumed(
                global_step, ckpt["args"]["total_timesteps"], args.total_timesteps, "learning-rate")
            print(f"resumed {run_dir} at step {global_step:,}, episode {ckpt['episode']}")

        from torch.utils.tensorboard import SummaryWriter

        run = RunLog(args, run_dir, ckpt, lambda logdir, purge_step: SummaryWriter(logdir, purge_step=purge_step),
                     stop_signal=stop_signal)  # only now that the workers run: a failed start leaves no run dir
        pool.log_to(run)
        global_step, iteration = train(args, model, optimizer, lr_schedule, run, pool, global_step, iteration)
        save_checkpoint(args, model, optimizer, lr_schedule, run, pool, global_step, iteration)
        pool.close()
        run.close(global_step)
        pool.exit_if_gone(run, global_step)
        save_atomic({"script": SCRIPT, "args": asdict(args), "model": model.state_dict(),
                     "global_step": global_step}, run_dir / "final_model.pt")
    finally:
        ray.shutdown()  # on every way out; before the evaluation, to free the workers' CPUs
    run.finish(global_step, evaluate_and_report(model, args, run_dir, run_dir / "final_model.pt", device))


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
