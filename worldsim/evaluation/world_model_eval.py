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

Heads: reward-sign accuracy and episode-end precision / recall / F1 over every transition of the
held-out episodes, teacher-forced (the real frames are fed as context, as the dream's heads see
its own frames), plus the reward accuracy inside the rollouts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.metrics import psnr_from_mse, squared_error_sums, ssim
from worldsim.models.world_model import REWARD_CLASSES, WorldModel, reward_to_class
from worldsim.training.checkpoint import check_env_matches
from worldsim.training.runtime import autocast, resolve_precision


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


def _accumulate(acc: dict, key: str, k: int, sums: dict[str, torch.Tensor]) -> None:
    slot = acc.setdefault(key, {}).setdefault(k, {"se": [], "n": [], "motion_se": [], "motion_n": [], "ssim": []})
    for name, v in sums.items():
        slot[name].append(v.double())


def _summarise(slot: dict[str, list[torch.Tensor]]) -> dict[str, float]:
    cat = {k: torch.cat(v) for k, v in slot.items() if v}
    per_window = [psnr_from_mse(float(se / n)) for se, n in zip(cat["se"], cat["n"])]
    return {
        "psnr": psnr_from_mse(float(cat["se"].sum() / cat["n"].sum())),
        "psnr_median": float(np.median(per_window)),
        "motion_psnr": psnr_from_mse(float(cat["motion_se"].sum() / cat["motion_n"].sum().clamp_min(1))),
        "ssim": float(cat["ssim"].mean()) if "ssim" in cat else float("nan"),
        "motion_pixel_share": float(cat["motion_n"].sum() / cat["n"].sum()),
    }


@torch.no_grad()
def rollout_metrics(model: WorldModel, data: WindowDataset, cfg: EvalConfig, progress: bool) -> dict[str, Any]:
    C, H = model.cfg.dit.context_frames, max(cfg.horizons)
    g = torch.Generator().manual_seed(cfg.seed)
    n = min(cfg.num_windows, len(data))
    picks = torch.randperm(len(data), generator=g)[:n]  # distinct windows, fixed by the seed
    acc: dict[str, dict[int, dict]] = {}
    reward_hits, reward_total = 0, 0
    for start in tqdm(range(0, n, cfg.batch_size), desc="rollouts", disable=not progress):
        idx = data.starts[picks[start : start + cfg.batch_size]][:, None] + torch.arange(C + H)  # (b, C+H)
        frames = data.frames[idx].permute(0, 1, 4, 2, 3)  # (b, C+H, 3, h, w) uint8
        actions, rewards, _ = data.transitions(idx)  # (b, C+H-1)
        b = frames.shape[0]
        latents = model.encode(frames)
        prev = model.prev_actions(actions[:, : C - 1])
        shuffled = actions.roll(1, dims=0) if b > 1 else actions
        last = frames[:, C - 1]
        noise_seed = cfg.seed * 7919 + start
        for name, acts in (("model", actions), ("shuffled_actions", shuffled)):
            cache = model.start(latents[:, :C], prev)
            noise_gen = torch.Generator().manual_seed(noise_seed)  # the same noise for both action sequences
            for k in range(H):
                out = model.step(cache, acts[:, C - 1 + k], noise_gen, cfg.sampling_steps)
                if k + 1 in cfg.horizons:
                    pred, true = model.decode(out.latents), frames[:, C + k]
                    _accumulate(acc, name, k + 1, {**squared_error_sums(pred, true, last), "ssim": ssim(pred, true)})
                if name == "model":
                    reward_hits += int((reward_to_class(out.reward) == reward_to_class(rewards[:, C - 1 + k])).sum())
                    reward_total += b
        for k in cfg.horizons:
            true = frames[:, C + k - 1]
            _accumulate(acc, "repeat_last", k, {**squared_error_sums(last, true, last), "ssim": ssim(last, true)})
            recon = model.decode(latents[:, C + k - 1])
            _accumulate(acc, "tokenizer_floor", k, {**squared_error_sums(recon, true, last), "ssim": ssim(recon, true)})
    result = {name: {str(k): _summarise(v) for k, v in sorted(per_h.items())} for name, per_h in acc.items()}
    result["controllability_db"] = {
        str(k): result["model"][str(k)]["psnr"] - result["shuffled_actions"][str(k)]["psnr"] for k in cfg.horizons}
    result["rollout_reward_accuracy"] = reward_hits / max(reward_total, 1)
    result["num_windows"] = n
    return result


