"""PPO-clip on Karpathy's Pong policy network, with rollouts and gradients computed in Ray actors.

Lineage: Karpathy's "Pong from Pixels" policy gradient (80x80 difference frame, 200 hidden ReLU
units, one sigmoid output: P(UP)), as parallelised over Ray actors in Ray's pg-pong example
(`../shared/seeds/002_*.txt`: each actor plays and computes a gradient, the driver sums them and
updates the model); the update is PPO's clipped surrogate (Schulman et al. 2017) with CleanRL's
`ppo_atari.py` flag names, defaults and logging. Usage: `python ppo_ray.py --num-workers 2`
(`--ray-address <head>:6379` to join a running cluster; see `--help`); the reported score, its
command and curve are in `benchmark/RESULTS.md`.

How it is distributed: each Ray actor (one per `--num-workers`, `--cpus-per-worker` CPUs each) owns
`--num-envs` Pong games in ale-py's native vector env. One iteration is:
1. rollout round: the learner `ray.put`s the weights once; every actor plays `--num-steps` steps on
   each of its games with them and keeps the data it collected; it sends back only counts, the
   finished episodes and the sums needed for the global return mean and std;
2. `--update-epochs` x `--num-minibatches` gradient rounds: each actor deals its own samples into
   that many minibatches per epoch (shuffled) and, each round, computes the gradient of the PPO-clip
   loss (mean over one minibatch) with the latest weights; the learner averages the gradients weighted
   by sample counts (= the gradient of the mean loss over the union of the minibatches, CleanRL's
   minibatch of the whole batch), clips the norm, steps Adam and `ray.put`s the new weights once for
   the next round. Experience never leaves the actor that
   collected it; only weights (5 MB) and gradients (5 MB per actor) travel.
The same script runs on one machine (`--ray-address ""`, the default, starts a private local Ray
sized to the workers and stops it on exit) or on a multi-node cluster (`--ray-address host:port`).
The nodes need this script's packages (numpy, torch, ale-py); the worker code travels by pickle.

Surviving a dead worker: actors are created with Ray's `max_restarts` (`--max-restarts`) and
`max_task_retries=0`, so a call to a dead actor fails (`RayActorError`; `ActorUnavailableError`
while Ray restarts it) instead of being replayed. The learner finishes the round with the gradients
that arrived (averaged over the samples that arrived), prints a line, logs `charts/worker_failures`
and a row in `<run-dir>/workers.csv` (where each actor's PID and host are logged from the start),
and calls the worker again each round until it answers: a restarted actor (new PID, logged) starts
fresh games with the current weights. A worker that dies more than `--max-restarts` times, or is not
back 10 minutes after dying, is dropped; the run stops (checkpoint, exit 1) only when none is left.

Starting and stopping Ray: without `--ray-address` the driver starts a private local Ray with
exactly the workers' CPUs, no dashboard and no log forwarding (a few seconds), and shuts it down on
every exit path, Ctrl-C and SIGTERM included: the first signal lets the round in flight finish,
then the driver checkpoints, stops Ray and exits 128+signal (a second signal abandons the round).
Ray's processes start with SIGINT ignored, so a terminal's Ctrl-C reaches only the driver. Joining
a cluster that uses token authentication needs its token here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH
or ~/.ray/auth_token), as for any Ray client.

Preprocessing is Karpathy's, batched in NumPy on raw 210x160 RGB frames from
`ale_py.vector_env.AtariVectorEnv` (stack 1, no max-pool, no FIRE on reset, 0-30 random no-ops on
reset, `--frameskip 4`): crop rows 35:195, keep every second pixel of the red channel (80x80),
erase the two background colours (144, 109), set the rest (paddles, ball) to 1; the network sees
the difference of the current and previous such frame (zeros on an episode's first step), which
shows the ball's motion without a frame stack. This is the seed's network input, so the seed's
2-layer MLP works unchanged; a CNN on the DeepMind stack is `dqn_cnn.py`'s job.

Returns and advantages are Karpathy's, with no critic: the discounted return of each step within
its point (the running sum restarts at every non-zero reward, Pong's point boundary), standardised
with the mean and std over all samples of the iteration (all workers). A point still running when a
rollout ends has no return yet: its steps stay on their actor and join the batch of the iteration
in which the point ends, with the log-probabilities of the policy that played them, so the PPO
ratio corrects for the (usually one-iteration) lag. Worker RNG, games in progress and these
pending steps are not checkpointed: `--resume` restarts the games, reseeded from the step reached.

Where the time goes: a gradient round is Ray's hand-over (weights out, one gradient per worker
back) plus a worker's minibatch gradient plus the learner's averaging and Adam step. The last two
are kept small by computing the first layer from the non-zero pixels only, averaging in float32
and Adam's fused CPU kernel; `benchmark/throughput.py` measures the three parts (on the 2-core test
machine: hand-over 6.9 ms, gradient 1.7 ms, learner 1.3 ms) and the whole loop with 1 and 2 workers
(`benchmark/RESULTS.md`). The 16 rounds per iteration are serial, which is what keeps 2 workers on
2 cores from twice 1 worker's speed.

Where this departs from the seed, and why: PPO-clip instead of the plain policy gradient (4 epochs
of 4 minibatches per batch as in CleanRL; the issue asks for PPO); Adam at CleanRL's 2.5e-4 with linear annealing and
gradient-norm clipping 0.5 instead of RMSProp 1e-4 (CleanRL's tested PPO setting); an entropy bonus
0.01 (CleanRL); fixed-length rollouts of `--num-steps` per game instead of whole episodes per
actor, so actors finish rounds together and no game waits for the slowest; `PongNoFrameskip-v4`
with a fixed `--frameskip 4` instead of `Pong-v0` (random 2-4 frame skip and sticky actions, which
the vector env does not offer; an id's own sticky-action probability is kept).
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
D = 80 * 80  # input: one 80x80 difference frame
UP, DOWN = 2, 3  # Pong's minimal action set: NOOP, FIRE, RIGHT (paddle up), LEFT (paddle down), ...


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives Python, NumPy, torch, the workers' action sampling and the environments"""
    env_id: str = "PongNoFrameskip-v4"
    """a Gymnasium id registered by ale-py (its game and sticky-action probability are used)"""
    total_timesteps: int = 10_000_000
    """agent steps (environment steps after frame skip, summed over all workers' games) to train for"""
    cuda: bool = True
    """use CUDA for the learner (averaging, Adam step) and evaluation when present; actors use CPU"""
    torch_deterministic: bool = True
    """set `torch.backends.cudnn.deterministic`"""
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

    num_workers: int = 2
    """Ray actors that each play `--num-envs` games and compute gradients of their own data"""
    ray_address: str = ""
    """empty: start a private local Ray sized to the workers; else a running cluster to join (`host:6379`, `auto`)"""
    cpus_per_worker: float = 1.0
    """CPUs Ray reserves for each actor (fractions allowed); all workers must fit the cluster's CPUs"""
    max_restarts: int = 3
    """Ray restarts of each actor after it dies (-1: unlimited); a worker out of restarts is dropped"""
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
    num_minibatches: int = 4
    """gradient rounds (optimizer steps) per epoch; each worker contributes that share of its own samples"""
    clip_coef: float = 0.1
    """PPO's surrogate clipping coefficient"""
    ent_coef: float = 0.01
    """entropy bonus coefficient"""
    max_grad_norm: float = 0.5
    """clip the averaged gradient to this global norm"""
    target_kl: Optional[float] = None
    """stop an iteration's epochs early once the approximate KL to the behaviour policy exceeds this"""


