"""ppo_ray.py: its math on pure functions (no Ray), then runs on a local Ray, on a cluster the test starts,
with a worker killed mid-run, and with a terminal-style Ctrl-C; every run must leave no Ray process behind."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import (ROOT, assert_eval_report, assert_one_line_error, copy_alone, load_script, read_progress,
                      scalars, smoke_flags, start_script)

sys.path.insert(0, str(ROOT / "benchmark"))
import ray_pong_seed  # noqa: E402  (the seed's Ray example, for its preprocessing)

SCRIPT = ROOT / "ppo_ray.py"
RAY_BIN = Path(sys.executable).parent / "ray"
RUN = ["--num-envs", "1", "--num-steps", "256", "--eval-episodes", "1"]  # rounds of 256 steps per worker


@pytest.fixture(scope="module")
def pr():
    return load_script("ppo_ray.py")


# ---------------------------------------------------------------------------- pure functions
def test_preprocess_matches_the_seed_batched(pr):
    rng = np.random.default_rng(0)
    frames = rng.choice(np.array([0, 144, 109, 92, 213, 236], np.uint8), size=(3, 210, 160, 3),
                        p=[0.05, 0.5, 0.3, 0.05, 0.05, 0.05])
    out = pr.preprocess(frames)
    assert out.shape == (3, 6400) and out.dtype == np.uint8 and set(np.unique(out)) <= {0, 1}
    for f, o in zip(frames, out):  # the seed's code as benchmark/ray_pong_seed.py runs it (it writes into its input)
        np.testing.assert_array_equal(o, ray_pong_seed.preprocess(f.copy()))
    np.testing.assert_array_equal(pr.preprocess(frames[0]), out[0])  # one frame works too


def test_preprocess_on_a_real_pong_frame(pr):
    envs = pr.make_env("pong", 0.0, 4, 1)
    obs, _ = envs.reset(seed=0)
    for _ in range(60):
        obs, *_ = envs.step(np.array([pr.UP]))
    x = pr.preprocess(obs[:, 0])
    envs.close()
    assert obs.shape == (1, 1, 210, 160, 3)
    # Two paddles (4 px wide, 16 high at 80x80 -> 2 x 8) and maybe the ball: a few dozen pixels, not the background.
    assert 10 <= x.sum() <= 60, x.sum()


def test_discount_rewards_restarts_at_each_point(pr):
    # Karpathy's process_rewards: the running sum restarts at each non-zero reward.
    got = pr.discount_rewards(np.array([0.0, 0.0, 1.0, 0.0, -1.0]), gamma=0.5)
    np.testing.assert_allclose(got, [0.25, 0.5, 1.0, -0.5, -1.0])
    np.testing.assert_allclose(pr.discount_rewards(np.array([0.0, 0.0, 0.0]), 0.9), [0, 0, 0])  # truncated: 0


def test_combine_stats_is_the_global_mean_and_std(pr):
    rng = np.random.default_rng(1)
    parts = [rng.normal(size=n) for n in (3, 17, 1, 40)]
    mean, std = pr.combine_stats([pr.return_stats(p) for p in parts])
    allr = np.concatenate(parts)
    assert mean == pytest.approx(allr.mean(), abs=1e-12) and std == pytest.approx(allr.std(), abs=1e-12)


def random_batch(n: int, seed: int, model, spread: float = 0.3) -> dict:
    """Samples as a worker keeps them; behaviour log-probs near the model's own, so some ratios are clipped."""
    rng = np.random.default_rng(seed)
    x = rng.choice(np.array([-1, 0, 1], np.int8), size=(n, 6400), p=[0.02, 0.96, 0.02])
    up = rng.random(n) < 0.5
    with torch.no_grad():
        logp = pr_log_prob(model, x, up)
    return {"x": x, "up": up, "logp": (logp + rng.normal(0, spread, n)).astype(np.float32),
            "returns": rng.normal(size=n) * 0.5}


def pr_log_prob(model, x, up) -> np.ndarray:
    logits = model(torch.from_numpy(x)).double().numpy()
    return np.where(up, -np.log1p(np.exp(-logits)), -np.log1p(np.exp(logits)))


