"""`worldsim loop` end to end on the real ALE (tiny models): the artifacts and metrics it writes, that a
re-run does nothing twice, that SIGKILL at any moment followed by the same command loses nothing
and never double-counts real steps, and its errors on bad input."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from worldsim.cli import config_dir, main
from worldsim.data.store import EpisodeStore
from worldsim.models.checkpoint import load_checkpoint

PER_ITER = 300


def loop_args(run_dir: Path, iterations: int = 2, **extra: str) -> list[str]:
    args = {
        "model": "tiny", "run_dir": str(run_dir), "env.kwargs.game": "pong", "env.kwargs.max_episode_steps": "100",
        "loop.real_steps": str(PER_ITER * iterations), "loop.iterations": str(iterations), "loop.num_workers": "1",
        "loop.tokenizer_steps_first": "10", "loop.tokenizer_steps_per_iteration": "5",
        "loop.world_model_steps_per_iteration": "10", "loop.agent_steps_per_iteration": "64", "loop.final_episodes": "2",
        "agent.num_envs": "4", "agent.n_steps": "16", "agent.batch_size": "32", "agent.horizon": "7",
        "agent.ckpt_every": "32", "device": "cpu", "progress": "false", **extra,
    }
    return ["loop", *[f"{k}={v}" for k, v in args.items()]]


def check_finished(run: Path, iterations: int) -> dict:
    state = json.loads((run / "loop.json").read_text())
    assert [r["iteration"] for r in state["iterations"]] == list(range(1, iterations + 1))
    # The real-step counter is the store: exactly the budget (one worker records exactly what is asked).
    assert [r["real_steps"] for r in state["iterations"]] == [PER_ITER * k for k in range(1, iterations + 1)]
    assert EpisodeStore.open(run / "data").total_steps() == PER_ITER * iterations
    assert load_checkpoint(run / "tokenizer.pt")["step"] == 10 + 5 * (iterations - 1)
    assert load_checkpoint(run / "world_model.pt")["step"] == 10 * iterations
    assert json.loads((run / "agent.json").read_text())["num_timesteps"] == 64 * iterations
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [PER_ITER * k for k in range(1, iterations + 1)]
    for r in rows:
        assert {"real/steps", "real/episode_return", "tok/val_psnr", "wm/final_diffusion_loss", "rl/dream_steps"} <= set(r)
    return state


def test_loop_end_to_end_and_rerun_does_nothing_twice(tmp_path):
    run = tmp_path / "run"
    assert main(loop_args(run, seed="2")) == 0
    state = check_finished(run, 2)
    # the loop's seed seeds both PPO runs: seeds 0 / 1 / 2 must not train one model-free agent three times
    for name in ("agent.json", "model_free/agent.json"):
        assert json.loads((run / name).read_text())["agent_config"]["seed"] == 2, name
    assert list((run / "tb").glob("events.out.tfevents.*"))
    for name in ("tokenizer/metrics.jsonl", "world_model/metrics.jsonl", "report.md", "report.html",
                 "model_free/agent.json", "model_free/agent.safetensors"):
        assert (run / name).exists(), name
    ev = json.loads((run / "evaluation.json").read_text())
    seeds = ev["dream_agent"]["real"]["seeds"]
    assert len(seeds) == 2 and ev["dream_agent"]["random"]["seeds"] == seeds == ev["model_free"]["real"]["seeds"]
    assert ev["dream_agent"]["protocol"] == "atari100k" and ev["dream_agent"]["hns"] is not None
    assert ev["model_free"]["train"]["real_steps"] >= ev["real_steps"] == 2 * PER_ITER
    # iteration 2 collected with the agent (epsilon-greedy), iteration 1 with the first policy
    store = EpisodeStore.open(run / "data")
    policies = {ep.meta["policy"] for _, ep in store.iter_episodes()}
    assert policies == {"sticky_random", "agent"}
    text = (run / "report.md").read_text()
    assert "## The loop" in text and "## On the real game" in text
    assert "](training_curves.png)" in text and (run / "training_curves.png").exists()  # per-iteration curves
    agent_rows = [json.loads(line) for line in (run / "agent" / "metrics.jsonl").read_text().splitlines()]
    assert agent_rows and all("rl/episode_return" in r for r in agent_rows)  # the agent's return curve

    files = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and "tb" not in p.parts}
    assert main(loop_args(run, seed="2")) == 0  # everything done: nothing is trained, collected or scored again
    assert json.loads((run / "loop.json").read_text()) == state
    changed = [str(p.relative_to(run)) for p, data in files.items()
               if p.read_bytes() != data and not p.name.startswith("report") and p.suffix != ".png"]
    assert not changed, changed


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.npz")}


def test_sigkill_at_any_moment_then_rerun_continues_without_loss_or_double_counting(tmp_path):
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "worldsim.cli", *loop_args(run, iterations=3, **{"loop.model_free": "false"})]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # Kill points: mid-run of iteration 2 (after iteration 1 is recorded), then early in the rerun.
    waits = [lambda: (run / "loop.json").exists() and len(list((run / "data" / "episodes").glob("*.npz"))) > 3,
             lambda: (run / "world_model.pt").exists() and load_checkpoint(run / "world_model.pt")["step"] >= 20]
    kept: dict[str, str] = {}
    for ready in waits:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not ready() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert proc.poll() is None, "the loop finished before the kill point: the test needs a longer run"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        now = _hashes(run / "data" / "episodes")
        assert all(now.get(k) == v for k, v in kept.items()), "episodes written before a kill were lost or changed"
        kept = now
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    check_finished(run, 3)
    final = _hashes(run / "data" / "episodes")
    assert all(final.get(k) == v for k, v in kept.items())
    assert EpisodeStore.open(run / "data").total_steps() == 3 * PER_ITER  # no double counting


def test_loop_config_matches_the_dataclass():
    from worldsim.loop import LoopConfig

    yaml = OmegaConf.to_container(OmegaConf.load(config_dir() / "loop.yaml"))["loop"]
    assert yaml == asdict(LoopConfig())


@pytest.mark.parametrize("override, message", [
    ("loop.real_steps=1", "smaller than one step per iteration"),
    ("loop.agent_steps_per_iteration=10", "less than one PPO rollout"),
    ("env.kwargs.game=not_a_game", "not_a_game"),
    ("loop.first_policy=agent", "first_policy"),
])
def test_bad_loop_settings_fail_before_writing(tmp_path, capsys, override, message):
    run = tmp_path / "run"
    assert main([*loop_args(run), override]) == 1
    assert message in capsys.readouterr().err
    assert not (run / "data").exists()


def test_other_settings_in_the_same_run_dir_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "loop.json").write_text(json.dumps({"version": 1, "fingerprint": {"seed": 99}, "iterations": []}))
    assert main(loop_args(run)) == 1
    assert "other settings" in capsys.readouterr().err
    (run / "loop.json").write_text("{not json")
    assert main(loop_args(run)) == 1
    assert "not valid JSON" in capsys.readouterr().err


def test_loop_with_a_latent_agent(tmp_path):
    """agent.observation=latent: PPO on the dream's latents, the second collection and the final scoring
    play the real game through the world model's tokenizer."""
    run = tmp_path / "run"
    assert main([*loop_args(run), "agent.observation=latent", "loop.model_free=false"]) == 0
    check_finished(run, 2)
    record = json.loads((run / "agent.json").read_text())
    assert record["observation"] == "latent" and record["policy"] == "LatentCnnPolicy"
    evaluation = json.loads((run / "evaluation.json").read_text())
    assert len(evaluation["dream_agent"]["real"]["returns"]) == 2 and "dream" in evaluation["dream_agent"]