class BadInput(Exception):
    """A flag value that type-checks but makes no sense; reported as one line, exit code 2."""


def check_args(args: Args) -> None:
    def need(ok: bool, flag: str, allowed: str, value) -> None:
        if not ok:
            raise BadInput(f"{flag} {value!r}: must be {allowed}")

    need(args.total_timesteps > 0, "--total-timesteps", "a positive number of agent steps", args.total_timesteps)
    need(args.eval_checkpoint is None or args.resume is None, "--eval-checkpoint", "used without --resume",
         args.eval_checkpoint)
    need(args.num_workers > 0, "--num-workers", "at least 1", args.num_workers)
    need(args.cpus_per_worker > 0, "--cpus-per-worker", "positive", args.cpus_per_worker)
    need(args.max_restarts >= -1, "--max-restarts", "-1 (unlimited) or at least 0", args.max_restarts)
    need(args.num_envs > 0, "--num-envs", "at least 1", args.num_envs)
    need(args.num_steps > 0, "--num-steps", "at least 1", args.num_steps)
    need(args.frameskip > 0, "--frameskip", "at least 1", args.frameskip)
    need(args.save_every > 0, "--save-every", "a positive number of agent steps", args.save_every)
    need(args.eval_episodes > 0, "--eval-episodes", "at least 1", args.eval_episodes)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.update_epochs > 0, "--update-epochs", "at least 1", args.update_epochs)
    need(args.num_minibatches > 0, "--num-minibatches", "at least 1", args.num_minibatches)
    need(args.clip_coef > 0, "--clip-coef", "positive", args.clip_coef)
    need(args.ent_coef >= 0, "--ent-coef", "at least 0", args.ent_coef)
    need(args.max_grad_norm > 0, "--max-grad-norm", "positive", args.max_grad_norm)
    need(args.target_kl is None or args.target_kl > 0, "--target-kl", "positive", args.target_kl)
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


