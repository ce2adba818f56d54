"""Train the video tokenizer on an episode store.

    worldsim train-tokenizer env=boxing model=small          # single process
    torchrun --nproc_per_node 2 -m worldsim.cli train-tokenizer env=boxing   # data parallel

Reads top to bottom: data -> model -> (resume) -> loop -> latent statistics -> held-out metrics ->
checkpoint. Re-running with the same ``out`` resumes from the last checkpoint and continues the same
schedule; a finished run is left as it is.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.metrics import psnr_from_mse, squared_error_sums
from worldsim.models.tokenizer import Tokenizer, TokenizerConfig, frames_to_float, tokenizer_loss
from worldsim.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldsim.runtime import autocast, flush_denormals, resolve_device
from worldsim.training.runtime import Logger, lr_factor, rng_states, set_rng_states


@dataclass
class TokenizerTrainConfig:
    """Defaults are the ``small`` preset's ``tokenizer_train`` (configs/model/small.yaml)."""

    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-3
    warmup: int = 100
    grad_clip: float = 1.0
    log_every: int = 50
    ckpt_every: int = 500
    eval_frames: int = 2048
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto = bf16 on CUDA and on CPUs with hardware bf16)


@torch.no_grad()
def evaluate_tokenizer(model: Tokenizer, data: WindowDataset, frames: int, seed: int, device: torch.device) -> dict[str, float]:
    """Reconstruction PSNR and motion PSNR (pooled) of held-out frames, each against its predecessor."""
    g = torch.Generator().manual_seed(seed)
    sums = {"se": 0.0, "n": 0.0, "motion_se": 0.0, "motion_n": 0.0}
    done = 0
    while done < frames:
        b = min(256, frames - done)
        pairs = data.sample(b, g).frames.to(device)  # (b, 2, 3, H, W) uint8
        x = frames_to_float(pairs[:, 1])
        recon = model.decode(model.encode(x)).clamp(0, 1)
        for k, v in squared_error_sums(recon, x, frames_to_float(pairs[:, 0])).items():
            sums[k] += float(v.sum())
        done += b
    return {"psnr": psnr_from_mse(sums["se"] / sums["n"]),
            "motion_psnr": psnr_from_mse(sums["motion_se"] / max(sums["motion_n"], 1.0)),
            "motion_pixel_share": sums["motion_n"] / sums["n"]}


def train_tokenizer(data_dir: str | Path, out: str | Path, model_cfg: TokenizerConfig, train: TokenizerTrainConfig,
                    env_meta: dict[str, Any] | None = None, run_dir: str | Path | None = None,
                    progress: bool = True, until: int | None = None) -> dict[str, Any]:
    """Train (or resume) to ``train.steps`` steps; ``until`` stops earlier, on the same learning-rate
    schedule, so ``worldsim loop`` can continue the same run on a growing store iteration by iteration."""
    out = Path(out)
    stop = train.steps if until is None else min(int(until), train.steps)
    run_dir = Path(run_dir) if run_dir else out.parent
    device = resolve_device(train.device)
    flush_denormals()  # (library callers too)
    torch.manual_seed(train.seed)

    # ---- data
    store = EpisodeStore.open(data_dir)
    if env_meta is not None:
        store.check_compatible(env_meta)
    train_data = WindowDataset(store, 2, "train", train.val_fraction, progress=progress)
    val_data = WindowDataset(store, 2, "val", train.val_fraction) if store.split_names("val", train.val_fraction) else train_data
    h, w = store.metadata["frame_shape"][:2]

    # ---- model
    model = Tokenizer(model_cfg).to(device)
    model.check_frame_size(h, w)
    opt = torch.optim.AdamW(model.parameters(), lr=train.lr, betas=(0.9, 0.99), weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train.warmup, train.steps))
    gen = torch.Generator().manual_seed(train.seed)
    step = 0
    seconds_before = 0.0  # training time of earlier processes of this run (resumes add up)

    # ---- resume
    t0 = time.perf_counter()
    if out.exists():
        ckpt = load_checkpoint(out, kind="tokenizer")
        if ckpt["config"]["model"] != asdict(model_cfg):
            raise CheckpointError(f"{out} was trained with another tokenizer config; pass a new out=... or the same model preset.")
        model.load_state_dict(ckpt["model"])
        if "optimizer" in ckpt:
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            gen.set_state(ckpt["generator"])
            set_rng_states(ckpt["rng"])
        step = int(ckpt["step"])
        seconds_before = float(ckpt.get("train_seconds", 0.0))
        if step >= stop:
            print(f"{out} is already trained ({step} steps); nothing to do.")
            return ckpt.get("metrics", {})
        print(f"resuming tokenizer training from step {step} of {stop}")

    def checkpoint(metrics: dict[str, float] | None = None) -> None:
        save_checkpoint(out, {
            "kind": "tokenizer", "step": step, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "generator": gen.get_state(), "rng": rng_states(),
            "train_seconds": seconds_before + time.perf_counter() - t0,
            "config": {"model": asdict(model_cfg), "train": asdict(train)}, "env": dict(store.metadata),
            "dataset": {"path": str(data_dir), "train_steps": train_data.num_steps}, "metrics": metrics or {},
        })

    # ---- loop
    logger = Logger(run_dir / "tokenizer")
    bar = tqdm(total=stop, initial=step, desc="train tokenizer", disable=not progress, dynamic_ncols=True)
    t0, samples = time.perf_counter(), 0
    while step < stop:
        batch = train_data.sample(train.batch_size, gen)
        pairs = frames_to_float(batch.frames.to(device))
        with autocast(device, train.precision):
            losses = tokenizer_loss(model, pairs, gen if device.type == "cpu" else None)
        opt.zero_grad(set_to_none=True)
        losses.loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip)
        opt.step()
        sched.step()
        step += 1
        samples += train.batch_size
        bar.update(1)
        if step % train.log_every == 0 or step == stop:
            scalars = {"tok/loss": losses.loss.item(), "tok/mse": losses.mse.item(), "tok/motion_mse": losses.motion_mse.item(),
                       "tok/kl": losses.kl.item(), "tok/grad_norm": float(grad_norm), "tok/lr": sched.get_last_lr()[0],
                       "tok/samples_per_s": samples / (time.perf_counter() - t0)}
            logger.log(step, scalars)
            bar.set_postfix(loss=f"{scalars['tok/loss']:.4f}", psnr=f"{psnr_from_mse(scalars['tok/mse']):.1f}")
        if step % train.ckpt_every == 0 and step < stop:
            checkpoint()
    bar.close()

    # ---- latent statistics and held-out metrics
    model.eval()
    with torch.no_grad():
        stats_frames = train_data.sample(min(2048, len(train_data)), torch.Generator().manual_seed(train.seed + 1)).frames[:, 1]
        z = torch.cat([model.encode(frames_to_float(c.to(device))) for c in stats_frames.split(256)])
        model.set_latent_stats(z)
    metrics = evaluate_tokenizer(model, val_data, train.eval_frames, train.seed + 2, device)
    metrics["train_seconds"] = seconds_before + time.perf_counter() - t0  # every process of the run
    metrics["latent_shape"] = list(z.shape[1:])
    logger.log(step, {f"tok/val_{k}": v for k, v in metrics.items() if isinstance(v, float)})
    logger.close()
    checkpoint(metrics)
    print(f"tokenizer: held-out PSNR {metrics['psnr']:.2f} dB, motion PSNR {metrics['motion_psnr']:.2f} dB; saved {out}")
    return metrics
