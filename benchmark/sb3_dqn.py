"""Stable-Baselines3's DQN on Pong at given settings; prints its steady-state agent steps/s as JSON.

Runs inside the separate venv that `benchmark/throughput.py` makes (SB3 is not a dependency of this
repository). Same preprocessing family as dqn_cnn.py: SB3's AtariWrapper + a 4-frame VecFrameStack.
"""
import argparse
import json
import time

import ale_py
import gymnasium as gym
from stable_baselines3 import DQN
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_atari_env
from stable_baselines3.common.vec_env import VecFrameStack


class StepClock(BaseCallback):
    """Wall-clock time at the first step after learning starts and at the end."""

    def __init__(self, warmup_steps: int):
        super().__init__()
        self.warmup_steps, self.t0, self.step0 = warmup_steps, None, None

    def _on_step(self) -> bool:
        if self.t0 is None and self.num_timesteps >= self.warmup_steps:
            self.t0, self.step0 = time.perf_counter(), self.num_timesteps
        return True


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--total-timesteps", type=int, default=20_000)
    p.add_argument("--learning-starts", type=int, default=1_000)
    p.add_argument("--warmup-steps", type=int, default=3_000, help="steps excluded from the timing")
    p.add_argument("--num-envs", type=int, default=1)
    p.add_argument("--buffer-size", type=int, default=50_000)
    p.add_argument("--train-frequency", type=int, default=4)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--seed", type=int, default=1)
    a = p.parse_args()
    gym.register_envs(ale_py)
    env = VecFrameStack(make_atari_env("PongNoFrameskip-v4", n_envs=a.num_envs, seed=a.seed), n_stack=4)
    model = DQN("CnnPolicy", env, buffer_size=a.buffer_size, learning_starts=a.learning_starts,
                train_freq=a.train_frequency, batch_size=a.batch_size, learning_rate=1e-4,
                target_update_interval=1000, exploration_fraction=0.1, exploration_final_eps=0.01,
                device="cpu", seed=a.seed, verbose=0)
    clock = StepClock(a.warmup_steps)
    model.learn(total_timesteps=a.total_timesteps, callback=clock)
    elapsed = time.perf_counter() - clock.t0
    print(json.dumps({"sps": (model.num_timesteps - clock.step0) / elapsed, "steps": model.num_timesteps - clock.step0,
                      "seconds": elapsed}))


if __name__ == "__main__":
    main()
