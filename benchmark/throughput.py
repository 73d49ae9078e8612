"""Training throughput side by side, in one run: the env alone (the ceiling), each agent script's whole
loop, and Stable-Baselines3's DQN at the same training settings (train frequency 4, batch 32, 50k
replay, learning starts 1000; dqn_cnn.py keeps its 3-step targets, which cost the same compute as
1-step ones); plus where the time of dqn_cnn.py, ppo_mlp.py and ppo_ray.py goes.

    python benchmark/throughput.py            # everything, ~20 minutes on 2 cores
    python benchmark/throughput.py --only dqn_cnn sb3_dqn env

Writes `benchmark/throughput.json`; `python benchmark/report.py` puts it into RESULTS.md. Run it on
an otherwise idle machine: two jobs on two cores halve each other. SB3 lives in its own venv
(`benchmark/.sb3-venv`, made here on first use), so it never becomes a dependency of the repository.
Whole-loop SPS is steady state: agent steps per second between the first episode end after
`--warmup-steps` and the last one, read from the run's progress.csv (start-up and compilation excluded).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SB3_VENV = ROOT / "benchmark" / ".sb3-venv"
SB3_PACKAGES = ["torch==2.13.0", "stable-baselines3==2.9.2", "ale-py==0.12.1", "gymnasium==1.4.0",
                "opencv-python-headless==5.0.0.93"]

# name -> (script, flags, agent steps, warm-up steps). DQN cases share SB3's settings: train frequency 4, batch
# 32, 50k replay. The policy-gradient scripts run 10-20x faster, so they get runs long enough for a timing window
# of several minutes: many rollout/update cycles, well past start-up (Ray's included).
DQN_SETTINGS = ["--learning-starts", "1000", "--train-frequency", "4", "--batch-size", "32", "--buffer-size", "50000",
                "--no-bf16"]
DQN_DEFAULTS_BEFORE = ["--num-envs", "4", "--batch-size", "32", "--train-frequency", "4", "--learning-rate", "1e-4",
                       "--no-bf16"]
DQN_STEPS, PG_STEPS = (25_000, 5_000), (400_000, 50_000)
CASES = {
    "dqn_cnn": ("dqn_cnn.py", [*DQN_SETTINGS, "--num-envs", "1", "--no-compile"], *DQN_STEPS),
    "dqn_cnn_compiled": ("dqn_cnn.py", [*DQN_SETTINGS, "--num-envs", "1"], *DQN_STEPS),
    "dqn_cnn_4envs_compiled": ("dqn_cnn.py", [*DQN_SETTINGS, "--num-envs", "4"], *DQN_STEPS),
    # The defaults against those before bf16 and 128-sample batches (#23), each at its own settings.
    "dqn_cnn_defaults": ("dqn_cnn.py", ["--learning-starts", "1000"], *DQN_STEPS),
    "dqn_cnn_defaults_before": ("dqn_cnn.py", ["--learning-starts", "1000", *DQN_DEFAULTS_BEFORE], *DQN_STEPS),
    "pg_numpy": ("pg_numpy.py", [], *PG_STEPS),
    "ppo_mlp": ("ppo_mlp.py", [], *PG_STEPS),
    "ppo_ray_1worker": ("ppo_ray.py", ["--num-workers", "1"], *PG_STEPS),
    "ppo_ray_2workers": ("ppo_ray.py", ["--num-workers", "2"], *PG_STEPS),
    # CleanRL's 4 minibatches: 4x the gradient rounds per iteration, to show what the rounds cost.
    "ppo_ray_1worker_4minibatches": ("ppo_ray.py", ["--num-workers", "1", "--num-minibatches", "4"], *PG_STEPS),
    "ppo_ray_2workers_4minibatches": ("ppo_ray.py", ["--num-workers", "2", "--num-minibatches", "4"], *PG_STEPS),
}


def hardware() -> str:
    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    return f"{os.cpu_count()} cores, {model}"


def steady_sps(run_dir: Path, warmup_steps: int) -> dict:
    with open(run_dir / "progress.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if int(r["global_step"]) >= warmup_steps]
    if len(rows) < 2:
        raise RuntimeError(f"{run_dir}: fewer than two episodes ended after step {warmup_steps}")
    steps = int(rows[-1]["global_step"]) - int(rows[0]["global_step"])
    seconds = float(rows[-1]["wall_time_s"]) - float(rows[0]["wall_time_s"])
    return {"sps": steps / seconds, "steps": steps, "seconds": seconds}


def script_sps(script: str, flags: list[str], steps: int, warmup_steps: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [sys.executable, str(ROOT / script), "--total-timesteps", str(steps), "--eval-episodes", "1",
               "--seed", "1", "--run-dir", str(run_dir), *flags]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"{script} failed: {proc.stderr[-1500:]}")
        return {**steady_sps(run_dir, warmup_steps),
                "command": " ".join(["python", script, "--total-timesteps", str(steps), "--seed", "1", *flags])}


def json_result(cmd: list[str], what: str) -> dict:
    """Run a timing program that prints its result as one JSON line, last; its stderr tail if it fails."""
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed: {proc.stderr[-1500:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def seed_ray_sps(actors: int, seconds: float = 150.0) -> dict:
    """The seed's Ray example (`ray_pong_seed.py`) with `actors` actors: agent steps per second, steady state."""
    cmd = [sys.executable, str(ROOT / "benchmark" / "ray_pong_seed.py"), "--actors", str(actors), "--seconds",
           str(seconds)]
    return {**json_result(cmd, "ray_pong_seed.py"),
            "command": f"python benchmark/ray_pong_seed.py --actors {actors} --seconds {seconds:g}"}


