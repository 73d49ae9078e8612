"""Ray's documentation example "Learning to Play Pong" (the seed of `ppo_ray.py`), timed as it runs: Ray
actors that each play a whole game of Pong-v0 with Karpathy's NumPy network and return its REINFORCE gradient; the
driver sums a gradient per actor and steps RMSProp, once per round of games. The yardstick for `ppo_ray.py`'s
per-worker cost per agent step (`benchmark/throughput.py` runs both in one call).

    python benchmark/ray_pong_seed.py --actors 2 --seconds 120

Kept as the seed has it: Pong-v0 (frame skip drawn from 2-4, sticky actions 0.25), its preprocessing, float64
network, one episode per gradient. Changed only so that it runs today: Gymnasium's reset/step signatures, ale-py's
registration (also inside each actor), `np.float64` for the removed `np.float`. Prints one JSON line: agent steps
per second over the games that ended after `--warmup-s`.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np
import ray

H = 200  # hidden units
gamma = 0.99
decay_rate = 0.99
D = 80 * 80
learning_rate = 1e-4


def preprocess(img):
    img = img[35:195]
    img = img[::2, ::2, 0]
    img[img == 144] = 0
    img[img == 109] = 0
    img[img != 0] = 1
    return img.astype(np.float64).ravel()


def process_rewards(r):
    discounted_r = np.zeros_like(r)
    running_add = 0
    for t in reversed(range(0, r.size)):
        if r[t] != 0:
            running_add = 0
        running_add = running_add * gamma + r[t]
        discounted_r[t] = running_add
    return discounted_r


def rollout(model, env):
    observation, _ = env.reset()
    prev_x = None
    xs, hs, dlogps, drs = [], [], [], []
    done = False
    while not done:
        cur_x = preprocess(observation)
        x = cur_x - prev_x if prev_x is not None else np.zeros(D)
        prev_x = cur_x
        aprob, h = model.policy_forward(x)
        action = 2 if np.random.uniform() < aprob else 3
        xs.append(x)
        hs.append(h)
        y = 1 if action == 2 else 0
        dlogps.append(y - aprob)
        observation, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        drs.append(reward)
    return xs, hs, dlogps, drs


class Model:
    def __init__(self):
        self.weights = {"W1": np.random.randn(H, D) / np.sqrt(D), "W2": np.random.randn(H) / np.sqrt(H)}

    def policy_forward(self, x):
        h = np.dot(self.weights["W1"], x)
        h[h < 0] = 0
        logp = np.dot(self.weights["W2"], h)
        p = 1.0 / (1.0 + np.exp(-logp))
        return p, h

    def policy_backward(self, eph, epx, epdlogp):
        dW2 = np.dot(eph.T, epdlogp).ravel()
        dh = np.outer(epdlogp, self.weights["W2"])
        dh[eph <= 0] = 0
        dW1 = np.dot(dh.T, epx)
        return {"W1": dW1, "W2": dW2}

    def update(self, grad_buffer, rmsprop_cache, lr, decay):
        for k, v in self.weights.items():
            g = grad_buffer[k]
            rmsprop_cache[k] = decay * rmsprop_cache[k] + (1 - decay) * g ** 2
            self.weights[k] += lr * g / (np.sqrt(rmsprop_cache[k]) + 1e-5)


@ray.remote(num_cpus=1)
class RolloutWorker:
    def __init__(self):
        import ale_py
        import gymnasium as gym

        os.environ["MKL_NUM_THREADS"] = "1"
        gym.register_envs(ale_py)
        self.env = gym.make("Pong-v0")

    def compute_gradient(self, model):
        xs, hs, dlogps, drs = rollout(model, self.env)
        epx, eph, epdlogp, epr = np.vstack(xs), np.vstack(hs), np.vstack(dlogps), np.vstack(drs)
        discounted_epr = process_rewards(epr)
        discounted_epr -= np.mean(discounted_epr)
        discounted_epr /= np.std(discounted_epr)
        epdlogp *= discounted_epr
        return model.policy_backward(eph, epx, epdlogp), sum(drs), len(xs)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--seconds", type=float, default=120.0)
    p.add_argument("--warmup-s", type=float, default=20.0)
    a = p.parse_args()
    ray.init(address="local", num_cpus=a.actors, include_dashboard=False, log_to_driver=False)
    try:
        model = Model()
        actors = [RolloutWorker.remote() for _ in range(a.actors)]
        grad_buffer = {k: np.zeros_like(v) for k, v in model.weights.items()}
        rmsprop_cache = {k: np.zeros_like(v) for k, v in model.weights.items()}
        start = time.perf_counter()
        counted, first, last = 0, None, None
        while time.perf_counter() - start < a.seconds:
            model_id = ray.put(model)
            gradient_ids = [actor.compute_gradient.remote(model_id) for actor in actors]
            for _ in range(a.actors):
                [grad_id], gradient_ids = ray.wait(gradient_ids)
                grad, reward_sum, steps = ray.get(grad_id)
                now = time.perf_counter() - start
                if now >= a.warmup_s:  # the steps of games that ended inside the timing window
                    if first is None:
                        first = now
                    else:
                        counted += steps
                    last = now
                for k in model.weights:
                    grad_buffer[k] += grad[k]
            model.update(grad_buffer, rmsprop_cache, learning_rate, decay_rate)
            grad_buffer = {k: np.zeros_like(v) for k, v in model.weights.items()}
    finally:
        ray.shutdown()
    if first is None or last == first:
        raise SystemExit("fewer than two games ended after the warm-up: give it more --seconds")
    print(json.dumps({"sps": counted / (last - first), "steps": counted, "seconds": last - first}))


if __name__ == "__main__":
    main()
