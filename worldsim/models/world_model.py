"""The world model: tokenizer + latent DiT + reward / episode-end heads, with its losses and the
step-by-step generation API the dream env drives.

Latents are always the tokenizer's *normalised* latents (unit variance per channel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from worldsim import diffusion
from worldsim.diffusion import EDMConfig
from worldsim.models.dit import DiT, DiTCache, DiTConfig
from worldsim.models.heads import REWARD_CLASSES, HeadOutput, Heads, reward_to_class
from worldsim.models.memory import Motion, PoseMemory, check_motion_table
from worldsim.models.tokenizer import Tokenizer, TokenizerConfig, float_to_frames, frames_to_float
from worldsim.models.windowed import windowed_rollout


@dataclass
class WorldModelConfig:
    """Defaults are the ``small`` preset (configs/model/small.yaml).

    The model always diffuses the *change* from the previous frame, (z_t - z_{t-1}) / delta_std,
    rather than z_t itself: game frames change little from step to step, so the denoiser spends its
    capacity on what moves rather than on copying the background.
    """

    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    dit: DiTConfig = field(default_factory=DiTConfig)
    edm: EDMConfig = field(default_factory=EDMConfig)
    context_noise_prob: float = 0.5  # share of clean frames noised during training (GameNGen)
    context_noise_max: float = 0.3  # their σ ~ U(0, context_noise_max)
    reward_weight: float = 0.5
    end_weight: float = 0.5
    end_pos_weight: float = 10.0  # episode ends are rare: weight the positive class
    end_within: int = 1  # the end head's target: the episode ends within this many steps (worldsim/data/dataset.py)
    heads_conv_width: int = 64  # width of the heads' conv view of the latent frame pair
    # Pose memory (worldsim/models/memory.py): every generated frame also sees the frame among its last
    # memory_span predecessors seen from the nearest camera pose (odometry from the env's motion table). 0: off.
    memory_span: int = 0


class LossOutput(NamedTuple):
    loss: torch.Tensor
    diffusion: torch.Tensor
    reward: torch.Tensor
    end: torch.Tensor


class StepOutput(NamedTuple):
    latents: torch.Tensor  # (b, c, h, w) normalised latents of the new frame
    reward: torch.Tensor  # (b,) float: the expected reward sign, in [-1, 1] (see WorldModel.step)
    reward_probs: torch.Tensor  # (b, 3) under the data's class frequencies
    end_prob: torch.Tensor  # (b,)


class RolloutOutput(NamedTuple):
    latents: torch.Tensor  # (b, T, c, h, w) generated normalised latents
    reward_probs: torch.Tensor  # (b, T, 3)
    end_probs: torch.Tensor  # (b, T)


class WorldModel(nn.Module):
    def __init__(self, cfg: WorldModelConfig) -> None:
        super().__init__()
        if cfg.dit.latent_channels != cfg.tokenizer.latent_channels:
            raise ValueError(
                f"dit.latent_channels={cfg.dit.latent_channels} must equal tokenizer.latent_channels="
                f"{cfg.tokenizer.latent_channels}."
            )
        if cfg.memory_span < 0:
            raise ValueError(f"memory_span must be >= 0 (0: no pose memory), got {cfg.memory_span}.")
        diffusion.check_shortcut(cfg.edm)
        self.cfg = cfg
        self.tokenizer = Tokenizer(cfg.tokenizer)
        step_classes = cfg.edm.shortcut_levels.bit_length() if cfg.edm.shortcut_levels else 0  # classes 0..log2 N
        self.dit = DiT(cfg.dit, memory=cfg.memory_span > 0, step_classes=step_classes)
        self.heads = Heads(cfg.dit.width, cfg.dit.latent_channels, cfg.heads_conv_width)
        self.latent_hw: tuple[int, int] = (0, 0)  # set by set_frame_size
        self.register_buffer("delta_std", torch.ones(()))  # std of z_t - z_{t-1}, set from the data
        self.register_buffer("reward_weights", torch.ones(3))  # class weights of the reward loss, from the data
        if cfg.memory_span:  # the env's camera motion per action (forward metres, turn degrees), from the data
            self.register_buffer("motion", torch.zeros((cfg.dit.num_actions, 2), dtype=torch.float64))

    def set_motion(self, table, where: str) -> None:
        """Take the env's motion table (num_actions x [forward metres, turn degrees]) for pose memory."""
        self.motion.copy_(check_motion_table(table, self.cfg.dit.num_actions, where))

    def memory_input(self, latents: torch.Tensor, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Retrieved latents (..., c, h, w) enter as clean frames do (scaled as at σ_min); zero where none."""
        return self._context_input(latents)[0] * features[..., 3, None, None, None], features

    @torch.no_grad()
    def set_delta_std(self, windows: torch.Tensor) -> None:
        """Measure the std of frame-to-frame latent changes from windows (b, t, c, h, w)."""
        self.delta_std.copy_((windows[:, 1:] - windows[:, :-1]).std().clamp_min(1e-3))

    @torch.no_grad()
    def set_reward_weights(self, rewards: torch.Tensor) -> None:
        """Weight the reward-sign classes by 1/sqrt(frequency), normalised to a mean weight of 1 over
        the data: in most games nearly every transition has reward 0, and an unweighted loss learns
        to always say 0 (high accuracy, zero recall on the events that matter)."""
        counts = torch.bincount(reward_to_class(rewards.flatten()), minlength=3).float()
        freq = counts / counts.sum().clamp_min(1)
        w = (freq + 1e-3).rsqrt()
        self.reward_weights.copy_(w / (freq * w).sum())

    # ------------------------------------------------------------------ pixels <-> latents
    @torch.no_grad()
    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames (..., 3, H, W) -> normalised latents (..., c, h, w)."""
        return self.tokenizer.normalize(self.tokenizer.encode(frames_to_float(frames)))

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """normalised latents (..., c, h, w) -> uint8 frames (..., 3, H, W)."""
        return float_to_frames(self.tokenizer.decode(self.tokenizer.denormalize(latents)))

    # ------------------------------------------------------------------ training
    def prev_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """(b, t-1) actions between frames -> (b, t) action that led to each frame."""
        null = actions.new_full((actions.shape[0], 1), self.dit.null_action)  # also for windows of one frame
        return torch.cat([null, actions], dim=1)

    def head_losses(self, logits: HeadOutput, rewards: torch.Tensor, terminated: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class-weighted cross-entropy of the reward sign and weighted BCE of the episode end."""
        reward_loss = F.cross_entropy(logits.reward.reshape(-1, 3), reward_to_class(rewards).reshape(-1),
                                      weight=self.reward_weights)
        pos_weight = torch.tensor(self.cfg.end_pos_weight, device=rewards.device)
        end_loss = F.binary_cross_entropy_with_logits(logits.end, terminated.float(), pos_weight=pos_weight)
        return reward_loss, end_loss

    def loss(self, latents: torch.Tensor, actions: torch.Tensor, rewards: torch.Tensor, terminated: torch.Tensor,
             generator: torch.Generator | None = None, pairs: tuple[torch.Tensor, ...] | None = None,
             dream: tuple[torch.Tensor, ...] | None = None, dream_share: float = 0.0,
             targets: torch.Tensor | None = None,
             memory: tuple[torch.Tensor, torch.Tensor] | None = None) -> LossOutput:
        """Teacher-forced loss on a window: latents (b, t, c, h, w), transitions (b, t-1). ``pairs``:
        extra (prev, new, rewards, terminated) transitions (m, c, h, w) x2, (m,) x2 for the heads' pair view.
        ``dream``: (tokens, prev, new, rewards, terminated) transitions of the model's own rollouts
        (worldsim.training.head_rollouts), ``dream_share`` of the heads' losses. ``targets`` (b, t, c,
        h, w): the frames to predict, when they are not the ``latents`` the clean stream reads (windows
        of the model's own rollouts: it reads its frames and learns the real game's next ones).
        ``memory`` (pose memory): the retrieved latents (b, t-1, c, h, w) and features (b, t-1, 4) of
        frames 1..t-1, noise-augmented here as the clean stream is."""
        cfg, edm = self.cfg, self.cfg.edm
        b, t = latents.shape[:2]
        dev = latents.device

        def randn(shape):
            return torch.randn(shape, generator=generator, device=dev)

        def augmentation_sigmas(shape):  # GameNGen's noise augmentation: σ_aug ~ U(0, max) on a share of the frames
            augmented = (torch.rand(shape, generator=generator, device=dev) < cfg.context_noise_prob).float()
            return augmented * torch.rand(shape, generator=generator, device=dev) * cfg.context_noise_max

        sigma_aug = augmentation_sigmas((b, t))  # the clean stream
        pre_c = diffusion.precondition(sigma_aug.clamp_min(edm.sigma_min), edm.sigma_data)
        clean_in = (latents + sigma_aug[..., None, None, None] * randn(latents.shape)) * pre_c.c_in[..., None, None, None]
        # Noisy stream: the changes to frames 1..t-1 from their previous frame, at EDM training noise levels.
        x0 = ((latents if targets is None else targets)[:, 1:] - latents[:, :-1]) / self.delta_std
        sigma = diffusion.training_sigmas((b, t - 1), edm, generator, dev)
        noisy = x0 + sigma[..., None, None, None] * randn(x0.shape)
        if memory is not None:
            m, feats = memory
            s_aug = augmentation_sigmas(feats.shape[:2])
            memory = self.memory_input(m + s_aug[..., None, None, None] * randn(m.shape), feats)
        prev_actions, step, estimate = self.prev_actions(actions), None, x0
        if edm.shortcut_levels:
            sigma, noisy, step, estimate = self._shortcut_targets(x0, sigma, noisy, clean_in, pre_c.c_noise, prev_actions,
                                                                  memory, generator)
        pre = diffusion.precondition(sigma, edm.sigma_data, edm.target)
        pre_b = diffusion.Preconditioning(*(v[..., None, None, None] for v in pre))
        raw, features = self.dit(clean_in, pre_c.c_noise, noisy * pre_b.c_in, pre.c_noise, prev_actions, memory, step)
        diff_loss = F.mse_loss(raw, diffusion.denoising_target(estimate, noisy, pre_b))
        reward_loss, end_loss = self.head_losses(self.heads(features[:, 1:], latents[:, :-1], latents[:, 1:]),
                                                 rewards, terminated)
        if pairs is not None:  # the pair view on extra transitions, weighted by their share of all transitions
            prev, new, pair_rewards, pair_terminated = pairs
            logits = self.heads.pair_logits(prev, new)
            extra_reward, extra_end = self.head_losses(HeadOutput(logits[..., :3], logits[..., 3]), pair_rewards,
                                                       pair_terminated)
            share = prev.shape[0] / (prev.shape[0] + b * (t - 1))
            reward_loss = (1 - share) * reward_loss + share * extra_reward
            end_loss = (1 - share) * end_loss + share * extra_end
        if dream is not None and dream_share > 0:  # the heads on generated frames, labelled by the real game
            tokens, prev, new, dream_rewards, dream_terminated = dream
            dream_reward, dream_end = self.head_losses(self.heads(tokens, prev, new), dream_rewards, dream_terminated)
            reward_loss = (1 - dream_share) * reward_loss + dream_share * dream_reward
            end_loss = (1 - dream_share) * end_loss + dream_share * dream_end
        total = diff_loss + cfg.reward_weight * reward_loss + cfg.end_weight * end_loss
        return LossOutput(total, diff_loss.detach(), reward_loss.detach(), end_loss.detach())

    @torch.no_grad()
    def _shortcut_targets(self, x0, sigma, noisy, clean_in, clean_c_noise, prev_actions, memory, generator):
        """Shortcut self-consistency (:func:`worldsim.diffusion.shortcut_targets`, the model itself as teacher)
        on a share of the windows; the rest learn the plain denoiser (class 0). Returns the noise levels
        (b, t-1), noisy inputs, step classes and the estimates F's target is made from."""
        edm = self.cfg.edm
        n = int(edm.shortcut_share * x0.shape[0] + torch.rand((), generator=generator, device=x0.device).item())  # unbiased
        step = torch.zeros(sigma.shape, dtype=torch.long, device=x0.device)
        if n == 0:
            return sigma, noisy, step, x0
        mem = None if memory is None else tuple(v[:n] for v in memory)

        def denoiser(x: torch.Tensor, s: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
            pre = diffusion.precondition(s, edm.sigma_data, edm.target)
            pre_b = diffusion.Preconditioning(*(v[..., None, None, None] for v in pre))
            raw, _ = self.dit(clean_in[:n], clean_c_noise[:n], x * pre_b.c_in, pre.c_noise, prev_actions[:n], mem, j)
            return diffusion.denoise(raw.float(), x, pre_b)

        s_a, x_a, step[:n], estimate = diffusion.shortcut_targets(denoiser, x0[:n], edm, generator)
        return torch.cat([s_a, sigma[n:]]), torch.cat([x_a, noisy[n:]]), step, torch.cat([estimate, x0[n:]])

    def forward(self, latents, actions, rewards, terminated, generator=None, pairs=None, dream=None,
                dream_share=0.0, targets=None, memory=None) -> LossOutput:
        """The training loss (so DistributedDataParallel can wrap the model); see :meth:`loss`."""
        return self.loss(latents, actions, rewards, terminated, generator, pairs, dream, dream_share, targets, memory)

    # ------------------------------------------------------------------ generation
    def _context_input(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Clean frames enter the clean stream as at σ_min: scaled input and c_noise (b, ...) per frame."""
        pre = diffusion.precondition(torch.tensor(self.cfg.edm.sigma_min, device=z.device), self.cfg.edm.sigma_data)
        return z * pre.c_in, pre.c_noise.expand(z.shape[: z.dim() - 3])

    @torch.no_grad()
    def start_rollout(self, context: torch.Tensor, context_prev_actions: torch.Tensor, start_pos: int = 0,
                      cache: DiTCache | None = None, rows: torch.Tensor | None = None) -> DiTCache:
        """Fill a cache from ``C`` context latents (b, C, c, h, w) and the actions that led to them (b, C).
        With pose memory the context may hold more frames (b, H >= C, ...): all of them go into the
        memory, the last ``C`` into the cache (the cache's positions start at ``start_pos`` either way).

        With ``cache`` and ``rows``, restart only those rows of a running cache (the vector dream's
        autoreset), leaving the others as they are.
        """
        C = self.cfg.dit.context_frames
        if self.cfg.memory_span:
            if context.shape[1] < C:
                raise ValueError(f"the context must hold at least {C} frames (the model's context_frames), "
                                 f"got {context.shape[1]}.")
            history, history_actions = context, context_prev_actions
            context, context_prev_actions = context[:, -C:], context_prev_actions[:, -C:]
        x, c_noise = self._context_input(context)
        cache = self.dit.encode_context(x, c_noise, context_prev_actions, start_pos, cache, rows)
        if self.cfg.memory_span:
            if cache.memory is None:
                cache.memory = PoseMemory(cache.batch_size, self.cfg.memory_span, tuple(context.shape[2:]),
                                          Motion.from_table(self.motion), context.device)
            cache.memory.reset(history.float(), history_actions, rows)
        if rows is None:
            cache.last_latents = context[:, -1].float().clone()
        else:
            if cache.last_latents is None:
                cache.last_latents = torch.zeros((cache.batch_size, *context.shape[2:]), device=context.device)
            cache.last_latents[rows] = context[:, -1].to(cache.last_latents.dtype)
        return cache

    def reward_posterior(self, logits: torch.Tensor) -> torch.Tensor:
        """Reward-sign logits (..., 3) -> probabilities under the data's own class frequencies.

        The reward loss weights the rare classes up (``reward_weights``), which moves the softmax's
        probabilities toward them by the same factors; dividing the weights out gives back the
        posterior of the data. The dream decides with it: with the weighted softmax its argmax said
        +1 on 79% of the steps of 100-step Boxing dreams under random play (the real rate is 1.2%).
        """
        p = logits.float().softmax(-1) / self.reward_weights
        return p / p.sum(-1, keepdim=True)

    @torch.no_grad()
    def append_features(self, cache: DiTCache, latents: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Append frames (b, c, h, w) reached by ``actions`` (b,) to the cache; returns their token
        features (b, n, d), the heads' context view. ``cache.last_latents`` still holds the frame before."""
        x, c_noise = self._context_input(latents)
        features = self.dit.append_frame(x, c_noise, actions, cache)
        if self.cfg.memory_span:
            cache.memory.append(latents.float(), actions)
        return features

    @torch.no_grad()
    def append(self, cache: DiTCache, latents: torch.Tensor, actions: torch.Tensor) -> HeadOutput:
        """Append frames (b, c, h, w) reached by ``actions`` (b,) to the cache; returns the heads'
        reward-class probabilities (b, 3, see :meth:`reward_posterior`) and episode-end probability
        (b,) for that transition."""
        logits = self.heads(self.append_features(cache, latents, actions), cache.last_latents, latents)
        cache.last_latents = latents
        return HeadOutput(self.reward_posterior(logits.reward), logits.end.sigmoid())

    @torch.no_grad()
    def sample_next(self, cache: DiTCache, actions: torch.Tensor, generator: torch.Generator | None = None,
                    sampling_steps: int | None = None, solver: str | None = None,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """Sample the next latent frame (b, c, h, w) for every row under ``actions`` (b,), without
        appending it. The starting noise is ``noise`` (b, c, h, w) if given (callers with one
        generator per row draw it themselves), else drawn from ``generator``."""
        edm = self.cfg.edm
        b = actions.shape[0]
        dev = cache.keys[0].device
        h, w = self.latent_hw
        if not h:
            raise RuntimeError("call set_frame_size(h, w) before generating (load_world_model does it for you).")
        steps = edm.sampling_steps if sampling_steps is None else sampling_steps  # 0 is an error, not "default"
        sigmas = diffusion.karras_sigmas(steps, edm.sigma_min, edm.sigma_max, edm.rho)

        memory = None if not self.cfg.memory_span else self.memory_input(*cache.memory.query(actions))
        step = self._step_classes(steps, (b,), dev)
        if step is not None and (solver or edm.solver) != "euler":
            raise ValueError(f"a shortcut model takes Euler steps of trained sizes: solver={solver!r} cannot sample it.")

        def denoiser(x: torch.Tensor, sigma: float) -> torch.Tensor:
            pre = diffusion.precondition(torch.full((b,), sigma, device=dev), edm.sigma_data, edm.target)
            raw = self.dit.denoise_next(x * pre.c_in[:, None, None, None], pre.c_noise, actions, cache, memory, step)
            return diffusion.denoise(raw, x, diffusion.Preconditioning(*(v[:, None, None, None] for v in pre)))

        if noise is None:
            noise = torch.randn((b, self.cfg.dit.latent_channels, h, w), generator=generator, device=dev)  # fp32 even under autocast
        change = diffusion.sample(denoiser, noise.float(), sigmas, solver or edm.solver).float()
        return cache.last_latents.float() + change * self.delta_std

    def _step_classes(self, steps: int, shape: tuple[int, ...], device: torch.device) -> torch.Tensor | None:
        """A shortcut model's step-size class for a ``steps``-step sampler (None for other models)."""
        n = self.cfg.edm.shortcut_levels
        return torch.full(shape, diffusion.shortcut_class(steps, n), device=device) if n else None

    @torch.no_grad()
    def step(self, cache: DiTCache, actions: torch.Tensor, generator: torch.Generator | None = None,
             sampling_steps: int | None = None, solver: str | None = None,
             noise: torch.Tensor | None = None) -> StepOutput:
        """Generate the next latent frame for every row under ``actions`` (b,) (:meth:`sample_next`)
        and append it to the cache. The reward is the expected reward sign under :meth:`reward_posterior`,
        p(+1) − p(−1): the most probable sign would be 0 on nearly every step of a game whose rewards
        are rare (a rare event seldom passes 50%), and a dream that pays its expectation pays, summed
        over an episode, what the real game would pay on average if the heads are calibrated."""
        z = self.sample_next(cache, actions, generator, sampling_steps, solver, noise)
        heads = self.append(cache, z, actions)
        reward = heads.reward @ torch.tensor(REWARD_CLASSES, device=z.device)
        return StepOutput(z, reward, heads.reward, heads.end)

    @torch.no_grad()
    def rollout(self, context: torch.Tensor, context_prev_actions: torch.Tensor, actions: torch.Tensor,
                generator: torch.Generator | None = None, sampling_steps: int | None = None) -> RolloutOutput:
        """Dream ``T`` frames from ``C`` context latents (b, C, c, h, w) under ``actions`` (b, T): the one
        rollout routine of evaluation, videos and probes (the dream env steps the same ``step``)."""
        cache = self.start_rollout(context, context_prev_actions)
        outs = [self.step(cache, actions[:, k], generator, sampling_steps) for k in range(actions.shape[1])]
        return RolloutOutput(torch.stack([o.latents for o in outs], 1), torch.stack([o.reward_probs for o in outs], 1),
                             torch.stack([o.end_prob for o in outs], 1))

    @torch.no_grad()
    def rollout_latents(self, context: torch.Tensor, context_prev_actions: torch.Tensor, actions: torch.Tensor,
                        generator: torch.Generator | None = None, sampling_steps: int | None = None,
                        context_limit: int | None = None) -> torch.Tensor:
        """Generated latents (b, T, c, h, w) of a rollout as :meth:`rollout` (same noise draws), but
        each frame sees only the last ``context_limit`` frames (1..C; None = C, the cached rollout).
        The limited rollout runs the windowed training pass on those frames, so it sees what the
        first frames of a training window see: the "context cut to k frames" baseline of the
        consistency benchmark, which shows how much of the model's context it uses."""
        C = self.cfg.dit.context_frames
        m = C if context_limit is None else int(context_limit)
        if not 1 <= m <= C:
            raise ValueError(f"context_limit must be between 1 and the model's context_frames={C}, got {context_limit}.")
        if m == C:
            return self.rollout(context, context_prev_actions, actions, generator, sampling_steps).latents
        return self._windowed_rollout(context, context_prev_actions, actions, generator, sampling_steps, m)

    def _windowed_rollout(self, context: torch.Tensor, context_prev_actions: torch.Tensor, actions: torch.Tensor,
                          generator: torch.Generator | None, sampling_steps: int | None, m: int) -> torch.Tensor:
        """:meth:`rollout_latents` through the uncached windowed pass (:mod:`worldsim.models.windowed`)."""
        return windowed_rollout(self, context, context_prev_actions, actions, generator, sampling_steps, m)

    def set_frame_size(self, h: int, w: int) -> tuple[int, int]:
        """Fix the frame size generation works at; returns the latent grid size."""
        self.tokenizer.check_frame_size(h, w)
        f = self.cfg.tokenizer.downsample
        self.dit.grid(h // f, w // f)
        self.latent_hw = (h // f, w // f)
        return self.latent_hw