def test_ppo_loss_matches_the_direct_formula(pr):
    torch.manual_seed(0)
    model = pr.Policy()
    b = random_batch(64, 2, model, spread=0.5)
    clip, ent = 0.1, 0.01
    adv = (b["returns"] - 0.1) / 0.7
    loss, parts = pr.ppo_loss(model, torch.from_numpy(b["x"]), torch.from_numpy(b["up"]), torch.from_numpy(b["logp"]),
                              torch.from_numpy(adv.astype(np.float32)), clip, ent)
    with torch.no_grad():
        z = model(torch.from_numpy(b["x"])).double().numpy()
    p = 1 / (1 + np.exp(-z))
    logp = np.where(b["up"], np.log(p), np.log(1 - p))
    ratio = np.exp(logp - b["logp"])
    surrogate = np.minimum(ratio * adv, np.clip(ratio, 1 - clip, 1 + clip) * adv)
    entropy = -(p * np.log(p) + (1 - p) * np.log(1 - p))
    np.testing.assert_allclose(loss.detach().numpy(), -surrogate - ent * entropy, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(parts["clipfrac"].numpy(), np.abs(ratio - 1) > clip)
    assert 0 < parts["clipfrac"].mean() < 1  # both branches of the clip are exercised


def test_policy_from_nonzero_pixels_equals_the_dense_network(pr):
    torch.manual_seed(2)
    model = pr.Policy()
    x = torch.from_numpy(random_batch(32, 0, model)["x"])
    x[3] = x[-1] = 0  # first steps of games: all-zero difference frames, one of them the last bag

    def dense(batch):
        return torch.relu(batch.float() @ model.w1) @ model.w2

    for batch in (x, torch.zeros_like(x[:4])):  # and a rollout's very first step: every game at its start
        logits, expected = model(batch), dense(batch)
        torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)
        (g_sparse,) = torch.autograd.grad(logits.square().sum() + logits.sum(), model.w2)
        (g_dense,) = torch.autograd.grad(expected.square().sum() + expected.sum(), model.w2)
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6)
    (g_sparse,) = torch.autograd.grad(model(x).square().sum(), model.w1)
    (g_dense,) = torch.autograd.grad(dense(x).square().sum(), model.w1)
    torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6)


def test_data_parallel_gradient_equals_one_process(pr):
    """Workers' gradients, averaged with weights n_w / N, equal the gradient of all the data in one process."""
    torch.manual_seed(3)
    model = pr.Policy()
    sizes = (5, 40, 1, 19)
    parts = [random_batch(n, 10 + i, model) for i, n in enumerate(sizes)]
    whole = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    mean, std = pr.combine_stats([pr.return_stats(p["returns"]) for p in parts])  # what the learner computes
    assert mean == pytest.approx(whole["returns"].mean()) and std == pytest.approx(whole["returns"].std())

    one = pr.batch_gradient(model, whole, mean, std, 0.1, 0.01)
    each = [pr.batch_gradient(model, p, mean, std, 0.1, 0.01) for p in parts]
    grads, means, n = pr.average_gradients(each + [{"n": 0}])  # a worker with no finished point is left out
    assert n == sum(sizes) == one["n"]
    for name, g in dense_gradient(model, whole, mean, std).items():
        assert np.abs(g).max() > 0
        np.testing.assert_allclose(grads[name], g, rtol=1e-4, atol=1e-7 * np.abs(g).max())
    for key, total in one["sums"].items():
        assert means[key] == pytest.approx(total / n, rel=1e-4, abs=1e-7)
    # An unweighted mean of the workers' gradients is not the same thing (the sizes differ a lot).
    naive = np.mean([e["grads"]["w2"] for e in each], 0)
    assert not np.allclose(naive, one["grads"]["w2"], rtol=1e-2)


def dense_gradient(model, batch: dict, mean: float, std: float) -> dict:
    """The whole gradient of a batch's mean loss, straight from autograd, W1's unlit rows included."""
    model.zero_grad(set_to_none=True)
    adv = torch.from_numpy(((batch["returns"] - mean) / (std + 1e-8)).astype(np.float32))
    loss, _ = load_script("ppo_ray.py").ppo_loss(model, torch.from_numpy(batch["x"]), torch.from_numpy(batch["up"]),
                                                  torch.from_numpy(batch["logp"]), adv, 0.1, 0.01)
    loss.mean().backward()
    return {k: p.grad.numpy().copy() for k, p in model.named_parameters()}


