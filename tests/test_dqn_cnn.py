"""dqn_cnn.py: the replay's stacks and n-step targets, the TD loss, the target network, preprocessing."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import dqn_cnn
from conftest import EVAL_FLAGS, ROOT, run_script, smoke_flags


def fill_with_random_pong(replay: dqn_cnn.FrameReplay, steps: int, num_envs: int, seed: int = 0):
    """Play random Pong into the replay as training stores it; returns the true stacked observations, per (row, env)."""
    envs = dqn_cnn.make_env("PongNoFrameskip-v4", num_envs)
    obs, _ = envs.reset(seed=seed)
    stacks = np.zeros((steps, num_envs, 4, 84, 84), np.uint8)
    first, prev_done = np.ones(num_envs, bool), np.zeros(num_envs, bool)
    rng = np.random.default_rng(seed)
    for t in range(steps):
        stacks[t] = obs
        actions = rng.integers(0, 6, num_envs)
        obs, first, prev_done, _, _ = dqn_cnn.step_and_store(envs, replay, obs, actions, first, prev_done)
    envs.close()
    return stacks


def random_td_batch(size: int, generator: torch.Generator) -> tuple:
    """A TD batch as the replay hands it out: (obs, actions, returns, discount, next_obs), random, uint8 frames."""
    obs, next_obs = (torch.randint(0, 256, (size, 4, 84, 84), dtype=torch.uint8, generator=generator) for _ in range(2))
    return (obs, torch.randint(0, 6, (size,), generator=generator), torch.randn(size, generator=generator),
            torch.rand(size, generator=generator), next_obs)


ROWS, STEPS = 2500, 3000  # the buffer wraps: rows 0..499 hold steps 2500..2999


def step_of(rows: np.ndarray) -> np.ndarray:
    return np.where(rows < STEPS - ROWS, rows + ROWS, rows)


@pytest.fixture(scope="module")
def pong_replay():
    replay = dqn_cnn.FrameReplay(capacity=3 * ROWS, num_envs=3, n_step=3, gamma=0.99)
    stacks = fill_with_random_pong(replay, STEPS, 3)
    assert replay.pos == STEPS - ROWS and replay.count == ROWS
    assert replay.first.sum() > 3, "the fixture needs episode boundaries inside the buffer"
    return replay, stacks


def test_env_gives_84x84_uint8_stacks_with_zeros_before_the_first_frame():
    envs = dqn_cnn.make_env("PongNoFrameskip-v4", 2)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 4, 84, 84) and obs.dtype == np.uint8
    assert (obs[:, :3] == 0).all() and obs[:, 3].max() > 0
    envs.close()


def test_sampled_states_equal_the_stacks_the_env_produced(pong_replay):
    replay, stacks = pong_replay
    rows, envs = replay.sample_rows(4000, np.random.default_rng(1))
    obs, actions, _, _, _ = replay.batch(rows, envs)
    assert obs.dtype == np.uint8 and obs.shape == (4000, 4, 84, 84)
    steps = step_of(rows)
    assert steps.min() >= STEPS - ROWS + 3, "sampled a state whose earlier frames were overwritten"
    np.testing.assert_array_equal(obs, stacks[steps, envs])
    np.testing.assert_array_equal(actions, replay.actions[rows, envs])
    starts = replay.first[rows, envs] | replay.first[(rows - 1) % ROWS, envs]
    assert starts.any(), "no sampled state straddles an episode start"
    assert (rows < STEPS - ROWS).any() and (rows >= STEPS - ROWS).any(), "the sample missed the wrapped part"


def test_nstep_returns_and_next_states_against_a_step_by_step_walk(pong_replay):
    replay, stacks = pong_replay
    rows, envs = replay.sample_rows(3000, np.random.default_rng(2))
    _, _, returns, discount, next_obs = replay.batch(rows, envs)
    for i, (t, e) in enumerate(zip(rows, envs)):
        g, d, k = 0.0, 1.0, 0
        while k < replay.n_step:
            row = (t + k) % ROWS
            g += d * np.sign(replay.rewards[row, e])
            d *= replay.gamma
            k += 1
            if replay.episode_end[row, e]:
                d = 0.0 if replay.terminated[row, e] else d
                break
        assert returns[i] == pytest.approx(g, abs=1e-6) and discount[i] == pytest.approx(d, abs=1e-7)
        np.testing.assert_array_equal(next_obs[i], stacks[step_of(np.array([t]))[0] + k, e])
    assert (discount == 0).any() and (returns != 0).any(), "the sample missed game ends or points"


def test_nstep_return_by_hand_on_a_tiny_stream():
    replay = dqn_cnn.FrameReplay(capacity=12, num_envs=1, n_step=3, gamma=0.5, frame_shape=(1, 1))
    # rewards  0  1  0  -1(end) | reset-step  0  2(clipped to 1) 0 0 ...
    stream = [(0, False), (1, False), (0, False), (-1, True), (0, False), (0, False), (2, False),
              (0, False), (0, False), (0, False), (0, False), (0, False)]
    acted = [True, True, True, True, False, True, True, True, True, True, True, True]
    first = [True, False, False, False, False, True, False, False, False, False, False, False]
    for t, ((r, term), a, f) in enumerate(zip(stream, acted, first)):
        replay.add(np.full((1, 1, 1), t, np.uint8), np.array([f]), np.array([a]), np.array([0]),
                   np.array([r], np.float32), np.array([term]), np.array([False]))
    _, _, returns, discount, next_obs = replay.batch(np.array([0, 1, 2, 3, 5]), np.zeros(5, np.int64))
    # row 0: 0 + .5*1 + .25*0, bootstrap .125 from row 3; row 1: 1 + 0 + .25*(-1), game over
    # row 2: 0 + .5*(-1), game over; row 3: -1, game over; row 5: 0 + .5*1 + 0, bootstrap .125 from row 8
    np.testing.assert_allclose(returns, [0.5, 0.75, -0.5, -1.0, 0.5])
    np.testing.assert_allclose(discount, [0.125, 0.0, 0.0, 0.0, 0.125])
    assert next_obs[:, -1, 0, 0].tolist() == [3, 4, 4, 4, 8]
    # row 8's stack reaches back to row 5, the episode's first frame, and no further
    assert next_obs[4, :, 0, 0].tolist() == [5, 6, 7, 8]
    assert next_obs[3, :, 0, 0].tolist() == [1, 2, 3, 4]


def test_resume_cut_keeps_n_step_targets_inside_the_stored_game():
    replay = dqn_cnn.FrameReplay(capacity=8, num_envs=1, n_step=3, gamma=0.5, frame_shape=(1, 1))
    for t in range(6):
        replay.add(np.full((1, 1, 1), t, np.uint8), np.array([t == 0]), np.array([True]), np.array([0]),
                   np.array([1.0], np.float32), np.array([False]), np.array([False]))
    replay.cut_episodes()
    assert not replay.acted[5, 0], "the newest row's action led to no stored frame"
    _, _, returns, discount, next_obs = replay.batch(np.array([3, 4]), np.zeros(2, np.int64))
    np.testing.assert_allclose(returns, [1.5, 1.0])  # row 3: 1 + .5 * 1, cut after row 4
    np.testing.assert_allclose(discount, [0.25, 0.5])  # bootstrapped from row 5, the last stored frame
    assert next_obs[:, -1, 0, 0].tolist() == [5, 5]


def test_td_loss_matches_the_formula_and_leaves_the_target_network_untouched():
    torch.manual_seed(0)
    q, target = dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)
    obs, actions, returns, discount, next_obs = random_td_batch(8, torch.Generator().manual_seed(1))
    loss, _ = dqn_cnn.td_loss(q, target, obs, actions, returns, discount, next_obs)
    with torch.no_grad():
        expected_target = returns + discount * target(next_obs).max(1).values
        expected = ((q(obs)[torch.arange(8), actions] - expected_target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    loss.backward()
    assert all(p.grad is None for p in target.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())


def test_double_q_target_values_the_online_networks_choice_with_the_target_network():
    torch.manual_seed(0)
    q, target = dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)
    obs, actions, returns, discount, next_obs = random_td_batch(16, torch.Generator().manual_seed(1))
    with torch.no_grad():
        picked = q(next_obs).argmax(1)
        expected_target = returns + discount * target(next_obs)[torch.arange(16), picked]
        expected = ((q(obs)[torch.arange(16), actions] - expected_target) ** 2).mean()
        nature = dqn_cnn.td_loss(q, target, obs, actions, returns, discount, next_obs)[0]
    assert (picked != target(next_obs).argmax(1)).any()  # the two targets differ on this batch
    double = dqn_cnn.td_loss(q, target, obs, actions, returns, discount, next_obs, double_q=True)[0]
    assert double.item() == pytest.approx(expected.item(), rel=1e-5)
    assert double.item() != pytest.approx(nature.item(), rel=1e-3)
    target.load_state_dict(q.state_dict())  # one network: both targets are its max
    same = [dqn_cnn.td_loss(q, target, obs, actions, returns, discount, next_obs, double_q=d)[0] for d in (False, True)]
    assert same[0].item() == pytest.approx(same[1].item(), rel=1e-6)
    target.load_state_dict(dqn_cnn.QNetwork(6).state_dict())  # two networks again: the step must pass the flag on
    with torch.no_grad():
        double, nature = (dqn_cnn.td_loss(q, target, obs, actions, returns, discount, next_obs, double_q=d)[0]
                          for d in (True, False))
    assert double.item() != pytest.approx(nature.item(), rel=1e-3)
    stepped = dqn_cnn.gradient_step(q, target, torch.optim.Adam(q.parameters()), obs, actions, returns, discount,
                                    next_obs, double_q=True)[0]  # the loss before its update
    assert stepped.item() == pytest.approx(double.item(), rel=1e-5)


def test_without_a_cxx_compiler_the_step_runs_uncompiled_with_one_line_saying_so(monkeypatch, capsys):
    monkeypatch.setattr(dqn_cnn.shutil, "which", lambda name: None)
    assert dqn_cnn.compiled(dqn_cnn.gradient_step, torch.device("cpu")) is dqn_cnn.gradient_step
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "--compile needs a C++ compiler" in out[0] and "--no-compile" in out[0], out


def test_without_a_vector_instruction_set_the_step_runs_uncompiled_with_one_line_saying_so(monkeypatch, capsys):
    from torch._inductor import cpu_vec_isa

    monkeypatch.setattr(cpu_vec_isa, "pick_vec_isa", lambda: cpu_vec_isa.invalid_vec_isa)
    assert dqn_cnn.compiled(dqn_cnn.gradient_step, torch.device("cpu")) is dqn_cnn.gradient_step
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no vector instruction set" in out[0], out


def test_bf16_step_keeps_float32_weights_and_q_values_and_follows_the_float32_step():
    torch.manual_seed(0)
    nets = [dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)]
    copies = [copy.deepcopy(nets) for _ in range(2)]
    batch = random_td_batch(16, torch.Generator().manual_seed(1))
    obs = batch[0]
    results, hidden_dtypes = [], []
    for (q, target), bf16 in zip(copies, (False, True)):
        hook = q.net[-2].register_forward_hook(lambda module, inputs, out: hidden_dtypes.append(out.dtype))
        results.append(dqn_cnn.gradient_step(q, target, torch.optim.Adam(q.parameters(), lr=1e-4), *batch, bf16=bf16))
        hook.remove()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            assert q(obs).dtype == torch.float32  # the head stays float32 under autocast
        assert all(p.dtype == torch.float32 for p in q.parameters())
    assert hidden_dtypes == [torch.float32, torch.bfloat16]  # the bf16 step did compute in bf16
    (loss32, mean_q32), (loss16, mean_q16) = results
    assert loss16 != loss32
    # bf16 keeps 8 bits of mantissa: 0.4% per rounding, a few percent after the layers compound it.
    torch.testing.assert_close(loss16, loss32, rtol=5e-2, atol=0)
    torch.testing.assert_close(mean_q16, mean_q32, rtol=5e-2, atol=1e-3)
    grads = [torch.cat([p.grad.flatten() for p in q.parameters()]) for q, _ in copies]
    assert F.cosine_similarity(grads[0], grads[1], dim=0) > 0.99


def test_without_bf16_arithmetic_the_step_runs_in_float32_with_one_line_saying_so(monkeypatch, capsys):
    monkeypatch.setattr(dqn_cnn, "bf16_arithmetic", lambda device: False)
    seen = []
    monkeypatch.setattr(dqn_cnn, "gradient_step",
                        lambda *batch, bf16, double_q: seen.append(bf16) or (torch.tensor(0.0),) * 2)

    class Run:  # enough of RunLog for one pass of the loop: a gradient step, then stop
        start_step = 0

        def going(self, step):
            return not seen

        def episodes_done(self, step, info):
            pass

        def log(self, step, scalars):
            pass

        def checkpoint_due(self, step):
            return False

        def show(self, step, extra=""):
            pass

    args = dqn_cnn.Args(num_envs=2, batch_size=4, learning_starts=0, buffer_size=64, compile=False)
    envs = dqn_cnn.make_env(args.env_id, args.num_envs)
    q, target = dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6)
    replay = dqn_cnn.FrameReplay(args.buffer_size, args.num_envs, args.n_step, args.gamma)
    fill_with_random_pong(replay, 16, args.num_envs)
    dqn_cnn.train(args, envs, q, target, torch.optim.Adam(q.parameters()), replay,
                  dqn_cnn.LinearSchedule(0, 1.0, 1, 1.0), np.random.default_rng(0), Run(), 16, 0, torch.device("cpu"))
    envs.close()
    out = capsys.readouterr().out.strip().splitlines()
    assert seen and set(seen) == {False}, seen
    assert len(out) == 1 and "no bfloat16 arithmetic" in out[0] and "--no-bf16" in out[0], out


def test_a_checkpoint_from_before_the_probe_flags_reads_as_the_nature_target_and_head_and_torchs_adam(tmp_path):
    args = {k: v for k, v in vars(dqn_cnn.Args()).items() if k not in ("double_q", "dueling", "adam_eps")}
    state = dqn_cnn.QNetwork(6).state_dict()
    torch.save({"script": "dqn_cnn", "args": args, "num_actions": 6, "model": state}, tmp_path / "old.pt")
    ckpt, _ = dqn_cnn.load_checkpoint(str(tmp_path / "old.pt"), "--eval-checkpoint")
    assert ckpt["args"]["double_q"] is False and ckpt["args"]["dueling"] is False
    assert ckpt["args"]["adam_eps"] == 1e-8
    q_network = dqn_cnn.saved_q_network(ckpt, torch.device("cpu"))
    assert not q_network.dueling and all(torch.equal(v, q_network.state_dict()[k]) for k, v in state.items())


def test_dueling_q_values_are_the_state_value_plus_the_advantage_less_its_mean():
    torch.manual_seed(0)
    q, target = dqn_cnn.QNetwork(6, dueling=True), dqn_cnn.QNetwork(6, dueling=True)
    batch = random_td_batch(8, torch.Generator().manual_seed(1))
    obs = batch[0]
    with torch.no_grad():
        features = q.net(obs.float() / 255.0)
        value, advantage = q.value(features), q.advantage(features)
        q_values = q(obs)
    assert value.shape == (8, 1) and advantage.shape == (8, 6)
    torch.testing.assert_close(q_values, value + advantage - advantage.mean(1, keepdim=True))
    torch.testing.assert_close(q_values.mean(1), value.squeeze(1))  # the actions' mean Q-value is the state value
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert q(obs).dtype == torch.float32  # both output layers stay float32 under autocast
    dqn_cnn.td_loss(q, target, *batch)[0].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in q.parameters())  # both streams learn


def test_a_dueling_checkpoint_loads_with_its_own_head(tmp_path):
    torch.manual_seed(0)
    q = dqn_cnn.QNetwork(6, dueling=True)
    args = vars(dqn_cnn.Args(dueling=True))
    torch.save({"script": "dqn_cnn", "args": args, "num_actions": 6, "model": q.state_dict()}, tmp_path / "d.pt")
    ckpt, _ = dqn_cnn.load_checkpoint(str(tmp_path / "d.pt"), "--eval-checkpoint")
    obs = random_td_batch(4, torch.Generator().manual_seed(2))[0]
    with torch.no_grad():
        torch.testing.assert_close(dqn_cnn.saved_q_network(ckpt, torch.device("cpu"))(obs), q(obs), rtol=0, atol=0)


@pytest.mark.skipif(dqn_cnn.cpu_compile_blocker() is not None,
                    reason=f"torch.compile on this CPU {dqn_cnn.cpu_compile_blocker()}")
@pytest.mark.parametrize("bf16", [False, True], ids=["float32", "bf16"])
def test_compiled_gradient_step_matches_the_eager_step(bf16):
    # --compile and --bf16 are the defaults, but every run in the tests passes --no-compile --no-bf16: this is the
    # compiled step's check.
    torch.manual_seed(0)
    eager = (dqn_cnn.QNetwork(6), dqn_cnn.QNetwork(6))
    compiled = tuple(copy.deepcopy(net) for net in eager)
    setups = [(q, target, torch.optim.Adam(q.parameters(), lr=1e-4)) for q, target in (eager, compiled)]
    step = torch.compile(dqn_cnn.gradient_step)  # takes ~30 s to compile on 2 CPU cores
    g = torch.Generator().manual_seed(1)
    start = copy.deepcopy(eager[0].state_dict())
    for _ in range(2):  # the second step runs Adam with state, and would see gradients left over by the first
        batch = random_td_batch(8, g)
        expected = dqn_cnn.gradient_step(*setups[0], *batch, bf16=bf16)
        got = step(*setups[1], *batch, bf16=bf16)
        if bf16:  # inductor rounds to bf16 at other points than eager does: the step's direction must agree
            torch.testing.assert_close(got, expected, rtol=2e-2, atol=1e-4)
            grads = [torch.cat([p.grad.flatten() for p in net.parameters()]) for net in (eager[0], compiled[0])]
            assert F.cosine_similarity(*grads, dim=0) > 0.99
            # Adam moves each weight by about the learning rate whatever its gradient's size: compare the moves.
            moves = [torch.cat([(net.state_dict()[k] - start[k]).flatten() for k in start])
                     for net in (eager[0], compiled[0])]
            assert moves[0].abs().max() > 0 and F.cosine_similarity(*moves, dim=0) > 0.9
            continue
        # Not bit-equal: inductor's fused kernels sum floats in another order (gradients differ by ~1e-8), and
        # Adam's division by sqrt(v) magnifies that on near-zero gradients (weights seen up to 1.6e-6 apart).
        tol = {"rtol": 1e-4, "atol": 1e-5}
        torch.testing.assert_close(got, expected, **tol)
        for (name, a), b in zip(eager[0].named_parameters(), compiled[0].parameters()):
            torch.testing.assert_close(b, a, **tol, msg=lambda m: f"{name}: {m}")
            torch.testing.assert_close(b.grad, a.grad, **tol, msg=lambda m: f"{name}.grad: {m}")
    assert all(torch.equal(a, b) for a, b in zip(eager[1].parameters(), compiled[1].parameters()))


def test_same_seed_gives_the_same_weights_after_the_first_updates(tmp_path):
    losses = []
    for name in ("a", "b"):
        run_dir = tmp_path / name
        proc = run_script(ROOT / "dqn_cnn.py", "--total-timesteps", "1200", "--num-envs", "2", "--buffer-size",
                          "2000", "--learning-starts", "1000", "--no-compile", "--eval-episodes", "1",
                          "--run-dir", str(run_dir), "--no-cuda")
        assert proc.returncode == 0, proc.stderr[-2000:]
        ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
        losses.append(torch.cat([p.flatten() for p in ckpt["model"].values()]))
    assert torch.equal(losses[0], losses[1])


def test_adam_eps_reaches_the_optimizer_and_a_learning_rate_beside_resume_wins(tmp_path):
    run_dir = tmp_path / "run"
    proc = run_script(ROOT / "dqn_cnn.py", *smoke_flags("dqn_cnn.py"), "--adam-eps", "1.5e-4", "--run-dir",
                      str(run_dir))
    assert proc.returncode == 0, proc.stderr[-2000:]
    saved = torch.load(run_dir / "checkpoint.pt", weights_only=True)["optimizer"]
    assert saved["state"] and saved["param_groups"][0]["eps"] == pytest.approx(1.5e-4)
    proc = run_script(ROOT / "dqn_cnn.py", "--resume", str(run_dir), "--total-timesteps", "2600", "--learning-rate",
                      "1e-4", *EVAL_FLAGS)
    assert proc.returncode == 0, proc.stderr[-2000:]
    group = torch.load(run_dir / "checkpoint.pt", weights_only=True)["optimizer"]["param_groups"][0]
    assert group["lr"] == pytest.approx(1e-4) and group["eps"] == pytest.approx(1.5e-4)