def make_env(game: str, repeat_action_probability: float, frameskip: int, num_envs: int, num_threads: int = 1):
    """Raw 210x160 RGB frames from ale-py's vector env; the step ending an episode returns the next's first frame."""
    return ale_py.vector_env.AtariVectorEnv(
        game=game, num_envs=num_envs, frameskip=frameskip, stack_num=1, grayscale=False, img_height=210,
        img_width=160, maxpool=False, noop_max=30, use_fire_reset=False, episodic_life=False,
        reward_clipping=False, repeat_action_probability=repeat_action_probability, autoreset_mode="SameStep",
        num_threads=num_threads)


def preprocess(frames: np.ndarray) -> np.ndarray:
    """Karpathy's preprocessing, batched: (..., 210, 160, 3) uint8 -> (..., 6400) uint8 in {0, 1}."""
    f = frames[..., 35:195:2, ::2, 0]  # crop, downsample by 2, red channel
    out = (f != 144) & (f != 109) & (f != 0)  # erase both backgrounds; paddles and ball -> 1
    return out.reshape(*frames.shape[:-3], D).astype(np.uint8)


# ---------------------------------------------------------------------------- model
class Policy(nn.Module):
    """The seed's network: 6400 -> 200 ReLU -> 1 logit of P(UP), no biases, its "Xavier" initialisation.

    Karpathy's W1 is stored input-major (`w1[p]` holds pixel p's weights) because a binary difference
    frame has ~10-60 non-zero pixels of 6400: the hidden layer is the signed sum of those pixels' rows
    (`F.embedding_bag`), the same function as `relu(x @ w1)` (tested) at a fraction of the cost, and
    so is its gradient, which only touches those rows."""

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


