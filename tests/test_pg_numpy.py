"""Algorithm tests of pg_numpy.py: the math against direct formulas, preprocessing of real Pong frames, bad input."""

from __future__ import annotations

import csv
import importlib.util
import json
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from conftest import ROOT, assert_eval_report, assert_one_line_error, read_progress, run_script, scalars, smoke_flags

SCRIPT = ROOT / "pg_numpy.py"


def load_module():
    spec = importlib.util.spec_from_file_location("pg_numpy", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pg_numpy"] = module
    spec.loader.exec_module(module)
    return module


pg = load_module()


# ---------------------------------------------------------------------------- model
def log_likelihood(model, x, y, adv):
    """The REINFORCE objective sum_t A_t log pi(a_t | x_t), straight from the forward pass."""
    p, _ = pg.policy_forward(model, x)
    return float(np.sum(adv * np.log(np.where(y > 0, p, 1 - p))))


def test_policy_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    hidden, dim, batch = 5, 12, 9
    model = {"W1": rng.standard_normal((hidden, dim)), "W2": rng.standard_normal(hidden)}  # float64 for precision
    x = rng.integers(-1, 2, size=(batch, dim)).astype(np.float64)  # difference-frame values
    y = rng.integers(0, 2, size=batch).astype(np.float64)
    adv = rng.standard_normal(batch)
    p, h = pg.policy_forward(model, x)
    grad = pg.policy_backward(model, h, x, (y - p) * adv)
    eps = 1e-6
    for k, w in model.items():
        numeric = np.zeros_like(w)
        for i in np.ndindex(w.shape):
            old = w[i]
            w[i] = old + eps
            plus = log_likelihood(model, x, y, adv)
            w[i] = old - eps
            minus = log_likelihood(model, x, y, adv)
            w[i] = old
            numeric[i] = (plus - minus) / (2 * eps)
        assert grad[k].shape == w.shape
        np.testing.assert_allclose(grad[k], numeric, rtol=1e-5, atol=1e-7, err_msg=k)


def test_batched_forward_is_the_per_frame_forward_of_the_seed():
    rng = np.random.default_rng(1)
    model = pg.init_model(200, rng)
    x = rng.integers(-1, 2, size=(8, pg.D)).astype(np.float32)
    p, h = pg.policy_forward(model, x)
    for i in range(len(x)):  # the seed: one matrix-vector product per frame, float64
        hi = np.maximum(model["W1"].astype(np.float64) @ x[i], 0)
        pi = 1.0 / (1.0 + np.exp(-(model["W2"] @ hi)))
        np.testing.assert_allclose(h[i], hi, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(p[i], pi, rtol=1e-4, atol=1e-6)
    assert p.dtype == np.float32 and h.dtype == np.float32 and p.shape == (8,) and h.shape == (8, 200)


def test_init_is_the_seeds_xavier_and_float32():
    model = pg.init_model(200, np.random.default_rng(0))
    assert model["W1"].shape == (200, 6400) and model["W2"].shape == (200,)
    assert model["W1"].dtype == np.float32 and model["W2"].dtype == np.float32
    assert model["W1"].std() == pytest.approx(1 / 80, rel=0.01)  # 1/sqrt(D)
    assert model["W2"].std() == pytest.approx(1 / np.sqrt(200), rel=0.15)  # 1/sqrt(H)
    again = pg.init_model(200, np.random.default_rng(0))
    assert all(np.array_equal(model[k], again[k]) for k in model)


def test_sigmoid_saturates_without_overflow():
    with np.errstate(all="raise"):
        p = pg.sigmoid(np.array([-1000.0, 0.0, 1000.0], np.float32))
    np.testing.assert_allclose(p, [0.0, 0.5, 1.0], atol=1e-7)


# ---------------------------------------------------------------------------- returns
def test_discounted_returns_reset_at_every_point_scored():
    r = np.array([0, 0, 1, 0, 0, -1, 0, 0], np.float32)
    # By hand, gamma 0.5: backwards from the end, the sum restarts at each nonzero reward.
    expected = [0.25, 0.5, 1.0, -0.25, -0.5, -1.0, 0.0, 0.0]
    np.testing.assert_allclose(pg.discount_rewards(r, 0.5), expected)
    # gamma 0.99, a point lost after three steps and one won after two.
    r = np.array([0, 0, -1, 0, 1], np.float32)
    np.testing.assert_allclose(pg.discount_rewards(r, 0.99), [-0.9801, -0.99, -1.0, 0.99, 1.0], rtol=1e-6)
    # No reward after the last point: those steps get zero return, whatever came before.
    np.testing.assert_allclose(pg.discount_rewards(np.array([1, 0, 0], np.float32), 0.9), [1, 0, 0])


def test_advantages_are_standardised_over_the_whole_batch():
    rewards = [np.array([0, -1], np.float32), np.array([0, 0, 1, 0, -1], np.float32)]
    adv = pg.batch_advantages(rewards, 0.5)
    raw = np.array([-0.5, -1.0, 0.25, 0.5, 1.0, -0.5, -1.0])
    expected = (raw - raw.mean()) / raw.std()
    np.testing.assert_allclose(np.concatenate(adv), expected, rtol=1e-5)
    assert [len(a) for a in adv] == [2, 5]
    # Per batch, not per episode: the lost episode's advantages do not average to zero on their own.
    assert adv[0].mean() < -0.5


def test_advantages_of_a_batch_without_points_are_zero_not_nan():
    adv = pg.batch_advantages([np.zeros(4, np.float32)], 0.99)
    assert np.all(np.isfinite(adv[0])) and np.all(adv[0] == 0)


# ---------------------------------------------------------------------------- preprocessing
@pytest.fixture(scope="module")
def pong_frame():
    """A real ALE/Pong-v5 frame once the ball is in play (no sticky actions, so it is always the same)."""
    gym.register_envs(pg.ale_py)
    env = gym.make("ALE/Pong-v5", repeat_action_probability=0.0)
    obs, _ = env.reset(seed=0)
    def in_view(colour):  # in the cropped, downsampled red channel
        return (obs[35:195:2, ::2, 0] == colour).any()

    for _ in range(200):
        if in_view(213) and in_view(92) and in_view(236):  # opponent's paddle, agent's paddle, ball
            break
        obs, *_ = env.step(0)
    env.close()
    assert in_view(213) and in_view(92) and in_view(236), "paddles and ball never all in view"
    return obs


def test_preprocess_real_pong_frame(pong_frame):
    out = pg.preprocess(pong_frame[None])
    assert out.shape == (1, 6400) and out.dtype == np.uint8
    assert set(np.unique(out)) == {0, 1}
    img = out.reshape(80, 80)
    red = pong_frame[35:195:2, ::2, 0]
    opponent, agent, ball = red == 213, red == 92, red == 236
    assert opponent.sum() >= 8 and agent.sum() >= 8 and ball.sum() >= 1
    assert np.all(img[opponent] == 1) and np.all(img[agent] == 1) and np.all(img[ball] == 1)
    assert img.sum() == opponent.sum() + agent.sum() + ball.sum()  # the rest is background: 0
    assert img[:, 8:10].sum() == opponent.sum() and img[:, 70:72].sum() == agent.sum()  # paddles where they belong


def test_preprocess_a_batch_of_vector_env_frames(pong_frame):
    batch = np.stack([pong_frame, np.zeros_like(pong_frame)])[:, None]  # (n, 1, 210, 160, 3) as the native env gives
    out = pg.preprocess(batch)
    assert out.shape == (2, 6400)
    np.testing.assert_array_equal(out[0], pg.preprocess(pong_frame[None])[0])
    # A frame of pure background (144) is all zeros.
    background = np.full_like(pong_frame, 144)
    assert pg.preprocess(background[None]).sum() == 0


def test_difference_frames_rebuilt_from_packed_frames_in_chunks():
    rng = np.random.default_rng(2)
    frames = (rng.random((11, pg.D)) < 0.05).astype(np.uint8)
    packed = np.packbits(frames, axis=1)
    direct = np.concatenate([np.zeros((1, pg.D)), np.diff(frames.astype(np.float64), axis=0)])
    for start, stop in [(0, 11), (0, 4), (4, 9), (9, 11), (0, 1), (10, 11)]:
        x = pg.difference_frames(packed, start, stop)
        assert x.dtype == np.float32
        np.testing.assert_array_equal(x, direct[start:stop])


# ---------------------------------------------------------------------------- update
def make_episode(rng, steps: int, hidden: int, model) -> "pg.Episode":
    frames = (rng.random((steps, pg.D)) < 0.01).astype(np.uint8)
    x = pg.difference_frames(np.packbits(frames, axis=1), 0, steps)
    p, h = pg.policy_forward(model, x)
    ups = (rng.random(steps) < p).astype(np.float32)
    rewards = np.zeros(steps, np.float32)
    rewards[rng.choice(steps, 3, replace=False)] = rng.choice([-1.0, 1.0], 3)
    return pg.Episode(np.packbits(frames, axis=1), h, p, ups, rewards)


def test_policy_gradient_is_the_advantage_weighted_score_in_any_chunking():
    rng = np.random.default_rng(3)
    model = pg.init_model(7, rng)
    batch = [make_episode(rng, 13, 7, model), make_episode(rng, 6, 7, model)]
    grad, loss, entropy = pg.policy_gradient(model, batch, 0.9)
    # Directly: all steps of the batch at once, standardised returns as the advantage.
    adv = np.concatenate(pg.batch_advantages([ep.rewards for ep in batch], 0.9))
    x = np.concatenate([pg.difference_frames(ep.frames, 0, len(ep.rewards)) for ep in batch])
    p, h = pg.policy_forward(model, x)
    y = np.concatenate([ep.ups for ep in batch])
    direct = pg.policy_backward(model, h, x, (y - p) * adv)
    for k in model:
        np.testing.assert_allclose(grad[k], direct[k], rtol=1e-4, atol=1e-5)
    assert loss == pytest.approx(-np.mean(adv * np.log(np.where(y > 0, p, 1 - p))), rel=1e-4)
    assert 0 < entropy <= np.log(2)
    chunked, _, _ = pg.policy_gradient(model, batch, 0.9, chunk=4)
    for k in model:
        np.testing.assert_allclose(chunked[k], grad[k], rtol=1e-5, atol=1e-6)


def test_rmsprop_step_is_the_seeds_formula():
    rng = np.random.default_rng(4)
    model = {"W1": rng.standard_normal((3, 4)).astype(np.float32), "W2": rng.standard_normal(3).astype(np.float32)}
    cache = {k: rng.random(v.shape).astype(np.float32) for k, v in model.items()}
    grad = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in model.items()}
    before = {k: v.copy() for k, v in model.items()}
    cache_before = {k: v.copy() for k, v in cache.items()}
    pg.rmsprop_step(model, grad, cache, 1e-3, 0.99)
    for k in model:
        c = 0.99 * cache_before[k] + 0.01 * grad[k] ** 2
        np.testing.assert_allclose(cache[k], c, rtol=1e-6)
        np.testing.assert_allclose(model[k], before[k] + 1e-3 * grad[k] / (np.sqrt(c) + 1e-5), rtol=1e-6)
        assert model[k].dtype == np.float32 and cache[k].dtype == np.float32


def test_an_update_makes_rewarded_actions_more_likely():
    """On one frame, UP always scores and DOWN always loses: a few updates must raise p(UP)."""
    rng = np.random.default_rng(5)
    model = pg.init_model(16, rng)
    cache = {k: np.zeros_like(v) for k, v in model.items()}
    frames = np.zeros((2, pg.D), np.uint8)
    frames[1, 100:140] = 1
    packed = np.packbits(frames, axis=1)
    x = pg.difference_frames(packed, 0, 2)
    p0 = pg.policy_forward(model, x[1:])[0][0]
    for _ in range(20):
        batch = []
        for up in (1.0, 0.0):
            p, h = pg.policy_forward(model, x)
            batch.append(pg.Episode(packed, h, p, np.array([up, up], np.float32),
                                    np.array([0, 1 if up else -1], np.float32)))
        grad, _, _ = pg.policy_gradient(model, batch, 0.99)
        pg.rmsprop_step(model, grad, cache, 1e-2, 0.99)
    assert pg.policy_forward(model, x[1:])[0][0] > max(p0, 0.9)


# ---------------------------------------------------------------------------- environment
def test_native_env_frames_are_the_raw_gymnasium_frames():
    envs = pg.make_env("PongNoFrameskip-v4", 1)  # fixed frameskip: ale-py's native vector env
    assert type(envs).__name__ == "AtariVectorEnv"
    obs, _ = envs.reset(seed=3)
    gym.register_envs(pg.ale_py)
    env = gym.make("PongNoFrameskip-v4")
    frame, _ = env.reset(seed=3)
    for t in range(80):
        np.testing.assert_array_equal(obs.reshape(210, 160, 3), frame, err_msg=f"step {t}")
        action = pg.UP if t % 10 < 5 else pg.DOWN
        obs, *_ = envs.step(np.array([action]))
        frame, *_ = env.step(action)
    envs.close()
    env.close()


def test_random_frameskip_ids_fall_back_to_gymnasium_vector_env():
    envs = pg.make_env("Pong-v4", 2)  # frameskip drawn from {2, 3, 4}: not the native env
    assert type(envs).__name__ != "AtariVectorEnv"
    obs, _ = envs.reset(seed=0)
    assert pg.preprocess(obs).shape == (2, pg.D)
    obs, reward, terminated, truncated, _ = envs.step(np.array([pg.UP, pg.DOWN]))
    assert obs.shape == (2, 210, 160, 3)
    envs.close()


# ---------------------------------------------------------------------------- plumbing
def test_importing_sets_nothing_and_loads_no_torch():
    code = ("import os, sys; sys.path.insert(0, sys.argv[1]); import pg_numpy; "
            "assert 'torch' not in sys.modules, 'torch imported'; "
            "assert 'OPENBLAS_NUM_THREADS' not in os.environ, 'env var set on import'")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code, str(ROOT)], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr


def test_checkpoint_holds_everything_to_resume(smoke_runs):
    proc, run_dir = smoke_runs("pg_numpy.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with np.load(run_dir / "checkpoint.npz", allow_pickle=False) as data:
        ckpt = {k: data[k] for k in data.files}
    assert str(ckpt["script"]) == "pg_numpy"
    assert ckpt["global_step"].dtype.kind == "i" and int(ckpt["global_step"]) >= int(smoke_flags("pg_numpy.py")[1])
    assert ckpt["W1"].dtype == np.float32 and ckpt["W1"].shape == (200, 6400) and ckpt["W2"].shape == (200,)
    assert int(ckpt["updates"]) >= 1 and (ckpt["cache_W1"] > 0).any() and (ckpt["cache_W2"] > 0).any()
    assert int(ckpt["episode"]) >= 1 and np.isfinite(ckpt["running_mean"])
    assert json.loads(str(ckpt["numpy_rng"]))["bit_generator"] == "PCG64"
    assert json.loads(str(ckpt["args"]))["hidden"] == 200
    rows = read_progress(run_dir)
    running = None  # Karpathy's running mean, recomputed from the logged returns
    for r in rows:
        score = float(r["episodic_return"])
        running = score if running is None else running * 0.99 + score * 0.01
        assert float(r["running_mean"]) == pytest.approx(running, abs=1e-4)  # logged with 4 decimals
    assert float(ckpt["running_mean"]) == pytest.approx(running)


def test_final_weights_are_evaluable_and_not_resumable(smoke_runs, tmp_path):
    proc, run_dir = smoke_runs("pg_numpy.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    final = run_dir / "final_model.npz"
    with np.load(final, allow_pickle=False) as data:
        assert set(data.files) == {"script", "args", "W1", "W2", "global_step"}  # no RMSProp cache: half the bytes
        with np.load(run_dir / "checkpoint.npz", allow_pickle=False) as ckpt:
            np.testing.assert_array_equal(data["W1"], ckpt["W1"])
    assert json.loads((run_dir / "eval.json").read_text())["checkpoint"] == str(final)
    evaluated = run_script(SCRIPT, "--eval-checkpoint", str(final), "--eval-episodes", "1", "--run-dir",
                           str(tmp_path / "eval"), timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert_eval_report(json.loads((tmp_path / "eval" / "eval.json").read_text()), 1)
    with pytest.raises(pg.BadInput, match="--resume.*weights only"):
        pg.load_checkpoint(str(final), "--resume")


def test_same_seed_same_first_losses(tmp_path):
    flags = ["--total-timesteps", "2000", "--num-envs", "2", "--batch-episodes", "1", "--eval-episodes", "1"]
    weights, curves, losses = [], [], []
    for name in ("a", "b"):
        proc = run_script(SCRIPT, *flags, "--run-dir", str(tmp_path / name), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        with np.load(tmp_path / name / "checkpoint.npz", allow_pickle=False) as data:
            weights.append(data["W1"].copy())
        curves.append([(r["global_step"], r["episodic_return"], r["episodic_length"])
                       for r in read_progress(tmp_path / name)])
        losses.append(scalars(tmp_path / name, "losses/policy_loss"))
    assert curves[0] and losses[0], "no episode or update in 2000 steps"
    assert curves[0] == curves[1] and losses[0] == losses[1]
    np.testing.assert_array_equal(weights[0], weights[1])


def test_tensorboard_resume_drops_what_came_after_the_checkpoint(tmp_path):
    writer = pg.TensorBoard(tmp_path)
    for step in range(0, 100, 10):
        writer.add_scalar("charts/x", step, step)
    writer.close()
    writer = pg.TensorBoard(tmp_path, purge_step=50)  # the checkpoint was at step 50
    writer.add_scalar("charts/x", -1, 60)
    writer.close()
    assert scalars(tmp_path, "charts/x") == [(0, 0), (10, 10), (20, 20), (30, 30), (40, 40), (60, -1)]


def test_resume_trims_the_rows_logged_after_the_checkpoint(tmp_path):
    path = tmp_path / "progress.csv"
    rows = [["global_step", "episode", "episodic_return", "episodic_length", "wall_time_s", "sps", "running_mean"]]
    rows += [[str(800 * i), str(i), "-21.0", "800", "1.0", "100.0", "-21.0"] for i in range(1, 6)]
    with open(path, "w", newline="") as f:
        csv.writer(f).writerows(rows)
    ckpt = {"global_step": 2400, "episode": 3, "recent_returns": [-21.0] * 3, "wall_time_s": 1.0}  # at episode 3
    run = pg.RunLog(pg.Args(), tmp_path, ckpt, lambda logdir, purge_step: pg.TensorBoard(logdir, purge_step),
                    extra_columns=("running_mean",), stop_signal=[])
    run.csv_file.close()
    run.writer.close()
    with open(path, newline="") as f:
        assert list(csv.reader(f)) == rows[:4]


# ---------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("obs_type", ["grayscale", "ram"])
def test_env_id_whose_frames_are_not_210x160x3_is_rejected(obs_type, tmp_path):
    run_dir = tmp_path / "run"
    code = (  # registers an id, then runs the script as `python pg_numpy.py --env-id PongOdd-v5`
        "import runpy, sys, gymnasium as gym\n"
        f"gym.register(id='PongOdd-v5', entry_point='ale_py.env:AtariEnv', kwargs=dict(game='pong', "
        f"obs_type={obs_type!r}, frameskip=4, repeat_action_probability=0.25))\n"
        f"sys.argv = ['pg_numpy.py', '--env-id', 'PongOdd-v5', '--run-dir', {str(run_dir)!r}]\n"
        f"runpy.run_path({str(SCRIPT)!r}, run_name='__main__')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert_one_line_error(proc, "--env-id")
    assert "210x160x3" in proc.stderr
    assert not run_dir.exists()


def write_torch_style_pt(path: Path) -> None:
    """What `torch.save` writes (a zip holding a pickle), made without torch: another script's checkpoint."""
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("checkpoint/data.pkl", pickle.dumps({"script": "dqn_cnn", "global_step": 100}))
        z.writestr("checkpoint/version", "3\n")


@pytest.mark.parametrize("kind", ["zip", "pickle"])
@pytest.mark.parametrize("flag", ["--resume", "--eval-checkpoint"])
def test_a_pt_checkpoint_of_another_script_is_rejected(kind, flag, tmp_path):
    bad = tmp_path / "checkpoint.pt"
    if kind == "zip":
        write_torch_style_pt(bad)
    else:  # torch's legacy format starts with a pickle
        bad.write_bytes(pickle.dumps({"script": "dqn_cnn", "global_step": 100}))
    run_dir = tmp_path / "run"
    proc = run_script(SCRIPT, flag, str(bad), "--run-dir", str(run_dir), timeout=120)
    assert_one_line_error(proc, flag)
    assert not run_dir.exists()


def test_resume_with_a_different_network_size_is_rejected(smoke_runs, tmp_path):
    proc, run_dir = smoke_runs("pg_numpy.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    flags = smoke_flags("pg_numpy.py")
    flags[1] = "100000000"
    result = run_script(SCRIPT, *flags, "--hidden", "50", "--resume", str(run_dir), timeout=120)
    assert_one_line_error(result, "--hidden")


def test_an_incomplete_checkpoint_is_rejected(tmp_path):
    bad = tmp_path / "checkpoint.npz"
    np.savez(bad, script=np.array("pg_numpy"), global_step=np.array(100))
    with pytest.raises(pg.BadInput, match="--resume.*incomplete"):
        pg.load_checkpoint(str(bad), "--resume")
