"""Algorithm tests of ppo_mlp.py on its pure pieces: preprocessing, the sparse first layer, GAE and the
seed's point returns against hand-computed values, the clipped surrogate against its formula, the
first ratio of an update, determinism, and the script's own bad-input lines."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import ROOT, assert_one_line_error, load_script, run_script, smoke_flags

ppo = load_script("ppo_mlp.py")


def sparse_frames(n: int, inputs: int = 6400, nonzero: int = 30, seed: int = 0) -> torch.Tensor:
    """Random difference frames: `nonzero` pixels of +-1 per row, and one all-zero row (nothing moved)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.zeros(n, inputs, dtype=torch.int8)
    cols = torch.randint(0, inputs, (n, nonzero), generator=g)
    x.scatter_(1, cols, (torch.randint(0, 2, (n, nonzero), generator=g) * 2 - 1).to(torch.int8))
    x[n // 2] = 0
    return x


# ---------------------------------------------------------------------------- preprocessing
def test_preprocess_crops_downsamples_erases_background_and_binarizes():
    screens = np.full((2, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    screens[1, 100:120] = ppo.BACKGROUND_GRAY[1]  # the court's second colour: background too
    screens[0, 35, 0] = 236  # top-left of the crop: kept
    screens[0, 36, 0] = 236  # odd row: dropped by the downsampling
    screens[0, 193, 158] = 147  # bottom-right kept pixel (row 193, column 158): the court's last row
    screens[0, 195, 10] = 236  # the bottom wall, below the crop
    screens[1, 20, 50] = 148  # the score, above the crop
    out = ppo.preprocess(screens)
    assert out.shape == (2, 6400) and out.dtype == np.int8
    image = out.reshape(2, 80, 80)
    assert image[0, 0, 0] == 1 and image[0, 79, 79] == 1 and image[0].sum() == 2
    assert image[1].sum() == 0
    assert ppo.preprocess(screens, crop_bottom=185).shape == (2, 6000)  # the seed's 75x80
    assert ppo.num_inputs(195) == 6400 and ppo.num_inputs(185) == 6000


def test_pool_lights_each_block_of_the_image_where_any_pixel_is_lit():
    screens = np.full((1, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    screens[0, 37, 2] = 236  # image pixel (1, 1): block (0, 0)
    screens[0, 35 + 2 * 79, 2 * 78] = 236  # image pixel (79, 78): block (39, 39)
    screens[0, 35 + 2 * 10, 2 * 21] = 236  # image pixels (10, 21) and (11, 21): both in block (5, 10)
    screens[0, 35 + 2 * 11, 2 * 21] = 236
    pooled = ppo.preprocess(screens, pool=(2,))
    assert pooled.shape == (1, 1600) and pooled.dtype == np.int8 and ppo.num_inputs(195, pool=(2,)) == 1600
    block = pooled.reshape(40, 40)
    assert block[0, 0] == 1 and block[39, 39] == 1 and block[5, 10] == 1 and block.sum() == 3
    image = ppo.preprocess(screens).reshape(80, 80)
    assert np.array_equal(block, image.reshape(40, 2, 40, 2).max(axis=(1, 3)))
    both = ppo.preprocess(screens, pool=(1, 2))  # side by side, in the flag's order
    assert both.shape == (1, 8000) and ppo.num_inputs(195, 2, (1, 2)) == 16000
    assert np.array_equal(both[0, :6400], image.ravel()) and np.array_equal(both[0, 6400:], pooled[0])
    frames = ppo.DifferenceFrames(1, 195, num_differences=2, pool=(1, 2))
    assert frames(screens, np.ones(1, bool)).shape == (1, 16000)
    assert ppo.parse_args(["--pool", "2"]).pool == (2,) and ppo.parse_args(["--pool", "1", "2"]).pool == (1, 2)


def test_pool_must_divide_the_image():
    with pytest.raises(ppo.BadInput, match="--pool"):
        ppo.check_args(ppo.Args(pool=(1, 3)))
    with pytest.raises(ppo.BadInput, match="--pool"):
        ppo.check_args(ppo.Args(pool=(2,), crop_bottom=185))  # 75 rows


def pong_vector_env(num_envs: int, grayscale: bool = True):
    """Raw screens with the training env's settings (no-op and FIRE starts, frame skip 4, NextStep autoreset)."""
    import ale_py

    return ale_py.vector_env.AtariVectorEnv(
        game="pong", num_envs=num_envs, frameskip=4, stack_num=1, img_height=210, img_width=160,
        grayscale=grayscale, maxpool=False, noop_max=30, use_fire_reset=True, reward_clipping=False,
        autoreset_mode="NextStep")


def test_preprocess_of_the_red_channel_matches_the_grayscale_screen():
    """The vector env's gray screens (training) and the red channel of RGB screens (the video) give the same
    binary images: gray 87 and 107 are red 144 and 109, the court's two colours."""
    gray_env, rgb_env = pong_vector_env(2), pong_vector_env(2, grayscale=False)
    gray, _ = gray_env.reset(seed=3)
    rgb, _ = rgb_env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(200):
        a = ppo.preprocess(gray[:, 0])
        assert np.array_equal(a, ppo.preprocess(rgb[:, 0, ..., 0], background=ppo.BACKGROUND_RED))
        assert set(np.unique(a)) <= {0, 1} and 0 < a.sum(1).max() < 100  # paddles and ball only: sparse
        actions = ppo.UP_DOWN[rng.integers(0, 2, 2)]
        gray, *_ = gray_env.step(actions)
        rgb, *_ = rgb_env.step(actions)
    gray_env.close()
    rgb_env.close()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_first_images_after_a_reset_show_only_paddles_and_ball(seed):
    """Pong draws some episodes' first frames with its second court colour (1-2 of 16 games at every reset
    seed here); erasing only the first left those images all ones: thousands of pixels, not a game."""
    env = pong_vector_env(16)
    screens, _ = env.reset(seed=seed)
    env.close()
    pixels_on = ppo.preprocess(screens[:, 0]).sum(1)
    assert pixels_on.max() < 100, pixels_on


def test_difference_frames_first_image_stands_alone_then_differences():
    frames = ppo.DifferenceFrames(2, 195)
    a = np.full((2, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    a[:, 35, 0] = 236
    b = np.full((2, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    b[:, 37, 0] = 236
    first = frames(a, np.ones(2, bool)).clone()
    assert first[:, 0].tolist() == [1, 1] and first.sum() == 2
    second = frames(b, np.array([False, True])).clone()  # env 1 starts a new episode with screen b
    assert second[0, 0] == -1 and second[0, 80] == 1 and second[0].abs().sum() == 2
    assert second[1, 0] == 0 and second[1, 80] == 1 and second[1].abs().sum() == 1
    assert second.dtype == torch.int8


def test_stacked_differences_put_the_newest_first_and_start_empty_each_episode():
    frames = ppo.DifferenceFrames(2, 195, num_differences=3)
    screens = np.full((3, 2, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    for i in range(3):
        screens[i, :, 35 + 2 * i, 0] = 236  # a pixel moving down one image row per step
    first = frames(screens[0], np.ones(2, bool)).clone()
    second = frames(screens[1], np.zeros(2, bool)).clone()
    third = frames(screens[2], np.array([False, True])).clone()  # env 1 starts a new episode
    assert first.shape == (2, 3 * 6400) and first.dtype == torch.int8
    assert torch.equal(second[:, 6400:12800], first[:, :6400]) and second[:, 12800:].abs().sum() == 0
    assert torch.equal(third[0, 6400:], second[0, :12800])  # the older two moved one block on
    assert third[0, 160] == 1 and third[0, 80] == -1 and third[0, :6400].abs().sum() == 2
    assert third[1, 160] == 1 and third[1].abs().sum() == 1  # a new episode: its image alone, no history
    one = ppo.DifferenceFrames(2, 195)
    one(screens[0], np.ones(2, bool))
    assert torch.equal(one(screens[1], np.zeros(2, bool)), second[:, :6400])  # the first block is the one-frame input


@pytest.mark.parametrize("decay", [0.5, 0.8])
def test_a_trail_is_the_image_minus_the_decaying_average_of_the_episodes_earlier_images(decay):
    """Checked against the sum written out, not the recursion the class runs: x_t = I_t - sum_k (1-d) d^(k-1)
    I_(t-k) over the episode's earlier images, to 1/127; a new episode forgets the old one's images."""
    rng = np.random.default_rng(0)
    binary = rng.random((8, 2, 80, 80)) < 0.01  # 8 steps, 2 envs
    screens = np.full((8, 2, 210, 160), ppo.BACKGROUND_GRAY[0], np.uint8)
    screens[:, :, 35:195:2, ::2][binary] = 236
    new_episode = np.zeros((8, 2), bool)
    new_episode[0], new_episode[5, 1] = True, True  # env 1 starts again at step 5
    frames = ppo.DifferenceFrames(2, 195, trail_decay=decay)
    images = binary.reshape(8, 2, 6400).astype(np.float64)
    for t in range(8):
        x = frames(screens[t], new_episode[t])
        assert x.dtype == torch.int8 and frames.scale == ppo.input_scale(decay) == 1 / 127
        for e in range(2):
            start = max(s for s in range(t + 1) if new_episode[s, e])
            earlier = sum((1 - decay) * decay ** (k - 1) * images[t - k, e] for k in range(1, t - start + 1))
            expected = images[t, e] - earlier
            np.testing.assert_allclose(x[e].numpy() / 127, expected, atol=0.5 / 127 + 1e-6)
    assert ppo.input_scale(0.0) == 1.0


def test_the_sparse_first_layer_reads_int8_trails_at_their_scale():
    torch.manual_seed(0)
    agent = ppo.Agent(6400, hidden=8, input_scale=1 / 127)
    x = sparse_frames(4) * torch.randint(1, 128, (4, 6400), dtype=torch.int8)
    torch.testing.assert_close(agent.hidden(x), torch.relu(x.float() / 127 @ agent.w1 + agent.b1),
                               rtol=1e-5, atol=1e-6)


def test_trail_decay_must_be_below_1_and_alone():
    for bad in (ppo.Args(trail_decay=1.0), ppo.Args(trail_decay=-0.1), ppo.Args(trail_decay=0.5, num_differences=2)):
        with pytest.raises(ppo.BadInput, match="--trail-decay"):
            ppo.check_args(bad)
    ppo.check_args(ppo.Args(trail_decay=0.5))


# ---------------------------------------------------------------------------- model
def test_a_second_hidden_layer_is_a_relu_layer_on_the_first():
    torch.manual_seed(0)
    agent = ppo.Agent(6400, hidden=8, hidden_layers=2)
    x = sparse_frames(4)
    first = torch.relu(x.float() @ agent.w1 + agent.b1)
    layer = agent.deeper[0]
    torch.testing.assert_close(agent.hidden(x), torch.relu(first @ layer.weight.T + layer.bias), rtol=1e-5, atol=1e-6)
    assert list(ppo.Agent(6400, hidden=8).state_dict()) == ["w1", "b1", "actor.weight", "actor.bias",
                                                            "critic.weight", "critic.bias"]  # the seed's keys


def test_a_separate_critic_has_its_own_layers_and_leaves_the_policys_alone():
    torch.manual_seed(0)
    agent = ppo.Agent(6400, hidden=8, separate_critic=True)
    x = sparse_frames(4)
    logits, values = agent(x)
    critic_hidden = torch.relu(x.float() @ agent.critic_w1 + agent.critic_b1)
    torch.testing.assert_close(values, (critic_hidden @ agent.critic.weight.T + agent.critic.bias).squeeze(1),
                               rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, agent.actor(agent.hidden(x)), rtol=1e-5, atol=1e-6)
    values.sum().backward()
    assert agent.w1.grad is None and agent.critic_w1.grad.abs().sum() > 0  # the value shapes only its own layer


def test_sparse_first_layer_is_the_dense_linear_layer():
    torch.manual_seed(0)
    agent = ppo.Agent(6400)
    x = sparse_frames(16)
    dense = torch.relu(x.float() @ agent.w1 + agent.b1)
    torch.testing.assert_close(agent.hidden(x), dense, rtol=1e-5, atol=1e-6)
    logits, values = agent(x)
    assert logits.shape == (16, 2) and values.shape == (16,)
    # the gradient reaches exactly the rows of the pixels that were non-zero in the batch
    agent(x[:1])[0].sum().backward()
    touched = agent.w1.grad.abs().sum(1) > 0
    assert set(touched.nonzero().squeeze(1).tolist()) <= set(x[0].nonzero().squeeze(1).tolist())


# ---------------------------------------------------------------------------- returns and advantages
def test_gae_by_hand_with_an_episode_end_in_the_middle():
    """gamma 0.9, lambda 0.5. Env 0's episode terminates at t=1, env 1's is truncated there; t=2 is the
    NextStep reset step, whose value is the final frame's."""
    rewards = torch.tensor([[0.0, 0.0], [1.0, 1.0], [0.0, 0.0], [0.0, 0.0]])
    values = torch.tensor([[0.5, 0.5], [0.4, 0.4], [0.3, 0.3], [0.2, 0.2]])
    next_value = torch.tensor([0.1, 0.1])
    terminated = torch.tensor([[False, False], [True, False], [False, False], [False, False]])
    dones = torch.tensor([[False, False], [True, True], [False, False], [False, False]])
    adv, ret = ppo.compute_gae(rewards, values, next_value, terminated, dones, 0.9, 0.5)
    # t=3: 0 + .9*.1 - .2 = -.11 ; t=2: 0 + .9*.2 - .3 + .45*(-.11) = -.1695
    # env 0, t=1: 1 - .4 = .6 (nothing after the end) ; t=0: .9*.4 - .5 + .45*.6 = .13
    # env 1, t=1: 1 + .9*.3 - .4 = .87 (bootstrap the final frame) ; t=0: -.14 + .45*.87 = .2515
    expected = torch.tensor([[0.13, 0.2515], [0.6, 0.87], [-0.1695, -0.1695], [-0.11, -0.11]])
    torch.testing.assert_close(adv, expected)
    torch.testing.assert_close(ret, expected + values)


def test_gae_with_lambda_one_and_no_end_is_the_discounted_return_minus_the_value():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.3], [0.2], [0.1]])
    none = torch.zeros(3, 1, dtype=torch.bool)
    adv, ret = ppo.compute_gae(rewards, values, torch.tensor([5.0]), none, none, 0.5, 1.0)
    # return at t=0: 1 + .5*0 + .25*2 + .125*5 = 2.125 ; t=1: 0 + .5*2 + .25*5 = 2.25 ; t=2: 2 + .5*5 = 4.5
    torch.testing.assert_close(ret, torch.tensor([[2.125], [2.25], [4.5]]))
    torch.testing.assert_close(adv, ret - values)


def test_point_returns_by_hand_reset_at_points_and_episode_ends():
    """gamma 0.5. Env 0: points at t=2 (+1) and t=4 (-1); t=5, 6 have no point after them yet.
    Env 1: no reward, its episode is truncated at t=3."""
    rewards = torch.tensor([[0.0, 0], [0, 0], [1, 0], [0, 0], [-1, 0], [0, 0], [0, 0]])
    dones = torch.zeros(7, 2, dtype=torch.bool)
    dones[3, 1] = True
    returns, known = ppo.point_returns(rewards, dones, 0.5)
    torch.testing.assert_close(returns[:, 0], torch.tensor([0.25, 0.5, 1.0, -0.5, -1.0, 0.0, 0.0]))
    assert known[:, 0].tolist() == [True] * 5 + [False] * 2
    torch.testing.assert_close(returns[:, 1], torch.zeros(7))
    assert known[:, 1].tolist() == [True] * 4 + [False] * 3


def test_point_returns_match_the_seed_loop():
    rng = np.random.default_rng(0)
    r = rng.choice([-1.0, 0.0, 0.0, 0.0, 0.0, 1.0], size=200)
    r[-1] = 1.0  # every step known
    R, seed = 0.0, []
    for x in r[::-1]:  # the seed's loop, verbatim
        if x != 0:
            R = 0
        R = x + 0.99 * R
        seed.insert(0, R)
    returns, known = ppo.point_returns(torch.tensor(r, dtype=torch.float32)[:, None],
                                       torch.zeros(200, 1, dtype=torch.bool), 0.99)
    assert known.all()
    torch.testing.assert_close(returns[:, 0], torch.tensor(seed, dtype=torch.float32))


# ---------------------------------------------------------------------------- losses
def test_clipped_surrogate_against_the_formula_both_signs_inside_and_outside_the_clip():
    eps = 0.1
    ratio = torch.tensor([1.05, 1.5, 0.5, 0.95, 1.5, 0.5, 1.0, 1.1])
    adv = torch.tensor([2.0, 2.0, 2.0, -1.0, -1.0, -1.0, 3.0, -2.0])
    # A > 0: inside -> -rA; above 1+eps -> clipped -(1+eps)A; below -> unclipped -rA (min takes it)
    # A < 0: inside -> -rA; above -> unclipped -rA; below 1-eps -> clipped -(1-eps)A
    by_hand = torch.tensor([-2.1, -2.2, -1.0, 0.95, 1.5, 0.9, -3.0, 2.2])
    got = ppo.clipped_surrogate(ratio, adv, eps)
    torch.testing.assert_close(got, by_hand)
    direct = torch.tensor([-min(r * a, min(max(r, 1 - eps), 1 + eps) * a) for r, a in zip(ratio.tolist(), adv.tolist())])
    torch.testing.assert_close(got, direct)


def test_clipped_surrogate_has_no_gradient_where_the_clip_is_active():
    ratio = torch.tensor([1.5, 0.5, 1.5, 0.5, 1.05], requires_grad=True)
    adv = torch.tensor([2.0, -1.0, -1.0, 2.0, 2.0])
    ppo.clipped_surrogate(ratio, adv, 0.1).sum().backward()
    # clipped (A>0 above, A<0 below): 0 ; the pessimistic unclipped side and inside: -A
    torch.testing.assert_close(ratio.grad, torch.tensor([0.0, 0.0, 1.0, -2.0, -2.0]))


def rollout_batch(agent, steps: int = 16, envs: int = 8, seed: int = 0) -> dict:
    """A fake rollout made the way the training loop makes one: `act` on `envs` frames at a time."""
    torch.manual_seed(seed)
    obs = sparse_frames(steps * envs, seed=seed).reshape(steps, envs, -1)
    acts, logps, vals = zip(*(ppo.act(agent, obs[t]) for t in range(steps)))
    g = torch.Generator().manual_seed(seed)
    return {"obs": obs.reshape(steps * envs, -1), "actions": torch.stack(acts).reshape(-1),
            "logprobs": torch.stack(logps).reshape(-1), "values": torch.stack(vals).reshape(-1),
            "advantages": torch.randn(steps * envs, generator=g), "returns": torch.randn(steps * envs, generator=g)}


def test_ratio_is_exactly_one_on_the_first_minibatch_of_the_first_epoch(monkeypatch):
    torch.manual_seed(0)
    agent = ppo.Agent(6400)
    batch = rollout_batch(agent)
    args = ppo.Args(num_envs=8, num_steps=16, num_minibatches=4, update_epochs=2)
    optimizer = torch.optim.Adam(agent.parameters(), lr=1e-3)
    ratios = []
    real_loss = ppo.ppo_loss

    def recording_loss(agent, mb, args):
        loss, stats = real_loss(agent, mb, args)
        ratios.append(stats["ratio"].clone())
        return loss, stats

    monkeypatch.setattr(ppo, "ppo_loss", recording_loss)
    stats = ppo.ppo_update(agent, optimizer, batch, torch.ones(128, dtype=torch.bool), args)
    assert len(ratios) == 8 and all(len(r) == 32 for r in ratios)
    torch.testing.assert_close(ratios[0], torch.ones(32), rtol=0, atol=1e-6)  # logp recomputed in other batch shapes
    assert not torch.equal(ratios[-1], torch.ones(32))  # the updates moved the policy
    assert set(stats) == {"policy_loss", "value_loss", "entropy", "old_approx_kl", "approx_kl", "clipfrac"}


def test_update_leaves_out_the_rows_it_is_told_to():
    """Reset steps (and unknown point returns) may hold anything: they must not reach the loss."""
    torch.manual_seed(0)
    agent = ppo.Agent(6400)
    batch = rollout_batch(agent)
    use = torch.ones(128, dtype=torch.bool)
    use[::7] = False
    batch["advantages"][~use] = math.nan
    batch["returns"][~use] = math.nan
    args = ppo.Args(num_envs=8, num_steps=16)
    stats = ppo.ppo_update(agent, torch.optim.Adam(agent.parameters(), lr=1e-3), batch, use, args)
    assert all(math.isfinite(v) for v in stats.values()), stats
    assert all(torch.isfinite(p).all() for p in agent.parameters())


@pytest.mark.parametrize("advantages", ["gae", "point-returns"])
def test_same_seed_gives_the_same_first_losses(advantages):
    def first_losses(seed: int) -> dict:
        torch.manual_seed(seed)
        agent = ppo.Agent(6400)
        batch = rollout_batch(agent, seed=seed)
        args = ppo.Args(num_envs=8, num_steps=16, advantages=advantages)
        optimizer = torch.optim.Adam(agent.parameters(), lr=2.5e-4, eps=1e-5, fused=True)
        return ppo.ppo_update(agent, optimizer, batch, torch.ones(128, dtype=torch.bool), args)

    a, b, c = first_losses(1), first_losses(1), first_losses(2)
    assert a == b
    assert a != c
    assert (a["value_loss"] == 0) == (advantages == "point-returns")


# ---------------------------------------------------------------------------- bad input
def test_eval_checkpoint_rejects_a_dqn_checkpoint(tmp_path):
    dqn = tmp_path / "checkpoint.pt"
    torch.save({"script": "dqn_cnn", "global_step": 100, "model": {}}, dqn)
    proc = run_script(ROOT / "ppo_mlp.py", "--eval-checkpoint", str(dqn), "--run-dir", str(tmp_path / "run"))
    assert_one_line_error(proc, "--eval-checkpoint")
    assert "dqn_cnn" in proc.stderr
    assert not (tmp_path / "run").exists()


def test_a_run_of_another_shape_and_input_evaluates_and_resumes_only_as_it_was_made(tmp_path):
    run_dir = tmp_path / "narrow"
    trained = run_script(ROOT / "ppo_mlp.py", *smoke_flags("ppo_mlp.py"), "--hidden", "16", "--hidden-layers", "2",
                         "--num-differences", "2", "--run-dir", str(run_dir))
    assert trained.returncode == 0, trained.stderr[-3000:]
    model = torch.load(run_dir / "final_model.pt", weights_only=True)["model"]
    assert model["w1"].shape == (2 * 6400, 16) and model["deeper.0.weight"].shape == (16, 16)
    played = run_script(ROOT / "ppo_mlp.py", "--eval-checkpoint", str(run_dir), "--eval-episodes", "1",
                        "--run-dir", str(tmp_path / "eval"))
    assert played.returncode == 0, played.stderr[-3000:]
    for flag, other in (("--hidden", "32"), ("--hidden-layers", "1"), ("--num-differences", "1")):
        resumed = run_script(ROOT / "ppo_mlp.py", "--resume", str(run_dir), flag, other, "--total-timesteps", "9000")
        assert_one_line_error(resumed, flag)


def test_a_trail_run_evaluates_with_its_trails_and_resumes_only_with_them(tmp_path):
    run_dir = tmp_path / "trail"
    trained = run_script(ROOT / "ppo_mlp.py", *smoke_flags("ppo_mlp.py"), "--trail-decay", "0.5",
                         "--run-dir", str(run_dir))
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert torch.load(run_dir / "final_model.pt", weights_only=True)["args"]["trail_decay"] == 0.5
    played = run_script(ROOT / "ppo_mlp.py", "--eval-checkpoint", str(run_dir), "--eval-episodes", "1",
                        "--run-dir", str(tmp_path / "eval"))
    assert played.returncode == 0, played.stderr[-3000:]
    resumed = run_script(ROOT / "ppo_mlp.py", "--resume", str(run_dir), "--trail-decay", "0",
                         "--total-timesteps", "9000")
    assert_one_line_error(resumed, "--trail-decay")