def log_prob(logits: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """log pi(a|s) of the two-action Bernoulli policy: log sigmoid(z) for UP, log sigmoid(-z) for DOWN."""
    return F.logsigmoid(torch.where(up.bool(), logits, -logits))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    p = torch.sigmoid(logits)
    return -(p * F.logsigmoid(logits) + (1 - p) * F.logsigmoid(-logits))


def weights_numpy(model: nn.Module) -> dict:
    return {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}


def load_weights(model: nn.Module, weights: dict) -> None:
    model.load_state_dict({k: torch.tensor(np.asarray(v)) for k, v in weights.items()})


# ---------------------------------------------------------------------------- returns and loss
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
    return {"n": len(x), "grads": {k: p.grad.detach().numpy() for k, p in model.named_parameters()},
            "sums": {k: float(v.sum()) for k, v in parts.items()}}


def average_gradients(results: list[dict]) -> tuple[dict, dict, int]:
    """Sample-weighted mean of the workers' gradients (= the gradient of the mean loss over all their samples)."""
    results = [r for r in results if r["n"] > 0]
    n = sum(r["n"] for r in results)
    grads = {}
    for k in results[0]["grads"]:
        grads[k] = results[0]["grads"][k] * np.float32(results[0]["n"] / n)
        for r in results[1:]:
            grads[k] += r["grads"][k] * np.float32(r["n"] / n)
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


# ---------------------------------------------------------------------------- the Ray actor
class Worker:
    """Owns `num_envs` games; plays them with the weights it is sent and computes PPO gradients of its own data.

    A plain class: `main` turns it into a Ray actor, tests use it directly."""

    def __init__(self, index: int, game: str, repeat_action_probability: float, frameskip: int, num_envs: int,
                 num_steps: int, gamma: float, clip_coef: float, ent_coef: float):
        torch.set_num_threads(1)
        self.index, self.num_envs, self.num_steps, self.gamma = index, num_envs, num_steps, gamma
        self.clip_coef, self.ent_coef = clip_coef, ent_coef
        self.envs = make_env(game, repeat_action_probability, frameskip, num_envs, num_threads=1)
        self.model = Policy()
        self.obs = None  # games start at the first rollout, seeded by the learner
        self.batch = None
        self.order = None  # this batch's samples in the current epoch's order; dealt out at each minibatch 0

    def info(self) -> dict:
        return {"pid": os.getpid(), "host": socket.gethostname()}

    def _start(self, seed: int) -> None:
        seq = np.random.SeedSequence([seed, self.index])
        env_seeds = (seq.generate_state(self.num_envs) & 0x7FFFFFFF).astype(np.int64)
        self.obs, _ = self.envs.reset(seed=env_seeds)
        self.rng = np.random.default_rng(seq.spawn(1)[0])
        self.prev = np.zeros((self.num_envs, D), np.uint8)
        self.fresh = np.ones(self.num_envs, bool)  # next step is an episode's first: difference frame 0
        self.ep_return = np.zeros(self.num_envs)
        self.ep_length = np.zeros(self.num_envs, np.int64)
        self.pending = [{"x": [], "up": [], "logp": [], "r": []} for _ in range(self.num_envs)]

    def rollout(self, weights: dict, seed: int) -> dict:
        """Play `num_steps` steps per game; keep the samples of the points that ended; report counts and episodes."""
        load_weights(self.model, weights)
        if self.obs is None:
            self._start(seed)
        ready = {"x": [], "up": [], "logp": [], "returns": []}
        episodes = []
        for t in range(self.num_steps):
            cur = preprocess(self.obs[:, 0])
            x = cur.astype(np.int8) - self.prev.astype(np.int8)
            x[self.fresh] = 0
            self.prev, self.fresh = cur, np.zeros(self.num_envs, bool)
            with torch.inference_mode():
                logits = self.model(torch.from_numpy(x))
                p_up = torch.sigmoid(logits).numpy()
                up = self.rng.random(self.num_envs) < p_up
                logp = log_prob(logits, torch.from_numpy(up)).numpy()
            self.obs, reward, terminated, truncated, _ = self.envs.step(np.where(up, UP, DOWN))
            done = terminated | truncated
            self.ep_return += reward
            self.ep_length += 1
            for e in range(self.num_envs):
                seg = self.pending[e]
                seg["x"].append(x[e])
                seg["up"].append(up[e])
                seg["logp"].append(logp[e])
                seg["r"].append(reward[e])
                if reward[e] != 0 or done[e]:  # the point is over: its returns are known
                    ready["returns"].append(discount_rewards(np.array(seg["r"]), self.gamma))
                    for k in ("x", "up", "logp"):
                        ready[k].extend(seg[k])
                    self.pending[e] = {"x": [], "up": [], "logp": [], "r": []}
                if done[e]:
                    episodes.append((t, float(self.ep_return[e]), int(self.ep_length[e])))
                    self.ep_return[e], self.ep_length[e] = 0.0, 0
            self.fresh = done.copy()
        n = len(ready["x"])
        self.order = None
        self.batch = None if n == 0 else {
            "x": np.stack(ready["x"]), "up": np.array(ready["up"], bool),
            "logp": np.array(ready["logp"], np.float32), "returns": np.concatenate(ready["returns"])}
        count, total, squares = return_stats(self.batch["returns"] if n else np.zeros(0))
        return {"pid": os.getpid(), "steps": self.num_steps * self.num_envs, "episodes": episodes,
                "stats": (count, total, squares), "pending": sum(len(s["x"]) for s in self.pending)}

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


# ---------------------------------------------------------------------------- evaluation
def evaluate(model: Policy, env_id: str, sticky: float, frameskip: int, episodes: int, seed: int, device: torch.device,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games, sampling actions as in training; each game plays its fixed share of episodes."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(ale_game(env_id)["game"], sticky, frameskip=frameskip, num_envs=num_envs, num_threads=0)
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    prev = np.zeros((num_envs, D), np.uint8)
    fresh = np.ones(num_envs, bool)
    returns, ep_return = [], np.zeros(num_envs)
    model.eval()
    while (quota > 0).any():
        cur = preprocess(obs[:, 0])
        x = cur.astype(np.int8) - prev.astype(np.int8)
        x[fresh] = 0
        prev = cur
        with torch.inference_mode():
            p_up = torch.sigmoid(model(torch.from_numpy(x).to(device))).cpu().numpy()
        obs, reward, terminated, truncated, _ = envs.step(np.where(rng.random(num_envs) < p_up, UP, DOWN))
        ep_return += reward
        fresh = terminated | truncated
        for e in np.flatnonzero(fresh & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        ep_return[fresh] = 0.0
    envs.close()
    if video_dir is not None:
        record_video(model, env_id, frameskip, seed, device, video_dir)
    model.train()
    return returns


def record_video(model: Policy, env_id: str, frameskip: int, seed: int, device: torch.device,
                 video_dir: Path) -> None:
    """One episode in a rendering Gymnasium env with the same preprocessing, written as MP4 with OpenCV."""
    import cv2

    env = gym.make(env_id, render_mode="rgb_array", frameskip=frameskip)
    video_dir.mkdir(parents=True, exist_ok=True)
    obs, _ = env.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frame = env.render()
    writer = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15,
                             (frame.shape[1], frame.shape[0]))
    prev, done = None, False
    while not done:
        writer.write(cv2.cvtColor(env.render(), cv2.COLOR_RGB2BGR))
        cur = preprocess(np.asarray(obs))
        x = np.zeros(D, np.int8) if prev is None else cur.astype(np.int8) - prev.astype(np.int8)
        prev = cur
        with torch.inference_mode():
            p_up = float(torch.sigmoid(model(torch.from_numpy(x)[None].to(device))))
        obs, _, terminated, truncated, _ = env.step(UP if rng.random() < p_up else DOWN)
        done = terminated or truncated
    writer.release()
    env.close()


def write_eval(run_dir: Path, returns: list[float], checkpoint: str, env_id: str, sticky: float) -> dict:
    report = {"env_id": env_id, "sticky": sticky, "episodes": len(returns), "mean": float(np.mean(returns)),
              "std": float(np.std(returns)), "min": float(np.min(returns)), "max": float(np.max(returns)),
              "returns": returns, "checkpoint": checkpoint}
    (run_dir / "eval.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


# ---------------------------------------------------------------------------- run plumbing
def fail(message: str, code: int = 2) -> None:
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    sys.exit(code)


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
    if "fc1.weight" in ckpt.get("model", {}):
        raise BadInput(f"{flag} {path!r}: written by an older ppo_ray.py (dense fc1/fc2 layout); retrain, or "
                       "load it with that version")
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


def pick_device(want_cuda: bool) -> torch.device:
    if want_cuda and not torch.cuda.is_available():
        print("CUDA not available: running on CPU")
    return torch.device("cuda" if want_cuda and torch.cuda.is_available() else "cpu")


def usable_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


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
    """`ray.init` on a running cluster, with its connection retries' log lines kept off stderr unless it fails.

    `ray start --head` turns token authentication on when its machine holds a token, but `ray.init` with an
    explicit address does not: like `ray start`, use token mode when RAY_AUTH_MODE is unset and a token is
    at hand (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token); a cluster without authentication ignores it.
    Ray has no public call for this, hence its private helper, where this Ray version has it."""
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


class HardStop(Exception):
    """A second Ctrl-C/SIGTERM: stop waiting for the round in flight."""


class NoWorkersLeft(Exception):
    """No worker is left: all died more often than `--max-restarts` or never came back."""


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    device = pick_device(args.cuda)

    if args.eval_checkpoint is not None:
        ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
        env_id, frameskip = ckpt["args"]["env_id"], ckpt["args"]["frameskip"]
        sticky = ale_game(env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
        model = Policy().to(device)
        model.load_state_dict(ckpt["model"])
        out_dir = Path(args.run_dir or f"runs/{env_id.replace('/', '-')}__{args.exp_name}-eval__{args.seed}__"
                                       f"{int(time.time())}")
        out_dir.mkdir(parents=True, exist_ok=True)
        returns = evaluate(model, env_id, sticky, frameskip, args.eval_episodes, args.seed + 10_000, device,
                           out_dir / "videos" if args.capture_video else None)
        report = write_eval(out_dir, returns, str(path), env_id, sticky)
        print(f"eval {path}: {report['episodes']} episodes of {env_id} (sticky actions {sticky:g}), return "
              f"{report['mean']:.2f} ± {report['std']:.2f} (min {report['min']:.0f}, max {report['max']:.0f})"
              f" -> {out_dir / 'eval.json'}")
        return

    ckpt = None
    if args.resume is not None:
        ckpt, path = load_checkpoint(args.resume, "--resume")
        for flag in ("env_id", "frameskip"):
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

    need_cpus = args.num_workers * args.cpus_per_worker
    if args.ray_address:
        check_reachable(args.ray_address)
    elif need_cpus > usable_cpus():
        raise BadInput(f"--num-workers {args.num_workers}: needs {need_cpus:g} CPUs at --cpus-per-worker "
                       f"{args.cpus_per_worker:g}, this machine has {usable_cpus()}; use fewer workers, a smaller "
                       "--cpus-per-worker, or --ray-address of a bigger cluster")

    # Ray's own processes inherit an ignored SIGINT, so a terminal's Ctrl-C (sent to the whole process group)
    # reaches only this driver, which finishes the round in flight, checkpoints and shuts Ray down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if args.ray_address:
            join_cluster(args.ray_address)
        else:
            ray.init(address="local", num_cpus=max(1, math.ceil(need_cpus)), num_gpus=0, include_dashboard=False,
                     log_to_driver=False, logging_level=logging.ERROR,
                     object_store_memory=(100 + 20 * args.num_workers) * 1024 ** 2)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    stop_signal: list[int] = []
    signal.signal(signal.SIGINT, lambda s, f: stop_signal.append(s))
    signal.signal(signal.SIGTERM, lambda s, f: stop_signal.append(s))
    try:
        train(args, device, ckpt, run_dir, stop_signal)
    except HardStop:
        pass
    except NoWorkersLeft as e:
        fail(f"{e}", code=1)
    finally:
        ray.shutdown()
    if stop_signal:
        if (run_dir / "checkpoint.pt").exists():
            print(f"Resume with: {resume_command(run_dir)}", file=sys.stderr)
        else:
            print(f"stopped by signal {stop_signal[0]} before training started", file=sys.stderr)
        sys.exit(128 + stop_signal[0])


def train(args: Args, device: torch.device, ckpt: Optional[dict], run_dir: Path, stop_signal: list[int]) -> None:
    cluster_cpus = ray.cluster_resources().get("CPU", 0)
    need_cpus = args.num_workers * args.cpus_per_worker
    if need_cpus > cluster_cpus:
        raise BadInput(f"--num-workers {args.num_workers}: needs {need_cpus:g} CPUs at --cpus-per-worker "
                       f"{args.cpus_per_worker:g}, the Ray cluster has {cluster_cpus:g}")

    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    torch.backends.cudnn.deterministic = args.torch_deterministic
    game = ale_game(args.env_id)

    model = Policy().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    global_step, episode, iteration, failures, wall_before, recent = 0, 0, 0, 0, 0.0, []
    lr_schedule = LinearSchedule(0, args.learning_rate, args.total_timesteps if args.anneal_lr else 0,
                                 0.0 if args.anneal_lr else args.learning_rate)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        global_step, episode, iteration = ckpt["global_step"], ckpt["episode"], ckpt["iteration"]
        failures, wall_before, recent = ckpt["worker_failures"], ckpt["wall_time_s"], list(ckpt["recent_returns"])
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

    # ---- the workers: Ray actors that Ray restarts after a death; calls to a dead one fail rather than retry
    actor_cls = ray.remote(num_cpus=args.cpus_per_worker, max_restarts=args.max_restarts, max_task_retries=0)(Worker)
    workers = [actor_cls.remote(i, game["game"], game["repeat_action_probability"], args.frameskip, args.num_envs,
                                args.num_steps, args.gamma, args.clip_coef, args.ent_coef)
               for i in range(args.num_workers)]
    alive = list(range(args.num_workers))
    pids: dict[int, int] = {}
    deaths = [0] * args.num_workers
    down: dict[int, float] = {}  # worker -> when it died; calls to it fail fast while Ray restarts it
    events: list[tuple] = []  # (step, worker, pid, host, event): workers.csv rows, written once the run dir exists
    writer = None
    give_up_s = 600.0  # a worker not back this long after its death is dropped (its node is gone, say)

    def drop(i: int, why: str) -> None:
        alive.remove(i)
        down.pop(i, None)
        print(f"worker {i} dropped: {why}; {len(alive)} workers left", flush=True)
        events.append((global_step, i, pids.get(i), "", "dropped"))
        if not alive:
            raise NoWorkersLeft(f"all {args.num_workers} workers are gone ({why})")

    def on_error(i: int, method: str, err: Exception) -> None:
        nonlocal failures
        if i in down:  # still restarting
            if time.time() - down[i] > give_up_s:
                drop(i, f"not back {give_up_s:.0f} s after it died")
            return
        failures += 1
        deaths[i] += 1
        down[i] = time.time()
        print(f"worker {i} (pid {pids.get(i)}) died during {method} at step {global_step:,} ({type(err).__name__}); "
              "this round goes on with the workers that answered", flush=True)
        events.append((global_step, i, pids.get(i), "", "died"))
        if writer is not None:
            writer.add_scalar("charts/worker_failures", failures, global_step)
        if 0 <= args.max_restarts < deaths[i]:
            drop(i, f"out of restarts (--max-restarts {args.max_restarts})")

    def on_answer(i: int, answer: dict) -> None:
        if i in down:
            del down[i]
            if answer["pid"] != pids.get(i):
                print(f"worker {i} restarted: pid {answer['pid']} (was {pids.get(i)}), fresh games, current weights",
                      flush=True)
                events.append((global_step, i, answer["pid"], answer.get("host", ""), "restarted"))
            else:
                print(f"worker {i} answers again (pid {answer['pid']})", flush=True)
                events.append((global_step, i, answer["pid"], answer.get("host", ""), "back"))
        elif i not in pids:
            print(f"worker {i}: pid {answer['pid']} on {answer['host']}, {args.num_envs} games", flush=True)
            events.append((global_step, i, answer["pid"], answer["host"], "started"))
        pids[i] = answer["pid"]

    def run_round(method: str, targets: list[int], *call_args) -> dict[int, dict]:
        """Call `method` on each target worker; return the answers that arrived, logging the workers that died."""
        refs = {getattr(workers[i], method).remote(*call_args): i for i in targets}
        pending, answers = list(refs), {}
        while pending:
            if len(stop_signal) >= 2:
                raise HardStop
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=0.2)
            for ref in ready:
                i = refs[ref]
                try:
                    answers[i] = ray.get(ref)
                    on_answer(i, answers[i])
                except ray.exceptions.RayActorError as e:
                    on_error(i, method, e)
        return answers

    waited = time.time()
    while not stop_signal and any(i not in pids for i in alive):
        run_round("info", [i for i in alive if i not in pids])
        if any(i not in pids for i in alive):
            time.sleep(0.5)
            if time.time() - waited > 60:
                print(f"still waiting for {sum(i not in pids for i in alive)} workers to start (are the cluster's "
                      "CPUs busy?)", file=sys.stderr, flush=True)
                waited = time.time()
    if stop_signal:
        return

    # ---- outputs (created only now that the workers run, so a rejected command leaves no run dir)
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
    header = ["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps"]
    kept = []
    if ckpt is not None and csv_path.exists():  # drop rows logged after the checkpoint (a crash, a kill -9)
        with open(csv_path, newline="") as f:
            kept = [row for row in csv.reader(f)][1:]
        kept = [row for row in kept if row and int(row[0]) <= global_step]
    tmp = csv_path.with_name(csv_path.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        csv.writer(f).writerows([header] + kept)
    os.replace(tmp, csv_path)
    csv_file = open(csv_path, "a", newline="")
    csv_writer = csv.writer(csv_file)
    workers_path = run_dir / "workers.csv"
    workers_file = open(workers_path, "a", newline="")
    workers_csv = csv.writer(workers_file)
    if workers_path.stat().st_size == 0:
        workers_csv.writerow(["global_step", "worker", "pid", "host", "event"])

    def flush_events() -> None:
        workers_csv.writerows(events)
        events.clear()
        workers_file.flush()

    flush_events()

    def checkpoint() -> None:
        save_atomic({
            "script": SCRIPT, "args": asdict(args), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "global_step": global_step, "episode": episode, "iteration": iteration, "worker_failures": failures,
            "lr_schedule": asdict(lr_schedule),
            "wall_time_s": wall_before + time.time() - start, "recent_returns": recent[-100:],
            "python_rng": random.getstate(), "torch_rng": torch.get_rng_state(),
        }, run_dir / "checkpoint.pt")

    progress = Progress(args.total_timesteps)
    start, start_step = time.time(), global_step
    next_save = (global_step // args.save_every + 1) * args.save_every
    hard_stop = False
    error = None
    try:
        while global_step < args.total_timesteps and not stop_signal:
            iteration += 1
            lr = lr_schedule(global_step)
            optimizer.param_groups[0]["lr"] = lr

            # ---- rollout round: one ray.put of the weights for all workers
            t0 = time.time()
            weights_ref = ray.put(weights_numpy(model))
            answers = dict(sorted(run_round("rollout", list(alive), weights_ref, args.seed + global_step).items()))
            envs_played = args.num_envs * len(answers)
            step_before = global_step
            global_step += sum(a["steps"] for a in answers.values())
            sps = (global_step - start_step) / max(time.time() - start, 1e-9)
            for t, i, ep_return, ep_length in sorted((t, i, r, n) for i, a in answers.items()
                                                     for t, r, n in a["episodes"]):
                episode += 1
                recent.append(ep_return)
                step = step_before + (t + 1) * envs_played
                csv_writer.writerow([step, episode, ep_return, ep_length,
                                     f"{wall_before + time.time() - start:.1f}", f"{sps:.1f}"])
                writer.add_scalar("charts/episodic_return", ep_return, step)
                writer.add_scalar("charts/episodic_length", ep_length, step)
            csv_file.flush()
            flush_events()
            rollout_s = time.time() - t0
            if not answers:  # every worker is restarting
                time.sleep(0.5)
                continue

            # ---- gradient rounds: one per minibatch and epoch, each worker on its own data
            t0 = time.time()
            stats = [a["stats"] for a in answers.values() if a["stats"][0] > 0]
            holders = [i for i, a in answers.items() if a["stats"][0] > 0]
            means, clipfracs, gradient_steps = None, [], 0
            if stats and not stop_signal:
                adv_mean, adv_std = combine_stats(stats) if args.norm_adv else (0.0, 1.0)
                for epoch, minibatch in np.ndindex(args.update_epochs, args.num_minibatches):
                    if stop_signal:  # stop soon: fewer rounds still leave a consistent model and optimizer
                        break
                    if epoch + minibatch > 0:
                        weights_ref = ray.put(weights_numpy(model))
                    results = run_round("gradient", holders, weights_ref, adv_mean, adv_std, minibatch,
                                        args.num_minibatches)
                    holders = [i for i in holders if i in results]  # a worker that died lost its batch
                    if not holders:
                        break
                    answered = [results[i] for i in holders if results[i]["n"] > 0]
                    if answered:  # none: every worker holds fewer samples than minibatches; the next one has some
                        grads, means, _ = average_gradients(answered)
                        grad_norm = learner_step(model, optimizer, grads, args.max_grad_norm)
                        gradient_steps += 1
                        clipfracs.append(means["clipfrac"])
                    last_of_epoch = minibatch == args.num_minibatches - 1
                    if last_of_epoch and args.target_kl is not None and means and means["approx_kl"] > args.target_kl:
                        break  # as CleanRL: checked once per epoch
            update_s = time.time() - t0

            writer.add_scalar("charts/SPS", sps, global_step)
            writer.add_scalar("charts/gradient_steps", gradient_steps, global_step)
            writer.add_scalar("charts/learning_rate", lr, global_step)
            writer.add_scalar("charts/worker_failures", failures, global_step)
            writer.add_scalar("charts/workers", len(answers), global_step)
            writer.add_scalar("charts/rollout_time_s", rollout_s, global_step)
            writer.add_scalar("charts/update_time_s", update_s, global_step)
            writer.add_scalar("charts/pending_steps", sum(a["pending"] for a in answers.values()), global_step)
            if means is not None:
                writer.add_scalar("charts/batch_samples", sum(s[0] for s in stats), global_step)
                writer.add_scalar("losses/policy_loss", means["policy_loss"], global_step)
                writer.add_scalar("losses/entropy", means["entropy"], global_step)
                writer.add_scalar("losses/old_approx_kl", means["old_approx_kl"], global_step)
                writer.add_scalar("losses/approx_kl", means["approx_kl"], global_step)
                writer.add_scalar("losses/clipfrac", float(np.mean(clipfracs)), global_step)
                writer.add_scalar("losses/grad_norm", float(grad_norm), global_step)
            if global_step >= next_save:
                checkpoint()
                next_save = (global_step // args.save_every + 1) * args.save_every
            progress.update(global_step, sps, float(np.mean(recent[-100:])) if recent else math.nan,
                            f" | episodes {episode} | workers {len(answers)}/{args.num_workers}"
                            + (f" | failures {failures}" if failures else ""))
    except HardStop:
        hard_stop = True
    except NoWorkersLeft as e:
        error = str(e)

    checkpoint()
    progress.close()
    csv_file.close()
    flush_events()
    workers_file.close()
    if stop_signal or error:
        writer.close()
        if stop_signal:
            print(f"stopped by signal {stop_signal[0]} at step {global_step:,}"
                  + (" (round in flight abandoned)" if hard_stop else "") + "; checkpoint written.", file=sys.stderr)
            return
        fail(f"{error}; checkpoint written at step {global_step:,}. Resume with: python {SCRIPT}.py --resume "
             f"{run_dir}", code=1)

    final = {"script": SCRIPT, "args": asdict(args), "model": model.state_dict(), "global_step": global_step}
    save_atomic(final, run_dir / "final_model.pt")
    ray.shutdown()  # free the workers' CPUs for the evaluation
    sticky = ale_game(args.env_id)["repeat_action_probability"] if args.eval_sticky is None else args.eval_sticky
    returns = evaluate(model, args.env_id, sticky, args.frameskip, args.eval_episodes, args.seed + 10_000, device,
                       run_dir / "videos" if args.capture_video else None)
    report = write_eval(run_dir, returns, str(run_dir / "final_model.pt"), args.env_id, sticky)
    writer.add_scalar("eval/mean_return", report["mean"], global_step)
    writer.close()
    print(f"done: {global_step:,} steps, {episode} episodes, {wall_before + time.time() - start:.0f} s, "
          f"{failures} worker failures; eval {report['mean']:.2f} ± {report['std']:.2f} over "
          f"{report['episodes']} episodes -> {run_dir}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args, args=[*saved_settings(sys.argv[1:]), *sys.argv[1:]]))
    except BadInput as e:
        fail(str(e))
