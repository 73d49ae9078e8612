"""The repository stands alone and its shipped files are what the bare commands make (CONTRACT.md, sections 1 and 7)."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict
from pathlib import Path

import pytest

from conftest import ROOT, SHIPPED, load_script, script_of

# Flags that say where a run writes, how it is watched, when it stops early or how it is replayed, never what it
# learns: a reported run is the bare command plus `--seed` and these.
RUN_CONTROL = {"exp_name", "seed", "run_dir", "resume", "save_every", "target_return", "eval_checkpoint",
               "eval_episodes", "capture_video", "track", "wandb_project_name", "cuda"}
# A folder of some machine: a home, the root's home, a temporary or a workspace folder, a Windows drive.
MACHINE_PATH = re.compile(r"(?<![\w.])(/home/|/root/|/tmp/|/work/|/Users/|[A-Z]:\\)")


def tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return [ROOT / name for name in listed.split("\0") if name]


def tracked_text() -> dict[Path, str]:
    texts = {}
    for path in tracked_files():
        data = path.read_bytes()
        if b"\0" not in data[:8192]:
            texts[path] = data.decode("utf-8", errors="replace")
    return texts


def test_no_tracked_file_points_outside_the_repository_or_at_a_machine_folder():
    texts = {str(path.relative_to(ROOT)): text for path, text in tracked_text().items() if path != Path(__file__)}
    found = {name: sorted({m.group(0) for m in MACHINE_PATH.finditer(text)}) for name, text in texts.items()}
    assert not {name: hits for name, hits in found.items() if hits}
    outside = [name for name, text in texts.items() if "../" + "shared" in text]
    assert not outside, f"these name the team's folder beside the repository, which a clone lacks: {outside}"


def test_no_archive_is_tracked():
    archives = [p.name for p in tracked_files() if p.name.endswith((".whl", ".tar.gz", ".zip", ".egg"))]
    assert not archives, archives


@pytest.mark.parametrize("weights", SHIPPED, ids=[w.name for w in SHIPPED])
def test_a_shipped_file_was_made_at_its_scripts_defaults(weights):
    """Its saved settings, as its script reads them (a flag added later reads as the value the run had), are the
    script's defaults but for run-control flags, so `python <script> --seed N` remakes it; its run dir, if any, is
    relative to the repository."""
    script = load_script(script_of(weights))
    saved = script.load_checkpoint(str(weights), "--eval-checkpoint")[0]["args"]
    defaults = asdict(script.Args())
    differ = {k: (saved.get(k), defaults.get(k)) for k in set(saved) | set(defaults)
              if k not in RUN_CONTROL and saved.get(k, "missing") != defaults.get(k, "missing")}
    assert not differ, f"saved, default: {differ}"
    assert not any(Path(saved[k]).is_absolute() for k in ("run_dir", "resume") if saved.get(k)), saved
