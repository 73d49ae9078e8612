"""REINFORCE in pure NumPy that learns Atari Pong from pixels: Karpathy's pg-pong, batched over environments.

Lineage: Andrej Karpathy's `pg-pong.py` ("Deep Reinforcement Learning: Pong from Pixels", 2016) as adapted in Ray's
"Learning to Play Pong" documentation example: a 6400-200-1 ReLU network gives the probability of UP,
actions are sampled, and every 10 finished games the weights move along sum_t A_t grad log pi(a_t | x_t) with RMSProp
(decay 0.99), A_t the discounted return (gamma 0.99) restarted at every point scored, standardised. Flag names and
logging follow CleanRL; forward and backward pass are written out in NumPy, float32, no deep-learning framework.
Usage: `python pg_numpy.py` (`--help` for the flags); the reported score, command and curve: `benchmark/RESULTS.md`.

Preprocessing is Karpathy's, not the DeepMind stack: rows 35..194 and every second pixel of the red channel (80x80),
both background colours erased, paddles and ball 1, and the difference of consecutive frames (zero on a game's first):
a fully connected net sees the motion in it, and the seed's network was tuned on it. Raw 210x160 RGB frames come from
ale-py's threaded vector env, or Gymnasium's synchronous one for ids it cannot reproduce (a random frameskip).

Where it departs from the seed:
- `ALE/Pong-v5` (frameskip 4, sticky actions 0.25), not `Pong-v0`'s frameskip drawn from {2, 3, 4} (`--env-id Pong-v0`).
- RMSProp's learning rate 1e-3 (`--learning-rate 1e-4`): with one update per 10 games, 1e-4 barely moves the policy
  in the first hours (`benchmark/probes/pg_numpy_lr/`).
- `--num-envs 8` games at once (`--num-envs 1`), the policy one matrix product for all; updates take whole finished
  games from a queue, with the hidden states and probabilities recorded while playing, so a game in progress at an
  update mixes two weight versions. Games in progress when a run stops are dropped.
- Returns are standardised over the whole batch, not per game (no flag): a 0-21 game's actions are mostly pushed down.
- Frames are stored bit-packed, the difference frames rebuilt in chunks at update time; BLAS runs single-threaded
  (`OPENBLAS_NUM_THREADS=1` unless set, as the seed does for MKL). Evaluation samples the policy after up to 30 no-ops
  (`--eval-argmax`: UP when p > 0.5).
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # before NumPy loads its BLAS (see the docstring); importing this file sets nothing
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    os.environ.setdefault("MKL_NUM_THREADS", "1")

import csv
import importlib.util
import json
import math
import shlex
import signal
import statistics
import sys
import time
import warnings
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Optional

import ale_py
import gymnasium as gym
import numpy as np
import tyro

SCRIPT = "pg_numpy"
CHECKPOINT = "checkpoint.npz"
RESUME_MUST_MATCH = ("env_id", "hidden")  # what a checkpoint's model and games depend on


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives NumPy (weights, action sampling) and the environments"""
    env_id: str = "ALE/Pong-v5"
    """a Gymnasium id registered by ale-py with 210x160 RGB frames (Pong-v0 of the seed: see the docstring)"""
    total_timesteps: int = 8_000_000
    """agent steps (environment steps after frame skip, summed over envs) to train for"""
    capture_video: bool = False
    """record the first evaluation episode to `<run-dir>/videos/` (needs OpenCV)"""
    track: bool = False
    """log to Weights & Biases (imported only when asked)"""
    wandb_project_name: str = "pong-from-pixels"
    """W&B project, with `--track`"""
    save_every: int = 100_000
    """checkpoint period in agent steps"""
    resume: Optional[str] = None
    """continue a run from a checkpoint (a `checkpoint.npz` or the run dir holding it)"""
    eval_checkpoint: Optional[str] = None
    """no training: load this checkpoint, play `--eval-episodes` episodes, report"""
    eval_episodes: int = 10
    """episodes for the final and the `--eval-checkpoint` evaluation"""
    eval_sticky: Optional[float] = None
    """evaluate with this sticky-action probability, not the env's own (0.25: Machado et al. 2018; 0: none)"""
    eval_argmax: bool = False
    """evaluate the argmax policy (UP when p > 0.5) instead of the trained stochastic one"""
    run_dir: Optional[str] = None
    """where outputs go; default `runs/<env>__<exp-name>__<seed>__<unix-time>`"""
    target_return: Optional[float] = None
    """stop early once the mean of the last 100 episodic returns reaches this"""

    num_envs: int = 8
    """games played at once (ale-py's threaded C++ vector env); the policy runs once for all of them"""
    batch_episodes: int = 10
    """finished episodes per policy update (the seed's batch_size)"""
    learning_rate: float = 1e-3
    """RMSProp learning rate (the seed's: 1e-4; see the docstring)"""
    decay_rate: float = 0.99
    """RMSProp decay of the leaky sum of squared gradients"""
    gamma: float = 0.99
    """discount factor (the return restarts at every point scored)"""
    hidden: int = 200
    """hidden ReLU units"""


