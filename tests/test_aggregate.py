"""rliable-style aggregates (worldsim.agents.aggregate): HNS from the reference table, IQM / mean /
median as rliable defines them, seeded stratified-bootstrap intervals, input checks, the plots."""

from __future__ import annotations

import importlib
import json
import sys

import numpy as np
import pytest
import scipy.stats

from worldsim.agents import aggregate as agg
from worldsim.envs.atari_scores import REFERENCE_SCORES

GAMES = ("pong", "boxing", "breakout")
RAW = {  # method -> game -> 3 seeds
    "dream": {"pong": [-10.0, 0.0, 14.6], "boxing": [3.0, 12.1, 30.0], "breakout": [1.7, 10.0, 60.0]},
    "random": {"pong": [-20.7, -20.0, -21.0], "boxing": [0.1, 1.0, -1.0], "breakout": [1.7, 1.0, 2.0]},
}
REPS = 300  # small: the tests check bookkeeping, not coverage


def expected_hns(method: str) -> np.ndarray:
    cols = []
    for g in GAMES:
        random, human = REFERENCE_SCORES[g]
        cols.append([(s - random) / (human - random) for s in RAW[method][g]])
    return np.array(cols).T  # (runs, games)


@pytest.fixture(scope="module")
def result() -> dict:
    return agg.aggregate_scores(RAW, reps=REPS, seed=3)


def test_hns_and_per_game_entries(result):
    assert result["games"] == list(GAMES) and result["runs"] == 3 and result["reps"] == REPS
    assert "stratified-bootstrap 95%" in result["note"]
    for method in RAW:
        hns = expected_hns(method)
        for j, g in enumerate(GAMES):
            entry = result["methods"][method]["per_game"][g]
            np.testing.assert_allclose(entry["hns"], hns[:, j])
            assert entry["mean_hns"] == pytest.approx(hns[:, j].mean())
            assert entry["raw"] == RAW[method][g]
    assert result["methods"]["dream"]["per_game"]["pong"]["hns"][2] == pytest.approx(1.0)  # the human score


def test_point_estimates_follow_rliable_definitions(result):
    hns = expected_hns("dream")
    est = result["methods"]["dream"]
    assert est["iqm"]["point"] == pytest.approx(scipy.stats.trim_mean(hns.ravel(), 0.25))
    assert est["mean"]["point"] == pytest.approx(hns.mean())
    assert est["mean"]["point"] == pytest.approx(hns.mean(axis=1).mean())  # same when every game has all runs
    # rliable's median is the median over games of the per-game means, not over per-run means:
    assert est["median"]["point"] == pytest.approx(np.median(hns.mean(axis=0)))
    assert np.median(hns.mean(axis=0)) != pytest.approx(np.median(hns.mean(axis=1)))  # the data tells them apart


def test_intervals_contain_points_and_are_seeded(result):
    for entry in result["methods"].values():
        for key in agg.AGGREGATES:
            lo, hi = entry[key]["ci95"]
            assert lo <= entry[key]["point"] <= hi
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    again = agg.aggregate_scores(RAW, reps=REPS, seed=3)
    np.testing.assert_array_equal(np.random.get_state()[1], before)  # the global RNG is left as it was
    assert again == result
    other = agg.aggregate_scores(RAW, reps=REPS, seed=4)
    assert other["methods"]["dream"]["iqm"]["ci95"] != result["methods"]["dream"]["iqm"]["ci95"]
    alone = agg.aggregate_scores({"dream": RAW["dream"]}, reps=REPS, seed=3)  # independent of the other methods
    assert alone["methods"]["dream"] == result["methods"]["dream"]
    assert json.loads(json.dumps(result)) == result


def test_unknown_game_is_refused():
    with pytest.raises(ValueError, match=r"'tetris'.*alien"):
        agg.aggregate_scores({"dream": {"tetris": [1.0, 2.0]}}, reps=10)


