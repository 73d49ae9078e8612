"""Train one script on several seeds, one run after another, and record each finished run.

    python benchmark/seeds.py ppo_mlp.py --seeds 1 2 3 --record
    python benchmark/seeds.py ppo_ray.py --label ppo_ray_v4 --record -- --env-id PongNoFrameskip-v4

Each seed trains in `<runs-dir>/<label>/seed<N>` as `python <script> --seed N --run-dir ...`: the script's defaults,
its own budget included, and the flags after `--` (run-control flags only, for a reported run; `--label`, by default
the script's stem, names a batch run with other flags). Two training runs never share the 2 cores: the seeds run in
turn. Running the same command again continues what a stop left unfinished (`--resume`) and leaves finished runs as
they are, so a long batch survives a session's end; a budget larger than a run's (the script's default, or
`--total-timesteps`) continues it from its checkpoint.
With `--record`, each finished run (and one finished before) is recorded as `benchmark/results/<label>_seed<N>/`
(`report.py --collect`), without shipping its weights: one set per script is shipped, chosen among the seeds. A
record of the same run (same curve and eval) is left as it is, its note included.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shlex
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent


def default_budget(script: str) -> int:
    """The script's own `--total-timesteps` default (importing a script runs nothing)."""
    sys.path.insert(0, str(ROOT))
    return importlib.import_module(Path(script).stem).Args().total_timesteps


def finished(run_dir: Path, total: int) -> bool:
    """The run ended (its budget or `--target-return` reached, its final evaluation written) within `total` steps."""
    if not (run_dir / "eval.json").exists():
        return False
    return json.loads((run_dir / "args.json").read_text())["total_timesteps"] >= total


def recorded(run_dir: Path, name: str) -> bool:
    """The run is recorded as it is now (same curve and eval): recording it again would only lose the record's note."""
    dest = BENCH / "results" / name
    return all((dest / f).exists() and (dest / f).read_bytes() == (run_dir / f).read_bytes()
               for f in ("progress.csv", "eval.json"))


def seed_command(script: str, seed: int, run_dir: Path, total: int, extra: list[str]) -> list[str]:
    """The command that starts this seed's run (the bare command, with `total` only where it is not the script's
    default), or continues it to `total` where a stop or a smaller budget left it; run from the repository root
    (paths in it relative to the root where they lie inside, so that the records name no machine's folders)."""
    if (ROOT / run_dir / "args.json").exists() and any((ROOT / run_dir).glob("checkpoint.*")):
        return [sys.executable, script, "--resume", str(run_dir), "--total-timesteps", str(total)]
    budget = [] if total == default_budget(script) else ["--total-timesteps", str(total)]
    return [sys.executable, script, "--seed", str(seed), "--run-dir", str(run_dir), *extra, *budget]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("script", help="an agent script in the repository root, e.g. ppo_mlp.py")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--total-timesteps", type=int, help="each seed's budget in agent steps (default: the script's)")
    p.add_argument("--runs-dir", type=Path, default=Path("runs") / "seeds", help="relative to the repository root")
    p.add_argument("--label", help="names the batch's run dirs and records (default: the script's stem)")
    p.add_argument("--record", action="store_true", help="record each finished run under benchmark/results/")
    argv = sys.argv[1:]
    cut = argv.index("--") if "--" in argv else len(argv)  # the flags after `--` are the script's
    a = p.parse_args(argv[:cut])
    a.extra = argv[cut + 1:]
    if not (ROOT / a.script).is_file():
        raise SystemExit(f"seeds.py: error: {a.script}: no such script in {ROOT}")
    stem = Path(a.script).stem
    label = a.label or stem
    if not (label == stem or label.startswith(stem + "_")):
        raise SystemExit(f"seeds.py: error: --label {label}: must start with {stem}_ (the report groups by script)")
    batch = "python benchmark/seeds.py " + shlex.join(argv)
    total = a.total_timesteps or default_budget(a.script)
    for seed in a.seeds:
        run_dir = a.runs_dir / label / f"seed{seed}"
        if finished(ROOT / run_dir, total):
            print(f"seed {seed}: done ({run_dir})", flush=True)
        else:
            command = seed_command(a.script, seed, run_dir, total, a.extra)
            print(f"seed {seed}: {' '.join(command[1:])}", flush=True)
            code = subprocess.run(command, cwd=ROOT).returncode
            if code != 0:
                raise SystemExit(f"seeds.py: seed {seed} stopped with exit code {code}; run the same command to go on")
        if a.record and not recorded(ROOT / run_dir, f"{label}_seed{seed}"):  # its curve, settings and eval; not its weights
            from report import collect

            collect(ROOT / run_dir, f"{label}_seed{seed}", note=f"Seed {seed} of `{batch}`.", ship=False)


if __name__ == "__main__":
    main()
