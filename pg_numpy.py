"""REINFORCE in pure NumPy that learns Atari Pong from pixels: Karpathy's pg-pong, batched over environments.

Lineage: Andrej Karpathy's `pg-pong.py` ("Deep Reinforcement Learning: Pong from Pixels", 2016) as
adapted in Ray's "Learning to Play Pong" example (`../shared/seeds/002_*.txt`): a 6400-200-1 ReLU
network gives the probability of UP; actions are sampled, and after every 10 episodes the network
moves along sum_t A_t * grad log pi(a_t | x_t) with RMSProp (decay 0.99), where A_t is the
discounted return (gamma 0.99) restarted at every point scored, standardised. Flag names and logging
follow CleanRL. Usage: `python pg_numpy.py` (see `--help`); the reported score, its command and
curve are in `benchmark/RESULTS.md`. No deep-learning framework: forward and backward pass are
written out in NumPy, float32.

Preprocessing is Karpathy's, not the DeepMind stack: crop rows 35:195, keep every second pixel of
the red channel (80x80), erase the two background colours (144, 109), set everything else (paddles,
ball) to 1, and feed the difference of consecutive frames (zero on an episode's first frame). A
fully connected net needs no more: the difference frame shows where the ball and paddles move, and
is what the seed's network was tuned on. The frames come raw (210x160 RGB, no max-pool, no no-ops,
no FIRE on reset) from ale-py's threaded C++ vector env, which offers native-size RGB observations
(`img_height=210, img_width=160, grayscale=False, stack_num=1`): no Python wrappers per frame.

Environment: `ALE/Pong-v5` by default: frameskip 4, sticky actions 0.25, minimal action set, where
UP is action 2 and DOWN action 3 as in the seed. The seed played `Pong-v0`: sticky actions 0.25 and a
frameskip drawn from {2, 3, 4} at every step. ale-py 0.12 still registers `Pong-v0` (deprecated),
but its native vector env only takes a fixed frameskip. v5 keeps v0's sticky actions (the noise that
keeps a policy from memorising one open-loop action sequence) and fixes the frameskip at 4, v0's
largest: a game takes fewer agent steps, so fewer forward and backward passes per game, and the
difference frame still shows the ball (a few pixels per step). Any other ale-py id works with
`--env-id`; ids the native env cannot reproduce exactly (a random frameskip as in `Pong-v0` and
`Pong-v4`, or game modes) run on Gymnasium's synchronous vector env instead, which is slower.
The preprocessing's background colours are Pong's.

Where this departs from the seed, and why:
- RMSProp's learning rate is 1e-3, not the seed's 1e-4 (`--learning-rate 1e-4` restores it): there
  is one update per 10 games, and 1e-4 barely moves the policy in the first hours. Measured here
  (one seed each, the defaults otherwise, the first ~1M agent steps): at 1.0M steps the running mean
  was -20.1 with 1e-4 and -15.9 with 1e-3 (`benchmark/probes/pg_numpy_lr/`); the reported run in
  `benchmark/RESULTS.md` is at 1e-3.
- `--num-envs 8` games are played at once and the policy runs as one (8, 6400) x (6400, 200) matrix
  product per step instead of a matrix-vector product per frame. The update takes whole, finished
  episodes: each game is recorded until it ends, joins a queue of finished episodes, and every
  `--batch-episodes` episodes from the queue make one update. As in the seed, the gradient uses the
  hidden states and probabilities recorded while playing, so each step's score function is that of
  the weights that sampled its action. A game still being played at an update goes on under the new
  weights, so its gradient mixes two consecutive weight versions (a one-update lag, as in
  asynchronous actor-learners); recomputing the forward pass at update time instead would nearly
  double the update's cost and score old actions under new weights. When the run ends (budget, or a
  signal), games in progress and queued episodes short of a batch are dropped; so are the games in
  progress at a checkpoint when resuming (the emulators' state is not saved).
- Returns are standardised over the whole batch (as the issue asks), not per episode as in the seed:
  per episode, every game gets zero mean advantage, so a 0-21 loss pushes as many of its actions up
  as a 15-21 game does; over the batch, the lost game's actions are mostly pushed down.
- Frames are stored bit-packed (800 bytes a step, not 6400 floats) and the difference frames rebuilt
  in chunks of rows at update time, so a batch of long, good games takes tens of MB, not GB.
- BLAS runs single-threaded (`OPENBLAS_NUM_THREADS=1` unless already set; the seed does the same
  for MKL): the env's threads already use the cores, and on a busy 2-core machine a multi-threaded
  OpenBLAS took 160 ms for the 8-row product above, against 0.3 ms single-threaded.
- Evaluation (`--eval-episodes`, at the end and with `--eval-checkpoint`) plays the stochastic policy
  that was trained (sampling UP with probability p); `--eval-argmax` plays UP when p > 0.5.
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
UP, DOWN = 2, 3  # Pong's minimal action set: 2 moves the paddle up, 3 down
D = 80 * 80  # input dimensionality: the 80x80 difference frame


@dataclass
class Args:
    exp_name: str = SCRIPT
    """name of the experiment (part of the default run dir)"""
    seed: int = 1
    """one seed drives NumPy (weights, action sampling) and the environments"""
    env_id: str = "ALE/Pong-v5"
    """a Gymnasium id registered by ale-py with 210x160 RGB frames (Pong-v0 of the seed: see the docstring)"""
    total_timesteps: int = 20_000_000
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
    need(args.batch_episodes > 0, "--batch-episodes", "at least 1", args.batch_episodes)
    need(args.learning_rate > 0, "--learning-rate", "positive", args.learning_rate)
    need(0 <= args.decay_rate < 1, "--decay-rate", "in [0, 1)", args.decay_rate)
    need(0 < args.gamma <= 1, "--gamma", "in (0, 1]", args.gamma)
    need(args.hidden > 0, "--hidden", "at least 1", args.hidden)
    need(not args.capture_video or importlib.util.find_spec("cv2") is not None, "--capture-video",
         "used with OpenCV installed (pip install opencv-python-headless)", args.capture_video)
    need(not args.track or importlib.util.find_spec("wandb") is not None, "--track",
         "used with wandb installed (pip install wandb)", args.track)
    env_settings(args.env_id)
    need(args.eval_sticky is None or 0 <= args.eval_sticky < 1, "--eval-sticky", "in [0, 1)", args.eval_sticky)


# ---------------------------------------------------------------------------- environment
# What ale-py's native vector env can reproduce of a registered id's settings.
NATIVE = {"game", "obs_type", "frameskip", "repeat_action_probability", "full_action_space",
          "max_num_frames_per_episode"}


def env_settings(env_id: str) -> dict:
    """The ALE settings behind a registered id, checked: 210x160 RGB frames and actions 2 and 3 exist."""
    gym.register_envs(ale_py)
    try:
        kwargs = dict(gym.spec(env_id).kwargs)
    except gym.error.Error:
        raise BadInput(f"--env-id {env_id!r}: not a Gymnasium id registered by ale-py (e.g. ALE/Pong-v5)") from None
    if "game" not in kwargs:
        raise BadInput(f"--env-id {env_id!r}: must be an ale-py Atari id (e.g. ALE/Pong-v5)")
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


def make_env(env_id: str, num_envs: int, seed: int, noop_max: int = 0, sticky: Optional[float] = None):
    """Raw RGB frames of `num_envs` games, (num_envs, [1,] 210, 160, 3) uint8; the step after a game's end resets it.
    `noop_max`: each game starts after up to that many random no-ops (ale-py's native env only); `sticky`, when
    given, replaces the env id's sticky-action probability."""
    kwargs = env_settings(env_id)
    if sticky is not None:
        kwargs["repeat_action_probability"] = sticky
    native = set(kwargs) <= NATIVE and isinstance(kwargs.get("frameskip", 4), int)
    if native and gym.spec(env_id).max_episode_steps is None:
        envs = ale_py.vector_env.AtariVectorEnv(
            num_envs=num_envs, game=kwargs["game"], frameskip=kwargs.get("frameskip", 4),
            repeat_action_probability=kwargs.get("repeat_action_probability", 0.25),
            full_action_space=kwargs.get("full_action_space", False),
            max_num_frames_per_episode=kwargs.get("max_num_frames_per_episode", 108_000),
            img_height=210, img_width=160, grayscale=False, stack_num=1, maxpool=False, noop_max=noop_max,
            use_fire_reset=False, episodic_life=False, reward_clipping=False, autoreset_mode="NextStep")
    else:  # e.g. Pong-v0's random frameskip, or a time limit: one Python env per game, stepped in turn
        override = {} if sticky is None else {"repeat_action_probability": sticky}
        envs = gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync", **override)
    envs.reset(seed=seed)
    return envs


def preprocess(frames: np.ndarray) -> np.ndarray:
    """Karpathy's prepro of RGB frames (n, ..., 210, 160, 3) uint8 -> (n, 6400) uint8: 1 on paddles and ball."""
    img = frames[..., 35:195:2, ::2, 0]  # crop, downsample by 2, keep the red channel -> 80x80
    on = (img != 144) & (img != 109)  # erase background (types 1 and 2); everything else is 1
    return on.reshape(len(frames), D).view(np.uint8)


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


# ---------------------------------------------------------------------------- algorithm
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


@dataclass
class Episode:
    """One finished game, step by step: what the agent saw, its network's state, what it did and got."""
    frames: np.ndarray  # (T, 800) uint8: the binary 80x80 frames, bit-packed
    hs: np.ndarray  # (T, H) float32: hidden activations while playing
    ps: np.ndarray  # (T,) float32: probability of UP while playing
    ups: np.ndarray  # (T,) float32: 1 where the action was UP (the seed's "fake label" y)
    rewards: np.ndarray  # (T,) float32


class EpisodeRecorder:
    """The game one env is playing, recorded until it ends."""

    def __init__(self):
        self.frames, self.hs, self.ps, self.ups, self.rewards = [], [], [], [], []

    def add(self, frame, h, p, up, reward) -> None:
        self.frames.append(frame)
        self.hs.append(h)
        self.ps.append(p)
        self.ups.append(up)
        self.rewards.append(reward)

    def finish(self) -> Episode:
        return Episode(np.stack(self.frames), np.stack(self.hs), np.array(self.ps, np.float32),
                       np.array(self.ups, np.float32), np.array(self.rewards, np.float32))


def difference_frames(packed: np.ndarray, start: int, stop: int) -> np.ndarray:
    """Rows start..stop-1 of an episode's difference frames, rebuilt from its packed frames (row 0 is zero)."""
    frames = np.unpackbits(packed[max(start - 1, 0):stop], axis=1, count=D)
    x = np.zeros((stop - start, D), np.float32)
    np.subtract(frames[1:], frames[:-1], out=x[1:] if start == 0 else x, dtype=np.float32)
    return x


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


# ---------------------------------------------------------------------------- run plumbing
def fail(message: str) -> None:
    print(f"{SCRIPT}.py: error: {message}", file=sys.stderr)
    sys.exit(2)


WEIGHT_KEYS = {"W1", "W2", "global_step", "args"}  # final_model.npz: enough to evaluate
TRAINING_KEYS = WEIGHT_KEYS | {"cache_W1", "cache_W2", "episode", "updates", "running_mean", "wall_time_s",
                               "recent_returns", "numpy_rng"}  # checkpoint.npz: enough to resume


def load_checkpoint(path: str, flag: str) -> tuple[dict, Path]:
    """Read a checkpoint (or the run dir holding one); any problem is one line naming the flag."""
    p = Path(path)
    if p.is_dir():
        p = p / "checkpoint.npz"
    if not p.is_file():
        raise BadInput(f"{flag} {path!r}: no such checkpoint file")
    try:
        with np.load(p, allow_pickle=False) as data:
            ckpt = {k: data[k] for k in data.files}
    except Exception:
        raise BadInput(f"{flag} {path!r}: not a readable .npz checkpoint (truncated, or written by "
                       "another script)") from None
    script = ckpt.get("script")
    if not isinstance(script, np.ndarray) or script.dtype.kind != "U" or str(script) != SCRIPT:
        other = str(script) if isinstance(script, np.ndarray) and script.dtype.kind == "U" else None
        raise BadInput(f"{flag} {path!r}: checkpoint written by {other or 'something else'}, not {SCRIPT}.py")
    if flag == "--resume" and set(ckpt) == WEIGHT_KEYS | {"script"}:
        raise BadInput(f"{flag} {path!r}: holds weights only (final_model.npz); resume from checkpoint.npz")
    missing = (TRAINING_KEYS if flag == "--resume" else WEIGHT_KEYS) - set(ckpt)
    if missing:
        raise BadInput(f"{flag} {path!r}: incomplete {SCRIPT}.py checkpoint (lacks {', '.join(sorted(missing))})")
    try:
        ckpt["args"] = json.loads(str(ckpt["args"]))
        if "numpy_rng" in ckpt:
            ckpt["numpy_rng"] = json.loads(str(ckpt["numpy_rng"]))
    except ValueError:
        raise BadInput(f"{flag} {path!r}: damaged {SCRIPT}.py checkpoint (unreadable args or RNG state)") from None
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


def save_atomic(arrays: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:  # a file object, so np.savez adds no ".npz" to the name
        np.savez(f, **arrays)
    os.replace(tmp, path)


class TensorBoard:
    """CleanRL's `writer.add_scalar` on TensorBoard's own event-file writer: no torch, no TensorFlow."""

    def __init__(self, logdir: Path, purge_step: Optional[int] = None):
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


def evaluate(model: dict, env_id: str, sticky: float, episodes: int, seed: int, argmax: bool,
             video_dir: Optional[Path] = None) -> list[float]:
    """Play `episodes` full games; each env plays its fixed share, so short games are not favoured."""
    num_envs = min(episodes, 16)
    quota = np.array([episodes // num_envs + (e < episodes % num_envs) for e in range(num_envs)])
    envs = make_env(env_id, num_envs, seed, noop_max=30, sticky=sticky)  # the evaluation protocol's no-op starts
    obs, _ = envs.reset(seed=seed)
    rng = np.random.default_rng(seed)
    returns, ep_return = [], np.zeros(num_envs)
    first, done_before = np.ones(num_envs, bool), np.zeros(num_envs, bool)
    prev = np.zeros((num_envs, D), np.uint8)
    x = np.empty((num_envs, D), np.float32)
    video = None
    if video_dir is not None:  # env 0's first game, as the raw frames the agent saw
        import cv2

        video_dir.mkdir(parents=True, exist_ok=True)
        video = cv2.VideoWriter(str(video_dir / "eval-episode-0.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 15, (160, 210))
    while (quota > 0).any():
        cur = preprocess(obs)
        np.subtract(cur, prev, out=x, dtype=np.float32)
        x[first] = 0.0
        prev = cur
        p, _ = policy_forward(model, x)
        up = p > 0.5 if argmax else rng.random(num_envs) < p
        if video is not None:
            video.write(np.ascontiguousarray(obs[0].reshape(210, 160, 3)[..., ::-1]))  # RGB -> BGR
        obs, reward, terminated, truncated, _ = envs.step(np.where(up, UP, DOWN))
        ep_return += reward * ~done_before
        done = terminated | truncated
        for e in np.flatnonzero(done & ~done_before & (quota > 0)):
            returns.append(float(ep_return[e]))
            quota[e] -= 1
        if video is not None and done[0]:
            video.release()
            video = None
        ep_return[done] = 0.0
        first, done_before = done_before.copy(), done
    envs.close()
    return returns


def write_eval(run_dir: Path, returns: list[float], checkpoint: str, global_step: int, argmax: bool,
               env_id: str, sticky: float) -> dict:
    report = {"env_id": env_id, "sticky": sticky, "episodes": len(returns), "mean": float(np.mean(returns)),
              "std": float(np.std(returns)), "min": float(np.min(returns)), "max": float(np.max(returns)),
              "returns": returns,
              "checkpoint": checkpoint, "global_step": global_step, "policy": "argmax" if argmax else "stochastic"}
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


# ---------------------------------------------------------------------------- main
def main(args: Args) -> None:
    check_args(args)

    if args.eval_checkpoint is not None:
        ckpt, path = load_checkpoint(args.eval_checkpoint, "--eval-checkpoint")
        env_id = ckpt["args"]["env_id"]
        sticky = env_settings(env_id).get("repeat_action_probability", 0.25) if args.eval_sticky is None \
            else args.eval_sticky  # (and is the id still registered? checked before any output dir exists)
        model = {"W1": ckpt["W1"], "W2": ckpt["W2"]}
        out_dir = Path(args.run_dir or f"runs/{env_id.replace('/', '-')}__{args.exp_name}-eval__{args.seed}__"
                                       f"{int(time.time())}")
        out_dir.mkdir(parents=True, exist_ok=True)
        returns = evaluate(model, env_id, sticky, args.eval_episodes, args.seed + 10_000, args.eval_argmax,
                           out_dir / "videos" if args.capture_video else None)
        report = write_eval(out_dir, returns, str(path), int(ckpt["global_step"]), args.eval_argmax, env_id, sticky)
        print(f"eval {path}: {report['episodes']} episodes of {env_id} (sticky actions {sticky:g}, "
              f"{report['policy']} policy), return "
              f"{report['mean']:.2f} ± {report['std']:.2f} (min {report['min']:.0f}, max {report['max']:.0f})"
              f" -> {out_dir / 'eval.json'}")
        return

    ckpt = None
    if args.resume is not None:
        ckpt, path = load_checkpoint(args.resume, "--resume")
        if ckpt["args"]["env_id"] != args.env_id:
            raise BadInput(f"--env-id {args.env_id!r}: the checkpoint was trained on {ckpt['args']['env_id']!r}; "
                           "resume with the same value")
        if ckpt["W1"].shape[0] != args.hidden:
            raise BadInput(f"--hidden {args.hidden}: the checkpoint has {ckpt['W1'].shape[0]} hidden units; "
                           "resume with the same value")
        if int(ckpt["global_step"]) >= args.total_timesteps:
            raise BadInput(f"--total-timesteps {args.total_timesteps}: the checkpoint is already at step "
                           f"{int(ckpt['global_step'])}; ask for more steps to resume")
        run_dir = path.parent
        if not (run_dir / "args.json").is_file():
            print(f"note: no args.json beside {path}: resuming with the flags given and the defaults", file=sys.stderr)
    else:
        run_dir = Path(args.run_dir or f"runs/{args.env_id.replace('/', '-')}__{args.exp_name}__{args.seed}__"
                                        f"{int(time.time())}")
        if (run_dir / "checkpoint.npz").exists():
            raise BadInput(f"--run-dir {str(run_dir)!r}: holds a run already; use --resume {run_dir} to continue it")

    stop_signal = []
    signal.signal(signal.SIGINT, lambda s, f: stop_signal.append(s))
    signal.signal(signal.SIGTERM, lambda s, f: stop_signal.append(s))

    rng = np.random.default_rng(args.seed)
    model = init_model(args.hidden, rng)
    cache = {k: np.zeros_like(v) for k, v in model.items()}  # RMSProp memory
    global_step, episode, updates, wall_before, running_mean, recent = 0, 0, 0, 0.0, None, []
    if ckpt is not None:
        model = {"W1": ckpt["W1"].astype(np.float32), "W2": ckpt["W2"].astype(np.float32)}
        cache = {"W1": ckpt["cache_W1"].astype(np.float32), "W2": ckpt["cache_W2"].astype(np.float32)}
        global_step, episode, updates = int(ckpt["global_step"]), int(ckpt["episode"]), int(ckpt["updates"])
        wall_before = float(ckpt["wall_time_s"])
        running_mean = None if math.isnan(ckpt["running_mean"]) else float(ckpt["running_mean"])
        recent = ckpt["recent_returns"].tolist()
        rng.bit_generator.state = ckpt["numpy_rng"]
        print(f"resumed {path} at step {global_step:,}, episode {episode}, update {updates}")
    envs = make_env(args.env_id, args.num_envs, args.seed + global_step)  # resumed games restart, reseeded

    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "args.json").write_text(json.dumps(asdict(args), indent=2) + "\n")
    with open(run_dir / "commands.txt", "a") as f:  # every start of this run, resumes included
        f.write(f"{time.strftime('%Y-%m-%dT%H:%M:%S%z')} python {SCRIPT}.py {shlex.join(sys.argv[1:])}\n")
    if args.track:
        import wandb

        wandb.init(project=args.wandb_project_name, sync_tensorboard=True, config=asdict(args),
                   name=run_dir.name, dir=str(run_dir), resume="allow")
    writer = TensorBoard(run_dir, purge_step=global_step if ckpt is not None else None)
    writer.add_text("hyperparameters", "|param|value|\n|-|-|\n" +
                    "\n".join(f"|{k}|{v}|" for k, v in asdict(args).items()))
    csv_path = run_dir / "progress.csv"
    new_csv = ckpt is None or not csv_path.exists()
    if not new_csv:
        trim_progress(csv_path, episode)
    csv_file = open(csv_path, "w" if new_csv else "a", newline="")
    csv_writer = csv.writer(csv_file)
    if new_csv:
        csv_writer.writerow(["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps",
                             "running_mean"])
        csv_file.flush()

    def checkpoint() -> None:
        save_atomic({
            "script": np.array(SCRIPT), "args": np.array(json.dumps(asdict(args))),
            "W1": model["W1"], "W2": model["W2"], "cache_W1": cache["W1"], "cache_W2": cache["W2"],
            "global_step": np.array(global_step), "episode": np.array(episode), "updates": np.array(updates),
            "running_mean": np.array(math.nan if running_mean is None else running_mean),
            "wall_time_s": np.array(wall_before + time.time() - start),
            "recent_returns": np.array(recent[-100:], dtype=np.float64),
            "numpy_rng": np.array(json.dumps(rng.bit_generator.state)),
        }, run_dir / "checkpoint.npz")

    N = args.num_envs
    obs, _ = envs.reset(seed=args.seed + global_step)
    first = np.ones(N, bool)  # this env's observation is the first frame of a game
    prev_done = np.zeros(N, bool)  # this env's last step ended a game: the next step only resets it
    prev = np.zeros((N, D), np.uint8)  # each env's previous binary frame
    x = np.empty((N, D), np.float32)  # the difference frames the policy sees
    playing = [EpisodeRecorder() for _ in range(N)]  # each env's game in progress
    finished: list[Episode] = []  # finished games waiting for the next update
    ep_return, ep_length = np.zeros(N), np.zeros(N, np.int64)
    progress = Progress(args.total_timesteps)
    start, start_step = time.time(), global_step
    next_save = (global_step // args.save_every + 1) * args.save_every
    sps = 0.0

    while global_step < args.total_timesteps and not stop_signal:
        cur = preprocess(obs)
        np.subtract(cur, prev, out=x, dtype=np.float32)  # difference frame
        x[first] = 0.0
        prev = cur
        p, h = policy_forward(model, x)  # all envs in one matrix product
        up = rng.random(N) < p  # roll the dice
        obs, reward, terminated, truncated, _ = envs.step(np.where(up, UP, DOWN))

        # Under NextStep autoreset the step after a game's end only resets: it is no agent step.
        played = ~prev_done
        packed = np.packbits(cur, axis=1)
        for e in np.flatnonzero(played):
            playing[e].add(packed[e], h[e], p[e], up[e], reward[e])
        global_step += int(played.sum())
        ep_return += reward * played
        ep_length += played
        done = terminated | truncated
        sps = (global_step - start_step) / max(time.time() - start, 1e-9)
        for e in np.flatnonzero(done & played):
            finished.append(playing[e].finish())
            playing[e] = EpisodeRecorder()
            episode += 1
            recent.append(float(ep_return[e]))
            running_mean = ep_return[e] if running_mean is None else running_mean * 0.99 + ep_return[e] * 0.01
            wall = wall_before + time.time() - start
            csv_writer.writerow([global_step, episode, ep_return[e], ep_length[e], f"{wall:.1f}", f"{sps:.1f}",
                                 f"{running_mean:.4f}"])
            writer.add_scalar("charts/episodic_return", ep_return[e], global_step)
            writer.add_scalar("charts/episodic_length", ep_length[e], global_step)
            writer.add_scalar("charts/running_mean", running_mean, global_step)
            ep_return[e], ep_length[e] = 0.0, 0
        if done.any():
            csv_file.flush()
        first, prev_done = prev_done.copy(), done

        if len(finished) >= args.batch_episodes:  # update on whole episodes
            batch, finished = finished[:args.batch_episodes], finished[args.batch_episodes:]
            grad, loss, entropy = policy_gradient(model, batch, args.gamma)
            rmsprop_step(model, grad, cache, args.learning_rate, args.decay_rate)
            updates += 1
            writer.add_scalar("losses/policy_loss", loss, global_step)
            writer.add_scalar("losses/entropy", entropy, global_step)
            writer.add_scalar("charts/updates", updates, global_step)

        if global_step // 1000 != (global_step - played.sum()) // 1000:
            writer.add_scalar("charts/SPS", sps, global_step)
        if global_step >= next_save:
            checkpoint()
            next_save = (global_step // args.save_every + 1) * args.save_every
        progress.update(global_step, sps, float(np.mean(recent[-100:])) if recent else math.nan,
                        f" | running mean {running_mean if running_mean is not None else math.nan:6.2f}"
                        f" | episodes {episode} | updates {updates}")

    checkpoint()
    progress.update(global_step, sps, float(np.mean(recent[-100:])) if recent else math.nan,
                    f" | running mean {running_mean if running_mean is not None else math.nan:6.2f}"
                    f" | episodes {episode} | updates {updates}", force=True)
    progress.close()
    csv_file.close()
    envs.close()
    if stop_signal:
        writer.close()
        print(f"stopped by signal {stop_signal[0]} at step {global_step:,}; checkpoint written. "
              f"Resume with: {resume_command(run_dir)}", file=sys.stderr)
        sys.exit(128 + stop_signal[0])

    # The weights alone (float32, 5 MB): what to ship and evaluate; checkpoint.npz adds RMSProp's cache to resume.
    save_atomic({"script": np.array(SCRIPT), "args": np.array(json.dumps(asdict(args))), "W1": model["W1"],
                 "W2": model["W2"], "global_step": np.array(global_step)}, run_dir / "final_model.npz")
    sticky = env_settings(args.env_id).get("repeat_action_probability", 0.25) if args.eval_sticky is None \
        else args.eval_sticky
    returns = evaluate(model, args.env_id, sticky, args.eval_episodes, args.seed + 10_000, args.eval_argmax,
                       run_dir / "videos" if args.capture_video else None)
    report = write_eval(run_dir, returns, str(run_dir / "final_model.npz"), global_step, args.eval_argmax,
                        args.env_id, sticky)
    writer.add_scalar("eval/mean_return", report["mean"], global_step)
    writer.close()
    print(f"done: {global_step:,} steps, {episode} episodes, {updates} updates, "
          f"{wall_before + time.time() - start:.0f} s; eval ({report['policy']}) {report['mean']:.2f} ± "
          f"{report['std']:.2f} over {report['episodes']} episodes -> {run_dir}")


if __name__ == "__main__":
    try:
        main(tyro.cli(Args, args=[*saved_settings(sys.argv[1:]), *sys.argv[1:]]))
    except BadInput as e:
        fail(str(e))