def check_args(args: Args) -> None:
    check_run_args(args)
    need(args.num_envs > 0, "--num-envs", "at least 1", args.num_envs)
    need(args.batch_episodes > 0, "--batch-episodes", "at least 1", args.batch_episodes)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 <= args.decay_rate < 1, "--decay-rate", "in [0, 1)", args.decay_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.hidden > 0, "--hidden", "at least 1", args.hidden)
    need(not args.capture_video or importlib.util.find_spec("cv2") is not None, "--capture-video",
         "used with OpenCV installed (pip install opencv-python-headless)", args.capture_video)
    env_settings(args.env_id)


# ---------------------------------------------------------------------------- environment
UP, DOWN = 2, 3  # Pong's minimal action set: 2 moves the paddle up, 3 down
D = 80 * 80  # input dimensionality: the 80x80 difference frame
# What ale-py's native vector env can reproduce of a registered id's settings.
NATIVE = {"game", "obs_type", "frameskip", "repeat_action_probability", "full_action_space",
          "max_num_frames_per_episode"}


def env_settings(env_id: str) -> dict:
    """The ALE settings behind a registered id, checked: 210x160 RGB frames and actions 2 and 3 exist."""
    kwargs = ale_game(env_id)
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr (gym's AtariEnv does the same)
    with warnings.catch_warnings():  # e.g. Pong-v0's deprecation: said once when training, not at every check
        warnings.simplefilter("ignore")
        env = gym.make(env_id)
    shape, num_actions = env.observation_space.shape, env.action_space.n
    env.close()
    if shape != (210, 160, 3):
        raise BadInput(f"--env-id {env_id!r}: frames are {shape}; Karpathy's preprocessing needs 210x160x3 RGB")
    if num_actions <= DOWN:
        raise BadInput(f"--env-id {env_id!r}: has {num_actions} actions; UP (2) and DOWN (3) must exist")
    return kwargs


def make_env(env_id: str, num_envs: int, noop_max: int = 0, sticky: Optional[float] = None):
    """Raw RGB frames of `num_envs` games, (num_envs, [1,] 210, 160, 3) uint8; the step after a game's end resets it.
    `noop_max`: each game starts after up to that many random no-ops (ale-py's native env only); `sticky`, when
    given, replaces the env id's sticky-action probability."""
    kwargs = env_settings(env_id)
    if sticky is not None:
        kwargs["repeat_action_probability"] = sticky
    native = set(kwargs) <= NATIVE and isinstance(kwargs.get("frameskip", 4), int)
    if native and gym.spec(env_id).max_episode_steps is None:
        return ale_py.vector_env.AtariVectorEnv(
            num_envs=num_envs, game=kwargs["game"], frameskip=kwargs.get("frameskip", 4),
            repeat_action_probability=kwargs.get("repeat_action_probability", 0.25),
            full_action_space=kwargs.get("full_action_space", False),
            max_num_frames_per_episode=kwargs.get("max_num_frames_per_episode", 108_000),
            img_height=210, img_width=160, grayscale=False, stack_num=1, maxpool=False, noop_max=noop_max,
            use_fire_reset=False, episodic_life=False, reward_clipping=False, autoreset_mode="NextStep")
    # e.g. Pong-v0's random frameskip, or a time limit: one Python env per game, stepped in turn
    override = {} if sticky is None else {"repeat_action_probability": sticky}
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **override)