def ensure_sb3_venv() -> Path:
    python = SB3_VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(SB3_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *SB3_PACKAGES], check=True)
    return python


def sb3_sps(steps: int, warmup_steps: int, num_envs: int) -> dict:
    python = ensure_sb3_venv()
    cmd = [str(python), str(ROOT / "benchmark" / "sb3_dqn.py"), "--total-timesteps", str(steps),
           "--warmup-steps", str(warmup_steps), "--learning-starts", "1000", "--num-envs", str(num_envs),
           "--buffer-size", "50000", "--train-frequency", "4", "--batch-size", "32"]
    result = json_result(cmd, "SB3")
    version = subprocess.run([str(python), "-c", "import stable_baselines3; print(stable_baselines3.__version__)"],
                             capture_output=True, text=True).stdout.strip()
    return {**result, "command": f"stable-baselines3 {version} DQN, "
            f"{num_envs} env(s), AtariWrapper + VecFrameStack(4), learning_starts 1000, train_freq 4, batch 32, "
            "buffer 50000"}


def env_ceiling(num_envs: int, seconds: float = 8.0) -> dict:
    """Random actions in the DeepMind-preprocessed vector env that dqn_cnn.py trains on."""
    sys.path.insert(0, str(ROOT))
    import dqn_cnn

    envs = dqn_cnn.make_env("PongNoFrameskip-v4", num_envs)
    return {**random_play(envs, [0, 1, 2, 3, 4, 5], seconds),
            "command": f"ale_py AtariVectorEnv, {num_envs} env(s), DeepMind preprocessing, random actions"}


def random_play(envs, actions: list[int], seconds: float) -> dict:
    """Agent steps per second of a vector env stepped with random actions for `seconds`, nothing else."""
    num_envs = envs.num_envs
    envs.reset(seed=0)
    rng = np.random.default_rng(0)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        envs.step(rng.choice(actions, num_envs))
        steps += num_envs
    return {"sps": steps / (time.perf_counter() - start), "steps": steps}


def timed(fn, count: int) -> float:
    """Milliseconds per call of `fn`, after 5 warm-up calls."""
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - start) / count * 1000


