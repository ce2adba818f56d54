"""The heads' pair view alone on frozen tokenizer latents: what it needs to learn the reward.

Trains the conv net over a pair of latent frames (as in ``worldsim.models.heads.Heads``) on a
trained tokenizer's latents of a store and scores it on held-out play every 250 steps. No DiT: it
isolates the heads. Two sets of arms:

* ``--arms lr`` (session 9): why the reward head was at chance after the default run's 1,000
  world-model steps; learning rates and batch sizes, balanced reward-sign accuracy (scored on every
  held-out transition since session 31; session 9's file drew them with replacement).

      python benchmarks/reward_head_probe.py --tokenizer runs/boxing/small/tokenizer.pt \\
          --train data/boxing --heldout data/boxing_heldout

* ``--arms end_within`` (session 31): does the 10-step end target (``model.end_within=10``, a
  quarter of Breakout's transitions positive) take the shared pair net from the reward? The
  session-26 target (ends within 1 step, positive weight 10) against the session-28 one (within
  10, weight 1), with one shared net (the model's heads) and with one net per head; the world
  model's learning rate and loss share. Reports the +1 recall the dream's ``mode`` payout
  decides with (argmax of the data posterior), the weighted-decision recall, the end F1.

      python benchmarks/reward_head_probe.py --arms end_within --tokenizer RUN/tokenizer.pt \\
          --train RUN/data --heldout RUN/data --heldout-split val --steps 2000 --tag breakout_end_within

Writes ``benchmarks/results/reward_head_probe_<tag>.json`` (resumes: arms already in it are kept).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.io import atomic_write_json
from worldsim.models.loading import load_tokenizer

# name, peak lr, loss weight, transitions per step, end_within, end positive weight, one net per head;
# "wm-like" = the world model's schedule, its heads' share of the loss (0.5 x 0.8) and its 56 + 224
# transitions per step
ARMS = {
    "lr": [("wm-like", 5e-4, 0.4, 280, 1, 1.0, False), ("lr 2e-3", 2e-3, 1.0, 280, 1, 1.0, False),
           ("lr 2e-3, 64 per step", 2e-3, 1.0, 64, 1, 1.0, False)],
    "end_within": [("k1 shared", 5e-4, 0.4, 280, 1, 10.0, False), ("k10 shared", 5e-4, 0.4, 280, 10, 1.0, False),
                   ("k10 split", 5e-4, 0.4, 280, 10, 1.0, True)],
}


def pair_net(c: int, width: int = 64, outputs: int = 4) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(2 * c, width, 3, padding=1), nn.SiLU(), nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(),
        nn.Conv2d(width, width, 3, stride=2, padding=1), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(width, width), nn.SiLU(), nn.Linear(width, outputs))


class SplitNets(nn.Module):
    """One pair net for the reward sign, one for the end: nothing shared."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.reward, self.end = pair_net(c, outputs=3), pair_net(c, outputs=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.reward(x), self.end(x)], -1)