def test_a_worker_sends_only_the_gradient_rows_of_pixels_its_samples_lit(pr):
    """W1's gradient is zero on the rows of pixels no sample lit: those rows are left out of the answer, and the
    learner's sum of answers is the full gradient, zeros included."""
    torch.manual_seed(4)
    model = pr.Policy()
    batch = random_batch(30, 7, model)
    answer = pr.batch_gradient(model, batch, 0.0, 1.0, 0.1, 0.01)
    full = dense_gradient(model, batch, 0.0, 1.0)
    lit = np.flatnonzero(batch["x"].any(axis=0))
    np.testing.assert_array_equal(answer["w1_rows"], lit)
    assert 0 < len(lit) < pr.D and answer["grads"]["w1"].shape == (len(lit), 200)
    assert not full["w1"][np.setdiff1d(np.arange(pr.D), lit)].any()
    np.testing.assert_array_equal(pr.average_gradients([answer])[0]["w1"], full["w1"])


def make_worker(pr, seed_index: int = 0):
    return pr.Worker(seed_index, "pong", 0.0, 4, num_envs=2, num_steps=100, gamma=0.99, clip_coef=0.1,
                     ent_coef=0.01)


def test_worker_rollout_keeps_finished_points_and_carries_the_rest(pr):
    torch.manual_seed(0)
    weights = pr.weights_numpy(pr.Policy())
    w = make_worker(pr)
    a = w.rollout(weights, seed=5)
    n = a["stats"][0]
    assert a["steps"] == 200 and n + a["pending"] == 200  # every step is either in the batch or waits for its point
    assert n > 0 and w.batch["x"].shape == (n, 6400) and set(np.unique(w.batch["x"])) <= {-1, 0, 1}
    r = w.batch["returns"]
    assert np.all(np.abs(r) <= 1) and np.any(np.isclose(np.abs(r), 1.0))  # each point ends with its +-1
    pending = a["pending"]
    b = w.rollout(weights, seed=5)  # the next rollout continues the same games
    assert b["stats"][0] + b["pending"] == 200 + pending
    g = w.gradient(weights, *pr.combine_stats([b["stats"]]))
    assert g["n"] == b["stats"][0] and set(g["grads"]) == {"w1", "w2"}
    assert abs(g["sums"]["approx_kl"]) < 1e-5 * g["n"]  # the weights that played: ratio 1 (carried steps aside)


def test_an_epochs_minibatches_cover_the_worker_batch_once(pr):
    """Minibatches 0..M-1 deal out every sample once; their n-weighted gradients recombine to the whole batch's."""
    torch.manual_seed(1)
    weights = pr.weights_numpy(pr.Policy())
    w = make_worker(pr)
    a = w.rollout(weights, seed=3)
    stats = pr.combine_stats([a["stats"]])
    whole = w.gradient(weights, *stats)
    orders = []
    for epoch in range(2):
        parts = [w.gradient(weights, *stats, minibatch=k, num_minibatches=3) for k in range(3)]
        sizes = [p["n"] for p in parts]
        assert sum(sizes) == whole["n"] and max(sizes) - min(sizes) <= 1
        grads, means, n = pr.average_gradients(parts)
        for name, g in pr.average_gradients([whole])[0].items():
            np.testing.assert_allclose(grads[name], g, rtol=1e-4, atol=1e-6 * np.abs(g).max())
        orders.append(w.order.copy())
    assert not np.array_equal(orders[0], orders[1])  # each epoch deals the samples out afresh
    # More minibatches than samples: the tail ones are empty, not an error (the learner skips them).
    many = whole["n"] + 3
    assert [w.gradient(weights, *stats, minibatch=k, num_minibatches=many)["n"] for k in range(many)] == \
        [1] * whole["n"] + [0] * 3