def test_runs_from_before_agent_observation_continue(tmp_path):
    """A loop.json written before agent.observation existed (its agents saw pixels) is the same run."""
    from worldsim.agents.ppo import AgentConfig
    from worldsim.loop import _read_state

    agent = asdict(AgentConfig())
    old = {k: v for k, v in agent.items() if k != "observation"}
    (tmp_path / "loop.json").write_text(json.dumps({"version": 1, "fingerprint": {"agent": old}, "iterations": []}))
    assert _read_state(tmp_path, {"agent": agent})["iterations"] == []
    with pytest.raises(ValueError, match="agent differ"):
        _read_state(tmp_path, {"agent": {**agent, "observation": "latent"}})


def test_runs_from_before_pose_memory_continue(tmp_path):
    """A loop.json written before model.memory_span existed (no memory) is the same run; one with memory is not."""
    import yaml

    from worldsim.loop import _read_state

    model = yaml.safe_load((Path(__file__).parents[1] / "configs" / "model" / "small.yaml").read_text())
    old = {k: v for k, v in model.items() if k != "memory_span"}
    (tmp_path / "loop.json").write_text(json.dumps({"version": 1, "fingerprint": {"model": old}, "iterations": []}))
    assert _read_state(tmp_path, {"model": model})["iterations"] == []
    with pytest.raises(ValueError, match="model differ"):
        _read_state(tmp_path, {"model": {**model, "memory_span": 16}})