def preprocess(frames: np.ndarray) -> np.ndarray:
    """Karpathy's prepro of RGB frames (n, ..., 210, 160, 3) uint8 -> (n, 6400) uint8: 1 on paddles and ball."""
    img = frames[..., 35:195:2, ::2, 0]  # crop, downsample by 2, keep the red channel -> 80x80
    on = (img != 144) & (img != 109)  # erase background (types 1 and 2); everything else is 1
    return on.reshape(len(frames), D).view(np.uint8)


def difference(now: np.ndarray, before: np.ndarray, first: Optional[np.ndarray] = None,
               out: Optional[np.ndarray] = None) -> np.ndarray:
    """The policy's input, float32: each binary frame minus the one before it; zero where `first` (a game's first)."""
    x = np.subtract(now, before, out=out, dtype=np.float32)
    if first is not None:
        x[first] = 0.0
    return x


class DifferenceFrames:
    """Each env's difference frame while playing, from its raw frames."""

    def __init__(self, num_envs: int):
        self.prev = np.zeros((num_envs, D), np.uint8)  # each env's previous binary frame
        self.x = np.empty((num_envs, D), np.float32)  # written in place: no new array per step

    def __call__(self, frames: np.ndarray, first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(difference frames (N, D) float32, binary frames (N, D) uint8) of these raw frames."""
        now = preprocess(frames)
        difference(now, self.prev, first, out=self.x)
        self.prev = now
        return self.x, now


# ---------------------------------------------------------------------------- model
def init_model(hidden: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The seed's "Xavier" initialisation: each layer's weights scaled by 1/sqrt(fan-in)."""
    return {"W1": (rng.standard_normal((hidden, D)) / np.sqrt(D)).astype(np.float32),
            "W2": (rng.standard_normal(hidden) / np.sqrt(hidden)).astype(np.float32)}


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # = 1 / (1 + exp(-z)), without overflow for large |z|


def policy_forward(model: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A batch of difference frames x (B, D) -> probability of UP (B,) and hidden activations (B, H)."""
    h = x @ model["W1"].T  # one matrix product for the whole batch
    np.maximum(h, 0, out=h)  # ReLU nonlinearity
    logit = h @ model["W2"]
    return sigmoid(logit), h


def policy_backward(model: dict, eph: np.ndarray, epx: np.ndarray, epdlogp: np.ndarray) -> dict[str, np.ndarray]:
    """Gradient of sum_t epdlogp_t * logit_t with respect to the weights, given eph (B, H) and epx (B, D).

    With epdlogp_t = A_t * (y_t - p_t), where y_t = 1 for UP, this is sum_t A_t * grad log pi(a_t | x_t),
    since d log pi / d logit = y - p.
    """
    dW2 = eph.T @ epdlogp
    dh = np.outer(epdlogp, model["W2"])
    dh[eph <= 0] = 0  # backprop through the ReLU
    dW1 = dh.T @ epx
    return {"W1": dW1, "W2": dW2}


# ---------------------------------------------------------------------------- rollout: whole recorded games
@dataclass
class Episode:
    """One finished game, step by step: what the agent saw, its network's state, what it did and got."""
    frames: np.ndarray  # (T, 800) uint8: the binary 80x80 frames, bit-packed
    hs: np.ndarray  # (T, H) float32: hidden activations while playing
    ps: np.ndarray  # (T,) float32: probability of UP while playing
    ups: np.ndarray  # (T,) float32: 1 where the action was UP (the seed's "fake label" y)
    rewards: np.ndarray  # (T,) float32

    @classmethod
    def recorded(cls, steps: list[tuple]) -> Episode:
        """From the (packed frame, h, p, up, reward) of each step that one env recorded while playing the game."""
        frames, hs, ps, ups, rewards = zip(*steps)
        return cls(np.stack(frames), np.stack(hs), np.array(ps, np.float32), np.array(ups, np.float32),
                   np.array(rewards, np.float32))


def difference_frames(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of an episode's difference frames, rebuilt from its packed frames (row 0 is zero)."""
    frames = np.unpackbits(packed[max(start - 1, 0):stop], axis=1, count=D)
    if start == 0:  # the game's first frame has none before it: it stands in for one, so its difference is zero
        frames = np.concatenate([frames[:1], frames])
    return difference(frames[1:], frames[:-1])


# ---------------------------------------------------------------------------- learning
def discount_rewards(r: np.ndarray, gamma: float) -> np.ndarray:
    """Discounted return at every step, restarted at each nonzero reward: a point ends a game (Pong-specific!)."""
    discounted = np.zeros(len(r), dtype=np.float32)
    running_add = 0.0
    for t in reversed(range(len(r))):
        if r[t] != 0:
            running_add = 0.0  # reset the sum, since this was a game boundary
        running_add = running_add * gamma + r[t]
        discounted[t] = running_add
    return discounted


def batch_advantages(rewards: list[np.ndarray], gamma: float) -> list[np.ndarray]:
    """Each episode's discounted returns, standardised with the mean and std of the whole batch."""
    returns = [discount_rewards(r, gamma) for r in rewards]
    everything = np.concatenate(returns)
    mean, std = everything.mean(), everything.std() + 1e-8
    return [(g - mean) / std for g in returns]


def policy_gradient(model: dict, batch: list[Episode], gamma: float, chunk: int = 2048):
    """The REINFORCE gradient sum_t A_t * grad log pi(a_t | x_t) over a batch of episodes, from what play recorded.

    Also returns, for logging, the surrogate loss -mean_t A_t log pi(a_t | x_t) (whose gradient is minus
    this one over the number of steps) and the policy's mean entropy.
    """
    grad = {k: np.zeros_like(v) for k, v in model.items()}
    loss_sum = entropy_sum = 0.0
    for ep, adv in zip(batch, batch_advantages([ep.rewards for ep in batch], gamma)):
        epdlogp = (ep.ups - ep.ps) * adv  # modulate the gradient with the advantage (the PG magic happens here)
        for start in range(0, len(adv), chunk):  # in chunks of rows: a long game's float frames would take GBs
            stop = min(start + chunk, len(adv))
            g = policy_backward(model, ep.hs[start:stop], difference_frames(ep.frames, start, stop),
                                epdlogp[start:stop])
            for k in grad:
                grad[k] += g[k]
        p = np.clip(ep.ps, 1e-7, 1 - 1e-7)
        loss_sum -= float(adv @ np.log(np.where(ep.ups > 0, p, 1 - p)))
        entropy_sum -= float(np.sum(p * np.log(p) + (1 - p) * np.log(1 - p)))
    steps = sum(len(ep.rewards) for ep in batch)
    return grad, loss_sum / steps, entropy_sum / steps


def rmsprop_step(model: dict, grad: dict, cache: dict, learning_rate: float, decay_rate: float) -> None:
    """The seed's RMSProp, in place; a step up the gradient, since the gradient is that of the expected return."""
    for k in model:
        g = grad[k]
        cache[k] = decay_rate * cache[k] + (1 - decay_rate) * g ** 2
        model[k] += learning_rate * g / (np.sqrt(cache[k]) + 1e-5)


# ---------------------------------------------------------------------------- training loop
def train(args: Args, model: dict, cache: dict, rng: np.random.Generator, run: RunLog, global_step: int,
          updates: int, running_mean: float) -> tuple[int, int, float]:
    """Play all envs a step at a time, record each game, update on every `--batch-episodes` finished games; until
    the run stops. Returns the agent steps, updates and running mean (nan before the first game's end) reached."""
    N = args.num_envs
    envs = make_env(args.env_id, N)
    obs, _ = envs.reset(seed=args.seed + global_step)  # a resume restarts the games, reseeded
    frames = DifferenceFrames(N)
    x, seen = frames(obs, np.ones(N, bool))  # the difference frames the policy sees, the binary frames behind them
    prev_done = np.zeros(N, bool)  # this env's last step ended a game: the next step only resets it
    playing: list[list[tuple]] = [[] for _ in range(N)]  # each env's game in progress, step by step
    finished: list[Episode] = []  # finished games waiting for the next update
    while run.going(global_step):
        # ALGO LOGIC: play one step in every env, all in one matrix product, and record it
        p, h = policy_forward(model, x)
        up = rng.random(N) < p  # roll the dice
        obs, reward, terminated, truncated, _ = envs.step(np.where(up, UP, DOWN))
        played = ~prev_done  # NextStep autoreset: the step after a game's end only resets that env, no agent step
        packed = np.packbits(seen, axis=1)
        for e in np.flatnonzero(played):
            playing[e].append((packed[e], h[e], p[e], up[e], reward[e]))
        step_before, global_step = global_step, global_step + int(played.sum())
        done = terminated | truncated
        x, seen = frames(obs, prev_done)  # a reset step's frame is a game's first: its difference is zero
        prev_done = done
        for e in np.flatnonzero(done & played):  # a reset step's `done` is no new game end
            finished.append(Episode.recorded(playing[e]))
            playing[e] = []
            score = float(finished[-1].rewards.sum())
            running_mean = score if math.isnan(running_mean) else running_mean * 0.99 + score * 0.01  # Karpathy's
            run.episode_done(global_step, score, len(finished[-1].rewards), f"{running_mean:.4f}")  # TRY NOT TO MODIFY
            run.log(global_step, {"charts/running_mean": running_mean})

        if len(finished) >= args.batch_episodes:  # ALGO LOGIC: update on whole episodes
            batch, finished = finished[:args.batch_episodes], finished[args.batch_episodes:]
            grad, loss, entropy = policy_gradient(model, batch, args.gamma)
            rmsprop_step(model, grad, cache, args.learning_rate, args.decay_rate)
            updates += 1
            run.log(global_step, {"losses/policy_loss": loss, "losses/entropy": entropy, "charts/updates": updates})

        # TRY NOT TO MODIFY: SPS, checkpoints, the progress line
        if global_step // 1000 != step_before // 1000:
            run.log(global_step, {"charts/SPS": run.sps(global_step)})
        if run.checkpoint_due(global_step):
            save_checkpoint(args, model, cache, rng, run, global_step, updates, running_mean)
        run.show(global_step, f" | running mean {running_mean:6.2f} | updates {updates}")
    envs.close()
    return global_step, updates, running_mean


# ---------------------------------------------------------------------------- checkpoints and evaluation
WEIGHT_KEYS = {"W1", "W2", "global_step", "args"}  # final_model.npz: enough to evaluate
TRAINING_KEYS = WEIGHT_KEYS | {"cache_W1", "cache_W2", "episode", "updates", "running_mean", "wall_time_s",
                               "recent_returns", "numpy_rng"}  # checkpoint.npz: enough to resume


def save_atomic(arrays: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object, so np.savez adds no ".npz" to the name
        np.savez(f, **arrays)
    os.replace(tmp, path)


def save_checkpoint(args: Args, model: dict, cache: dict, rng: np.random.Generator, run: RunLog, global_step: int,
                    updates: int, running_mean: float) -> None:
    save_atomic({"script": np.array(SCRIPT), "args": np.array(json.dumps(asdict(args))), "W1": model["W1"],
                 "W2": model["W2"], "cache_W1": cache["W1"], "cache_W2": cache["W2"],
                 "global_step": np.array(global_step), "updates": np.array(updates),
                 "running_mean": np.array(running_mean), **{k: np.array(v) for k, v in run.state().items()},
                 "numpy_rng": np.array(json.dumps(rng.bit_generator.state))}, run.run_dir / CHECKPOINT)


def read_npz(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag. The counters come
    back as Python values, `args` and `numpy_rng` as dicts."""
    ckpt, p = read_checkpoint(path, flag, read_npz)
    script = ckpt.get("script")
    ckpt["script"] = str(script) if isinstance(script, np.ndarray) and script.dtype.kind == "U" else None
    checked_checkpoint(ckpt, path, flag, weights_only=set(ckpt) == WEIGHT_KEYS | {"script"})
    missing = (TRAINING_KEYS if flag == "--resume" else WEIGHT_KEYS) - set(ckpt)
    if missing:
        raise BadInput(f"{flag} {path!r}: incomplete {SCRIPT}.py checkpoint (lacks {', '.join(sorted(missing))})")
    try:
        ckpt["args"] = json.loads(str(ckpt["args"]))
        if "numpy_rng" in ckpt:
            ckpt["numpy_rng"] = json.loads(str(ckpt["numpy_rng"]))
    except ValueError:
        raise BadInput(f"{flag} {path!r}: damaged {SCRIPT}.py checkpoint (unreadable args or RNG state)") from None
    for key in {"global_step", "episode", "updates", "wall_time_s", "running_mean", "recent_returns"} & set(ckpt):
        ckpt[key] = ckpt[key].tolist()  # Python values, as the run plumbing expects
    return ckpt, p


def evaluate_checkpoint(args: Args) -> None:
    """`--eval-checkpoint`: play the saved weights on the env they were trained on."""
    ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
    env_id = ckpt["args"]["env_id"]
    env_settings(env_id)  # is the id still registered? said before any output dir exists
    evaluate_and_report(args, {"W1": ckpt["W1"], "W2": ckpt["W2"]}, env_id, ckpt["global_step"], path,
                        new_run_dir(args, env_id, "-eval"))


def evaluate_and_report(args: Args, model: dict, env_id: str, global_step: int, checkpoint: Path,
                        out_dir: Path) -> dict:
    """Play `--eval-episodes` games (`--eval-sticky`, `--eval-argmax`, `--capture-video`); write eval.json."""
    sticky = eval_sticky(args, env_id)
    returns = evaluate(model, env_id, sticky, args.eval_episodes, args.seed + EVAL_SEED_OFFSET, args.eval_argmax,
                       out_dir / "videos" if args.capture_video else None)
    return report_eval(out_dir, returns, checkpoint, env_id, sticky, global_step=global_step,
                       policy="argmax" if args.eval_argmax else "stochastic")


def evaluate(model: dict, env_id: str, sticky: float, episodes: int, seed: int, argmax: bool,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games; each env plays its fixed share, so short games are not favoured."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(env_id, num_envs, noop_max=30, sticky=sticky)  # the evaluation protocol's no-op starts
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    frames = DifferenceFrames(num_envs)
    x, _ = frames(obs, np.ones(num_envs, bool))
    returns, ep_return, prev_done = [], np.zeros(num_envs), np.zeros(num_envs, bool)
    video = None
    if video_dir is not None:  # env 0's first game, as the raw frames the agent saw
        import cv2

        video_dir.mkdir(parents=True, exist_ok=True)
        video = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15, (160, 210))
    while (quota > 0).any():
        p, _ = policy_forward(model, x)
        up = p > 0.5 if argmax else rng.random(num_envs) < p
        if video is not None:
            video.write(np.ascontiguousarray(obs[0].reshape(210, 160, 3)[..., ::-1]))  # RGB -> BGR
        obs, reward, terminated, truncated, _ = envs.step(np.where(up, UP, DOWN))
        played = ~prev_done  # NextStep autoreset: the step after a game's end only resets that env
        ep_return += reward * played
        done = terminated | truncated
        for e in np.flatnonzero(done & played & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        if video is not None and done[0]:
            video.release()
            video = None
        ep_return[done] = 0.0
        x, _ = frames(obs, prev_done)  # a reset step's frame is a game's first: its difference is zero
        prev_done = done
    envs.close()
    return returns


class TensorBoard:
    """CleanRL's `writer.add_scalar` on TensorBoard's own event-file writer: no torch, no TensorFlow."""

    def __init__(self, logdir: str, purge_step: Optional[int] = None):
        # Imported here, after `wandb.init(sync_tensorboard=True)` has had its chance to patch the writer.
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.event_pb2, self.summary_pb2 = event_pb2, summary_pb2
        self.events = EventFileWriter(str(logdir))
        if purge_step is not None:
            # A resumed run starts here: TensorBoard drops what the interrupted run logged from this step on.
            self.events.add_event(event_pb2.Event(wall_time=time.time(), step=purge_step, session_log=(
                event_pb2.SessionLog(status=event_pb2.SessionLog.START))))

    def add_scalar(self, tag: str, value: float, step: int) -> None:
        summary = self.summary_pb2.Summary(value=[self.summary_pb2.Summary.Value(tag=tag, simple_value=float(value))])
        self.events.add_event(self.event_pb2.Event(wall_time=time.time(), step=int(step), summary=summary))

    def add_text(self, tag: str, text: str, step: int = 0) -> None:
        from tensorboard.compat.proto import tensor_pb2, tensor_shape_pb2, types_pb2

        meta = self.summary_pb2.SummaryMetadata(
            plugin_data=self.summary_pb2.SummaryMetadata.PluginData(plugin_name="text"))
        tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[text.encode()], tensor_shape=(
            tensor_shape_pb2.TensorShapeProto(dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=1)])))
        value = self.summary_pb2.Summary.Value(tag=tag, metadata=meta, tensor=tensor)
        summary = self.summary_pb2.Summary(value=[value])
        self.events.add_event(self.event_pb2.Event(wall_time=time.time(), step=step, summary=summary))

    def close(self) -> None:
        self.events.close()


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)
    if args.eval_checkpoint is not None:
        return evaluate_checkpoint(args)
    ckpt, run_dir = open_run(args, load_checkpoint)

    rng = np.random.default_rng(args.seed)
    model = init_model(args.hidden, rng)
    cache = {k: np.zeros_like(v) for k, v in model.items()}  # RMSProp memory
    global_step, updates, running_mean = 0, 0, math.nan  # Karpathy's running mean of the returns: none yet
    if ckpt is not None:
        model = {"W1": ckpt["W1"].astype(np.float32), "W2": ckpt["W2"].astype(np.float32)}
        cache = {"W1": ckpt["cache_W1"].astype(np.float32), "W2": ckpt["cache_W2"].astype(np.float32)}
        global_step, updates, running_mean = ckpt["global_step"], ckpt["updates"], ckpt["running_mean"]
        rng.bit_generator.state = ckpt["numpy_rng"]
        print(f"resumed {run_dir} at step {global_step:,}, episode {ckpt['episode']}, update {updates}")

    run = RunLog(args, run_dir, ckpt, lambda logdir, purge_step: TensorBoard(logdir, purge_step),
                 extra_columns=("running_mean",))
    global_step, updates, running_mean = train(args, model, cache, rng, run, global_step, updates, running_mean)
    save_checkpoint(args, model, cache, rng, run, global_step, updates, running_mean)
    run.close(global_step)

    # The weights alone (float32, 5 MB): what to ship and evaluate; checkpoint.npz adds RMSProp's cache to resume.
    final = run_dir / "final_model.npz"
    save_atomic({"script": np.array(SCRIPT), "args": np.array(json.dumps(asdict(args))), "W1": model["W1"],
                 "W2": model["W2"], "global_step": np.array(global_step)}, final)
    run.finish(global_step, evaluate_and_report(args, model, args.env_id, global_step, final, run_dir))


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