def test_each_iteration_takes_epochs_times_minibatches_optimizer_steps(smoke_runs):
    proc, run_dir = smoke_runs("ppo_ray.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = dict(scalars(run_dir, "charts/gradient_steps"))
    iterations_with_data = [step for step, _ in scalars(run_dir, "charts/batch_samples")]
    assert iterations_with_data and all(steps[s] == 4 * 1 for s in iterations_with_data)  # the defaults: 4 x 1


def test_same_seed_gives_the_same_first_losses(pr):
    def first(seed: int, index: int = 0):
        torch.manual_seed(seed)
        weights = pr.weights_numpy(pr.Policy())
        w = make_worker(pr, index)
        a = w.rollout(weights, seed=seed)
        g = w.gradient(weights, *pr.combine_stats([a["stats"]]))
        return a["stats"], g["sums"], g["grads"]["w2"]

    s1, l1, g1 = first(7)
    s2, l2, g2 = first(7)
    assert s1 == s2 and l1 == l2 and np.array_equal(g1, g2)
    s3, _, _ = first(7, index=1)  # another worker plays other games
    assert s3 != s1


def test_no_gradient_reaches_the_behaviour_policy_or_the_advantages(pr):
    torch.manual_seed(0)
    model = pr.Policy()
    b = random_batch(16, 4, model)
    logp = torch.from_numpy(b["logp"]).requires_grad_()
    adv = torch.from_numpy(b["returns"].astype(np.float32)).requires_grad_()
    loss, _ = pr.ppo_loss(model, torch.from_numpy(b["x"]), torch.from_numpy(b["up"]), logp, adv,
                          0.1, 0.01)
    loss.mean().backward()
    assert logp.grad is None and adv.grad is None and model.w1.grad is not None


# ---------------------------------------------------------------------------- processes
def session_processes(sid: int) -> list[int]:
    """Live processes of a session (everything Ray starts keeps its driver's session id)."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _, _, session = stat[stat.rindex(")") + 2:].split()[:4]
        if int(session) == sid and state != "Z":
            pids.append(int(entry))
    return pids


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:150]
    except OSError:
        return "?"


def assert_session_ends(sid: int, grace_s: float = 30.0) -> None:
    """No process of the session is left after `grace_s`; leftovers are killed (by PID) and fail the test."""
    deadline = time.time() + grace_s
    while time.time() < deadline and session_processes(sid):
        time.sleep(0.5)
    left = session_processes(sid)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    assert not left, "left behind: " + "; ".join(f"{p} {cmdline(p)}" for p in left)


def finish(proc: subprocess.Popen, timeout: float = 420) -> subprocess.CompletedProcess:
    """Wait for a script started with `start_script` (in a session of its own, as a terminal would start it); then
    no process of that session, Ray's included, may be left."""
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        assert_session_ends(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("flags, flag, within_s", [
    (["--num-workers", "0"], "--num-workers", 60),
    (["--num-workers", "64"], "--num-workers", 60),  # more than this machine's CPUs: said, not a hang
    (["--cpus-per-worker", "0"], "--cpus-per-worker", 60),
    (["--worker-timeout", "0"], "--worker-timeout", 60),
    (["--torch-threads", "0"], "--torch-threads", 60),
    (["--ray-address", "127.0.0.1:1"], "--ray-address", 30),  # nothing listening: seconds, not minutes
    (["--ray-address", "nonsense"], "--ray-address", 60),
])
def test_bad_ray_input_is_one_line_and_exit_2(flags, flag, within_s, tmp_path):
    run_dir = tmp_path / "run"
    t0 = time.time()
    proc = finish(start_script(SCRIPT, *smoke_flags("ppo_ray.py"), *flags, "--run-dir", str(run_dir), cwd=tmp_path),
                  timeout=120)
    assert_one_line_error(proc, flag)
    assert time.time() - t0 < within_s
    assert not run_dir.exists()


# ---------------------------------------------------------------------------- a cluster the test starts
class RayNodes:
    """Ray nodes on this machine started as a cluster user starts them, `ray start --block`: a head on 127.0.0.1
    with token authentication (Ray's default where a token exists), then nodes joined to it, each node in a
    process session of its own, so that it can be killed by the PIDs of its processes. `close` stops them all and
    fails if any process is left. Not `ray stop`: that stops every Ray process of this user on the machine, other
    runs' clusters included."""

    def __init__(self):
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
        token = Path(self.temp_dir) / "token"
        token.write_text(os.urandom(32).hex())
        clean = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH") and k != "RAY_ADDRESS"}
        self.driver_env = {**clean, "RAY_AUTH_TOKEN_PATH": str(token)}  # what a driver holding the token has
        self.nodes: list[subprocess.Popen] = []

    def start(self, cpus: int) -> subprocess.Popen:
        """The head first, then nodes that join it; returns once `ray start` says the node runs."""
        log = Path(self.temp_dir) / f"node{len(self.nodes)}.log"
        where = (["--head", "--port", str(self.port), "--temp-dir", self.temp_dir, "--include-dashboard", "false",
                  "--ray-client-server-port", str(free_port())] if not self.nodes else ["--address", self.address])
        with open(log, "w") as out:
            node = subprocess.Popen(
                [str(RAY_BIN), "start", "--block", "--node-ip-address", "127.0.0.1", *where, "--num-cpus", str(cpus),
                 "--num-gpus", "0", "--disable-usage-stats", "--object-store-memory", str(150 * 1024 ** 2),
                 "--dashboard-agent-listen-port", str(free_port())],
                env={**self.driver_env, "RAY_AUTH_MODE": "token", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"},
                start_new_session=True, stdout=out, stderr=subprocess.STDOUT)
        self.nodes.append(node)
        deadline = time.time() + 120
        while "Ray runtime started" not in log.read_text():
            assert node.poll() is None, f"ray start exited with {node.returncode}: {log.read_text()[-2000:]}"
            assert time.time() < deadline, f"the Ray node never started: {log.read_text()[-2000:]}"
            time.sleep(0.5)
        return node

    def kill(self, node: subprocess.Popen) -> None:
        """The node dies at once, as a preempted VM: SIGKILL to every process of its session (raylet, workers),
        again until none is left (one may be forking as the first ones die)."""
        deadline = time.time() + 10
        while session_processes(node.pid) and time.time() < deadline:
            for pid in session_processes(node.pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            time.sleep(0.2)
        node.wait(timeout=30)
        assert_session_ends(node.pid, grace_s=10)

    def close(self) -> None:
        for node in reversed(self.nodes):  # the head last
            node.terminate()
            try:
                node.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pass
        for node in self.nodes:
            assert_session_ends(node.pid)
        shutil.rmtree(self.temp_dir, ignore_errors=True)


@pytest.fixture
def ray_nodes(monkeypatch):
    """A `RayNodes` with no node yet; scripts started meanwhile get the environment of a driver holding the token."""
    nodes = RayNodes()
    for name in set(os.environ) - set(nodes.driver_env):
        monkeypatch.delenv(name)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", nodes.driver_env["RAY_AUTH_TOKEN_PATH"])
    try:
        yield nodes
    finally:
        nodes.close()


@pytest.fixture
def ray_cluster(ray_nodes):
    """The address of a one-node cluster: `ray start --head` with 2 CPUs."""
    ray_nodes.start(cpus=2)
    return ray_nodes.address


def test_smoke_run_on_a_cluster_started_with_ray_start(ray_cluster, tmp_path):
    address = ray_cluster
    run_dir = tmp_path / "run"
    proc = finish(start_script(SCRIPT, *smoke_flags("ppo_ray.py"), "--ray-address", address, "--run-dir",
                               str(run_dir), cwd=tmp_path))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert read_progress(run_dir)
    assert_eval_report(json.loads((run_dir / "eval.json").read_text()), 1)
    assert (run_dir / "final_model.pt").exists()

    # The cluster has 2 CPUs: 3 workers at 1 CPU each are refused at once, not left pending.
    bad = finish(start_script(SCRIPT, *smoke_flags("ppo_ray.py"), "--ray-address", address, "--num-workers", "3",
                              "--run-dir", str(tmp_path / "bad"), cwd=tmp_path), timeout=120)
    assert_one_line_error(bad, "--num-workers")
    assert "cluster" in bad.stderr, bad.stderr
    assert not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- two nodes, one of them lost
def worker_events(run_dir: Path) -> list[dict]:
    try:
        with open(run_dir / "workers.csv", newline="") as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def steps_done(run_dir: Path) -> int:
    """The agent step of the latest finished episode (0 before the first)."""
    try:
        return max((int(r["global_step"]) for r in read_progress(run_dir)), default=0)
    except (FileNotFoundError, AssertionError):  # not written yet, or only its header half-way
        return 0


def wait_until(ok, proc: subprocess.Popen, what: str, timeout: float = 180) -> None:
    deadline = time.time() + timeout
    while not ok():
        assert proc.poll() is None, (what, proc.communicate())
        assert time.time() < deadline, f"waited {timeout:.0f} s for {what}"
        time.sleep(0.2)


def iteration_seconds(run_dir: Path) -> dict[int, tuple[float, int]]:
    """Per iteration (by its agent step): its wall time (rollout round + update) and how many workers played it."""
    rollout, update, workers = (dict(scalars(run_dir, f"charts/{t}")) for t in ("rollout_time_s", "update_time_s",
                                                                                "workers"))
    return {step: (rollout[step] + update[step], int(workers[step])) for step in rollout}


def test_workers_run_on_both_nodes_and_a_lost_node_costs_the_survivor_nothing(ray_nodes, tmp_path):
    """A head and a second node, one CPU each: one worker on each. The second node dies (SIGKILL to its processes):
    the survivor goes on at its own pace; a new node joins and the lost worker is restarted there; the run ends
    as any other, with its checkpoint and eval."""
    ray_nodes.start(cpus=1)
    second = ray_nodes.start(cpus=1)
    run_dir = tmp_path / "run"
    proc = start_script(SCRIPT, "--ray-address", ray_nodes.address, "--num-workers", "2", *RUN,
                        "--total-timesteps", "80000", "--max-restarts", "-1", "--save-every", "100000",
                        "--run-dir", str(run_dir), cwd=tmp_path)
    try:
        wait_until(lambda: steps_done(run_dir) >= 8000, proc, "8,000 steps on two nodes")
        started = {e["worker"]: e for e in worker_events(run_dir) if e["event"] == "started"}
        assert set(started) == {"0", "1"} and started["0"]["node"] != started["1"]["node"], started
        lost = next((w for w, e in started.items() if int(e["pid"]) in session_processes(second.pid)), None)
        assert lost is not None, (started, session_processes(second.pid))
        ray_nodes.kill(second)
        wait_until(lambda: any(e["event"] == "died" for e in worker_events(run_dir)), proc, "the death logged")
        died_at = next(int(e["global_step"]) for e in worker_events(run_dir) if e["event"] == "died")
        wait_until(lambda: steps_done(run_dir) >= died_at + 10000, proc, "10,000 steps with one worker")
        ray_nodes.start(cpus=1)  # the node is replaced
    finally:
        done = finish(proc, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    events = [(e["worker"], e["event"], e["node"]) for e in worker_events(run_dir)]
    assert (lost, "died", started[lost]["node"]) in events, events
    back = [node for w, event, node in events if w == lost and event == "restarted"]
    assert back and back[0] not in (started["0"]["node"], started["1"]["node"]), events  # on the new node
    assert not any(event == "dropped" for _, event, _ in events), events
    assert max(value for _, value in scalars(run_dir, "charts/worker_failures")) == 1

    # Pace: a worker's own agent steps per second, from each iteration's wall time (every worker plays the same
    # number of steps per iteration). Alone after the loss, the survivor keeps at least 0.7x its pace beside the
    # other worker, rather than waiting on the dead one every round.
    restarted_at = next(int(e["global_step"]) for e in worker_events(run_dir) if e["event"] == "restarted")
    seconds = sorted(iteration_seconds(run_dir).items())
    both = [t for step, (t, n) in seconds if n == 2 and 2000 < step <= died_at]
    alone = [t for step, (t, n) in seconds if n == 1 and died_at + 1024 < step < restarted_at]
    assert len(both) >= 5 and len(alone) >= 5, (len(both), len(alone))
    assert np.median(both) / np.median(alone) >= 0.7, (np.median(both), np.median(alone))
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["global_step"] >= 80000 and ckpt["worker_failures"] == 1
    assert_eval_report(json.loads((run_dir / "eval.json").read_text()), 1)


def test_with_no_node_left_for_the_workers_the_run_stops_with_a_checkpoint(ray_nodes, tmp_path):
    """Both workers on the one node with CPUs (the head has none); that node dies and none replaces it: after
    `--worker-timeout` the run stops with its checkpoint and one line saying why and how to resume."""
    ray_nodes.start(cpus=0)
    only = ray_nodes.start(cpus=2)
    run_dir = tmp_path / "run"
    proc = start_script(SCRIPT, "--ray-address", ray_nodes.address, "--num-workers", "2", *RUN,
                        "--total-timesteps", "10000000", "--worker-timeout", "5", "--run-dir", str(run_dir),
                        cwd=tmp_path)
    try:
        wait_until(lambda: steps_done(run_dir) >= 3000, proc, "3,000 steps")
        ray_nodes.kill(only)
    finally:
        done = finish(proc, timeout=180)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("ppo_ray.py: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-5000:]
    assert errors[0].startswith("ppo_ray.py: error: all 2 workers are gone") and "--worker-timeout" in errors[0]
    assert f"--resume {run_dir}" in errors[0], errors[0]
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"]
    assert step >= 3000 and all(int(r["global_step"]) <= step for r in read_progress(run_dir))
    events = [e["event"] for e in worker_events(run_dir)]
    assert events.count("died") == 2 and events.count("dropped") == 2, events  # each death logged once


# ---------------------------------------------------------------------------- a worker dies mid-run
@pytest.mark.parametrize("max_restarts, outcome", [("2", "restarted"), ("0", "dropped")])
def test_a_worker_killed_mid_run_is_survived_and_reported(max_restarts, outcome, tmp_path):
    run_dir = tmp_path / "run"
    total = 5120
    proc = start_script(SCRIPT, "--total-timesteps", str(total), "--num-workers", "2", *RUN, "--save-every", "512",
                        "--max-restarts", max_restarts, "--run-dir", str(run_dir), cwd=tmp_path)
    try:
        wait_for(run_dir / "checkpoint.pt", proc)  # a round is done: training is under way
        with open(run_dir / "workers.csv", newline="") as f:
            started = {r["worker"]: int(r["pid"]) for r in csv.DictReader(f) if r["event"] == "started"}
        assert set(started) == {"0", "1"}
        os.kill(started["0"], signal.SIGKILL)
    finally:
        done = finish(proc)
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    assert f"worker 0 (pid {started['0']}, node " in out and "died during" in out, out
    with open(run_dir / "workers.csv", newline="") as f:
        events = [(r["worker"], r["event"], int(r["pid"] or 0)) for r in csv.DictReader(f)]
    assert ("0", "died", started["0"]) in events
    if outcome == "restarted":
        assert "worker 0 restarted" in out
        assert any(w == "0" and e == "restarted" and pid != started["0"] for w, e, pid in events), events
    else:
        assert "worker 0 dropped: out of restarts" in out and ("0", "dropped", started["0"]) in events
        assert not any(e == "restarted" for _, e, _ in events)
    assert max(value for _, value in scalars(run_dir, "charts/worker_failures")) >= 1
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["worker_failures"] >= 1 and ckpt["global_step"] >= total
    assert_eval_report(json.loads((run_dir / "eval.json").read_text()), 1)


# ---------------------------------------------------------------------------- Ctrl-C in a terminal
def test_ctrl_c_to_the_whole_process_group_checkpoints_and_leaves_no_ray_process(tmp_path):
    """A terminal's Ctrl-C reaches the driver and every Ray process in its process group at once."""
    folder = tmp_path / "alone"
    copied = copy_alone("ppo_ray.py", folder)
    run_dir = folder / "run"
    proc = start_script(copied, "--total-timesteps", "10000000", "--num-workers", "1", *RUN, "--save-every", "256",
                        "--run-dir", str(run_dir), cwd=folder)
    try:
        wait_for(run_dir / "checkpoint.pt", proc)
        os.killpg(proc.pid, signal.SIGINT)
    finally:
        done = finish(proc, timeout=120)
    assert done.returncode == 130, (done.returncode, done.stderr[-3000:])
    assert f"--resume {run_dir}" in done.stderr, done.stderr
    step = torch.load(run_dir / "checkpoint.pt", weights_only=True)["global_step"]
    assert step >= 256 and all(int(r["global_step"]) <= step for r in read_progress(run_dir))
