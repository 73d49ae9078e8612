"""benchmark/dqn_units.py: dead units and a blind network's constant values, on a Nature CNN set by hand."""

from __future__ import annotations

import sys

import pytest
import torch

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmark"))
import dqn_units  # noqa: E402
from dqn_cnn import QNetwork  # noqa: E402


def screens(n: int = 16) -> torch.Tensor:
    return torch.randint(0, 256, (n, 4, 84, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_a_dead_first_layer_makes_the_network_blind_with_one_greedy_action():
    torch.manual_seed(0)
    q_network = QNetwork(6)
    first = q_network.net[0]
    with torch.no_grad():
        first.weight.abs_().neg_()  # inputs are >= 0: no channel can fire
        first.bias.fill_(-1.0)
    r = dqn_units.report(q_network, screens())
    assert r["relu_dead_share"][0] == 1.0 and r["relu_firing_share"][0] == 0.0
    assert r["q_std_across_states"] == pytest.approx(0.0, abs=1e-6)
    assert sorted(r["greedy_share"]) == [0.0] * 5 + [1.0]


def test_a_fresh_network_fires_in_every_layer_and_its_values_follow_the_screen():
    torch.manual_seed(0)
    q_network = QNetwork(6)
    r = dqn_units.report(q_network, screens())
    assert len(r["relu_dead_share"]) == 4  # three convolutions and the 512-unit layer
    assert all(d < 0.5 for d in r["relu_dead_share"]) and all(f > 0.05 for f in r["relu_firing_share"])
    assert r["q_std_across_states"] > 1e-4
    assert sum(r["greedy_share"]) == pytest.approx(1.0)
    with torch.no_grad():  # the values are the network's own forward pass, its input scaling included
        assert r["q_mean"] == pytest.approx(float(q_network(screens()).mean()), abs=1e-4)


def test_unit_activity_counts_a_channel_dead_only_where_it_fires_nowhere():
    layers = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 1), torch.nn.ReLU())
    with torch.no_grad():
        layers[0].weight.copy_(torch.tensor([1.0, -1.0]).reshape(2, 1, 1, 1))
        layers[0].bias.zero_()
    x = torch.zeros(2, 1, 2, 2)
    x[1, 0, 0, 0] = 1.0  # one lit position in one state: channel 0 fires there once, channel 1 never
    out, stats = dqn_units.unit_activity(layers, x)
    assert stats == [(0.5, pytest.approx(1 / 16))]
    assert torch.equal(out, layers(x))
