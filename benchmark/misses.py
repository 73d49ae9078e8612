"""Where a shipped file concedes its points: how far its paddle was from the ball's line when the ball went past.

Usage: `python benchmark/misses.py [--games 30] [--out benchmark/probes/misses] [file ...]` (default: the four
shipped files in `benchmark/checkpoints/`), each played with sticky actions 0.25 and on the deterministic game;
one JSON per file and setting, a table on stdout, and `gaps.png` (`--plot-only` redraws it).

It runs each script's own `--eval-checkpoint` (the evaluation protocol of RESULTS.md: 0-30 no-op starts, eval seed
`--seed` + 10,000, DQN at epsilon 0.05) with the script's `make_env` wrapped so that every frame the agent saw is
also read here. In each frame it finds the ball and the agent's (right, green) paddle; when the opponent scores, the
ball's last two sightings on the agent's half, moving towards it, give the row where it crossed the paddle's
column (walls reflect), and the gap is how far that row lay outside the paddle, in screen pixels (the paddle is
16 high; 0: the ball's line met the paddle and still went past, as when the paddle moves off at the last frame).
A large gap says the paddle was out of position (moving towards the line: it set off too late); a small one, a
last-moment slip (a sticky or random action, the paddle's edge).
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the four scripts, imported to play their own evaluations
from ppo_mlp import BACKGROUND_GRAY, BACKGROUND_RED  # noqa: E402  (the court's two colours)

SHIPPED = ("dqn_cnn.pt", "ppo_mlp.pt", "ppo_ray.pt", "pg_numpy.npz")
FIELD_TOP, FIELD_BOTTOM = 34, 194  # screen rows between the court's walls
PADDLE_COLS = (140, 144)  # the agent's paddle, screen columns [140, 144)
BALL_COLS = (20, 140)  # right of the opponent's paddle, left of the agent's
HALF = 80  # a sighting on the agent's half: screen column at least this


def lit_screen(frame: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(lit mask, screen pixels per frame row, per frame column) for one observation frame: a 210x160 grayscale
    screen, a 210x160x3 RGB screen, or an 84x84 DeepMind frame (paddles and ball brighter than the court)."""
    if frame.ndim == 3:  # RGB: the red channel, the court's two colours erased (Karpathy's values)
        red = frame[..., 0]
        return (red != BACKGROUND_RED[0]) & (red != BACKGROUND_RED[1]), 1.0, 1.0
    if frame.shape == (84, 84):  # resized: a blend of court (87) and paddle (147) or ball (236)
        return frame > 117, 210 / 84, 160 / 84
    return (frame != BACKGROUND_GRAY[0]) & (frame != BACKGROUND_GRAY[1]), 1.0, 1.0


def locate(frame: np.ndarray) -> tuple[tuple[float, float] | None, tuple[float, float] | None]:
    """((ball row, column) or None, (paddle top, bottom) or None) in screen pixels. A frame pixel i covers screen
    pixels [i, i + 1) x its size: the court is the frame rows inside the walls, the ball's columns those between
    the paddles, the paddle's those whose centre is on it."""
    lit, row_px, col_px = lit_screen(frame)
    rows = np.arange(lit.shape[0]) * row_px
    cols = np.arange(lit.shape[1]) * col_px
    field = (rows >= FIELD_TOP) & (rows + row_px <= FIELD_BOTTOM)
    pad_cols = (cols + col_px / 2 >= PADDLE_COLS[0]) & (cols + col_px / 2 < PADDLE_COLS[1])
    ball_cols = (cols >= BALL_COLS[0]) & (cols + col_px <= BALL_COLS[1])
    pad_rows = rows[field & lit[:, pad_cols].any(1)]
    br, bc = np.nonzero(lit[np.ix_(field, ball_cols)])
    ball = (float(rows[field][br].mean()), float(cols[ball_cols][bc].mean())) if len(br) else None
    paddle = (float(pad_rows.min()), float(pad_rows.max() + row_px)) if len(pad_rows) else None
    return ball, paddle


def crossing_row(before: tuple[float, float], last: tuple[float, float]) -> float:
    """The ball's row at the paddle's column, straight on from two sightings, reflected off the walls."""
    (r0, c0), (r1, c1) = before, last
    r = r1 + (r1 - r0) * (PADDLE_COLS[0] - c1) / (c1 - c0)
    span = FIELD_BOTTOM - FIELD_TOP
    y = (r - FIELD_TOP) % (2 * span)
    return FIELD_TOP + (y if y <= span else 2 * span - y)


