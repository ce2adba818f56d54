"""The heads trained on the model's own frames: a few dreams that run beside world-model training.

The reward and episode-end heads learn from real latent frames, but in the dream they read
generated ones, which drift with the horizon (motion fades, sprites blur). On frames unlike any
they were trained on they fire at random: in 100-step Boxing dreams of the default run the reward
head said +1 on 79% of the steps under random play (the real rate is 1.2%), and PPO in the dream
collected these phantom rewards instead of learning the game.

:class:`HeadRollouts` keeps ``rows`` dreams running while the world model trains. Every training
step advances each dream one frame with the EMA model (the weights the dream env will serve),
under the actions of a window of real play, and hands the heads that transition (generated
previous frame, generated new frame, the DiT's features of it) with the real reward sign and
episode end of the same step as labels. Where the dream has drifted from the real window, the
labels say what the real game did, so the heads learn to stay quiet on drifted frames rather than
to invent events. All dreams restart from fresh real contexts every ``horizon`` steps (at steps
that are multiples of it, so an interrupted training resumes exactly from a checkpoint); their
draws use the training's data generator.

With ``history`` > 0 the dreams also keep their last ``history`` frames (the real context first,
then generated ones) and the real frames at the same steps, so that training can teach the DiT
itself on its own rollouts (:meth:`HeadRollouts.windows`, ``world_model_train.rollout_windows``):
the clean stream reads the dream's frames and the target is the real game's next frame, the
correction from where the dream drifted back to where the game went (DAgger, scheduled sampling;
Self Forcing trains on the model's own rollouts for the same reason: a model taught only on real
contexts never sees the errors it makes in a rollout).
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from worldsim.data.dataset import WindowDataset
from worldsim.models.world_model import WorldModel
from worldsim.runtime import autocast


class DreamTransitions(NamedTuple):
    tokens: torch.Tensor  # (r, n, d) the DiT's token features of the generated frame
    prev: torch.Tensor  # (r, c, h, w) the dream's previous frame
    new: torch.Tensor  # (r, c, h, w) the generated frame
    rewards: torch.Tensor  # (r,) the real reward of the same step
    terminated: torch.Tensor  # (r,) the end head's target of the same real step (WindowDataset.end_targets)


class HeadRollouts:
    def __init__(self, data: WindowDataset, latents: torch.Tensor, rows: int, horizon: int,
                 device: torch.device, precision: str, history: int = 0) -> None:
        if rows < 1 or horizon < 1 or history < 0:
            raise ValueError(f"head rollouts need rows >= 1, horizon >= 1 and history >= 0, got {rows}, {horizon} "
                             f"and {history}.")
        self.data, self.latents, self.rows, self.horizon = data, latents, rows, horizon
        self.device, self.precision, self.history = device, precision, history
        self.window_starts: torch.Tensor | None = None
        self.cache = None
        self.pos = torch.zeros(rows, dtype=torch.long)  # flat index of each dream's real counterpart frame
        self.frames: torch.Tensor | None = None  # (r, <= history, c, h, w) each dream's latest frames, oldest first
        self.frame_idx: torch.Tensor | None = None  # (r, <= history) their real counterparts' flat indices

    def _starts(self, context: int) -> torch.Tensor:
        if self.window_starts is None:
            self.window_starts = self.data.starts_for(context + self.horizon)
            if not len(self.window_starts):
                raise ValueError(
                    f"head rollouts need episodes of at least {context + self.horizon} frames (context "
                    f"{context} + horizon {self.horizon}); lower world_model_train.head_rollout_horizon "
                    "or set world_model_train.head_rollouts=0.")
        return self.window_starts

    @torch.no_grad()
    def _restart(self, model: WorldModel, generator: torch.Generator) -> None:
        C = model.cfg.dit.context_frames
        starts = self._starts(C)
        s = starts[torch.randint(len(starts), (self.rows,), generator=generator)]
        idx = s[:, None] + torch.arange(C)  # (r, C) the real context frames
        context = self.latents[idx].to(self.device)
        prev = model.prev_actions(self.data.actions[idx[:, :-1]].to(self.device))
        self.cache = model.start_rollout(context, prev, start_pos=0)
        self.pos = s + C - 1
        if self.history:
            self.frames, self.frame_idx = context[:, -self.history:].float(), idx[:, -self.history:]

    @torch.no_grad()
    def next(self, model: WorldModel, step: int, generator: torch.Generator) -> DreamTransitions:
        """One more frame of every dream, generated by ``model`` (the EMA) at training step ``step``."""
        model.eval()
        with autocast(self.device, self.precision):
            if self.cache is None or step % self.horizon == 0:
                self._restart(model, generator)
            actions = self.data.actions[self.pos].to(self.device)
            noise = torch.randn((self.rows, model.cfg.dit.latent_channels, *model.latent_hw), generator=generator)
            new = model.sample_next(self.cache, actions, noise=noise.to(self.device))
            prev = self.cache.last_latents.float()
            tokens = model.append_features(self.cache, new, actions).float()
            self.cache.last_latents = new
        rewards, terminated = self.data.rewards[self.pos].to(self.device), self.data.end_targets[self.pos].to(self.device)
        self.pos = self.pos + 1  # windows lie inside one episode: the game's end can only be a dream's last step
        if self.history:
            self.frames = torch.cat([self.frames, new.float()[:, None]], 1)[:, -self.history:]
            self.frame_idx = torch.cat([self.frame_idx, self.pos[:, None]], 1)[:, -self.history:]
        return DreamTransitions(tokens, prev, new, rewards, terminated)

    def windows(self, count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``count`` dreams' last ``history`` frames (count, history, c, h, w) and their real
        counterparts' flat indices (count, history), from dreams drawn with ``generator``; ``None``
        until the dreams hold that many frames again after a restart."""
        if self.frames is None or self.frames.shape[1] < self.history:
            return None
        rows = torch.randperm(self.rows, generator=generator)[:count]
        return self.frames[rows], self.frame_idx[rows]
