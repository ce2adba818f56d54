"""Train the latent DiT world model (with its reward and episode-end heads) on an episode store.

    worldsim train-world-model env=boxing model=small
    torchrun --nproc_per_node 2 -m worldsim.cli train-world-model env=boxing model=small

Reads top to bottom: frozen tokenizer -> episodes -> latents (encoded once) -> model, EMA and
optimiser -> (resume) -> loop (teacher-forced diffusion loss + heads) -> checkpoint. Re-running with
the same ``out`` resumes exactly (same schedule, same data order).

A step averages the gradients of ``grad_accum`` micro-batches on each of ``W`` processes (torchrun:
DDP averages across ranks; rank 0 logs and writes checkpoints). Micro-batch ``m`` (= rank *
grad_accum + i) draws its windows, noise and head dreams from its own generator seeded
``seed * 1000 + m``, so on CPU ``W`` processes with ``grad_accum=A`` train the same model as one
process with ``grad_accum=W*A``, up to float summation order (tested).
"""

from __future__ import annotations

import contextlib
import copy
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from worldsim.data.dataset import WindowDataset
from worldsim.data.store import EpisodeStore
from worldsim.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from worldsim.models.loading import load_tokenizer, saved_world_model_config, world_model_config
from worldsim.models.memory import Motion, episode_memory
from worldsim.models.world_model import WorldModel
from worldsim.runtime import autocast, flush_denormals, resolve_device
from worldsim.training.head_rollouts import HeadRollouts
from worldsim.training.runtime import (Logger, cleanup_distributed, lr_factor, rng_states, set_rng_states,
                                       setup_distributed, update_ema)


@dataclass
class WorldModelTrainConfig:
    """Defaults are the ``small`` preset's ``world_model_train`` (configs/model/small.yaml)."""

    steps: int = 6400
    batch_size: int = 8
    window: int = 8  # frames per training window: each gives window-1 denoising targets
    end_share: float = 0.02  # share of windows drawn among those holding an episode end (rare events)
    head_lr_scale: float = 4.0  # the heads' learning rate / lr: at 1x they were still at chance after 1,000 steps
    head_pairs: int = 224  # extra transitions per step for the heads' pair view (no DiT pass: ~10% of a step)
    head_rollouts: int = 16  # dreams run beside training whose frames train the heads (0: none)
    head_rollout_horizon: int = 50  # their length before restarting from real play; divides ckpt_every
    head_rollout_share: float = 0.5  # their share of the heads' losses
    rollout_windows: int = 0  # windows of those dreams added to each batch: the DiT reads its own frames, learns the real next ones
    grad_accum: int = 1  # micro-batches of batch_size per step on each process (the step's batch: batch_size x grad_accum x processes)
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup: int = 100
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    log_every: int = 50
    ckpt_every: int = 500
    val_fraction: float = 0.1
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"  # auto | fp32 | bf16 (autocast; auto = bf16 on CUDA and on CPUs with hardware bf16)


