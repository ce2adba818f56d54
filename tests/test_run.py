"""Smoke test of the main job, `worldsim run`, with tiny budgets, under both precisions: every stage
runs (the agent stage's vector dream autoresets some sub-envs while others go on) and the report is written."""

from __future__ import annotations

import json
import re

import pytest

from worldsim.cli import main


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_run_pipeline_end_to_end(tmp_path, precision):
    code = main([
        "run", "model=tiny", f"data_dir={tmp_path}/data", f"heldout_dir={tmp_path}/held", f"run_dir={tmp_path}/run",
        "collect.steps=400", "collect.heldout_steps=200", "collect.num_workers=1", "env.kwargs.max_episode_steps=100",
        "model.tokenizer_train.steps=10", "model.world_model_train.steps=10", "agent.steps=64", "agent.num_envs=4",
        "agent.n_steps=16", "agent.batch_size=32", "agent.horizon=7", "score.episodes=2",
        "evaluate.num_windows=4", "evaluate.horizons=[1,2]", "device=cpu", "progress=false", f"precision={precision}",
    ])
    assert code == 0
    run = tmp_path / "run"
    for name in ("tokenizer.pt", "world_model.pt", "dream.mp4", "dream.gif", "agent.json", "agent.safetensors", "agent_eval.json", "evaluation.json", "model_free/agent.json", "report.md", "report.json"):
        assert (run / name).exists(), name
    report = json.loads((run / "report.json").read_text())
    assert report["evaluation"]["rollouts"]["num_windows"] == 4
    assert report["evaluation"]["precision"] == precision
    assert report["agent"]["precision"] == precision
    real = report["real_game"]
    assert real["real_steps"] >= 400 and real["episodes"] == 2
    assert real["model_free"]["train"]["real_steps"] >= real["real_steps"]  # whole PPO rollouts: at least as many
    for r in (real["dream_agent"]["real"], real["dream_agent"]["random"], real["model_free"]["real"]):
        assert r["seeds"] == real["dream_agent"]["real"]["seeds"] and len(r["returns"]) == 2
    text = (run / "report.md").read_text()
    assert "## Agent trained in the dream" in text and "LPIPS" in text
    assert "## On the real game" in text and "model-free (PPO on the real game" in text
    page = (run / "report.html").read_text()
    sources = re.findall(r'src="([^"]+)"', page)
    assert {"dream.gif", "dream.mp4", "eval/world_model_eval.png", "tokenizer/training_curves.png",
            "world_model/training_curves.png", "agent/training_curves.png",
            "model_free/agent/training_curves.png"} <= set(sources)
    assert all((run / s).exists() for s in sources), "the page may link only files of the run"
    assert page.count("<table>") >= 1 and "Resolved config" in page
    (run / "report.html").unlink()
    for plot in ("eval/world_model_eval.png", "world_model/training_curves.png", "agent/training_curves.png"):
        (run / plot).unlink()  # plots are regenerated from their JSON / JSONL alone
    assert main(["report", f"run_dir={run}"]) == 0 and (run / "report.html").read_text() == page
    assert all((run / s).exists() for s in sources)