@torch.no_grad()
def head_metrics(model: WorldModel, store: EpisodeStore, names: list[str], progress: bool) -> dict[str, Any]:
    """Teacher-forced reward / episode-end predictions over every transition of the given episodes."""
    C = model.cfg.dit.context_frames
    pred_r, true_r, pred_e, true_e = [], [], [], []
    for _, ep in tqdm(store.iter_episodes(names), total=len(names), desc="heads", disable=not progress):
        if len(ep) < C:
            continue
        frames = torch.from_numpy(ep.frames).permute(0, 3, 1, 2)  # (T+1, 3, h, w)
        latents = torch.cat([model.encode(c) for c in frames.split(512)])
        actions = torch.from_numpy(ep.actions)
        cache = model.start(latents[None, :C], model.prev_actions(actions[None, : C - 1]))
        for t in range(C, len(ep) + 1):  # frame t arrives after action t-1
            a = actions[t - 1 : t]
            r_probs, e_prob = model.commit(cache, latents[None, t], a)
            pred_r.append(int(r_probs.argmax(-1)))
            pred_e.append(bool(e_prob > 0.5))
        true_r += reward_to_class(torch.from_numpy(ep.rewards[C - 1 :])).tolist()
        true_e += ep.terminated[C - 1 :].tolist()
    pr, tr = np.array(pred_r), np.array(true_r)
    pe, te = np.array(pred_e, dtype=bool), np.array(true_e, dtype=bool)
    tp, fp, fn = int((pe & te).sum()), int((pe & ~te).sum()), int((~pe & te).sum())
    precision = tp / max(tp + fp, 1)
    recall = tp / max(tp + fn, 1)
    recall_per_class = {str(REWARD_CLASSES[c]): float((pr[tr == c] == c).mean()) if (tr == c).any() else None
                        for c in range(3)}
    return {
        "transitions": int(len(tr)), "reward_accuracy": float((pr == tr).mean()) if len(tr) else None,
        "reward_recall_per_class": recall_per_class,
        # mean of the per-class recalls: what accuracy hides when nearly every reward is 0
        "reward_balanced_accuracy": float(np.mean([r for r in recall_per_class.values() if r is not None]))
        if len(tr) else None,
        "reward_class_counts": {str(REWARD_CLASSES[c]): int((tr == c).sum()) for c in range(3)},
        "end_precision": precision, "end_recall": recall,
        "end_f1": 2 * precision * recall / max(precision + recall, 1e-9), "episode_ends": int(te.sum()),
    }


def evaluate_world_model(model: WorldModel, ckpt: dict[str, Any], data_dir: str | Path, cfg: EvalConfig,
                         out_dir: str | Path | None = None, progress: bool = True) -> dict[str, Any]:
    store = EpisodeStore.open(data_dir)
    check_env_matches(ckpt, store.metadata, data_dir)
    C, H = model.cfg.dit.context_frames, max(cfg.horizons)
    t0 = time.perf_counter()
    data = WindowDataset(store, C + H, cfg.split, cfg.val_fraction)
    device = next(model.parameters()).device
    precision = resolve_precision(cfg.precision, device)
    result: dict[str, Any] = {"checkpoint_step": ckpt.get("step"), "data_dir": str(data_dir), "split": cfg.split,
                              "context_frames": C, "horizons": cfg.horizons, "precision": precision,
                              "sampling_steps": cfg.sampling_steps or model.cfg.edm.sampling_steps}
    with autocast(device, precision):
        result["rollouts"] = rollout_metrics(model, data, cfg, progress)
        result["heads"] = head_metrics(model, store, store.split_names(cfg.split, cfg.val_fraction), progress)
    result["seconds"] = time.perf_counter() - t0
    if out_dir is not None:
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        from worldsim.data.store import atomic_write_json

        atomic_write_json(out_dir / "world_model_eval.json", result)
        plot_eval(result, out_dir / "world_model_eval.png")
    return result


def plot_eval(result: dict[str, Any], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    r = result["rollouts"]
    hs = [int(h) for h in r["model"]]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, metric, label in zip(axes, ("psnr", "motion_psnr", "ssim"), ("pooled PSNR (dB)", "motion PSNR (dB)", "SSIM")):
        for name, style in (("model", "o-"), ("repeat_last", "s--"), ("shuffled_actions", "x:"), ("tokenizer_floor", "^-.")):
            ax.plot(hs, [r[name][str(h)][metric] for h in hs], style, label=name.replace("_", " "))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("horizon (generated frames)")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