@torch.no_grad()
def encode(tok, ds: WindowDataset) -> torch.Tensor:
    return torch.cat([tok.normalize(tok.encode(ds.frames[i:i + 512].permute(0, 3, 1, 2).float() / 255))
                      for i in range(0, len(ds.frames), 512)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--train", required=True)
    ap.add_argument("--heldout", required=True)
    ap.add_argument("--heldout-split", default="all", choices=["all", "val"],
                    help="val: the held-out episodes of a store that also trains (its train split trains)")
    ap.add_argument("--arms", default="lr", choices=sorted(ARMS))
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--tag", default="boxing")
    args = ap.parse_args()
    out = Path(f"benchmarks/results/reward_head_probe_{args.tag}.json")
    done = json.loads(out.read_text())["results"] if out.exists() else []
    tok, _ = load_tokenizer(args.tokenizer)
    train_store, heldout_store = EpisodeStore.open(args.train), EpisodeStore.open(args.heldout)
    results, data = list(done), {}
    for name, lr, weight, per_step, within, pos_weight, split in ARMS[args.arms]:
        if any(r["variant"] == name and r["curve"] and r["curve"][-1]["step"] == args.steps for r in done):
            continue
        if within not in data:  # the end targets depend on end_within; the latents do not
            tr = WindowDataset(train_store, 2, "train", 0.1, end_within=within)
            te = WindowDataset(heldout_store, 2, args.heldout_split, 0.1, end_within=within)
            latents = data[next(iter(data))][1] if data else (encode(tok, tr), encode(tok, te))
            data[within] = ((tr, te), latents)
        (tr, te), (ztr, zte) = data[within]
        tr_idx = tr.window_indices(len(tr), torch.Generator().manual_seed(0))
        te_idx = te.starts[:, None] + torch.arange(2)  # every held-out transition, once

        def batch(ds, z, idx):
            _, r, term = ds.transitions(idx)
            return torch.cat([z[idx[:, 0]], z[idx[:, 1]]], 1), (torch.sign(r[:, 0]) + 1).long(), term[:, 0].float()

        y_all = batch(tr, ztr, tr_idx)[1]
        freq = torch.bincount(y_all, minlength=3).float() / len(y_all)
        w = (freq + 1e-3).rsqrt()
        w = w / (freq * w).sum()  # the world model's class weights (set_reward_weights)

        @torch.no_grad()
        def scores(net) -> dict:
            x, y, e = batch(te, zte, te_idx)
            out = torch.cat([net(c) for c in x.split(1024)])
            p = out[:, :3].softmax(-1)
            post = (p / w).argmax(-1)  # the data posterior's decision (the dream's mode payout)
            weighted = p.argmax(-1)  # the weighted softmax's decision

            def recalls(pred):
                return {str(k - 1): float(((pred == k) & (y == k)).sum() / (y == k).sum()) if (y == k).any() else None
                        for k in range(3)}
            rec = recalls(post)
            present = [v for v in rec.values() if v is not None]
            pe, te_ = out[:, 3] > 0, e > 0.5
            tp, fp, fn = float((pe & te_).sum()), float((pe & ~te_).sum()), float((~pe & te_).sum())
            return {"reward_recall": rec, "reward_recall_weighted": recalls(weighted),
                    "balanced_accuracy": sum(present) / len(present),
                    "end_f1": 2 * tp / max(2 * tp + fp + fn, 1.0), "end_targets": int(te_.sum())}

        torch.manual_seed(0)
        net = SplitNets(ztr.shape[1]) if split else pair_net(ztr.shape[1])
        opt = torch.optim.AdamW(net.parameters(), lr, betas=(0.9, 0.99), weight_decay=0.01)
        n = args.steps  # the world model's schedule: 100 warm-up steps, cosine to 0.1x
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / 100) * (0.1 + 0.45 * (1 + math.cos(math.pi * min(1.0, s / n)))))
        g, t, curve = torch.Generator().manual_seed(0), time.perf_counter(), []
        pw = torch.tensor(pos_weight)
        for step in range(1, n + 1):
            x, y, e = batch(tr, ztr, tr_idx[torch.randint(len(tr_idx), (per_step,), generator=g)])
            out_ = net(x)
            loss = weight * (F.cross_entropy(out_[:, :3], y, weight=w)
                             + F.binary_cross_entropy_with_logits(out_[:, 3], e, pos_weight=pw))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            if step % 250 == 0:
                curve.append({"step": step, **scores(net)})
                print(name, curve[-1], flush=True)
        results = [r for r in results if r["variant"] != name]
        results.append({"variant": name, "lr": lr, "loss_weight": weight, "transitions_per_step": per_step,
                        "end_within": within, "end_pos_weight": pos_weight, "one_net_per_head": split,
                        "curve": curve, "seconds": time.perf_counter() - t})
        atomic_write_json(out, {
            "what": "heads' pair view alone on frozen tokenizer latents, scored on held-out transitions",
            "tokenizer": args.tokenizer, "train": args.train, "heldout": args.heldout,
            "heldout_split": args.heldout_split, "class_frequencies": freq.tolist(), "results": results,
            "command": f"python benchmarks/reward_head_probe.py --arms {args.arms} --tokenizer {args.tokenizer} "
                       f"--train {args.train} --heldout {args.heldout} --heldout-split {args.heldout_split} "
                       f"--steps {args.steps} --tag {args.tag}"})


if __name__ == "__main__":
    main()