def test_runs_from_before_end_within_and_dream_reward_continue(tmp_path):
    """A loop.json written before model.end_within, model.end_pos_weight, the other keys the presets
    gained later and agent.dream_reward existed (end heads on the end step weighting it 10x, dreams
    paying the expected sign) is the same run; one with other values is not."""
    import yaml

    from worldsim.agents.ppo import AgentConfig
    from worldsim.loop import _read_state

    model = yaml.safe_load((Path(__file__).parents[1] / "configs" / "model" / "small.yaml").read_text())
    agent = asdict(AgentConfig())
    from worldsim.loop import LATER_MODEL_KEYS

    old_model = copy.deepcopy(model)  # without every key the presets gained later (end_within, encoder, ...)
    for path in LATER_MODEL_KEYS:
        node = old_model
        for key in path[:-1]:
            node = node[key]
        node.pop(path[-1], None)
    old = {"model": old_model, "agent": {k: v for k, v in agent.items() if k != "dream_reward"}}
    (tmp_path / "loop.json").write_text(json.dumps({"version": 1, "fingerprint": old, "iterations": []}))
    assert _read_state(tmp_path, {"model": model, "agent": agent})["iterations"] == []
    with pytest.raises(ValueError, match="model differ"):
        _read_state(tmp_path, {"model": {**model, "end_within": 10}, "agent": agent})
    with pytest.raises(ValueError, match="model differ"):
        _read_state(tmp_path, {"model": {**model, "end_pos_weight": 1.0}, "agent": agent})
    with pytest.raises(ValueError, match="agent differ"):
        _read_state(tmp_path, {"model": model, "agent": {**agent, "dream_reward": "mode"}})


def test_runs_from_before_gradient_accumulation_continue(tmp_path):
    """A loop.json written before world_model_train.grad_accum existed (one micro-batch) is the same run."""
    import yaml

    from worldsim.loop import _read_state

    model = yaml.safe_load((Path(__file__).parents[1] / "configs" / "model" / "small.yaml").read_text())
    old = {**model, "world_model_train": {k: v for k, v in model["world_model_train"].items() if k != "grad_accum"}}
    (tmp_path / "loop.json").write_text(json.dumps({"version": 1, "fingerprint": {"model": old}, "iterations": []}))
    assert _read_state(tmp_path, {"model": model})["iterations"] == []
    with pytest.raises(ValueError, match="model differ"):
        _read_state(tmp_path, {"model": {**model, "world_model_train": {**model["world_model_train"], "grad_accum": 2}}})
