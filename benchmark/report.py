"""Rebuild benchmark/RESULTS.md and the learning-curve PNGs from the committed run records.

Besides each run's and each script's seeds' curves, `benchmark/plots/sticky.png` and `deterministic.png` put every
script beside published Pong curves on one protocol; those come from `benchmark/anchors/` (its README.md says whose).

    python benchmark/report.py                                   # table + plots from benchmark/results/
    python benchmark/report.py --collect runs/dqn_pong_s1 --name dqn_cnn --note "..."   # record a run first
    python benchmark/report.py --evaluate dqn_cnn                # replay its shipped weights under the protocol
    python benchmark/report.py --ship ppo_ray_seed2 --evaluate ppo_ray_seed2   # a seed's weights become the shipped set

Runs recorded by `benchmark/seeds.py --record` (`<label>_seed<N>`) also get a table per script and setting: each
seed's steps and wall time to each level of its curve, its final mean-100 and own evaluation, and the median, min
and max seed by agent steps (one that never reached a level counting as slower than any that did).

A run record is `benchmark/results/<name>/`: the run's progress.csv, eval.json, args.json,
commands.txt and a meta.json (hardware, date, note) that `--collect` writes. `--collect` also copies the
run's final weights to `benchmark/checkpoints/<name>.<pt|npz>` (they must be at most 8 MB), so the
score can be checked with `python <script> --eval-checkpoint benchmark/checkpoints/<name>.<ext>`.
`--evaluate` plays the shipped weights under the one evaluation protocol, without and with sticky actions,
and records each result with its command as `eval_sticky_<p>.json` beside the run's own `eval.json`.
Throughput comes from `benchmark/throughput.json` (made by `benchmark/throughput.py`).
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parent
RESULTS, PLOTS, CHECKPOINTS = BENCH / "results", BENCH / "plots", BENCH / "checkpoints"
ANCHORS = BENCH / "anchors"  # published curves and scores drawn beside ours (its README.md says whose)
RUN_FILES = ["progress.csv", "eval.json", "args.json", "commands.txt"]
MAX_WEIGHTS_BYTES = 8 * 1024 * 1024
PROTOCOL_EPISODES = 30
PROTOCOL_STICKY = (0.0, 0.25)  # deterministic, and Machado et al.'s sticky actions (ALE/Pong-v5's default)


def code_version() -> str:
    """The commit the collected run is recorded at, and whether the working tree differed from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=BENCH.parent, capture_output=True, text=True).stdout.strip()

    return f"{git('rev-parse', '--short', 'HEAD')}{' + uncommitted changes' if git('status', '--porcelain') else ''}"


def float16_copy(weights: Path) -> Path:
    """The final model with its float weights stored as float16 (evaluation computes in float32 again)."""
    import torch

    final = torch.load(weights, map_location="cpu", weights_only=True)
    final["model"] = {k: v.half() if v.is_floating_point() else v for k, v in final["model"].items()}
    half = weights.with_name(weights.stem + "_float16.pt")
    torch.save(final, half)
    return half


def final_weights(run_dir: Path, float16: bool) -> Path:
    """A finished run's final weights as they would ship (float16 on request), at most 8 MB."""
    weights = next(run_dir / f for f in ("final_model.pt", "final_model.npz") if (run_dir / f).exists())
    if float16:
        weights = float16_copy(weights)
    if weights.stat().st_size > MAX_WEIGHTS_BYTES:
        raise SystemExit(f"{weights} is {weights.stat().st_size / 2**20:.1f} MB, over the 8 MB limit: "
                         "ship it as float16 (--float16)")
    return weights


