"""What a fixed seed makes each script do, pinned: the first losses and episodes of its smoke run and the games its
shipped weights play. A change meant to keep behaviour (a refactor) must leave these numbers exactly as recorded in
`behaviour.json`; a change meant to alter behaviour records them anew with `RECORD_BEHAVIOUR=1 pytest
tests/test_behaviour.py` and says so in its commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import ROOT, SCRIPTS, as_run, read_progress, run_script, scalars, tensorboard_tags

GOLDEN = Path(__file__).with_name("behaviour.json")
RECORD = os.environ.get("RECORD_BEHAVIOUR") == "1"
FIRST = 20  # losses per tag
SHIPPED = sorted((ROOT / "benchmark" / "checkpoints").glob("*.*"))


def script_of(weights: Path) -> str:
    return next(s for s in SCRIPTS if weights.stem == s.removesuffix(".py") or weights.stem.startswith(
        s.removesuffix(".py") + "_"))


def check(key: str, observed) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    if RECORD:
        golden[key] = observed
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
        return
    assert key in golden, f"nothing recorded for {key}: RECORD_BEHAVIOUR=1 pytest {__file__}"
    assert observed == golden[key], f"{key} changed"


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_makes_the_recorded_first_losses_and_episodes(script, smoke_runs):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = as_run(run_dir)
    losses = {tag: [[step, value] for step, value in scalars(run_dir, tag)[:FIRST]]
              for tag in sorted(tensorboard_tags(run_dir)) if tag.startswith("losses/")}
    episodes = [[int(r["global_step"]), float(r["episodic_return"]), int(r["episodic_length"])]
                for r in read_progress(run_dir)]
    assert losses and episodes
    check(f"smoke/{script}", {"losses": losses, "episodes": episodes})


@pytest.mark.parametrize("weights", SHIPPED, ids=[w.name for w in SHIPPED])
def test_shipped_weights_play_the_recorded_games(weights, tmp_path):
    proc = run_script(ROOT / script_of(weights), "--eval-checkpoint", str(weights), "--eval-episodes", "2",
                      "--run-dir", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check(f"eval/{weights.name}", json.loads((tmp_path / "eval.json").read_text())["returns"])
