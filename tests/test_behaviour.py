"""What a fixed seed makes each script do, pinned: the first losses and episodes of its smoke run and the games its
shipped weights play. Integers (steps, scores, lengths) must match `behaviour.json` exactly; losses within `LOSS_TOL`,
since float rounding differs between CPUs and torch's kernels (an AMD EPYC and an Intel Xeon with AVX-512 give the
same games and first losses apart from the 6th significant digit on). A change meant to keep behaviour (a refactor)
leaves the pins as recorded; a change meant to alter behaviour records them anew with `RECORD_BEHAVIOUR=1 pytest
tests/test_behaviour.py` and says so in its commit."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import (ROOT, SCRIPTS, SHIPPED, as_run, read_progress, run_script, scalars, script_of, smoke_flags,
                      tensorboard_tags)

GOLDEN = Path(__file__).with_name("behaviour.json")
RECORD = os.environ.get("RECORD_BEHAVIOUR") == "1"
# Losses pinned per tag: the first five, before chaos amplifies rounding (DQN's drift from ~1e-7 to ~1e-2 by the
# 15th logged loss with torch's kernels forced onto another instruction set).
FIRST = 5
# A loss must lie within LOSS_TOL of its pin, relative to the pin or, for a pin near zero, to the tag's mean
# magnitude. Forcing torch's kernels (ATEN_CPU_CAPABILITY=default or avx2, ONEDNN_MAX_CPU_ISA=SSE41) moved the
# first five by at most 2.5e-4 so measured; a learning rate 1.2x the default moves most of them by 0.1-0.5
# (test_a_one_flag_change_falls_outside_the_loss_tolerance).
LOSS_TOL = 1e-2


def recorded(key: str):
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    assert key in golden, f"nothing recorded for {key}: RECORD_BEHAVIOUR=1 pytest {__file__}"
    return golden[key]


def record(key: str, observed) -> None:
    golden = json.loads(GOLDEN.read_text()) if GOLDEN.exists() else {}
    golden[key] = observed
    GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")


def loss_differences(observed: dict, pinned: dict) -> list[str]:
    """Where the losses leave the pin: a tag or a logging step that differs, or a value outside the tolerance."""
    if sorted(observed) != sorted(pinned):
        return [f"tags {sorted(observed)} != {sorted(pinned)}"]
    out = []
    for tag, pins in pinned.items():
        if [step for step, _ in observed[tag]] != [step for step, _ in pins]:
            out.append(f"{tag}: logged at other steps")
            continue
        scale = sum(abs(want) for _, want in pins) / len(pins)
        out += [f"{tag} at step {step}: {got!r}, pinned {want!r}" for (step, got), (_, want) in zip(observed[tag], pins)
                if abs(got - want) > LOSS_TOL * max(abs(want), scale)]
    return out


def smoke_behaviour(run_dir: Path) -> dict:
    """The first losses per tag (TensorBoard) and every episode (progress.csv) of a smoke run's dir."""
    losses = {tag: [[step, value] for step, value in scalars(run_dir, tag)[:FIRST]]
              for tag in sorted(tensorboard_tags(run_dir)) if tag.startswith("losses/")}
    episodes = [[int(r["global_step"]), float(r["episodic_return"]), int(r["episodic_length"])]
                for r in read_progress(run_dir)]
    assert losses and episodes
    return {"losses": losses, "episodes": episodes}


@pytest.mark.parametrize("script", SCRIPTS)
def test_smoke_run_makes_the_recorded_first_losses_and_episodes(script, smoke_runs):
    proc, run_dir = smoke_runs(script)
    assert proc.returncode == 0, proc.stderr[-3000:]
    observed = smoke_behaviour(as_run(run_dir))  # as the run left it: other tests resume the run itself
    if RECORD:
        return record(f"smoke/{script}", observed)
    pinned = recorded(f"smoke/{script}")
    assert observed["episodes"] == pinned["episodes"], f"smoke/{script}: the episodes changed"
    differences = loss_differences(observed["losses"], pinned["losses"])
    assert not differences, differences


def test_a_one_flag_change_falls_outside_the_loss_tolerance(tmp_path):
    """The tolerance still catches a change of behaviour: with Adam's learning rate moved by a fifth, most of the
    pinned losses of the smoke run leave it (a clipped fraction of 0 and the entropy of a near-uniform policy stay)."""
    script = "ppo_mlp.py"
    run_dir = tmp_path / "run"
    proc = run_script(ROOT / script, *smoke_flags(script), "--learning-rate", "3e-4", "--run-dir", str(run_dir),
                      cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    pinned = recorded(f"smoke/{script}")["losses"]
    assert len(loss_differences(smoke_behaviour(run_dir)["losses"], pinned)) > sum(map(len, pinned.values())) / 2


@pytest.mark.parametrize("weights", SHIPPED, ids=[w.name for w in SHIPPED])
def test_shipped_weights_play_the_recorded_games(weights, tmp_path):
    proc = run_script(ROOT / script_of(weights), "--eval-checkpoint", str(weights), "--eval-episodes", "2",
                      "--run-dir", str(tmp_path), timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    returns = json.loads((tmp_path / "eval.json").read_text())["returns"]
    if RECORD:
        return record(f"eval/{weights.name}", returns)
    assert returns == recorded(f"eval/{weights.name}"), f"eval/{weights.name} changed"
