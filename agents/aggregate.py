"""Aggregate Atari 100k results over games × seeds the way rliable reports them.

    result = aggregate_scores({"dream": {"pong": [s0, s1, s2], ...}, "random": {...}})
    plot_aggregates(result, "aggregates.png"); plot_performance_profile(result, "profile.png")

Input: per method, per game, one raw real-game mean return per run (= per seed). Each score is
human-normalized, HNS = (score - random) / (human - random) with the reference table of
:mod:`worldsim.envs.atari_scores`, and each method becomes a ``(runs, games)`` HNS matrix. Reported
per method, as in rliable (Agarwal et al. 2021, "Deep Reinforcement Learning at the Edge of the
Statistical Precipice", ``google-research/rliable``), each with a 95% stratified-bootstrap
percentile interval (``rliable.library.get_interval_estimates``: runs are resampled with
replacement within each game, the games stay fixed):

* IQM: the interquartile mean of all runs × games scores (``rliable.metrics.aggregate_iqm``,
  ``scipy.stats.trim_mean(·, 0.25)`` of the flattened matrix);
* mean: the mean of all scores (``aggregate_mean``: mean over games of the per-game means);
* median: the median over games of the per-game means across runs (``aggregate_median``).

rliable 1.2.0 draws its bootstrap indices from NumPy's *global* RNG (``np.random.choice``) and
ignores its ``random_state`` argument, so the bootstrap runs under a seeded global RNG whose
previous state is restored afterwards; each method is resampled with the same seed. The plots need
only the returned JSON dict (plus matplotlib), never the raw inputs or rliable.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from worldsim.envs.atari_scores import human_normalized_score
from worldsim.io import atomic_write_with

AGGREGATES = ("iqm", "median", "mean")  # the order of the panels and of the bootstrapped vector
TITLES = {"iqm": "IQM", "median": "Median", "mean": "Mean"}
NOTE = ("Human-normalized scores; point estimates with rliable stratified-bootstrap 95% percentile "
        "intervals (runs resampled within each game), Agarwal et al. 2021.")

Scores = Mapping[str, Mapping[str, Sequence[float]]]  # method -> game -> one score per run (seed)


def _rliable() -> tuple[Any, Any]:
    try:
        from rliable import library, metrics
    except ImportError as e:  # also arch 7.x failing to import under pandas 3
        raise ImportError(f"aggregate_scores needs rliable ({e}). Install it with `pip install -e .[eval]` "
                          "(or `pip install rliable==1.2.0 'pandas<3'`).") from e
    return library, metrics


@contextmanager
def _seeded_global_numpy(seed: int) -> Iterator[None]:
    """rliable samples from ``np.random`` directly: seed it for the block, then put the old state back."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def check_scores(results: Scores) -> tuple[list[str], int]:
    """The games (in the first method's order) and runs per game; every method must have the same."""
    if not results:
        raise ValueError("No methods to aggregate: pass {method: {game: [score per seed, ...]}}.")
    first, games = next(iter(results)), list(next(iter(results.values())))
    if not games:
        raise ValueError(f"Method {first!r} has no games.")
    for method, per_game in results.items():
        if set(per_game) != set(games):
            missing, extra = sorted(set(games) - set(per_game)), sorted(set(per_game) - set(games))
            raise ValueError(f"Method {method!r} does not have the games of {first!r}: missing {missing}, "
                             f"extra {extra}. Every method must be scored on the same games.")
    counts = {(m, g): len(results[m][g]) for m in results for g in games}
    runs = max(counts.values())
    short = [f"{m}/{g}: {n}" for (m, g), n in counts.items() if n < runs]
    if short:
        raise ValueError(f"Every method needs the same number of runs (seeds) on every game, here {runs}; "
                         f"fewer seeds in {', '.join(short)}.")
    return games, runs


def hns_matrix(per_game: Mapping[str, Sequence[float]], games: Sequence[str]) -> np.ndarray:
    """Human-normalized scores of one method, ``(runs, games)``; unknown games raise ValueError."""
    hns = np.array([[human_normalized_score(g, float(s)) for s in per_game[g]] for g in games]).T
    if not np.isfinite(hns).all():
        raise ValueError(f"Non-finite scores in games {[g for g, ok in zip(games, np.isfinite(hns).all(0)) if not ok]}.")
    return hns  # (runs, games)