def write_meta(dest: Path, meta: dict) -> None:
    (dest / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def in_repo(text: str) -> str:
    """`text` with every absolute path inside the repository written relative to its root, so that a record names no
    machine's folders (a path outside the repository stays as it is)."""
    return text.replace(f"{BENCH.parent}/", "")


def collect(run_dir: Path, name: str, note: str, float16: bool = False, ship: bool = True) -> None:
    """Record a finished run as `benchmark/results/<name>/`; with `ship`, its final weights go to
    `benchmark/checkpoints/<name>.*` too (one set per script is shipped: a seed is recorded without them). Paths
    inside the repository are recorded relative to its root (`in_repo`), in meta.json and in the copied files."""
    from throughput import hardware

    weights = final_weights(run_dir, float16) if ship else None
    dest = RESULTS / name
    dest.mkdir(parents=True, exist_ok=True)
    for f in RUN_FILES:
        if (run_dir / f).exists():
            (dest / f).write_bytes(in_repo((run_dir / f).read_bytes().decode()).encode())  # bytes: CRLF stays
    shipped = CHECKPOINTS / f"{name}{weights.suffix}" if weights is not None else None
    if shipped:
        CHECKPOINTS.mkdir(exist_ok=True)
        shutil.copy(weights, shipped)
    write_meta(dest, {"hardware": hardware(), "date": time.strftime("%Y-%m-%d"), "note": note,
                      "run_dir": in_repo(str(Path(run_dir).resolve())),
                      "code": code_version(), "weights": str(shipped.relative_to(BENCH.parent)) if shipped else None})
    print(f"recorded {run_dir} as {dest}")


def ship_seed(name: str, float16: bool = False) -> None:
    """Make a recorded seed's final weights its script's one shipped set, `benchmark/checkpoints/<script>.<ext>`.
    The records that shipped weights of that script before keep their scores; their files go."""
    dest = RESULTS / name
    meta = json.loads((dest / "meta.json").read_text())
    weights = final_weights(BENCH.parent / meta["run_dir"], float16)  # relative to the repository root, or absolute
    stem = Path(script_of(dest)).stem
    for other in sorted(RESULTS.glob(f"{stem}*/meta.json")):
        old = json.loads(other.read_text())
        if other.parent != dest and old.get("weights"):
            (BENCH.parent / old["weights"]).unlink(missing_ok=True)
            write_meta(other.parent, {**old, "weights": None, "note": f"{old['note']} Its weights are no longer "
                                      f"shipped (one set per script: the {name} record's); its scores above were "
                                      "measured on them."})
    shipped = CHECKPOINTS / f"{stem}{weights.suffix}"
    shutil.copy(weights, shipped)
    write_meta(dest, {**meta, "weights": str(shipped.relative_to(BENCH.parent))})
    print(f"shipped {weights} as {shipped}")


def script_of(dest: Path) -> str:
    """The script a run record was made with, from its first command (`<time> python <script> ...`)."""
    return (dest / "commands.txt").read_text().split()[2]


def protocol_command(script: str, weights: str, sticky: float) -> str:
    return (f"python {script} --eval-checkpoint {weights} --eval-episodes {PROTOCOL_EPISODES} "
            f"--eval-sticky {sticky:g}")


def evaluate_shipped(name: str) -> None:
    """Play a record's shipped weights under the evaluation protocol, once per sticky-action setting."""
    dest = RESULTS / name
    weights = json.loads((dest / "meta.json").read_text())["weights"]
    for sticky in PROTOCOL_STICKY:
        command = protocol_command(script_of(dest), weights, sticky)
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run([sys.executable, *command.split()[1:], "--run-dir", tmp], cwd=BENCH.parent, check=True)
            report = json.loads((Path(tmp) / "eval.json").read_text())
        (dest / f"eval_sticky_{sticky:g}.json").write_text(json.dumps({**report, "command": command}, indent=2) + "\n")


def stored_dtype(weights: Path) -> str:
    """The float type the shipped weights are stored in (evaluation always computes in float32)."""
    if weights.suffix == ".npz":
        with np.load(weights) as data:
            return ", ".join(sorted({str(data[k].dtype) for k in data.files if data[k].dtype.kind == "f"}))
    import torch

    model = torch.load(weights, map_location="cpu", weights_only=True)["model"]
    return ", ".join(sorted({str(v.dtype).removeprefix("torch.") for v in model.values() if v.is_floating_point()}))


def env_sticky(env_id: str) -> float:
    """The sticky-action probability an env id plays with (ale-py's default where the id sets none)."""
    import ale_py
    import gymnasium as gym

    gym.register_envs(ale_py)
    return gym.spec(env_id).kwargs.get("repeat_action_probability", 0.25)


def protocol_score(dest: Path, sticky: float) -> str:
    path = dest / f"eval_sticky_{sticky:g}.json"
    if not path.exists():
        return "not evaluated"
    ev = json.loads(path.read_text())
    lost = sum(r == -21 for r in ev["returns"])
    return f"{ev['mean']:.2f} ± {ev['std']:.2f} ({ev['episodes']}{f'; {lost} lost 0-21' if lost else ''})"


def protocol_table() -> list[str]:
    lines = ["Every shipped file is played by its script's `--eval-checkpoint` under one protocol: whole games "
             f"({PROTOCOL_EPISODES}), each of up to 16 eval envs playing a fixed share of them (short games are not "
             "favoured), each game after 0-30 random no-ops, the eval seed the script's `--seed` (1) + 10,000, "
             "computed in float32 whatever the file stores; the policy-gradient agents sample their policy, DQN "
             "acts epsilon-greedy at 0.05 (Nature DQN's evaluation). Each file is played on the deterministic game "
             "(sticky 0) and with sticky actions (0.25: ALE/Pong-v5's default, Machado et al. 2018), whatever it "
             "was trained on: the second shows whether a policy plays Pong or replays a memorised game.", "",
             "| run | trained on (sticky actions) | policy at evaluation | weights stored as | commands |",
             "|---|---|---|---|---|"]
    for dest in sorted(p for p in RESULTS.glob("*") if (p / "meta.json").exists()):
        meta, args = json.loads((dest / "meta.json").read_text()), json.loads((dest / "args.json").read_text())
        if not meta.get("weights"):
            continue
        script = script_of(dest)
        sticky = env_sticky(args["env_id"])
        policy = "epsilon-greedy, epsilon 0.05" if script == "dqn_cnn.py" else "samples its policy"
        commands = "<br>".join(f"`{protocol_command(script, meta['weights'], p)}`" for p in PROTOCOL_STICKY)
        lines.append(f"| {dest.name} | {args['env_id']} ({sticky:g}) | {policy} | "
                     f"{stored_dtype(BENCH.parent / meta['weights'])} | {commands} |")
    return lines


def read_rows(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k: np.array([float(r[k]) for r in rows]) for k in rows[0]} if rows else {}


def mean_last(values: np.ndarray, window: int = 100) -> np.ndarray:
    """Mean of the last `window` values at each point (fewer at the start)."""
    csum = np.cumsum(np.insert(values, 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (csum[idx] - csum[lo]) / (idx - lo)


# One colour per script on every figure, and the goal levels of each script's mean-100 training return that its curves
# are drawn against.
COLOURS = {"dqn_cnn": "C0", "ppo_mlp": "C1", "ppo_ray": "C2", "pg_numpy": "C3"}
GOALS = {"dqn_cnn": (15, 19), "ppo_mlp": (14,), "ppo_ray": (14,), "pg_numpy": (5,)}
ANCHOR_COLOURS = ("C4", "C5", "C6", "C7", "C8", "C9")  # the published curves (benchmark/anchors/), in file order


def stem_of(name: str) -> str | None:
    """The script a record or seed label belongs to, by its name (`<script>` or `<script>_...`)."""
    return next((s for s in COLOURS if name == s or name.startswith(s + "_")), None)


def draw_goals(ax, stems, labelled: bool = True) -> None:
    """The scripts' goal levels as thin grey lines, named just outside the right edge of the axes (below the line
    where another goal lies close above it)."""
    goals: dict[float, list[str]] = {}
    for stem in stems:
        for goal in GOALS.get(stem, ()):
            goals.setdefault(goal, []).append(stem)
    for goal, names in goals.items():
        ax.axhline(goal, color="grey", lw=0.8, ls=(0, (5, 3)), zorder=1)
        if labelled:
            crowded = any(0 < other - goal <= 2 for other in goals)
            ax.annotate(f"{goal:+g} {', '.join(names)}", (1, goal), xycoords=("axes fraction", "data"),
                        xytext=(4, -1 if crowded else 1), textcoords="offset points", va="top" if crowded else "bottom",
                        fontsize=9, color="dimgrey")


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def steps_and_hours_figure(steps_label: str, hours_label: str, stems=()):
    """Every run plot here: game score (Pong's whole range) against agent steps (left) and wall time (right), one y
    axis, 0 marked, and the goals of the scripts in `stems`."""
    fig, axes = pyplot().subplots(1, 2, figsize=(11, 4), sharey=True)
    axes[0].set_ylim(-22, 22)
    for ax, label in zip(axes, (steps_label, hours_label)):
        ax.axhline(0, color="grey", lw=0.5)
        draw_goals(ax, stems, labelled=ax is axes[-1])
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    return fig, axes


def save_figure(fig, name: str, folder: Path | None = None, dpi: int = 90) -> Path:
    fig.tight_layout()
    folder = folder or PLOTS
    folder.mkdir(exist_ok=True)
    out = folder / f"{name}.png"
    fig.savefig(out, dpi=dpi, bbox_inches="tight")  # legends and labels outside the axes stay on the picture
    pyplot().close(fig)
    return out


def over_runs(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> dict[str, np.ndarray]:
    """Pointwise median, min and max over runs of their curves (x, y), each interpolated on `grid` and counted only
    from its first to its last x; `runs`: how many count at each grid point (NaN statistics where none does)."""
    ys = np.array([np.where((grid >= x[0]) & (grid <= x[-1]), np.interp(grid, x, y), np.nan) for x, y in curves])
    runs = (~np.isnan(ys)).sum(axis=0)
    stats = {"runs": runs}
    for stat, f in (("median", np.nanmedian), ("min", np.nanmin), ("max", np.nanmax)):
        stats[stat] = np.full(len(grid), np.nan)
        stats[stat][runs > 0] = f(ys[:, runs > 0], axis=0)
    return stats


def draw_median(ax, curves: list[tuple[np.ndarray, np.ndarray]], colour: str, label: str, ls: str = "-",
                spread: bool = True) -> None:
    """The pointwise median of the curves (`over_runs`) where every curve counts, so up to the shortest one's end;
    with `spread`, their min-max band shaded and, past that end, the longer curves themselves dotted."""
    grid = np.linspace(min(x[0] for x, _ in curves), max(x[-1] for x, _ in curves), 1000)
    stats = over_runs(curves, grid)
    every = stats["runs"] == len(curves)
    ax.plot(grid, np.where(every, stats["median"], np.nan), color=colour, ls=ls, lw=2, label=label)
    if spread:
        ax.fill_between(grid, stats["min"], stats["max"], where=every, color=colour, alpha=0.2, lw=0)
        end = min(x[-1] for x, _ in curves)
        for x, y in curves:
            ax.plot(x[x >= end], y[x >= end], color=colour, ls=":", lw=1.2)


def plot(name: str, rows: dict[str, np.ndarray], env_id: str) -> Path:
    fig, axes = steps_and_hours_figure("agent steps (millions)", "wall time (hours)", [stem_of(name)])
    curve = mean_last(rows["episodic_return"])
    for ax, x in zip(axes, (rows["global_step"] / 1e6, rows["wall_time_s"] / 3600)):
        ax.scatter(x, rows["episodic_return"], s=4, alpha=0.3, label="episode")
        ax.plot(x, curve, color="C3", label="mean of last 100")
    axes[0].set_ylabel("episodic return (game score)")
    axes[0].legend(loc="lower right")
    fig.suptitle(f"{name}: Pong, {env_id}, {len(curve)} episodes")
    return save_figure(fig, name)


def hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


# The levels each script's seeds are timed to: the mean of the last 100 training games (pg_numpy: Karpathy's running
# mean, the seed's measure), the first of them the threshold a seed must reach to count as a success.
SEED_LEVELS = {"dqn_cnn": ("mean-100", (15, 0, 10, 19)), "ppo_mlp": ("mean-100", (14, 0, 5, 10, 19)),
               "ppo_ray": ("mean-100", (14, 0, 5, 10, 19)), "pg_numpy": ("running_mean", (5, -10, 0))}


def first_reached(rows: dict[str, np.ndarray], measure: str, level: float) -> tuple[int, float] | None:
    """(agent step, wall seconds) at the first episode where the measure reached `level`; mean-100 counts only once
    100 games are in it. None: never reached."""
    if measure == "mean-100":
        curve, ok = mean_last(rows["episodic_return"]), np.arange(len(rows["episodic_return"])) >= 99
    else:
        curve, ok = rows[measure], np.ones(len(rows[measure]), bool)
    hit = np.flatnonzero(ok & (curve >= level))
    return (int(rows["global_step"][hit[0]]), float(rows["wall_time_s"][hit[0]])) if len(hit) else None


def plot_curves(runs: dict[str, dict[str, np.ndarray]], title: str, name: str, folder: Path | None = None,
                stems=(), median: bool = False) -> Path:
    """Several runs' mean-100 curves on one pair of axes (seeds of one script, or a probe's settings), with the
    goals of `stems` and, on request, the runs' pointwise median."""
    fig, axes = steps_and_hours_figure("agent steps (millions)", "wall time (hours)", stems)
    for ax, key, unit in zip(axes, ("global_step", "wall_time_s"), (1e6, 3600)):
        curves = [(rows[key] / unit, mean_last(rows["episodic_return"])) for rows in runs.values()]
        if median and len(curves) > 1:  # under the runs' own lines, which it follows in stretches
            draw_median(ax, curves, "black", f"median of {len(curves)} seeds", spread=False)
        for i, (label, curve) in enumerate(zip(runs, curves)):
            ax.plot(*curve, color=f"C{i}", lw=1, label=label)
    axes[0].set_ylabel("mean return of the last 100 training games")
    axes[0].legend(loc="lower right")
    fig.suptitle(title)
    return save_figure(fig, name, folder)


def seed_of(record: str) -> int:
    """The seed of a seed record's name, `<label>_seed<N>`."""
    return int(record.rpartition("_seed")[2])


def plot_seeds(label: str, runs: dict[str, dict[str, np.ndarray]], env_id: str) -> str:
    """Every seed's mean-100 curve of one script (and setting) on one pair of axes: how much the seed matters."""
    labelled = {f"seed {seed_of(name)}": rows for name, rows in runs.items()}
    return plot_curves(labelled, f"{label}: every seed, Pong, {env_id}", f"{label}_seeds", stems=[stem_of(label)],
                       median=True).name


# The two figures that put every script beside published curves: the env id their runs trained on and its
# sticky-action probability (ALE/Pong-v5's default 0.25, Machado et al. 2018).
PROTOCOLS = {"sticky": ("ALE/Pong-v5", 0.25), "deterministic": ("PongNoFrameskip-v4", 0.0)}


def protocol_groups(env_id: str, seeds_only: bool) -> dict[tuple[str, bool], list[Path]]:
    """The records trained on `env_id` by (label, seeded): a script's seed records (`<label>_seed<N>`) together, any
    other record alone; with `seeds_only`, only the seeds at a script's defaults (the label is the script)."""
    groups: dict[tuple[str, bool], list[Path]] = {}
    for d in sorted(RESULTS.glob("*")):
        if not (d / "progress.csv").exists() or json.loads((d / "args.json").read_text())["env_id"] != env_id:
            continue
        label, _, seed = d.name.rpartition("_seed")
        seeded = seed.isdigit()
        if not seeds_only or (seeded and label in COLOURS):
            groups.setdefault((label, True) if seeded else (d.name, False), []).append(d)
    return groups


def dopamine_curve(file: str, agent: str) -> dict[str, np.ndarray]:
    """One Dopamine agent's per-iteration training returns over its runs (benchmark/anchors/README.md)."""
    with open(ANCHORS / "dopamine_pong_sticky.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["file"], r["agent"]) == (file, agent)]
    return {k: np.array([float(r[k]) for r in rows]) for k in ("agent_steps", "runs", "mean", "min", "max")}


def published(kind: str, env_id: str, sticky: float) -> list[dict]:
    """The published curves or points (`kind`) of benchmark/anchors/anchors.json made on this env and sticky-action
    probability."""
    anchors = json.loads((ANCHORS / "anchors.json").read_text())[kind]
    return [a for a in anchors if (a["env_id"], a["sticky"]) == (env_id, sticky)]


def plot_protocol(name: str) -> Path:
    """Our mean-100 training curves on one protocol beside the published ones for it (benchmark/anchors/): with
    sticky actions the seeds at each script's defaults, on the deterministic game every run recorded on it."""
    plt = pyplot()
    env_id, sticky = PROTOCOLS[name]
    ours = protocol_groups(env_id, seeds_only=sticky > 0)
    with plt.rc_context({"font.size": 11}):
        fig, ax = plt.subplots(figsize=(9, 5))
        drawn: dict[str, int] = {}  # per script, its groups drawn so far: each of them in a line style of its own
        for (label, seeded), records in ours.items():
            curves = [(rows["global_step"] / 1e6, mean_last(rows["episodic_return"]))
                      for rows in (read_rows(d / "progress.csv") for d in records)]
            stem = stem_of(label)
            drawn[stem] = drawn.get(stem, -1) + 1
            draw_median(ax, curves, COLOURS.get(stem, "black"), f"{label}: " +
                        (f"median of {len(curves)} seeds" if len(curves) > 1 else "1 run"),
                        ls=("-", "--", ":")[drawn[stem] % 3])
        curves = published("curves", env_id, sticky)
        assert len(curves) <= len(ANCHOR_COLOURS), "more published curves than colours for them"
        for colour, c in zip(ANCHOR_COLOURS, curves):
            d = dopamine_curve(c["file"], c["agent"])
            ax.fill_between(d["agent_steps"] / 1e6, d["min"], d["max"], color=colour, alpha=0.12, lw=0)
            ax.plot(d["agent_steps"] / 1e6, d["mean"], color=colour, ls="--", lw=1.5,
                    label=f"{c['label']}: mean of {d['runs'].min():.0f} runs")
        points = published("points", env_id, sticky)
        for i, p in enumerate(points):  # points at one step side by side, 0.25M steps apart
            ax.errorbar(p["agent_steps"] / 1e6 + (i - (len(points) - 1) / 2) * 0.25, p["mean"], yerr=p["std"],
                        fmt="Ds^vPX"[i % 6], color="black", ms=6, capsize=3,
                        label=f"{p['label']}: {p['mean']:.2f} ± {p['std']:.2f}")
        ax.axhline(0, color="grey", lw=0.5)
        draw_goals(ax, [s for s in COLOURS if any(stem_of(label) == s for label, _ in ours)])
        ax.set(xlim=(0, 10.6), ylim=(-21.5, 21.5), xlabel="agent steps (millions; 4 frames each)",
               ylabel="training return (game score)")
        ax.grid(alpha=0.3)
        fig.suptitle(f"Pong, {env_id}: " + ("sticky actions 0.25" if sticky else "deterministic, no sticky actions"),
                     fontweight="bold")
        ax.set_title("ours: mean of the last 100 training games, " +
                     ("median of the seeds at the defaults, min-max shaded; dotted: seeds that ran longer"
                      if sticky else "one line per recorded setting; Dopamine's curves are sticky-only, so none here"),
                     fontsize="small")
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=2, fontsize="small", frameon=False)
        return save_figure(fig, name, dpi=110)


def protocol_figures() -> list[str]:
    lines = ["Our training curves beside published ones, one figure per protocol (where each published curve comes "
             "from: `benchmark/anchors/README.md`):"]
    for name, (env_id, sticky) in PROTOCOLS.items():
        lines += ["", f"![Mean return of the last 100 training games against agent steps on {env_id} (sticky actions "
                  f"{sticky:g}), our runs and published ones](plots/{plot_protocol(name).name})"]
    return lines


def seed_groups(stem: str) -> dict[str, list[Path]]:
    """The seed records of one script, by label (`<stem>_seed<N>`, or `<stem>_<setting>_seed<N>` for seeds run with
    a setting other than the defaults, `seeds.py --label`), each list in seed order."""
    groups: dict[str, list[Path]] = {}
    for d in RESULTS.glob(f"{stem}*_seed*"):
        label, _, seed = d.name.rpartition("_seed")
        if seed.isdigit() and (label == stem or label.startswith(stem + "_")):
            groups.setdefault(label, []).append(d)
    return {label: sorted(ds, key=lambda d: seed_of(d.name)) for label, ds in sorted(groups.items())}


def own_eval(dest: Path) -> str:
    """The run's own final evaluation: mean ± std over its games, and the sticky-action probability it played at."""
    e = json.loads((dest / "eval.json").read_text())
    return f"{e['mean']:.2f} ± {e['std']:.2f} ({e['episodes']}, sticky {e['sticky']:g})"


def over_seeds(reached: list[tuple[int, float] | None], stat: str) -> str:
    """The seed at the median, min or max agent steps to a level (its wall time beside it; the slower middle one for
    an even count). Ranked by steps, the anchors' measure: hours depend on what else shared the machine. A seed that
    never reached the level counts as slower than any that did: the median is reached only when more than half of the
    seeds got there."""
    r = ranked_seed(reached, stat)
    hits = sum(1 for x in reached if x)
    return (f"{r[0]:,} steps, {hours(r[1])}" if r else "not reached") + f" ({hits}/{len(reached)} reached)"


def ranked_seed(reached: list[tuple[int, float] | None], stat: str) -> tuple[int, float] | None:
    """(steps, wall seconds) of the seed at the median, min or max agent steps to a level, as `over_seeds` ranks
    them."""
    hits = sorted((r for r in reached if r), key=lambda r: r[0])
    ranked = hits + [None] * (len(reached) - len(hits))
    return {"min": ranked[0], "max": ranked[-1], "median": ranked[len(ranked) // 2]}[stat]


def seeds_table() -> list[str]:
    """Per script and setting, every seed recorded by `benchmark/seeds.py --record`: steps and wall time to each
    level, the final mean-100 and own evaluation, and the median, min and max seed per level (`over_seeds`). A seed
    that never reached a level stays listed."""
    lines = []
    for stem, (measure, (threshold, *others)) in SEED_LEVELS.items():
        levels = sorted((threshold, *others))
        for label, records in seed_groups(stem).items():
            runs = {d.name: read_rows(d / "progress.csv") for d in records}
            env_id = json.loads((records[0] / "args.json").read_text())["env_id"]
            png = plot_seeds(label, runs, env_id)
            seeds = f"{len(records)} seed{'s' * (len(records) > 1)}"
            lines += [f"### {label}: {seeds} on {env_id}, {measure} to each level ([curves](plots/{png}))",
                      "", "| seed | " + " | ".join(f"{measure} {level:+g}" + " (threshold)" * (level == threshold)
                                               for level in levels) +
                      " | final mean-100 | own final eval (games, sticky) |", "|---|" + "---|" * (len(levels) + 2)]
            reached = {level: [first_reached(rows, measure, level) for rows in runs.values()] for level in levels}
            for i, (name, rows) in enumerate(runs.items()):
                cells = [f"{r[0]:,} steps, {hours(r[1])}" if r else "not reached" for r in
                         (reached[level][i] for level in levels)]
                evaluated = own_eval(RESULTS / name) if (RESULTS / name / "eval.json").exists() else "-"
                lines.append(f"| {seed_of(name)} | " + " | ".join(cells) +
                             f" | {mean_last(rows['episodic_return'])[-1]:.2f} | {evaluated} |")
            for stat in ("median", "min", "max") if len(runs) > 1 else ():
                cells = [over_seeds(reached[level], stat) for level in levels]
                lines.append(f"| {stat} | " + " | ".join(cells) + " | | |")
            lines.append("")
    return lines


ANCHOR_LEVELS = (10, 15, 19)


def anchor_table() -> list[str]:
    """Agent steps to each level of the mean-100 training return with sticky actions: each script's seeds at its
    defaults (the median seed, `over_seeds`) beside the published curves of benchmark/anchors/ (the first iteration
    whose mean over runs reaches the level) and their values at our budgets, then the published points."""
    env_id, sticky = PROTOCOLS["sticky"]
    lines = ["| agent | " + " | ".join(f"{level:+g}" for level in ANCHOR_LEVELS) + " | at the budget |",
             "|---|" + "---|" * (len(ANCHOR_LEVELS) + 1)]
    budgets = []
    for stem in COLOURS:
        records = seed_groups(stem).get(stem, [])
        if not records or json.loads((records[0] / "args.json").read_text())["env_id"] != env_id:
            continue
        runs = [read_rows(d / "progress.csv") for d in records]
        budget = min(int(rows["global_step"][-1]) for rows in runs)
        budgets.append(budget)
        medians = [ranked_seed([first_reached(rows, "mean-100", level) for rows in runs], "median")
                   for level in ANCHOR_LEVELS]
        cells = [f"{r[0]:,} steps" if r else f"not by {budget / 1e6:.1f}M" for r in medians]
        final = np.median([mean_last(rows["episodic_return"])[-1] for rows in runs])
        over = f"median of {len(runs)} seeds" if len(runs) > 1 else f"seed {seed_of(records[0].name)} only"
        lines.append(f"| `{stem}.py`, {over} | " + " | ".join(cells) +
                     f" | {final:+.1f} at {budget / 1e6:.1f}M |")
    for c in published("curves", env_id, sticky):
        d = dopamine_curve(c["file"], c["agent"])
        cells = [next((f"{s:,.0f} steps" for s, m in zip(d["agent_steps"], d["mean"]) if m >= level),
                      f"not by {d['agent_steps'][-1] / 1e6:g}M") for level in ANCHOR_LEVELS]
        at = ", ".join(f"{np.interp(b, d['agent_steps'], d['mean']):+.1f} at {b / 1e6:.1f}M" for b in sorted(set(
            round(b, -5) for b in budgets)))
        lines.append(f"| {c['label']}, mean of {d['runs'].min():.0f} runs | " + " | ".join(cells) + f" | {at} |")
    for p in published("points", env_id, sticky):
        lines.append(f"| {p['label']} | " + " | " * len(ANCHOR_LEVELS) +
                     f"{p['mean']:.1f} ± {p['std']:.1f} at {p['agent_steps'] / 1e6:g}M |")
    return lines


def score_table() -> list[str]:
    lines = ["| run | eval, deterministic (mean ± std, games) | eval, sticky actions 0.25 | final mean-100 train "
             "return | agent steps | frames | wall time | SPS | hardware | command | date | note |", "|" + "---|" * 12]
    records = sorted(p for p in RESULTS.glob("*") if (p / "progress.csv").exists())
    for dest in records:
        rows = read_rows(dest / "progress.csv")
        meta = json.loads((dest / "meta.json").read_text())
        args = json.loads((dest / "args.json").read_text())
        png = plot(dest.name, rows, args["env_id"])
        steps, wall = int(rows["global_step"][-1]), float(rows["wall_time_s"][-1])
        frames = steps * args.get("frameskip", 4)  # dqn_cnn always skips 4; the others say so in their args
        commands = (dest / "commands.txt").read_text().strip().splitlines() if (dest / "commands.txt").exists() else []
        command = "<br>".join(f"`{c.split(' ', 1)[1]}`" for c in commands) or "(not recorded)"
        scores = " | ".join(protocol_score(dest, sticky) for sticky in PROTOCOL_STICKY)
        lines.append(f"| [{dest.name}](plots/{png.name}) | {scores} | {mean_last(rows['episodic_return'])[-1]:.2f} | "
                     f"{steps:,} | {frames:,.0f} | {hours(wall)} | {steps / wall:.0f} | {meta['hardware']} | "
                     f"{command} (seed {args['seed']}) | {meta['date']} | {meta['note']} |")
    return lines + (["", *protocol_figures()] if records else [])


LINKS_GBIT = (10, 1)  # the network links the scaling model assumes: a typical cloud cluster, and a slow one
MODEL_WORKERS = (1, 2, 8, 32, 128)


def scaling_model(b: dict, epochs: int = 4, steps_per_worker: int = 512) -> list[str]:
    """ppo_ray.py's time per iteration and agent steps/s for N workers, from the measured parts of one iteration
    (`throughput.py`'s ppo_ray_breakdown) and an assumed link speed; a model, not a measurement."""
    ms, mb, grad_mb = b["ms"], b["weights_mb"], b["gradient_mb"]
    rounds = 1 + epochs  # the rollout round and one gradient round per epoch (--num-minibatches 1)
    fixed = (steps_per_worker * ms["rollout_per_agent_step"] + epochs * (ms["worker_gradient"] + ms["learner_step"])
             + rounds * ms["ray_hand_off_2_workers"])
    per_worker = epochs * ms["average_2_gradients"] / 2  # the learner's sum grows with the workers

    def link_ms(gbit: float) -> float:  # one worker's share of the learner's link per iteration: new weights out
        return epochs * (mb + grad_mb) / (gbit * 125) * 1000  # for the rollout and epochs 2.., gradients back

    def iteration_ms(workers: int, gbit: float) -> float:
        return fixed + workers * (per_worker + link_ms(gbit))

    head = "| workers | " + " | ".join(f"{g} Gbit/s: ms per iteration | {g} Gbit/s: agent steps/s"
                                         for g in LINKS_GBIT) + " |"
    rows = [head, "|" + "---|" * (1 + 2 * len(LINKS_GBIT))]
    for n in MODEL_WORKERS:
        cells = [f"{iteration_ms(n, g):,.0f} | {n * steps_per_worker / iteration_ms(n, g) * 1000:,.0f}"
                 for g in LINKS_GBIT]
        rows.append(f"| {n} | " + " | ".join(cells) + " |")
    half = {g: fixed / (per_worker + link_ms(g)) for g in LINKS_GBIT}
    return [f"**Scaling model, not a measurement.** One iteration at the defaults is one rollout round (each worker "
            f"plays {steps_per_worker} agent steps) and {epochs} gradient rounds. Measured parts (same run, ms): "
            + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()) + f"; the weights are {mb:.1f} MB, a worker's gradient "
            f"{grad_mb:.2f} MB (W1's rows of the pixels its samples lit, and W2). "
            "Assumed: each worker on a node of its own, so its rollout and gradient cost what they cost here; the "
            "measured hand-off per round stays; every worker's copy of the weights and its gradient cross the "
            "learner's one link in turn (no broadcast tree, no reduction on the way); the learner sums one more "
            "gradient per worker.", "", *rows, "",
            "It stops scaling where the learner's link and its summing of gradients cost as much per iteration as "
            "the workers' own work: there each worker runs at half the pace it would with the learner to itself, at "
            + " and ".join(f"about {half[g]:.0f} workers on {g} Gbit/s" if half[g] >= 2 else
                           f"{half[g]:.1f} workers on {g} Gbit/s (from the start)" for g in LINKS_GBIT)
            + ". Past that, the weights would have to go out as one broadcast and the gradients be summed per node "
            "before they travel (Ray collectives or torch.distributed's all-reduce)."]


def throughput_table() -> list[str]:
    path = BENCH / "throughput.json"
    if not path.exists():
        return ["No throughput run recorded yet: `python benchmark/throughput.py`."]
    data = json.loads(path.read_text())
    cases, meta = data["cases"], data["meta"]
    sb3_case = cases.get("sb3_dqn", {})
    lines = [f"Measured on {meta['hardware']} with `python benchmark/throughput.py` (`--only <case>` reruns one "
             "case). Whole-loop SPS is steady state: the timing window excludes start-up; its size is in the row.",
             "", "| case | agent steps/s | vs SB3 DQN | timing window | what ran | measured |", "|---|---|---|---|---|---|"]
    for name, c in cases.items():
        if "sps" not in c and "error" not in c:
            continue  # the breakdown, below the table
        if "sps" not in c:
            lines.append(f"| {name} | failed: {c['error'][:80]} | | | | {c.get('date', '')} |")
            continue
        same_run_as_sb3 = "sps" in sb3_case and c.get("run") == sb3_case.get("run")
        ratio = f"{c['sps'] / sb3_case['sps']:.2f}x" if same_run_as_sb3 else ""  # ratios only within one run
        window = f"{c['steps']:,} steps" + (f", {c['seconds']:.0f} s" if "seconds" in c else "")
        lines.append(f"| {name} | {c['sps']:,.0f} | {ratio} | {window} | {c.get('env_prefix', '')}{c.get('command', '')} | "
                     f"{c.get('run', c.get('date', ''))}: {c.get('note', '')} |")
    pg, pg_env = cases.get("pg_numpy", {}), cases.get("env_pg_8", {})
    if "sps" in pg and "sps" in pg_env and pg.get("run") == pg_env.get("run"):
        lines += ["", f"pg_numpy.py's whole loop runs at {pg['sps'] / pg_env['sps']:.0%} of its env alone "
                  f"({pg['sps']:,.0f} against {pg_env['sps']:,.0f} agent steps/s, one run)."]
    from throughput import DQN_DEFAULTS_BEFORE

    now, before = cases.get("dqn_cnn_defaults", {}), cases.get("dqn_cnn_defaults_before", {})
    if "sps" in now and "sps" in before and now.get("run") == before.get("run"):
        lines += ["", f"dqn_cnn.py at its defaults against its previous defaults (32 samples every 4 agent steps, 4 "
                  f"envs, float32: `{' '.join(DQN_DEFAULTS_BEFORE)}`): **{now['sps'] / before['sps']:.2f}x** "
                  f"({before['sps']:,.0f} -> {now['sps']:,.0f} agent steps/s, one run)."]
    lines += ppo_ray_scaling(cases)
    for name, script in (("dqn_breakdown", "dqn_cnn.py"), ("ppo_mlp_breakdown", "ppo_mlp.py")):
        if "ms_per_agent_step" in cases.get(name, {}):
            ms = cases[name]["ms_per_agent_step"]
            lines += ["", f"Where {script}'s time goes, ms per agent step ({cases[name]['setting']}): " +
                      ", ".join(f"{k} {v:.2f}" for k, v in ms.items()) + f". Measured {cases[name]['run']}."]
    steps = cases.get("dqn_gradient_steps", {}).get("ms_per_gradient_step")
    if steps:
        lines += ["", "dqn_cnn.py's compiled gradient step, ms per step (per 32 samples): " + ", ".join(
            f"{k.replace('_', ' ')} {v:.1f} ({v * 32 / int(k.split('_')[1]):.1f})" for k, v in steps.items()) +
            f". Measured {cases['dqn_gradient_steps']['run']}."]
    if "ms" in cases.get("ppo_ray_breakdown", {}):
        lines += ["", *scaling_model(cases["ppo_ray_breakdown"])]
    return lines


def ppo_ray_scaling(cases: dict) -> list[str]:
    """1 -> 2 workers at the defaults and with 4 minibatches, each beside the seed's Ray example, from one run."""
    lines = []
    for suffix, what in (("", "defaults"), ("_4minibatches", "`--num-minibatches 4`, 4x the gradient rounds")):
        one, two = cases.get(f"ppo_ray_1worker{suffix}", {}), cases.get(f"ppo_ray_2workers{suffix}", {})
        if "sps" in one and "sps" in two and one.get("run") == two.get("run"):
            lines += ["", f"ppo_ray.py ({what}) from 1 to 2 workers: **{two['sps'] / one['sps']:.2f}x** "
                      f"({one['sps']:,.0f} -> {two['sps']:,.0f} agent steps/s, one run)."]
    seed1, seed2 = cases.get("seed_ray_1actor", {}), cases.get("seed_ray_2actors", {})
    ours = cases.get("ppo_ray_2workers", {})
    if "sps" in seed1 and "sps" in seed2 and "sps" in ours and seed2.get("run") == ours.get("run"):
        lines += ["", f"The seed's Ray example, run here in the same call (`benchmark/ray_pong_seed.py`: REINFORCE, "
                  f"one whole Pong-v0 game per gradient, frame skip 2-4): {seed1['sps']:,.0f} agent steps/s with 1 "
                  f"actor, {seed2['sps']:,.0f} with 2 ({seed2['sps'] / seed1['sps']:.2f}x). Per worker, 2 workers: "
                  f"ppo_ray.py {ours['sps'] / 2:,.0f} agent steps/s, the seed's actors {seed2['sps'] / 2:,.0f} "
                  f"({ours['sps'] / seed2['sps']:.2f}x the seed's pace; ppo_ray.py's steps are 4 emulator frames "
                  "each, the seed's 3 on average)."]
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--collect", type=Path, help="a run dir to record under benchmark/results/ first")
    p.add_argument("--name", help="the record's name, with --collect")
    p.add_argument("--note", default="", help="what a reader must know about the run, with --collect")
    p.add_argument("--float16", action="store_true",
                   help="with --collect or --ship: ship the weights as float16 (half the MB)")
    p.add_argument("--ship", metavar="NAME", help="ship a recorded seed's final weights as its script's one set")
    p.add_argument("--evaluate", nargs="+", default=[], metavar="NAME",
                   help="records whose shipped weights to play under the evaluation protocol first")
    p.add_argument("--probe", nargs="+", metavar="ARG", help="only plot a probe: its folder, a title, then "
                   "LABEL=progress.csv pairs; writes <folder>/curves.png with its script's goals, nothing else")
    a = p.parse_args()
    if a.probe:
        folder, title, *pairs = a.probe
        runs = {label: read_rows(Path(csv_path)) for label, csv_path in (pair.split("=", 1) for pair in pairs)}
        stem = stem_of(Path(folder).name)  # a probe folder is named after its script: draw that script's goals
        print(f"wrote {plot_curves(runs, title, 'curves', Path(folder), stems=[stem] if stem else [])}")
        return
    if a.collect:
        collect(a.collect, a.name or a.collect.name, a.note, a.float16)
    if a.ship:
        ship_seed(a.ship, a.float16)
    for name in a.evaluate:
        evaluate_shipped(name)
    intro = (BENCH / "RESULTS.intro.md").read_text() if (BENCH / "RESULTS.intro.md").exists() else ""
    text = "\n".join([intro.rstrip(), "", *anchor_table(), "", "## Scores", "", *score_table(), "", "## Evaluation protocol", "",
                      *protocol_table(), "", *(["## Seeds", "", *seeds] if (seeds := seeds_table()) else []),
                      "## Throughput", "",
                      *throughput_table(), ""])
    (BENCH / "RESULTS.md").write_text("<!-- made by `python benchmark/report.py`; edit RESULTS.intro.md -->\n" +
                                      text.lstrip())
    print(f"wrote {BENCH / 'RESULTS.md'}")


if __name__ == "__main__":
    main()