def raw_env_ceiling(num_envs: int, seconds: float = 8.0) -> dict:
    """Random UP/DOWN in the raw-RGB vector env (1 thread, no sticky actions) that each ppo_ray.py worker plays."""
    sys.path.insert(0, str(ROOT))
    import ppo_ray

    envs = ppo_ray.make_env("pong", 0.0, 4, num_envs, num_threads=1)
    return {**random_play(envs, [ppo_ray.UP, ppo_ray.DOWN], seconds),
            "command": f"ale_py AtariVectorEnv, {num_envs} env(s), 1 thread, raw 210x160 RGB, frameskip 4, "
                       "random UP/DOWN: one ppo_ray worker's games, without the agent"}


def ray_breakdown(rounds: int = 100) -> dict:
    """The parts of a ppo_ray.py iteration at its defaults (4 games x 128 steps per worker, 4 epochs of one
    gradient round each), in milliseconds: a worker's rollout per agent step and its gradient of a whole batch;
    Ray's hand-off per round (the weights out, each of 2 workers' gradient back as it sends it, nothing computed:
    on one machine); the learner's sample-weighted average of 2 gradients and its Adam step. What the scaling
    model in RESULTS.md is made of."""
    import ray
    import torch

    sys.path.insert(0, str(ROOT))
    import ppo_ray

    torch.set_num_threads(1)
    worker = ppo_ray.Worker(0, "pong", 0.0, 4, 4, 128, 0.99, 0.1, 0.01)
    model = ppo_ray.Policy()
    weights = ppo_ray.weights_numpy(model)
    worker.rollout(weights, 1)
    rollout_ms = timed(lambda: worker.rollout(weights, 1), 20) / 512
    answer = worker.gradient(weights, 0.0, 1.0)
    dense = ppo_ray.average_gradients([answer])[0]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, eps=1e-5, fused=True)
    ms = {"rollout_per_agent_step": rollout_ms,
          "worker_gradient": timed(lambda: worker.gradient(weights, 0.0, 1.0), rounds // 5),
          "average_2_gradients": timed(lambda: ppo_ray.average_gradients([answer, answer]), rounds),
          "learner_step": timed(lambda: ppo_ray.learner_step(model, optimizer, dense, 0.5), rounds)}

    @ray.remote(num_cpus=1)
    class Echo:
        def __init__(self, answer: dict):
            self.answer = answer

        def gradient(self, weights):  # what a worker sends back, without computing it
            return self.answer

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)  # never a running cluster
    try:
        echoes = [Echo.remote(answer) for _ in range(2)]

        def hand_off():
            ref = ray.put(ppo_ray.weights_numpy(model))
            ray.get([w.gradient.remote(ref) for w in echoes])

        ms["ray_hand_off_2_workers"] = timed(hand_off, rounds)
    finally:
        ray.shutdown()
    megabytes = sum(v.nbytes for v in weights.values()) / 1e6
    return {"ms": ms, "weights_mb": megabytes, "gradient_mb": sum(v.nbytes for v in answer["grads"].values()) / 1e6,
            "batch_samples": answer["n"],
            "setting": "ppo_ray.py defaults: one worker's 4 games x 128 steps, its whole batch per gradient round "
                       "(--num-minibatches 1); 1 torch thread; one machine"}


def pg_env_ceiling(num_envs: int = 8, seconds: float = 8.0) -> dict:
    """Random UP/DOWN in pg_numpy.py's own env at its defaults (ALE/Pong-v5 raw RGB, 8 games, threaded)."""
    sys.path.insert(0, str(ROOT))
    import pg_numpy

    envs = pg_numpy.make_env("ALE/Pong-v5", num_envs)
    return {**random_play(envs, [pg_numpy.UP, pg_numpy.DOWN], seconds),
            "command": f"pg_numpy.make_env: ALE/Pong-v5 (sticky 0.25), {num_envs} env(s), raw 210x160 RGB, frameskip 4, "
                       "random UP/DOWN: pg_numpy.py's games, without the agent"}


