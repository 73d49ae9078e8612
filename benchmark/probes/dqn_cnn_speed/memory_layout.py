"""The time of one dqn_cnn.py gradient step (a batch of 128, float32), eager and compiled, in torch's default memory
layout (NCHW) and in channels_last (NHWC, oneDNN's own layout for convolutions on a CPU). One JSON line per case:
the median and fastest of 40 steps after 5 warm-up steps (the compile among them). Random frames: the time of a
step does not depend on what the frames show.
Run from the repository root, nothing else on the machine: `python benchmark/probes/dqn_cnn_speed/memory_layout.py`.
"""
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[3]
spec = importlib.util.spec_from_file_location("dqn_cnn", ROOT / "dqn_cnn.py")
dqn = importlib.util.module_from_spec(spec)
sys.modules["dqn_cnn"] = dqn  # its dataclasses look their module up
spec.loader.exec_module(dqn)
BATCH, STEPS, WARMUP = 128, 40, 5


def batch(channels_last: bool):
    obs, next_obs = (torch.randint(0, 255, (BATCH, 4, 84, 84), dtype=torch.uint8) for _ in range(2))
    if channels_last:
        obs, next_obs = (x.contiguous(memory_format=torch.channels_last) for x in (obs, next_obs))
    return obs, torch.randint(0, 6, (BATCH,)), torch.randn(BATCH), torch.full((BATCH,), 0.99 ** 3), next_obs


def time_case(name: str, compile_step: bool, channels_last: bool) -> dict:
    q_network, target_network = dqn.QNetwork(6), dqn.QNetwork(6)
    if channels_last:
        q_network, target_network = (n.to(memory_format=torch.channels_last) for n in (q_network, target_network))
    optimizer = torch.optim.Adam(q_network.parameters(), lr=2e-4)
    step = torch.compile(dqn.gradient_step) if compile_step else dqn.gradient_step
    data = batch(channels_last)
    start = time.perf_counter()
    for _ in range(WARMUP):
        step(q_network, target_network, optimizer, *data)
    warmup = time.perf_counter() - start
    times = []
    for _ in range(STEPS):
        start = time.perf_counter()
        step(q_network, target_network, optimizer, *data)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"variant": name, "median_ms": round(1000 * times[STEPS // 2], 2), "min_ms": round(1000 * times[0], 2),
            "warmup_s": round(warmup, 1)}


if __name__ == "__main__":
    torch.manual_seed(0)
    for name in sys.argv[1:] or ["eager", "eager_cl", "compiled", "compiled_cl"]:
        print(json.dumps(time_case(name, name.startswith("compiled"), name.endswith("_cl"))), flush=True)