@torch.no_grad()
def encode_frames(world_model: WorldModel, frames: torch.Tensor, device: torch.device, progress: bool = False,
                  chunk: int = 512) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, c, h, w) normalised latents, in chunks."""
    out = []
    for i in tqdm(range(0, frames.shape[0], chunk), desc="encoding frames", disable=not progress):
        x = frames[i : i + chunk].permute(0, 3, 1, 2).to(device)
        out.append(world_model.encode(x).float().cpu())
    return torch.cat(out)


def micro_batch_loss(net, ema: WorldModel, train: WorldModelTrainConfig, train_data: WindowDataset,
                     latents: torch.Tensor, memory, rollouts: HeadRollouts | None, gen: torch.Generator, step: int,
                     device: torch.device):
    """The losses of one micro-batch: ``batch_size`` windows, the heads' extra pairs and dream
    transitions, all drawn from the micro-batch's own generator ``gen``."""
    idx = train_data.window_indices(train.batch_size, gen, train.end_share)  # (b, t)
    z = latents[idx].to(device)  # (b, t, c, h, w)
    actions, rewards, terminated = (x.to(device) for x in train_data.transitions(idx))
    pairs = None
    if train.head_pairs > 0:  # whole windows too, so rare episode ends are drawn as often (end_share)
        pidx = train_data.window_indices(-(-train.head_pairs // (train.window - 1)), gen, train.end_share)
        pz = latents[pidx].to(device)
        _, pr, pt = (x.to(device) for x in train_data.transitions(pidx))
        pairs = (pz[:, :-1].flatten(0, 1), pz[:, 1:].flatten(0, 1), pr.flatten(), pt.flatten())
    dream = None if rollouts is None else rollouts.next(ema, step, gen)
    targets = None
    own = rollouts.windows(train.rollout_windows, gen) if train.rollout_windows else None
    if own is not None:  # windows of the model's own rollouts, the real game's frames as targets
        own_z, own_idx = own
        targets = torch.cat([z, latents[own_idx].to(device)])
        z = torch.cat([z, own_z.to(device)])
        actions, rewards, terminated = (torch.cat([x, y.to(device)]) for x, y in
                                        zip((actions, rewards, terminated), train_data.transitions(own_idx)))
    mem = None
    if memory is not None:  # the retrieved frame of every target (frames 1..t-1)
        m_idx = memory.index[idx[:, 1:]]
        mem = (latents[m_idx.clamp_min(0)].to(device), memory.features[idx[:, 1:]].to(device))
    with autocast(device, train.precision):
        return net(z, actions, rewards, terminated, gen if device.type == "cpu" else None, pairs, dream,
                   train.head_rollout_share, targets, mem)


def train_world_model(data_dir: str | Path, tokenizer_path: str | Path, out: str | Path, model_cfg: dict[str, Any],
                      train: WorldModelTrainConfig, env_meta: dict[str, Any] | None = None,
                      run_dir: str | Path | None = None, progress: bool = True,
                      until: int | None = None) -> dict[str, Any]:
    """Train (or resume) to ``train.steps`` steps; ``until`` stops earlier on the same schedule (the
    iterations of ``worldsim loop``, each continuing on a grown store with the latest tokenizer)."""
    out = Path(out)
    stop = train.steps if until is None else min(int(until), train.steps)
    if train.head_rollouts > 0 and train.ckpt_every % train.head_rollout_horizon:
        raise ValueError(
            f"world_model_train.ckpt_every={train.ckpt_every} must be a multiple of head_rollout_horizon="
            f"{train.head_rollout_horizon} (the head rollouts restart at its multiples, so a resumed run "
            "continues exactly); change either, or set head_rollouts=0.")
    if train.rollout_windows and not 0 < train.rollout_windows <= train.head_rollouts:
        raise ValueError(
            f"world_model_train.rollout_windows={train.rollout_windows} needs as many dreams running beside "
            f"training: set world_model_train.head_rollouts >= {train.rollout_windows} (now {train.head_rollouts}).")
    if train.grad_accum < 1:
        raise ValueError(f"world_model_train.grad_accum={train.grad_accum}: the micro-batches per step must be >= 1.")
    if train.window < 2:
        raise ValueError(f"world_model_train.window={train.window}: a training window needs at least 2 frames "
                         "(a context frame and a target); the default is 8.")
    run_dir = Path(run_dir) if run_dir else out.parent
    device = resolve_device(train.device)
    flush_denormals()  # (library callers too: the heads' gradients underflow on games without rewards)
    dist = setup_distributed(device)
    torch.manual_seed(train.seed + dist.rank)
    progress = progress and dist.is_main

    # ---- frozen tokenizer and episodes
    tokenizer, tok_ckpt = load_tokenizer(tokenizer_path)
    if not tok_ckpt.get("metrics"):  # written by the end of a training call, with the latent statistics
        raise CheckpointError(f"{tokenizer_path} is a save from the middle of tokenizer training (step {tok_ckpt.get('step')}; "
                              "its run was interrupted, before the latent statistics the world model needs): finish it "
                              "by running the same `worldsim train-tokenizer` command again.")
    store = EpisodeStore.open(data_dir)
    store.check_compatible(tok_ckpt["env"], what=f"the tokenizer {tokenizer_path}")
    if env_meta is not None:
        store.check_compatible(env_meta)
    cfg = world_model_config(model_cfg, tok_ckpt["config"]["model"], int(store.metadata["num_actions"]))
    train_data = WindowDataset(store, train.window, "train", train.val_fraction, progress=progress,
                               end_within=cfg.end_within)

    # ---- model, EMA, optimiser
    model = WorldModel(cfg)
    model.tokenizer.load_state_dict(tokenizer.state_dict())
    model.tokenizer.requires_grad_(False)
    h, w = store.metadata["frame_shape"][:2]
    model.set_frame_size(h, w)
    if cfg.memory_span:
        if train.rollout_windows:
            raise ValueError("pose memory (model.memory_span > 0) does not train on windows of the model's own "
                             "rollouts yet: set world_model_train.rollout_windows=0.")
        model.set_motion(store.metadata.get("motion"), f"the store {data_dir}")
    model.to(device)
    ema = copy.deepcopy(model).requires_grad_(False)
    params = [p for p in model.parameters() if p.requires_grad]
    heads = {id(p) for p in model.heads.parameters()}
    groups = [{"params": [p for p in params if id(p) not in heads], "lr": train.lr},
              {"params": list(model.heads.parameters()), "lr": train.lr * train.head_lr_scale}]
    opt = torch.optim.AdamW(groups, lr=train.lr, betas=(0.9, 0.99), weight_decay=train.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, train.warmup, train.steps))
    micro = [dist.rank * train.grad_accum + i for i in range(train.grad_accum)]  # this process's micro-batches
    gens = [torch.Generator().manual_seed(train.seed * 1000 + m) for m in micro]
    step = 0
    seconds_before = 0.0  # training time of earlier processes of this run (resumes add up)
    t0 = time.perf_counter()

    # ---- resume
    if out.exists():
        ckpt = load_checkpoint(out, kind="world_model")
        if asdict(saved_world_model_config(ckpt, out)) != asdict(cfg):
            raise CheckpointError(f"{out} was trained with another model config; choose a new out=... or the same preset.")
        step = int(ckpt["step"])
        if step >= stop:
            if dist.is_main:
                print(f"{out} is already trained ({step} steps); nothing to do. Raise the step budget to continue.")
            cleanup_distributed(dist)
            return ckpt.get("metrics", {})
        model.load_state_dict(ckpt["model"])
        ema.load_state_dict(ckpt["ema"])
        for m in (model, ema):  # the given tokenizer wins (the loop continues training it between iterations)
            m.tokenizer.load_state_dict(tokenizer.state_dict())
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        for m, gen in zip(micro, gens):  # micro-batches the saved run did not have start fresh
            if m < len(ckpt["generators"]):
                gen.set_state(ckpt["generators"][m])
        set_rng_states(ckpt["rng"])
        seconds_before = float(ckpt.get("train_seconds", 0.0))
        if dist.is_main:
            print(f"resuming world-model training from step {step} of {stop}")
    first_step = step
    net = DistributedDataParallel(model) if dist.enabled else model  # (broadcasts rank 0's weights)
    if dist.enabled and first_step == 0:  # every rank's EMA (which drives its head dreams) starts from those weights too
        ema.load_state_dict(model.state_dict())
    latents = encode_frames(model, train_data.frames, device, progress)  # (N, c, h, w), kept on the CPU
    if step == 0:  # scale of frame-to-frame changes, for the residual parametrisation
        probe = train_data.window_indices(min(4096, len(train_data)), torch.Generator().manual_seed(train.seed))
        model.set_delta_std(latents[probe])
        model.set_reward_weights(train_data.rewards[train_data.starts])
        ema.delta_std.copy_(model.delta_std)
        ema.reward_weights.copy_(model.reward_weights)
        if dist.enabled:  # every rank measured on its own windows: agree on rank 0's value
            torch.distributed.broadcast(model.delta_std, 0)
            ema.delta_std.copy_(model.delta_std)  # (reward weights come from the whole split: equal on every rank)

    def checkpoint(metrics: dict[str, Any] | None = None) -> None:
        states = torch.stack([g.get_state() for g in gens])  # (grad_accum, n)
        if dist.enabled:  # rank 0 keeps every micro-batch's generator so a resume replays the same windows
            gathered = [torch.empty_like(states) for _ in range(dist.world_size)]
            torch.distributed.all_gather(gathered, states)
            states = torch.cat(gathered)
        saved_gens = list(states)  # indexed by micro-batch
        if not dist.is_main:
            return
        save_checkpoint(out, {
            "kind": "world_model", "step": step, "model": model.state_dict(), "ema": ema.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "generators": saved_gens,
            "rng": rng_states(), "train_seconds": seconds_before + time.perf_counter() - t0,
            "config": {"model": asdict(cfg), "train": asdict(train), "frame_size": [h, w]},
            "env": dict(store.metadata),
            "dataset": {"path": str(data_dir), "train_steps": train_data.num_steps,
                        "train_episodes": len(train_data.episode_names), "val_fraction": train.val_fraction},
            "tokenizer": {"path": str(tokenizer_path), "metrics": tok_ckpt.get("metrics", {})},
            "metrics": metrics or {},
        })

    memory = None
    if cfg.memory_span:  # every frame's nearest-pose predecessor, found once
        memory = episode_memory(train_data.actions, train_data.episode_lengths, Motion.from_table(model.motion.cpu()),
                                cfg.memory_span)
    rollouts = [None] * len(micro)  # each micro-batch runs its own dreams
    if train.head_rollouts > 0:
        rollouts = [HeadRollouts(train_data, latents, train.head_rollouts, train.head_rollout_horizon, device,
                                 train.precision, history=train.window if train.rollout_windows else 0) for _ in micro]

    # ---- loop
    logger = Logger(run_dir / "world_model", enabled=dist.is_main)
    bar = tqdm(total=stop, initial=step, desc="train world model", disable=not progress, dynamic_ncols=True)
    t0, samples = time.perf_counter(), 0
    model.train()
    while step < stop:
        opt.zero_grad(set_to_none=True)
        sums = dict.fromkeys(("loss", "diffusion", "reward", "end"), 0.0)  # micro-batch means (tensors: no sync here)
        for i, (gen, heads_dreams) in enumerate(zip(gens, rollouts)):
            last = i == len(gens) - 1
            with net.no_sync() if dist.enabled and not last else contextlib.nullcontext():  # all-reduce once per step
                losses = micro_batch_loss(net, ema, train, train_data, latents, memory, heads_dreams, gen, step, device)
                (losses.loss / len(gens)).backward()
            for k in sums:
                sums[k] = sums[k] + getattr(losses, k).detach() / len(gens)
        grad_norm = torch.nn.utils.clip_grad_norm_(params, train.grad_clip)
        opt.step()
        sched.step()
        update_ema(ema, model, train.ema_decay)
        step += 1
        samples += train.batch_size * train.grad_accum * dist.world_size
        bar.update(1)
        if step % train.log_every == 0 or step == stop:
            scalars = {"wm/loss": float(sums["loss"]), "wm/diffusion_loss": float(sums["diffusion"]),
                       "wm/reward_loss": float(sums["reward"]), "wm/end_loss": float(sums["end"]),
                       "wm/grad_norm": float(grad_norm), "wm/lr": sched.get_last_lr()[0],
                       "wm/samples_per_s": samples / (time.perf_counter() - t0)}
            logger.log(step, scalars)
            bar.set_postfix(diff=f"{scalars['wm/diffusion_loss']:.4f}", rew=f"{scalars['wm/reward_loss']:.3f}")
        if step % train.ckpt_every == 0 and step < stop:
            checkpoint()
    bar.close()
    seconds = time.perf_counter() - t0
    metrics = {"train_seconds": seconds_before + seconds,  # every process of the run
               "samples_per_s": samples / max(seconds, 1e-9),
               "final_diffusion_loss": float(sums["diffusion"]), "steps": step}
    if device.type == "cpu":
        import resource

        metrics["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    else:
        metrics["peak_cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    checkpoint(metrics)
    logger.close()
    if dist.is_main:
        done = f"steps {first_step}-{step}" if first_step else f"{step} steps"  # a resumed run times its own steps
        print(f"world model: {done} in {seconds / 60:.1f} min ({metrics['samples_per_s']:.1f} windows/s); saved {out}")
    cleanup_distributed(dist)
    return metrics
