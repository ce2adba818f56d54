"""Why the reward head was at chance after the default run's 1,000 world-model steps: a probe.

Trains the heads' pair view alone (the conv net over a pair of latent frames, as in
``worldsim.models.world_model.Heads``) on a trained tokenizer's latents of a store, under several
learning rates / batch sizes, and reports the balanced reward-sign accuracy on held-out play
every 250 steps. No DiT: it isolates what the head needs to learn.

    python benchmarks/reward_head_probe.py --tokenizer runs/boxing/small/tokenizer.pt \
        --train data/boxing --heldout data/boxing_heldout

Writes ``benchmarks/results/reward_head_probe_<tag>.json``.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_json
from worldsim.models.loading import load_tokenizer

# name, peak lr, loss weight, transitions per step; "wm-like" = the world model's schedule, its heads'
# share of the loss (0.5 x 0.8) and its 56 + 224 transitions per step
VARIANTS = [("wm-like", 5e-4, 0.4, 280), ("lr 2e-3", 2e-3, 1.0, 280), ("lr 2e-3, 64 per step", 2e-3, 1.0, 64)]


def pair_net(c: int, width: int = 64) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2 * c, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, width), nn.SiLU(), nn.Linear(width, 4))


@torch.no_grad()
def encode(tok, ds: WindowDataset) -> torch.Tensor:
    return torch.cat([tok.normalize(tok.encode(ds.frames[i:i + 512].permute(0, 3, 1, 2).float() / 255))
                      for i in range(0, len(ds.frames), 512)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--tag", default="boxing")
    args = ap.parse_args()
    torch.manual_seed(0)
    tok, _ = load_tokenizer(args.tokenizer)
    tr, te = WindowDataset(EpisodeStore.open(args.train), 2, "train", 0.1), WindowDataset(EpisodeStore.open(args.heldout), 2, "all", 0.1)
    ztr, zte = encode(tok, tr), encode(tok, te)
    tr_idx = tr.window_indices(len(tr), torch.Generator().manual_seed(0))
    te_idx = te.window_indices(len(te), torch.Generator().manual_seed(1))

    def batch(ds, z, idx):
        _, r, term = ds.transitions(idx)
        return torch.cat([z[idx[:, 0]], z[idx[:, 1]]], 1), (torch.sign(r[:, 0]) + 1).long(), term[:, 0].float()

    y_all = batch(tr, ztr, tr_idx)[1]
    freq = torch.bincount(y_all, minlength=3).float() / len(y_all)
    w = (freq + 1e-3).rsqrt()
    w = w / (freq * w).sum()  # the world model's class weights (set_reward_weights)

    def balanced_accuracy(net) -> float:
        with torch.no_grad():
            x, y, _ = batch(te, zte, te_idx)
            p = net(x)[:, :3].argmax(-1)
            return sum(float(((p == k) & (y == k)).sum() / (y == k).sum().clamp(min=1)) for k in range(3)) / 3

    results = []
    for name, lr, weight, per_step in VARIANTS:
        torch.manual_seed(0)
        net = pair_net(ztr.shape[1])
        opt = torch.optim.AdamW(net.parameters(), lr, betas=(0.9, 0.99), weight_decay=0.01)
        n = args.steps  # the world model's schedule: 100 warm-up steps, cosine to 0.1x
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / n)))))
        g, t, curve = torch.Generator().manual_seed(0), time.perf_counter(), []
        for step in range(1, n + 1):
            x, y, e = batch(tr, ztr, tr_idx[torch.randint(len(tr_idx), (per_step,), generator=g)])
            out = net(x)
            loss = weight * (F.cross_entropy(out[:, :3], y, weight=w) + F.binary_cross_entropy_with_logits(out[:, 3], e))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % 250 == 0:
                curve.append({"step": step, "balanced_accuracy": balanced_accuracy(net)})
        results.append({"variant": name, "lr": lr, "loss_weight": weight, "transitions_per_step": per_step,
                        "curve": curve, "seconds": time.perf_counter() - t})
        print(results[-1], flush=True)
    atomic_write_json(f"benchmarks/results/reward_head_probe_{args.tag}.json", {
        "what": "heads' pair view alone on frozen tokenizer latents: held-out balanced reward-sign accuracy",
        "tokenizer": args.tokenizer, "train": args.train, "heldout": args.heldout,
        "class_frequencies": freq.tolist(), "results": results,
        "command": f"python benchmarks/reward_head_probe.py --tokenizer {args.tokenizer} --train {args.train} "
                   f"--heldout {args.heldout} --tag {args.tag}"})


if __name__ == "__main__":
    main()
