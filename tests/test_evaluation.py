"""The world-model evaluation on the session's tiny model: its baselines and controllability are
what they claim to be, the JSON, plot and tables render, and benchmarks/tables.py prints the same."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from worldsim.cli import main
from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.evaluation.tables import evaluation_markdown, rollout_table
from worldsim.evaluation.world_model_eval import EvalConfig, reward_signal, rollout_metrics
from worldsim.metrics import psnr_from_mse, squared_error_sums
from worldsim.models.loading import load_world_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def setup(tiny_world_model):
    model, ckpt = load_world_model(tiny_world_model["world_model"])
    data = WindowDataset(EpisodeStore.open(tiny_world_model["data_dir"]), model.cfg.dit.context_frames + 4, "all")
    return model, data


def evaluate(model, data, **kw):
    cfg = EvalConfig(num_windows=6, horizons=[1, 4], batch_size=3, split="all", lpips=False, **kw)
    return rollout_metrics(model, data, cfg, progress=False)


def test_repeat_last_and_tokenizer_floor_are_computed_as_defined(setup):
    model, data = setup
    C = model.cfg.dit.context_frames
    r = evaluate(model, data)
    windows = data.gather(data.distinct_windows(6, torch.Generator().manual_seed(0)))  # the same windows
    last = windows.frames[:, C - 1]
    for h in (1, 4):
        true = windows.frames[:, C + h - 1]
        rep = squared_error_sums(last, true, last)
        assert r["repeat_last"][str(h)]["psnr"] == pytest.approx(psnr_from_mse(float(rep["se"].sum() / rep["n"].sum())))
        # repeat-last is wrong on exactly the moving pixels: its motion PSNR is over those
        assert r["repeat_last"][str(h)]["moving_sharpness"] >= 0
        floor = squared_error_sums(model.decode(model.encode(true)), true, last)
        assert r["tokenizer_floor"][str(h)]["psnr"] == pytest.approx(
            psnr_from_mse(float(floor["se"].sum() / floor["n"].sum())), abs=1e-3)
    assert r["num_windows"] == 6


def test_controllability_is_true_minus_shuffled_and_zero_when_actions_cannot_matter(setup):
    model, data = setup
    r = evaluate(model, data)
    for h in ("1", "4"):
        assert r["controllability_db"][h] == pytest.approx(r["model"][h]["psnr"] - r["shuffled_actions"][h]["psnr"])
    # one window per batch: "shuffling" the actions of a batch of one leaves them as they are
    one = rollout_metrics(model, data, EvalConfig(num_windows=2, horizons=[1, 4], batch_size=1, split="all",
                                                  lpips=False), progress=False)
    assert all(v == 0.0 for v in one["controllability_db"].values())


def test_reward_signal_on_constructed_pays():
    counts = {"-1.0": 20, "0.0": 500, "1.0": 20}
    calibrated = reward_signal({"-1.0": -0.8, "0.0": 0.01, "1.0": 0.7}, counts)
    assert calibrated["tracks"] and calibrated["gaps"] == pytest.approx({"plus_minus_zero": 0.69, "zero_minus_minus": 0.81})
    flat = reward_signal({"-1.0": 0.03, "0.0": 0.02, "1.0": 0.02}, counts)  # Boxing at 1,000 steps: the same pay everywhere
    assert not flat["tracks"] and flat["verdict"] == "does not track the game"
    # paying more where the game took a point away is worse than no signal, even with one good gap
    inverted = reward_signal({"-1.0": 0.5, "0.0": 0.0, "1.0": 0.5}, counts)
    assert not inverted["tracks"]
    few = reward_signal({"-1.0": -1.0, "0.0": 0.0, "1.0": 1.0}, {"-1.0": 3, "0.0": 500, "1.0": 2})
    assert not few["tracks"] and few["verdict"] == "too few rewarded steps to tell" and few["gaps"] == {}
    # a game that never takes points (Breakout): the +1 gap decides alone
    assert reward_signal({"-1.0": None, "0.0": 0.0, "1.0": 0.9}, {"-1.0": 0, "0.0": 500, "1.0": 30})["tracks"]


def test_run_warns_before_training_an_agent_on_a_reward_that_does_not_track(tmp_path, capsys):
    from worldsim.commands import _warn_reward_signal

    counts = {"-1.0": 20, "0.0": 500, "1.0": 20}
    path = tmp_path / "world_model_eval.json"
    for paid, expect in (({"-1.0": 0.0, "0.0": 0.0, "1.0": 0.01}, "warning: the dream's reward does not track"),
                         ({"-1.0": -0.9, "0.0": 0.0, "1.0": 0.9}, None)):
        path.write_text(json.dumps({"rollouts": {"reward_signal": reward_signal(paid, counts)}}))
        _warn_reward_signal(path)
        printed = capsys.readouterr().out
        assert (expect in printed) if expect else printed == ""
    path.write_text(json.dumps({"rollouts": {"reward_signal": reward_signal({"0.0": 0.0}, {"0.0": 500})}}))
    _warn_reward_signal(path)
    assert "too few rewarded steps" in capsys.readouterr().out


def test_rollouts_report_the_reward_signal_and_the_early_split(setup):
    model, data = setup
    r = evaluate(model, data)
    assert set(r["rollout_reward_by_real_sign_early"]) == {"-1.0", "0.0", "1.0"}
    assert sum(r["rollout_real_sign_counts_early"].values()) == 6 * min(4, r["rollout_early_steps"])
    assert r["reward_signal"] == reward_signal(r["rollout_reward_by_real_sign"], r["rollout_real_sign_counts"])


def test_model_figures_are_seeded(setup):
    model, data = setup
    a, b, c = evaluate(model, data), evaluate(model, data), evaluate(model, data, seed=1)
    assert a["model"] == b["model"]
    assert a["model"] != c["model"]


def test_cli_evaluation_writes_json_plot_and_prints_the_table(tiny_world_model, tmp_path, capsys):
    out = tmp_path / "eval"
    code = main(["evaluate-world-model", "model=tiny", f"checkpoint={tiny_world_model['world_model']}",
                 f"data_dir={tiny_world_model['data_dir']}", "split=all", "num_windows=4", "horizons=[1,2]",
                 f"out_dir={out}", "progress=false"])
    assert code == 0
    result = json.loads((out / "world_model_eval.json").read_text())
    assert (out / "world_model_eval.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert rollout_table(result) in printed
    lpips = result["rollouts"]["model"]["1"]["lpips"]
    assert lpips is not None and 0 <= lpips <= 1
    assert f"| model, LPIPS | {lpips:.3f} |" in printed
    assert "sharpness" in printed and evaluation_markdown(result).splitlines()[0] in printed


def test_benchmarks_tables_prints_what_the_json_says(tmp_path, capsys, tiny_world_model):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import tables
    finally:
        sys.path.pop(0)
    result = json.loads((ROOT / "benchmarks/results/world_model_boxing.json").read_text())
    tables.main([str(ROOT / "benchmarks/results/world_model_boxing.json")])
    printed = capsys.readouterr().out
    r = result["evaluation"]["rollouts"]
    for h in r["model"]:
        assert f"{r['model'][h]['psnr']:.2f}" in printed and f"{r['controllability_db'][h]:+.2f}" in printed
    assert f"{result['cpu_training_minutes']:.1f} min" in printed
    dream = json.loads((ROOT / "benchmarks/results/dream_throughput.json").read_text())
    tables.main([str(ROOT / "benchmarks/results/dream_throughput.json")])
    assert f"bf16 {dream['matmul_gflops']['bf16']:.0f} GFLOP/s" in capsys.readouterr().out


def test_markdown_to_html_subset():
    from worldsim.evaluation.html import markdown_to_html

    page = markdown_to_html(["# Title", "", "a **bold** `code` <tag>", "| h | 1 |", "|---|---|", "| x | 2 |",
                             "![alt](p.png)"])
    assert "<h1>Title</h1>" in page and "<b>bold</b>" in page and "<code>code</code>" in page
    assert "&lt;tag&gt;" in page  # text is escaped
    assert "<th>h</th><th>1</th>" in page and "<td>x</td><td>2</td>" in page and "---" not in page
    assert '<img src="p.png" alt="alt">' in page


def test_training_curves_from_jsonl_alone(tmp_path):
    from worldsim.evaluation.plots import plot_training_curves, read_jsonl

    folder = tmp_path / "world_model"
    folder.mkdir()
    rows = [{"step": s, "wm/diffusion_loss": 1.0 / s, "wm/reward_loss": 0.5, "wm/end_loss": 0.1} for s in (10, 20, 30)]
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + '\n{"step": 40, "wm/diff')
    assert [r["step"] for r in read_jsonl(folder / "metrics.jsonl")] == [10, 20, 30]  # the torn line is skipped
    written = plot_training_curves(tmp_path)
    assert written == [folder / "training_curves.png"] and written[0].stat().st_size > 1000
    assert plot_training_curves(tmp_path / "nothing") == []


def test_dream_ends_are_read_at_the_game_ends(setup, monkeypatch):
    """rollout_end_metrics starts each dream h steps before a held-out end: a model whose end probability
    is 1 exactly under the action that ended a life scores every end on time and none early; shifted
    by one step it scores none at the end. Windows where the game goes on count the dream's ends."""
    from worldsim.evaluation.world_model_eval import rollout_end_metrics

    model, base = setup
    C = model.cfg.dit.context_frames
    data = WindowDataset(base.store, C + 4, "all")
    assert rollout_end_metrics(model, data, EvalConfig(horizons=[1, 4], split="all"), False) is None  # no end: Boxing is cut
    last = torch.tensor(data.episode_lengths).cumsum(0) - 1
    data.actions.zero_()
    data.terminated[last - 1] = True  # every episode ends as if a life was lost on its last transition
    data.actions[last - 1] = 1  # ... under action 1, which no other transition takes
    real_rollout = model.rollout

    def rollout(context, prev, actions, generator=None, sampling_steps=None, shift=0):
        out = real_rollout(context, prev, actions, generator, sampling_steps)
        return out._replace(end_probs=(actions.roll(shift, 1) == 1).float())

    monkeypatch.setattr(model, "rollout", rollout)
    cfg = EvalConfig(num_windows=3, horizons=[1, 4], batch_size=2, split="all", lpips=False)
    ends = rollout_end_metrics(model, data, cfg, False)
    assert ends["episodes"] == 3
    for h in ("1", "4"):
        assert ends["by_horizon"][h] == {"end_prob_at_game_end": 1.0, "ends_on_time": 1.0, "ended_before": 0.0}
    monkeypatch.setattr(model, "rollout", lambda *a, **k: rollout(*a, **k, shift=-3))  # the dream ends 3 steps early
    early = rollout_end_metrics(model, data, cfg, False)["by_horizon"]["4"]
    assert early == {"end_prob_at_game_end": 0.0, "ends_on_time": 0.0, "ended_before": 1.0}
    monkeypatch.setattr(model.cfg, "end_within", 4)  # a head trained on "ends within 4 steps" should fire 3 early
    within = rollout_end_metrics(model, data, cfg, False)
    assert within["tolerance"] == 3
    assert within["by_horizon"]["4"] == {"end_prob_at_game_end": 0.0, "ends_on_time": 1.0, "ended_before": 0.0}
    monkeypatch.setattr(model.cfg, "end_within", 1)
    monkeypatch.setattr(model, "rollout", rollout)
    r = rollout_metrics(model, data, EvalConfig(num_windows=6, horizons=[1, 4], batch_size=3, split="all", lpips=False), False)
    windows = data.gather(data.distinct_windows(6, torch.Generator().manual_seed(0)))  # the same windows
    assert r["false_end_rate"] == {"rate": 0.0, "mean_end_prob": 0.0, "horizon": 4,
                                   "windows": int((~windows.terminated[:, C - 1 :].any(1)).sum())}
    monkeypatch.setattr(model, "rollout", lambda *a, **k: real_rollout(*a, **k)._replace(
        end_probs=torch.ones(a[2].shape)))  # a dream that ends at every step
    assert rollout_metrics(model, data, EvalConfig(num_windows=6, horizons=[1, 4], batch_size=3, split="all", lpips=False),
                           False)["false_end_rate"] == {**r["false_end_rate"], "rate": 1.0, "mean_end_prob": 1.0}
    assert "a life ends where the game's does" in evaluation_markdown(
        {"rollouts": {**r, "ends": ends}, "context_frames": C, "sampling_steps": 1,
         "heads": {"transitions": 1, "reward_accuracy": 1.0, "reward_balanced_accuracy": 1.0, "episode_ends": 1,
                   "reward_recall_per_class": {"-1.0": None, "0.0": 1.0, "1.0": None}, "reward_class_counts": {},
                   "end_precision": 1.0, "end_recall": 1.0, "end_f1": 1.0}})