class Recorder:
    """Wraps a vector env: passes everything through and keeps, per env, the sightings since the last point."""

    def __init__(self, env, record, games: int):
        self.env, self.record, self.games = env, record, games

    def __getattr__(self, name):
        return getattr(self.env, name)

    def reset(self, **kw):
        obs, info = self.env.reset(**kw)
        n = len(obs)
        self.sightings = [[] for _ in range(n)]
        # the evaluation's quota per env; games an env plays past it (while others finish) are not counted
        self.left = np.array([self.games // n + (e < self.games % n) for e in range(n)])
        return obs, info

    def step(self, actions):
        obs, reward, terminated, truncated, info = self.env.step(actions)
        for e in range(len(obs)):
            frame = obs[e][-1] if obs[e].ndim == 3 and obs[e].shape[-1] != 3 else obs[e]  # newest of a stack
            frame = frame.reshape(210, 160, 3) if frame.size == 210 * 160 * 3 else frame
            ball, paddle = locate(np.asarray(frame))
            if reward[e] < 0 and self.left[e] > 0:
                self.record(self.sightings[e])
            if terminated[e] or truncated[e]:
                self.left[e] -= 1
            if reward[e] != 0 or terminated[e] or truncated[e]:
                self.sightings[e] = []
            else:
                self.sightings[e].append((ball, paddle))
        return obs, reward, terminated, truncated, info


def gap_of(sightings: list) -> tuple[float, str] | None:
    """(How far outside the paddle the ball's line crossed its column, how the paddle was moving then: "towards"
    that line, "away" or "still" over its last two frames), from a conceded point's sightings."""
    seen = [(b, p) for b, p in sightings if b is not None and p is not None and b[1] >= HALF]
    if len(seen) < 2 or seen[-1][0][1] <= seen[-2][0][1]:
        return None
    row = crossing_row(seen[-2][0], seen[-1][0])
    (top0, _), (top, bottom) = seen[-2][1], seen[-1][1]
    gap = max(top - row, row - bottom, 0.0)
    moved = top - top0
    motion = "still" if moved == 0 else "towards" if (moved < 0) == (row < top) else "away"
    return gap, motion


def play(path: Path, sticky: float, games: int, seed: int) -> dict:
    """Play `path` with its script's own evaluation, recording each conceded point's gap."""
    script = {"pt": None, "npz": "pg_numpy"}[path.suffix[1:]] or path.stem
    module = importlib.import_module(script)
    gaps, motions, unseen = [], [], [0]

    def record(sightings):
        seen = gap_of(sightings)
        if seen is None:
            unseen[0] += 1
        else:
            gaps.append(seen[0])
            motions.append(seen[1])

    make_env = module.make_env
    module.make_env = lambda *a, **kw: Recorder(make_env(*a, **kw), record, games)
    try:
        with tempfile.TemporaryDirectory() as out:
            module.main(module.parse_args(["--eval-checkpoint", str(path), "--eval-sticky", str(sticky),
                                           "--eval-episodes", str(games), "--seed", str(seed),
                                           "--run-dir", str(Path(out) / "eval")]))
            returns = json.loads((Path(out) / "eval" / "eval.json").read_text())["returns"]
    finally:
        module.make_env = make_env
    g = np.array(gaps)
    share = (lambda m: float(m.mean())) if len(g) else (lambda m: None)  # no conceded point seen: no shares
    return {"file": path.name, "sticky": sticky, "games": len(returns), "mean_return": float(np.mean(returns)),
            "conceded": len(g) + unseen[0], "conceded_per_game": (len(g) + unseen[0]) / len(returns),
            "gap_unknown": unseen[0], "gap_px_median": float(np.median(g)) if len(g) else None,
            "share_gap_0": share(g == 0), "share_gap_up_to_8": share(g <= 8), "share_gap_over_16": share(g > 16),
            "far_paddle_motion": {m: sum(1 for gap, n in zip(gaps, motions) if gap > 16 and n == m)
                                  for m in ("towards", "still", "away")},
            "gaps_px": [round(x, 1) for x in gaps], "paddle_motion": motions}


def plot(out: Path) -> None:
    """`gaps.png`: per file, the share of its conceded points with a gap up to x pixels, sticky and not."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, name in enumerate(Path(f).stem for f in SHIPPED):
        for sticky, style in ((0.25, "-"), (0.0, ":")):
            path = out / f"{name}_sticky{sticky}.json"
            if path.exists():
                r = json.loads(path.read_text())
                g = np.sort(r["gaps_px"])
                ax.step(g, np.arange(1, len(g) + 1) / len(g), style, color=f"C{i}", where="post",
                        label=f"{name}, sticky {sticky} ({r['conceded_per_game']:.1f} conceded per game)")
    ax.axvline(16, color="grey", lw=0.8)
    ax.text(16.5, 0.02, "a paddle's height", color="grey", fontsize=8)
    ax.set(xlabel="gap between the ball's line and the paddle when it went past (screen pixels)",
           ylabel="share of conceded points", xlim=(0, 120), ylim=(0, 1))
    ax.set_title("Where the shipped files concede (30 games each, evaluation protocol)", fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "gaps.png", dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", default=[str(ROOT / "benchmark" / "checkpoints" / f) for f in SHIPPED])
    p.add_argument("--games", type=int, default=30)
    p.add_argument("--seed", type=int, default=7, help="the games' seed is this + 10,000, as in --eval-checkpoint")
    p.add_argument("--out", default=str(ROOT / "benchmark" / "probes" / "misses"))
    p.add_argument("--plot-only", action="store_true", help="redraw gaps.png from the JSON files in --out")
    a = p.parse_args()
    if a.plot_only:
        return plot(Path(a.out))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    print("| file | sticky | mean return | conceded per game | median gap (px) | gap 0 | gap <= 8 | gap > 16 "
          "| of those: paddle towards / still / away |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in a.files:
        for sticky in (0.25, 0.0):
            r = play(Path(f), sticky, a.games, a.seed)
            (out / f"{Path(f).stem}_sticky{sticky}.json").write_text(json.dumps(r) + "\n")
            cells = [r["gap_px_median"], r["share_gap_0"], r["share_gap_up_to_8"], r["share_gap_over_16"]]
            cells = ["-" if c is None else f"{c:.0f}" if i == 0 else f"{c:.0%}" for i, c in enumerate(cells)]
            far = r["far_paddle_motion"]
            cells.append(" / ".join(str(far[m]) for m in ("towards", "still", "away")))
            print(f"| `{r['file']}` | {sticky} | {r['mean_return']:.1f} | {r['conceded_per_game']:.1f} | "
                  + " | ".join(cells) + " |", flush=True)
    plot(out)


if __name__ == "__main__":
    main()
