"""Shared fixtures: a tiny real Atari Boxing store and a tiny trained world model, built once per session.

``boxing_store`` -> Path of an episode store (900 steps of Boxing, episodes cut at 150 steps, so
there are several episodes and both a train and a val split).

``tiny_world_model`` -> dict(data_dir, tokenizer, world_model, run_dir) of Paths: a tokenizer and a
world model trained on ``boxing_store`` with the ``model=tiny`` preset through the real CLI entry
points (``{run_dir}/tokenizer.pt``, ``{run_dir}/world_model.pt``). Treat both as read-only: copy
the files first if a test needs to change or resume them.
"""

from __future__ import annotations

import os
from pathlib import Path

# Headless everywhere: pygame (render_mode="human") and pyglet (MiniWorld) must never look for a screen.
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("PYGLET_HEADLESS", "True")
# One thread per process: the suite starts subprocesses (env workers, torchrun ranks), and several
# processes each spinning two OpenMP threads on two cores slow everything down many times over.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest


@pytest.fixture(scope="session")
def boxing_store(tmp_path_factory) -> Path:
    from worldsim.data.collect import collect

    data_dir = tmp_path_factory.mktemp("boxing") / "store"
    collect("atari", {"game": "boxing", "max_episode_steps": 150}, str(data_dir), 900, num_workers=1, progress=False)
    return data_dir


@pytest.fixture(scope="session")
def tiny_world_model(boxing_store, tmp_path_factory) -> dict[str, Path]:
    from worldsim.cli import main

    run_dir = tmp_path_factory.mktemp("tiny_run")
    common = ["model=tiny", f"data_dir={boxing_store}", f"run_dir={run_dir}", "progress=false", "device=cpu"]
    assert main(["train-tokenizer", *common]) == 0, "train-tokenizer failed (see stderr)"
    assert main(["train-world-model", *common]) == 0, "train-world-model failed (see stderr)"
    paths = {"data_dir": boxing_store, "tokenizer": run_dir / "tokenizer.pt",
             "world_model": run_dir / "world_model.pt", "run_dir": run_dir}
    assert paths["tokenizer"].exists() and paths["world_model"].exists()
    return paths


@pytest.fixture(scope="session")
def dream_agent(tiny_world_model, tmp_path_factory):
    """``dream_agent(name, *overrides)`` -> Path of an agent file trained by ``worldsim train-agent`` for 32
    dream steps in a copy of the tiny world model (``world_model.pt`` beside the agent), scored on one
    20-step real game."""
    import shutil

    from worldsim.cli import main

    def train(name: str, *overrides: str) -> Path:
        run = tmp_path_factory.mktemp(name)
        ckpt = run / "world_model.pt"
        shutil.copy(tiny_world_model["world_model"], ckpt)
        out = run / "agent.json"
        assert main(["train-agent", f"checkpoint={ckpt}", f"data_dir={tiny_world_model['data_dir']}", f"out={out}",
                     "progress=false", "agent.steps=32", "agent.num_envs=2", "agent.n_steps=16", "agent.batch_size=32",
                     "agent.horizon=8", "agent.eval_episodes=1", "agent.eval_max_steps=20", *overrides]) == 0
        return out

    return train
