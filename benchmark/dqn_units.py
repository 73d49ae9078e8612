"""Does a `dqn_cnn.py` Q-network still see the screen? Its units that fire, and how much its values vary, on states
from a replay.

Usage: `python benchmark/dqn_units.py [LABEL=]CHECKPOINT [...] [--states CHECKPOINT] [--samples 2048] [--json OUT]`

Each CHECKPOINT is a `checkpoint.pt` (with its replay) or a `final_model.pt`, reported under LABEL (default: its path);
the states are `--samples` stacks drawn from the replay of `--states` (default: each checkpoint's own). Per ReLU layer
it prints the share of units (conv channels, linear units) that fire on none of the states, dead, and the share of
unit-state pairs that fire; then the spread of each action's value across the states and the share of states where each
action is greedy. A network whose first layer is dead outputs the same values for every screen: it is blind, and its
greedy action is one action everywhere (a seed that never leaves -21, `probes/dqn_cnn_start/`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
import dqn_cnn  # noqa: E402


def unit_activity(network: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, list[tuple[float, float]]]:
    """network(x), and (dead share, firing share) after each of its ReLUs in the order they ran: a unit (a channel of
    a conv layer) is dead when it fires at no position of any state. One pass, read by hooks."""
    stats = []

    def record(_module, _inputs, out: torch.Tensor) -> None:
        per_unit = out.transpose(0, 1).reshape(out.shape[1], -1)  # unit x (state, position)
        stats.append((float((per_unit.amax(1) <= 0).float().mean()), float((per_unit > 0).float().mean())))

    hooks = [m.register_forward_hook(record) for m in network.modules() if isinstance(m, torch.nn.ReLU)]
    try:
        with torch.no_grad():
            out = network(x)
    finally:
        for hook in hooks:
            hook.remove()
    return out, stats


def report(q_network: dqn_cnn.QNetwork, states: torch.Tensor) -> dict:
    """The activity of each ReLU layer, the values' spread across states and the greedy actions' shares."""
    q_values, activity = unit_activity(q_network, states)
    greedy = np.bincount(q_values.argmax(1).numpy(), minlength=q_network.num_actions) / len(states)
    return {"relu_dead_share": [round(d, 4) for d, _ in activity],
            "relu_firing_share": [round(f, 4) for _, f in activity],
            "q_mean": round(float(q_values.mean()), 4), "q_std_across_states": round(float(q_values.std(0).mean()), 4),
            "greedy_share": [round(float(g), 4) for g in greedy]}


def replay_states(ckpt: dict, path: str, samples: int) -> torch.Tensor:
    """`samples` stacked observations drawn (seed 0) from the replay a loaded `checkpoint.pt` holds."""
    if "replay" not in ckpt:
        sys.exit(f"{path} holds no replay (a final_model.pt?): name a checkpoint.pt, or give --states one")
    a = ckpt["args"]
    replay = dqn_cnn.FrameReplay(a["buffer_size"], a["num_envs"], a["n_step"], a["gamma"])
    replay.load_state_dict(ckpt["replay"])
    return torch.as_tensor(replay.sample(samples, np.random.default_rng(0))[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--states", help="a checkpoint.pt whose replay gives the states (default: each one's own)")
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--json", help="write the reports here, keyed by checkpoint")
    args = parser.parse_args()
    torch.set_num_threads(1)
    shared = replay_states(dqn_cnn.load_checkpoint(args.states, "--states")[0], args.states, args.samples) \
        if args.states else None
    reports = {}
    for named in args.checkpoints:
        label, _, path = named.rpartition("=")
        ckpt, _ = dqn_cnn.load_checkpoint(path, "checkpoint")
        states = shared if shared is not None else replay_states(ckpt, path, args.samples)
        r = report(dqn_cnn.saved_q_network(ckpt, torch.device("cpu")).eval(), states)
        reports[label or path] = r = {"global_step": ckpt.get("global_step"), **r}
        print(f"{label or path} (step {r['global_step']}): dead {r['relu_dead_share']}, "
              f"firing {r['relu_firing_share']}, Q {r['q_mean']:+.3f} +- {r['q_std_across_states']:.3f} across states, "
              f"greedy {r['greedy_share']}")
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=1) + "\n")


if __name__ == "__main__":
    main()