def dqn_breakdown(repeats: int = 200) -> dict:
    """Milliseconds per agent step spent acting, stepping the env, sampling replay and learning (train freq 4, 1 env)."""
    import torch

    sys.path.insert(0, str(ROOT))
    import dqn_cnn

    envs = dqn_cnn.make_env("PongNoFrameskip-v4", 1)
    obs, _ = envs.reset(seed=0)
    q, target = dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-4)
    replay = dqn_cnn.FrameReplay(50_000, 1, 3, 0.99)
    rng = np.random.default_rng(0)
    first, prev_done = np.ones(1, bool), np.zeros(1, bool)
    for _ in range(2000):
        obs, first, prev_done, _, _ = dqn_cnn.step_and_store(envs, replay, obs, rng.integers(0, 6, 1), first, prev_done)

    def act():
        with torch.inference_mode():
            q(torch.from_numpy(obs)).argmax(1)

    batch = [torch.from_numpy(x) for x in replay.sample(32, rng)]
    compiled = torch.compile(dqn_cnn.gradient_step)  # as dqn_cnn.py's --compile does
    ms = {"act": timed(act, repeats), "env": timed(lambda: envs.step(np.zeros(1, np.int64)), repeats),
          "replay_sample": timed(lambda: replay.sample(32, rng), repeats) / 4,
          "learn_eager": timed(lambda: dqn_cnn.gradient_step(q, target, optimizer, *batch), repeats // 4) / 4,
          "learn_compiled": timed(lambda: compiled(q, target, optimizer, *batch), repeats // 4) / 4}
    return {"ms_per_agent_step": ms, "setting": "one env; learn and replay_sample are one gradient step / 4"}


def random_dqn_batch(torch, batch_size: int, memory_format=None) -> tuple:
    """A batch for dqn_cnn.gradient_step of random frames (a step's time does not depend on what they show): obs,
    actions, returns, discounts, next obs; the frames in `memory_format` where given."""
    frames = torch.randint(0, 256, (2, batch_size, 4, 84, 84), dtype=torch.uint8)
    if memory_format is not None:
        frames = [f.contiguous(memory_format=memory_format) for f in frames]
    return frames[0], torch.randint(0, 6, (batch_size,)), torch.randn(batch_size), torch.rand(batch_size), frames[1]


def dqn_precisions() -> list[bool]:
    """The `bf16` settings of dqn_cnn.gradient_step worth timing on this CPU: float32, and bf16 where it computes in
    bf16 (elsewhere autocast only emulates it). Callers have put the repository on sys.path."""
    import torch

    import dqn_cnn

    return [False, True] if dqn_cnn.bf16_arithmetic(torch.device("cpu")) else [False]


def dqn_gradient_steps(repeats: int = 40) -> dict:
    """Milliseconds per compiled gradient step of dqn_cnn.py for batches of 32 and 128, in float32 and bf16 (where
    the CPU has bf16 arithmetic): what a batch of 128 every 16 agent steps saves over 32 every 4."""
    import torch

    sys.path.insert(0, str(ROOT))
    import dqn_cnn

    torch.manual_seed(0)
    q, target = dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)
    optimizer = torch.optim.Adam(q.parameters(), lr=1e-4)
    precisions = dqn_precisions()
    ms = {}
    for batch_size in (32, 128):
        batch = random_dqn_batch(torch, batch_size)
        for bf16 in precisions:
            torch._dynamo.reset()  # each case its own static-shape graph, as a training run compiles it
            step = torch.compile(dqn_cnn.gradient_step)
            ms[f"batch_{batch_size}_{'bf16' if bf16 else 'float32'}"] = timed(
                lambda: step(q, target, optimizer, *batch, bf16=bf16), repeats)
    return {"ms_per_gradient_step": ms, "setting": "torch.compile'd gradient_step, compiled anew per case, "
                                                   "default threads"}


def dqn_memory_layout(repeats: int = 40) -> dict:
    """Milliseconds per gradient step of dqn_cnn.py, batch 128, eager and compiled, in float32 and bf16 (where the
    CPU has bf16 arithmetic), with the weights and frames in torch's default layout (NCHW) and in channels_last
    (NHWC, oneDNN's own layout for CPU convolutions)."""
    import torch

    sys.path.insert(0, str(ROOT))
    import dqn_cnn

    precisions = dqn_precisions()
    ms = {}
    for layout, memory_format in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        torch.manual_seed(0)
        q, target = (dqn_cnn.QNetwork(6).to(memory_format=memory_format) for _ in range(2))
        optimizer = torch.optim.Adam(q.parameters(), lr=1e-4)
        batch = random_dqn_batch(torch, 128, memory_format)
        for bf16 in precisions:
            for compile_step in (False, True):
                torch._dynamo.reset()
                step = torch.compile(dqn_cnn.gradient_step) if compile_step else dqn_cnn.gradient_step
                ms[f"{'compiled' if compile_step else 'eager'}_{'bf16' if bf16 else 'float32'}_{layout}"] = timed(
                    lambda: step(q, target, optimizer, *batch, bf16=bf16), repeats)
    return {"ms_per_gradient_step": ms, "setting": "batch 128, each compiled case compiled anew, default threads"}


def ppo_mlp_breakdown(rollouts: int = 20) -> dict:
    """Milliseconds per agent step that ppo_mlp.py at its defaults spends stepping its 8 games, making the
    difference frames, acting (one forward pass for 8 frames) and updating (advantages and 4 epochs over each
    rollout of 8 x 128 real frames, divided by the rollout's 1,024 steps)."""
    import torch

    sys.path.insert(0, str(ROOT))
    import ppo_mlp

    torch.set_num_threads(1)
    args = ppo_mlp.Args()
    n, t_max = args.num_envs, args.num_steps
    envs = ppo_mlp.make_env(args.env_id, n, args.frameskip)
    screens, _ = envs.reset(seed=0)
    frames = ppo_mlp.DifferenceFrames(n, args.crop_bottom)
    x = frames(screens[:, 0], np.ones(n, bool))
    agent = ppo_mlp.Agent(ppo_mlp.num_inputs(args.crop_bottom), args.hidden)
    optimizer = torch.optim.Adam(agent.parameters(), lr=args.learning_rate, eps=1e-5, fused=True)
    seconds = dict.fromkeys(("env", "difference_frames", "act", "update"), 0.0)
    done = np.zeros(n, bool)
    for _ in range(rollouts):
        obs, acts, logps, vals, rewards, dones = [], [], [], [], [], []
        for _ in range(t_max):
            t0 = time.perf_counter()
            action, logp, value = ppo_mlp.act(agent, x)
            t1 = time.perf_counter()
            screens, reward, term, trunc, _ = envs.step(ppo_mlp.UP_DOWN[action.numpy()])
            t2 = time.perf_counter()
            obs.append(x.clone())
            x = frames(screens[:, 0], done)
            seconds["difference_frames"] += time.perf_counter() - t2
            seconds["act"] += t1 - t0
            seconds["env"] += t2 - t1
            done = term | trunc
            acts.append(action)
            logps.append(logp)
            vals.append(value)
            rewards.append(torch.from_numpy(reward).float())
            dones.append(torch.from_numpy(done))
        ended, values = torch.stack(dones), torch.stack(vals)  # the training loop fills these in place
        batch = {"obs": torch.stack(obs).reshape(n * t_max, -1), "actions": torch.stack(acts).reshape(-1),
                 "logprobs": torch.stack(logps).reshape(-1), "values": values.reshape(-1)}
        t0 = time.perf_counter()
        advantages, returns, use = ppo_mlp.estimate_advantages(args, torch.stack(rewards), values,
                                                               ppo_mlp.act(agent, x)[2], ended, ended,
                                                               torch.ones_like(ended))
        batch.update(advantages=advantages.reshape(-1), returns=returns.reshape(-1))
        ppo_mlp.ppo_update(agent, optimizer, batch, use.reshape(-1), args)
        seconds["update"] += time.perf_counter() - t0
    envs.close()
    steps = rollouts * n * t_max
    return {"ms_per_agent_step": {k: v / steps * 1000 for k, v in seconds.items()},
            "setting": f"defaults: {n} games x {t_max} steps per rollout, {args.update_epochs} epochs of "
                       f"{args.num_minibatches} minibatch, hidden {args.hidden}, 1 torch thread; "
                       f"{rollouts} rollouts of real play"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", nargs="*", help="cases to run: env (= env_1 env_4 env_raw_4 env_pg_8), sb3_dqn, "
                   "breakdown (= dqn_breakdown dqn_gradient_steps ppo_mlp_breakdown ppo_ray_breakdown), "
                   "seed_ray (= seed_ray_1actor seed_ray_2actors), dqn_memory_layout, "
                   + ", ".join(CASES))
    p.add_argument("--steps", type=int, help="agent steps of every whole-loop run (default: each case's own, "
                   f"{DQN_STEPS[0]:,} for DQN and SB3, {PG_STEPS[0]:,} for the policy-gradient scripts)")
    p.add_argument("--warmup-steps", type=int, help="steps excluded from the timing (default: each case's own)")
    p.add_argument("--out", default=str(ROOT / "benchmark" / "throughput.json"))
    p.add_argument("--note", default="", help="what else ran on the machine, thread settings, ...")
    a = p.parse_args()
    wanted = set(a.only or ["env", "breakdown", "sb3_dqn", "seed_ray", *CASES])
    out = Path(a.out)
    results = json.loads(out.read_text()) if out.exists() else {}
    results["meta"] = {"hardware": hardware(), "python": platform.python_version()}
    cases = results.setdefault("cases", {})
    # Every case says when and how it was measured: the cases of one invocation share `run` (one after another,
    # under the same load), so ratios are quoted only between cases of one run.
    run = {"run": time.strftime("%Y-%m-%dT%H:%M:%S"), "date": time.strftime("%Y-%m-%d"), "note": a.note,
           "env_prefix": "".join(f"{k}={os.environ[k]} " for k in ("OMP_NUM_THREADS",) if k in os.environ)}

    def record(name, fn):
        print(f"{name} ...", flush=True)
        try:
            cases[name] = {**fn(), **run}
        except (RuntimeError, FileNotFoundError, subprocess.CalledProcessError) as e:
            cases[name] = {"error": str(e)}
        print(f"  {json.dumps(cases[name])[:300]}", flush=True)
        out.write_text(json.dumps(results, indent=2) + "\n")

    envs = {"env_1": lambda: env_ceiling(1), "env_4": lambda: env_ceiling(4), "env_raw_4": lambda: raw_env_ceiling(4),
            "env_pg_8": pg_env_ceiling}
    for name, fn in envs.items():
        if wanted & {"env", name}:
            record(name, fn)
    if wanted & {"breakdown", "dqn_breakdown"}:
        record("dqn_breakdown", dqn_breakdown)
    if wanted & {"breakdown", "dqn_gradient_steps"}:
        record("dqn_gradient_steps", dqn_gradient_steps)
    if "dqn_memory_layout" in wanted:
        record("dqn_memory_layout", dqn_memory_layout)
    if wanted & {"breakdown", "ppo_mlp_breakdown"}:
        record("ppo_mlp_breakdown", ppo_mlp_breakdown)
    if wanted & {"breakdown", "ppo_ray_breakdown"}:
        record("ppo_ray_breakdown", ray_breakdown)
    for actors, name in ((1, "seed_ray_1actor"), (2, "seed_ray_2actors")):  # ppo_ray.py's per-worker yardstick
        if wanted & {"seed_ray", name}:
            record(name, lambda: seed_ray_sps(actors))
    if "sb3_dqn" in wanted:
        record("sb3_dqn", lambda: sb3_sps(a.steps or DQN_STEPS[0], a.warmup_steps or DQN_STEPS[1], 1))
    for name, (script, flags, steps, warmup) in CASES.items():
        if name in wanted and (ROOT / script).exists():
            record(name, lambda: script_sps(script, flags, a.steps or steps, a.warmup_steps or warmup))


if __name__ == "__main__":
    main()