def test_mismatched_games_and_runs_are_refused():
    other = {**RAW, "model_free": {"pong": [0.0] * 3, "boxing": [0.0] * 3}}
    with pytest.raises(ValueError, match=r"'model_free'.*missing \['breakout'\]"):
        agg.aggregate_scores(other, reps=10)
    short = {**RAW, "model_free": {**RAW["dream"], "boxing": [1.0, 2.0]}}
    with pytest.raises(ValueError, match=r"fewer seeds in model_free/boxing: 2"):
        agg.aggregate_scores(short, reps=10)
    with pytest.raises(ValueError, match="No methods"):
        agg.aggregate_scores({}, reps=10)


def test_missing_rliable_says_how_to_install(monkeypatch):
    for name in ("rliable", "rliable.library", "rliable.metrics"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import rliable` raise ImportError
    module = importlib.reload(agg)  # the module itself imports without rliable
    with pytest.raises(ImportError, match=r"pip install -e \.\[eval\]"):
        module.aggregate_scores(RAW, reps=10)


def test_plots_are_drawn_from_the_json_alone(result, tmp_path):
    import matplotlib.image

    loaded = json.loads(json.dumps(result))
    for fn, name in ((agg.plot_aggregates, "aggregates.png"), (agg.plot_performance_profile, "profile.png")):
        path = fn(loaded, tmp_path / name)
        assert path == tmp_path / name and path.stat().st_size > 0
        image = matplotlib.image.imread(path)
        assert image.ndim == 3 and image.shape[0] > 50
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aggregates.png", "profile.png"]  # no temp files left


def test_performance_profile_counts_runs_above_tau(result):
    profile = agg.performance_profile(result, [-1.0, 0.5, 100.0])
    hns = expected_hns("dream")
    assert profile["dream"] == [1.0, pytest.approx(np.mean(hns > 0.5)), 0.0]


def test_atari100k_keeps_recorded_runs_when_their_directories_are_gone(tmp_path, monkeypatch):
    """A later session on a fresh machine has none of the run directories: the runs the result
    file already holds stay in it (and are not run again), the others are listed as missing."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    atari100k = importlib.import_module("atari100k")
    out = tmp_path / "atari100k_cpu.json"
    kept = {"pong/seed0": {"game": "pong", "seed": 0, "dream_agent": -21.0}}
    out.write_text(json.dumps({"runs": kept}))
    result = atari100k.summarise(tmp_path / "fresh_root", ["pong", "boxing"], [0], out)
    assert result["runs"] == kept and result["missing_runs"] == ["boxing/seed0"] and result["partial"]
    assert json.loads(out.read_text())["runs"] == kept
    assert atari100k.recorded_runs(out) == kept and atari100k.recorded_runs(tmp_path / "none.json") == {}


def test_atari100k_records_a_variant_recipe_and_keeps_it_on_a_summary_only_call(tmp_path, monkeypatch):
    """A variant run (--extra overrides, its own --out) says in its result file what it changed and the
    exact command; a later summary-only call (extra=None) keeps those overrides."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parents[1] / "benchmarks"))
    atari100k = importlib.import_module("atari100k")
    out, extra = tmp_path / "variant.json", ["loop.world_model_steps_per_iteration=1000"]
    first = atari100k.summarise(tmp_path / "root", ["pong"], [0], out, extra)
    assert first["extra"] == extra and first["recipe"][-1] == extra[0]
    assert first["recipe"][:-1] == atari100k.RECIPE
    assert first["command"].endswith(f"--out {out} --extra {extra[0]}")
    again = atari100k.summarise(tmp_path / "root", ["pong"], [0], out)
    assert again["extra"] == extra and again["command"] == first["command"]
    plain = atari100k.summarise(tmp_path / "root", ["pong"], [0], tmp_path / "plain.json", [])
    assert plain["extra"] == [] and plain["recipe"] == atari100k.RECIPE