def test_teacher_forced_end_scores_read_the_end_within_target(setup, tmp_path, monkeypatch):
    """head_metrics scores the end head against the target it was trained on (the last end_within
    transitions of an ended episode) and still counts the game's own ends."""
    from dataclasses import replace

    from worldsim.evaluation.world_model_eval import head_metrics
    from worldsim.models.heads import HeadOutput

    model, data = setup
    store = EpisodeStore.create(tmp_path / "ended", data.store.metadata)
    for i, (_, ep) in enumerate(data.store.iter_episodes()):
        terminated = ep.terminated.copy()
        terminated[-1] = True  # every episode ends (a life lost on its last step)
        store.write(replace(ep, terminated=terminated, truncated=ep.truncated & False), index=i)
    names = store.split_names("all")
    monkeypatch.setattr(model, "append", lambda cache, latents, a: HeadOutput(
        torch.tensor([[0.0, 1.0, 0.0]]), torch.ones(1)))  # an end head that always says "it ends"
    scored = []
    for within in (1, 3):
        monkeypatch.setattr(model.cfg, "end_within", within)
        h = head_metrics(model, store, names, False)
        assert h["episode_ends"] == len(names) and h["end_targets"] == within * len(names)
        assert h["end_recall"] == 1.0 and h["end_precision"] == pytest.approx(within * len(names) / h["transitions"])
        scored.append(h["end_precision"])
    assert scored[1] == pytest.approx(3 * scored[0])
    from worldsim.evaluation.tables import heads_summary

    assert "episode end of 'ends within 3 steps' precision" in heads_summary({"heads": h})
    assert "episode end precision" in heads_summary({"heads": {**h, "end_within": 1}})