def aggregate_scores(results: Scores, reps: int = 2000, seed: int = 0) -> dict[str, Any]:
    """IQM, median and mean HNS per method with stratified-bootstrap 95% intervals (``reps``
    resamples, seeded). Returns a JSON-serialisable dict: ``games``, ``runs``, ``reps``, ``seed``,
    ``note`` and ``methods[name] = {iqm|median|mean: {point, ci95: [lo, hi]}, per_game: {game:
    {hns, mean_hns, raw}}}``."""
    games, runs = check_scores(results)
    matrices = {m: hns_matrix(per_game, games) for m, per_game in results.items()}
    library, metrics = _rliable()
    funcs = {"iqm": metrics.aggregate_iqm, "median": metrics.aggregate_median, "mean": metrics.aggregate_mean}

    def aggregate(x: np.ndarray) -> np.ndarray:
        return np.array([funcs[k](x) for k in AGGREGATES])

    methods: dict[str, Any] = {}
    for method, hns in matrices.items():
        with _seeded_global_numpy(seed):  # same resamples for every method, independent of the others
            points, intervals = library.get_interval_estimates({method: hns}, aggregate, reps=reps)
        point, ci = points[method], intervals[method]  # (3,), (2, 3): lower row, upper row
        entry: dict[str, Any] = {k: {"point": float(point[i]), "ci95": [float(ci[0, i]), float(ci[1, i])]}
                                 for i, k in enumerate(AGGREGATES)}
        entry["per_game"] = {g: {"hns": [float(v) for v in hns[:, j]], "mean_hns": float(hns[:, j].mean()),
                                 "raw": [float(s) for s in results[method][g]]} for j, g in enumerate(games)}
        methods[method] = entry
    return {"games": games, "runs": runs, "reps": reps, "seed": seed, "note": NOTE, "methods": methods}


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_aggregates(result: dict[str, Any], path: str | Path) -> Path:
    """One panel per aggregate (IQM, median, mean): a bar per method spanning its 95% interval,
    with a tick at the point estimate. Drawn from :func:`aggregate_scores`' dict alone."""
    plt = _pyplot()
    names = list(result["methods"])
    fig, axes = plt.subplots(1, len(AGGREGATES), figsize=(3.6 * len(AGGREGATES), 0.5 * len(names) + 1.4),
                             sharey=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, key in zip(axes[0], AGGREGATES):
        for y, name in enumerate(names):
            est = result["methods"][name][key]
            lo, hi = est["ci95"]
            ax.barh(y, hi - lo, left=lo, height=0.6, color=colors[y % len(colors)], alpha=0.75)
            ax.vlines(est["point"], y - 0.3, y + 0.3, color="black", linewidth=2)
        ax.use_sticky_edges = False  # bars pin the axis to their ends: an estimate on the edge would be cut in half
        ax.margins(x=0.15)
        ax.set_yticks(range(len(names)), names)
        ax.set_title(TITLES[key])
        ax.set_xlabel("human-normalized score")
        ax.grid(axis="x", alpha=0.3)
    axes[0][0].invert_yaxis()  # first method on top (the axes share y)
    what = "95% stratified-bootstrap CIs" if result["runs"] > 1 else "one run per game: no interval yet"
    fig.suptitle(f"{len(result['games'])} games × {result['runs']} runs, {what}", fontsize=9)
    fig.tight_layout()
    try:
        return atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)


def performance_profile(result: dict[str, Any], taus: Sequence[float]) -> dict[str, list[float]]:
    """Score distribution per method: the fraction of all runs × games with HNS > tau, per tau
    (rliable's ``run_score_deviation``), from the dict's per-game HNS."""
    out = {}
    for name, entry in result["methods"].items():
        hns = np.array([entry["per_game"][g]["hns"] for g in result["games"]])  # (games, runs)
        out[name] = [float(np.mean(hns > tau)) for tau in taus]
    return out


def plot_performance_profile(result: dict[str, Any], path: str | Path, taus: Sequence[float] | None = None) -> Path:
    """Performance profiles (point estimates, no bands) over ``taus`` (default 0 to 2 HNS), as PNG."""
    plt = _pyplot()
    taus = list(np.linspace(0.0, 2.0, 81)) if taus is None else list(taus)
    fig, ax = plt.subplots(figsize=(5.0, 3.6))
    for name, fractions in performance_profile(result, taus).items():
        ax.step(taus, fractions, where="post", label=name)
    ax.set_xlabel(r"human-normalized score $\tau$")
    ax.set_ylabel(r"fraction of runs with score $> \tau$")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    try:
        return atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=100))
    finally:
        plt.close(fig)
